"""Bulk ndjson $import as a store-level job (ehr.bulk), on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import func, select

from ehr.bulk import (
    BulkWorker,
    ImportInput,
    kick_off,
    kick_off_import,
    open_file,
    parse_import_parameters,
    status,
)
from ehr.errors import BadRequest
from ehr.storage.tables import resources
from ehr.store import Store

BASE = "https://ehr.example/fhir/bulk-files"


def ndjson(path: Path, items: list[Any]) -> str:
    path.write_bytes(
        b"".join((i if isinstance(i, bytes) else orjson.dumps(i)) + b"\n" for i in items)
    )
    return path.as_uri()


def patient(i: int, with_id: bool = True) -> dict[str, Any]:
    p: dict[str, Any] = {"resourceType": "Patient", "name": [{"family": f"fam{i}"}]}
    if with_id:
        p["id"] = f"imp-{i}"
    return p


def obs(i: int) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": f"obs {i}"},
        "subject": {"reference": f"Patient/imp-{i % 5}"},
    }


def count(store: Store, rtype: str) -> int:
    with store.read_conn() as conn:
        return int(
            conn.execute(
                select(func.count()).where(
                    resources.c.rtype == rtype, resources.c.deleted.is_(False)
                )
            ).scalar_one()
        )


def test_import_loads_every_line_and_reports_counts(store: Store, tmp_path: Path) -> None:
    pats = ndjson(tmp_path / "Patient.ndjson", [patient(i) for i in range(5)])
    obss = ndjson(tmp_path / "Observation.ndjson", [obs(i) for i in range(12)])
    job = kick_off_import(
        store,
        [ImportInput(pats, "Patient"), obss],
        allowed_root=tmp_path,
        request_url="https://x/$import",
    )
    assert status(store, job, base_url=BASE).status == "queued"
    assert BulkWorker(store, tmp_path, import_chunk_size=4).run_pending() == 1
    st = status(store, job, base_url=BASE)
    assert st.status == "completed" and st.manifest is not None
    assert st.manifest["request"] == "https://x/$import"
    assert st.manifest["output"] == [
        {"type": "Patient", "inputUrl": pats, "count": 5},
        {"type": "Observation", "inputUrl": obss, "count": 12},
    ]
    assert st.manifest["error"] == []
    assert store.read("Patient", "imp-3").resource()["name"] == [{"family": "fam3"}]  # ids kept
    assert (count(store, "Patient"), count(store, "Observation")) == (5, 12)


def test_bad_lines_go_to_the_error_file_and_the_rest_is_loaded(
    store: Store, tmp_path: Path
) -> None:
    url = ndjson(
        tmp_path / "mixed.ndjson",
        [
            patient(1),
            b"{not json",
            {"resourceType": "Observation", "status": "final", "code": {"text": "x"}},
            {"resourceType": "Patient", "gender": "sometimes"},
            b"",
            patient(2),
        ],
    )
    job = kick_off_import(store, [ImportInput(url, "Patient")], allowed_root=tmp_path)
    BulkWorker(store, tmp_path, import_chunk_size=2).run_pending()
    st = status(store, job, base_url=BASE)
    assert st.manifest is not None and st.status == "completed"
    assert st.manifest["output"] == [{"type": "Patient", "inputUrl": url, "count": 2}]
    [err] = st.manifest["error"]
    assert (err["type"], err["count"], err["url"]) == (
        "OperationOutcome",
        3,
        f"{BASE}/{job}/import-errors.ndjson",
    )
    with open_file(store, job, "import-errors.ndjson", data_dir=tmp_path) as fh:
        outcomes = [orjson.loads(line) for line in fh.read().splitlines()]
    where = [o["issue"][0]["diagnostics"].split(":", 2)[:2] for o in outcomes]
    assert [w[1].split()[-1] for w in where] == ["2", "3", "4"]  # line numbers
    assert all(o["resourceType"] == "OperationOutcome" for o in outcomes)
    assert count(store, "Patient") == 2 and count(store, "Observation") == 0


def test_a_restarted_import_writes_each_line_once(store: Store, tmp_path: Path) -> None:
    url = ndjson(
        tmp_path / "obs.ndjson", [obs(i) for i in range(10)]
    )  # no ids: replays would duplicate
    job = kick_off_import(store, [url], allowed_root=tmp_path)
    BulkWorker(store, tmp_path, import_chunk_size=3).run_pending(max_chunks=2)  # dies mid-job
    st = status(store, job, base_url=BASE)
    assert st.status == "running" and st.percent is not None and 0 < st.percent < 100
    assert count(store, "Observation") == 6
    BulkWorker(store, tmp_path, import_chunk_size=3, stale_after=0).run_pending()
    assert status(store, job, base_url=BASE).status == "completed"
    assert count(store, "Observation") == 10


def test_export_then_import_round_trips(store: Store, tmp_path: Path) -> None:
    for i in range(3):
        store.create(patient(i, with_id=False))
    job = kick_off(store, "system", types="Patient")
    BulkWorker(store, tmp_path).run_pending()
    exported = tmp_path / "bulk" / job / "Patient.1.ndjson"
    imp = kick_off_import(store, [exported.as_uri()], allowed_root=tmp_path)
    BulkWorker(store, tmp_path).run_pending()
    assert status(store, imp, base_url=BASE).manifest["output"][0]["count"] == 3  # type: ignore[index]
    assert count(store, "Patient") == 3  # same ids: updated in place, not duplicated
    for line in exported.read_bytes().splitlines():
        r = orjson.loads(line)
        assert store.read("Patient", r["id"]).version == 2


def test_parse_import_parameters(tmp_path: Path) -> None:
    inputs, fmt = parse_import_parameters(
        {
            "resourceType": "Parameters",
            "parameter": [
                {"name": "inputFormat", "valueCode": "application/fhir+ndjson"},
                {"name": "inputSource", "valueUri": "https://hospital.example"},
                {
                    "name": "input",
                    "part": [
                        {"name": "type", "valueCode": "Patient"},
                        {"name": "url", "valueUri": "file:///data/import/p.ndjson"},
                    ],
                },
            ],
        }
    )
    assert fmt == "application/fhir+ndjson"
    assert inputs == [ImportInput("file:///data/import/p.ndjson", "Patient")]
    with pytest.raises(BadRequest):
        parse_import_parameters(
            {"resourceType": "Parameters", "parameter": [{"name": "input", "part": []}]}
        )


def test_only_local_files_below_the_import_folder(store: Store, tmp_path: Path) -> None:
    inside = tmp_path / "in"
    inside.mkdir()
    ok = ndjson(inside / "p.ndjson", [patient(1)])
    outside = ndjson(tmp_path / "p.ndjson", [patient(1)])
    bad = [
        [ImportInput("https://hospital.example/p.ndjson")],
        [ImportInput("file://otherhost/p.ndjson")],
        [ImportInput(outside)],
        [ImportInput(ok.replace("in/p.ndjson", "in/../p.ndjson"))],
        [ImportInput((inside / "missing.ndjson").as_uri())],
        [ImportInput(ok, "Spaceship")],
        [],
    ]
    for inputs in bad:
        with pytest.raises(BadRequest):
            kick_off_import(store, inputs, allowed_root=inside)
    with pytest.raises(BadRequest):
        kick_off_import(store, [ok], allowed_root=inside, input_format="application/json")
    kick_off_import(store, [ok], allowed_root=inside, input_format="ndjson")
