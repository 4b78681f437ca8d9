"""Bulk Data export over HTTP: kick-off (202 + Content-Location), polling (202 X-Progress, then
200 manifest), download of the ndjson files, cancel (DELETE), and the kick-off errors."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
from fastapi.testclient import TestClient

from ehr.settings import Settings
from ehr.store import Store
from fhir_api.app import create_app

ASYNC = {"Prefer": "respond-async", "Accept": "application/fhir+json"}


def test_export_life_cycle(store: Store, tmp_path: Path) -> None:
    for fam in ("赵", "钱", "孙"):
        store.create({"resourceType": "Patient", "name": [{"family": fam}]})
    store.create({"resourceType": "Organization", "name": "市中医院"})
    app = create_app(store, Settings(data_dir=tmp_path))
    with TestClient(app) as c:  # the lifespan starts the bulk worker
        r = c.get("/fhir/$export", params={"_type": "Patient"}, headers=ASYNC)
        assert r.status_code == 202, r.text
        status_url = r.headers["content-location"]
        assert "/$bulk-status/" in status_url
        for _ in range(200):
            s = c.get(status_url)
            if s.status_code != 202:
                break
            assert "x-progress" in s.headers and "retry-after" in s.headers
            time.sleep(0.05)
        assert s.status_code == 200, s.text
        manifest = s.json()
        assert manifest["requiresAccessToken"] is True
        [out] = manifest["output"]
        assert out["type"] == "Patient" and out["count"] == 3
        f = c.get(out["url"])
        assert f.status_code == 200
        families = sorted(orjson.loads(line)["name"][0]["family"] for line in f.text.splitlines())
        assert families == ["孙", "赵", "钱"]
        assert c.delete(status_url).status_code == 202
        assert c.get(status_url).status_code == 404
        assert c.get(out["url"]).status_code == 404


def test_export_kick_off_errors(store: Store, tmp_path: Path) -> None:
    c = TestClient(create_app(store, Settings(data_dir=tmp_path)))
    assert c.get("/fhir/$export").status_code == 400  # no Prefer: respond-async
    assert (
        c.get("/fhir/$export", params={"_outputFormat": "text/csv"}, headers=ASYNC).status_code
        == 400
    )
    assert c.get("/fhir/$export", params={"_type": "Banana"}, headers=ASYNC).status_code == 400
    assert c.get("/fhir/Group/nope/$export", headers=ASYNC).status_code == 404
    assert c.get("/fhir/$bulk-status/unknown").status_code == 404
