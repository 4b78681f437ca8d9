"""The official FHIR R4 examples (../shared/fhir-r4/examples, HL7 CC0) go in by PUT with their
own ids and read back unchanged apart from meta; a second PUT makes version 2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from test_api_support import api, without_meta

from ehr.store import Store

EXAMPLES = Path(__file__).resolve().parents[2] / "shared" / "fhir-r4" / "examples"
FILES = sorted(EXAMPLES.glob("*.json"))


def test_examples_are_there() -> None:
    assert len(FILES) >= 11, f"no examples found in {EXAMPLES}"


def test_every_example_round_trips(store: Store) -> None:
    client: TestClient = api(store)
    for path in FILES:
        example: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        rtype, rid = example["resourceType"], example["id"]
        r = client.put(f"/{rtype}/{rid}", json=example)
        assert r.status_code == 201, (path.name, r.text)
        assert r.headers["location"].endswith(f"/{rtype}/{rid}/_history/1")
        got = client.get(f"/{rtype}/{rid}")
        assert got.status_code == 200, path.name
        assert without_meta(got.json()) == without_meta(example), path.name
        again = client.put(f"/{rtype}/{rid}", json=example)
        assert again.status_code == 200 and again.headers["etag"] == 'W/"2"', path.name
        if "meta" in example:  # meta the client sent (profiles, tags) is kept
            kept = {
                k: v for k, v in example["meta"].items() if k not in ("versionId", "lastUpdated")
            }
            assert {k: got.json()["meta"][k] for k in kept} == kept


def test_patient_example_searchable(store: Store) -> None:
    client: TestClient = api(store)
    example = json.loads((EXAMPLES / "Patient-example.json").read_text(encoding="utf-8"))
    client.put(f"/Patient/{example['id']}", json=example)
    found = client.get("/Patient", params={"family": "Chalmers", "birthdate": "1974-12-25"}).json()
    assert [e["resource"]["id"] for e in found["entry"]] == [example["id"]]
