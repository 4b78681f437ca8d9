"""The ``ehr`` command as operations scripts use it: migrate, load, demo (on both databases)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from ehr.settings import get_settings
from ehr.store import Store
from fhir_api.cli import main


@pytest.fixture
def configured(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("EHR_DATABASE_URL", db_url)
    get_settings.cache_clear()
    yield db_url
    get_settings.cache_clear()


def test_migrate_is_idempotent(configured: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["migrate"]) == 0
    assert main(["migrate"]) == 0
    assert "schema up to date" in capsys.readouterr().out


def test_load_files_bundles_and_ndjson(configured: str, tmp_path: Path) -> None:
    (tmp_path / "one.json").write_text(
        json.dumps({"resourceType": "Patient", "id": "p-one", "name": [{"family": "李"}]}),
        encoding="utf-8",
    )
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {"resourceType": "Organization", "name": "市第一人民医院"},
                "request": {"method": "PUT", "url": "Organization/org-1"},
            },
            {
                "resource": {"resourceType": "Practitioner", "name": [{"family": "王"}]},
                "request": {"method": "POST", "url": "Practitioner"},
            },
        ],
    }
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "b.json").write_text(json.dumps(bundle), encoding="utf-8")
    (sub / "c.ndjson").write_text(
        "\n".join(
            json.dumps({"resourceType": "Patient", "id": f"nd-{i}", "gender": "male"})
            for i in range(7)
        ),
        encoding="utf-8",
    )
    assert main(["load", str(tmp_path), "--quiet"]) == 0
    store = Store(configured, pool_size=2)
    try:
        assert store.read("Patient", "p-one").resource()["name"][0]["family"] == "李"
        assert store.read("Organization", "org-1").resource()["name"] == "市第一人民医院"
        assert all(store.exists("Patient", f"nd-{i}") for i in range(7))
        if configured.startswith("postgresql"):  # planner statistics refreshed after the load
            with store.engine.connect() as conn:
                analyzed = conn.exec_driver_sql(
                    "SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables"
                    " WHERE relname = 'resources'"
                ).scalar()
            assert analyzed
    finally:
        store.dispose()


def test_load_missing_file_is_an_error(configured: str, tmp_path: Path) -> None:
    assert main(["load", str(tmp_path / "nope.json"), "--quiet"]) == 2


def test_demo_loads_once(configured: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--citizens", "20", "--quiet"]) == 0
    assert main(["demo", "--citizens", "20", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "loaded the demo city" in out and "already loaded" in out
