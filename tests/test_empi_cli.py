"""``ehr empi backfill|status`` on both databases: Patients stored without the EMPI (``ehr load``)
get their golden records, and a later registration of the same citizen finds them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from test_api_empi import KEY, registration

from ehr.empi.service import golden_record_id, install
from ehr.identifiers import make_citizen_id
from ehr.settings import get_settings
from ehr.store import Store
from fhir_api.cli import main


@pytest.fixture
def configured(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("EHR_DATABASE_URL", db_url)
    monkeypatch.setenv("EHR_CITIZEN_ID_KEY", KEY.decode())
    get_settings.cache_clear()
    yield db_url
    get_settings.cache_clear()


def test_backfill_matches_what_ehr_load_stored(
    configured: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cid = make_citizen_id("330106", date(1979, 5, 2), 12, True)
    files = []
    for n, (hospital, mrn, citizen) in enumerate((("org-h1", "A-1", cid), ("org-h2", "B-7", cid),
                                                   ("org-h2", "B-9", None))):  # fmt: skip
        body = {**registration(hospital, mrn, citizen, "林晓燕" if citizen else "欧阳娜娜"),
                "id": f"p{n}"}  # fmt: skip
        files.append(tmp_path / f"p{n}.json")
        files[-1].write_text(json.dumps(body, ensure_ascii=False), encoding="utf-8")
    assert main(["load", "--quiet", *map(str, files)]) == 0
    assert main(["empi", "status"]) == 0
    assert "0 golden record(s) over 3 source Patient(s)" in capsys.readouterr().out

    assert main(["empi", "backfill", "--batch", "2"]) == 0
    out = capsys.readouterr().out
    assert "matched 3 Patient(s)" in out and "2 golden record(s) over 3" in out
    store = Store(configured)
    try:
        assert golden_record_id(store, "p0") == golden_record_id(store, "p1")
        assert golden_record_id(store, "p2") not in (None, golden_record_id(store, "p0"))
        # a later registration of the citizen (as ehr serve does it) joins that golden record
        install(store)
        later = store.create(registration("org-h3", "C-3", cid))
        assert golden_record_id(store, later.rid) == golden_record_id(store, "p0")
    finally:
        store.dispose()
    assert main(["empi", "backfill"]) == 0
    assert "matched 0 Patient(s)" in capsys.readouterr().out


def test_ehr_load_matches_when_the_empi_is_on(
    configured: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    cid = make_citizen_id("330106", date(1983, 8, 9), 31, False)
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {**registration(h, mrn, cid, "周丽"), "id": f"q{n}"}}
        for n, (h, mrn) in enumerate((("org-h1", "A-5"), ("org-h2", "B-5")))]}  # fmt: skip
    path = tmp_path / "two.json"
    path.write_text(json.dumps(bundle, ensure_ascii=False), encoding="utf-8")
    monkeypatch.setenv("EHR_EMPI", "1")
    get_settings.cache_clear()
    assert main(["load", "--quiet", str(path)]) == 0
    assert "2 Patient(s) matched into golden records" in capsys.readouterr().out
    store = Store(configured)
    try:
        assert golden_record_id(store, "q0") == golden_record_id(store, "q1") is not None
    finally:
        store.dispose()
