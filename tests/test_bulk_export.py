"""Bulk Data $export as a store-level job (ehr.bulk), on SQLite and PostgreSQL:
https://hl7.org/fhir/uv/bulkdata/STU2/export.html"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import text

from ehr.bulk import BulkWorker, cancel, kick_off, open_file, purge, status
from ehr.bulk.jobs import Lease, bulk_root
from ehr.errors import BadRequest, NotFound
from ehr.search.dates import now_us
from ehr.store import Store

BASE = "https://ehr.example/fhir/bulk-files"


def obs(patient: str, code: str = "8867-4", status_: str = "final") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": status_,
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": f"Patient/{patient}"},
    }


@pytest.fixture
def city(store: Store) -> dict[str, Any]:
    """Three patients, their Observations, an Encounter, a Practitioner, and a Group of p1+p2
    (p3 is an inactive member, and a namesake on another server is a member too)."""
    ids: dict[str, Any] = {}
    for name in ("p1", "p2", "p3"):
        ids[name] = store.create({"resourceType": "Patient", "name": [{"family": name}]}).rid
    ids["obs"] = {
        name: [store.create(obs(ids[name], code)).rid for code in ("8867-4", "8310-5")]
        for name in ("p1", "p2", "p3")
    }
    ids["enc"] = store.create(
        {"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"},
         "subject": {"reference": f"Patient/{ids['p1']}"}}
    ).rid  # fmt: skip
    ids["doc"] = store.create({"resourceType": "Practitioner", "name": [{"family": "Doc"}]}).rid
    ids["group"] = store.create(
        {
            "resourceType": "Group",
            "type": "person",
            "actual": True,
            "member": [
                {"entity": {"reference": f"Patient/{ids['p1']}"}},
                {"entity": {"reference": f"Patient/{ids['p2']}"}},
                {"entity": {"reference": f"Patient/{ids['p3']}"}, "inactive": True},
                {"entity": {"reference": f"https://elsewhere.example/fhir/Patient/{ids['p3']}"}},
            ],
        }
    ).rid
    return ids


def run(store: Store, data: Path, **kw: Any) -> int:
    return BulkWorker(store, data, **kw).run_pending()


def outputs(store: Store, job: str, data: Path) -> dict[str, list[dict[str, Any]]]:
    """Every output file of a completed job, downloaded as a client would, by type."""
    st = status(store, job, base_url=BASE)
    assert st.status == "completed", st
    got: dict[str, list[dict[str, Any]]] = {}
    for entry in st.manifest["output"]:  # type: ignore[index]
        name = entry["url"].rsplit("/", 1)[1]
        assert entry["url"] == f"{BASE}/{job}/{name}"
        with open_file(store, job, name, data_dir=data) as fh:
            lines = fh.read().splitlines()
        assert len(lines) == entry["count"]
        got.setdefault(entry["type"], []).extend(orjson.loads(line) for line in lines)
    return got


def ids_of(got: dict[str, list[dict[str, Any]]], rtype: str) -> list[str]:
    return [r["id"] for r in got.get(rtype, [])]


def test_system_export_has_every_resource_and_a_spec_manifest(
    store: Store, city: dict[str, Any], tmp_path: Path
) -> None:
    before = now_us()
    job = kick_off(store, "system", request_url="https://ehr.example/fhir/$export")
    assert run(store, tmp_path) == 1
    st = status(store, job, base_url=BASE)
    m = st.manifest
    assert m is not None and st.status == "completed" and not st.in_progress
    assert m["request"] == "https://ehr.example/fhir/$export"
    assert m["requiresAccessToken"] is True
    assert m["transactionTime"] >= time.strftime("%Y-%m-%dT", time.gmtime(before / 1e6))
    assert m["error"] == []
    got = outputs(store, job, tmp_path)
    assert sorted(ids_of(got, "Patient")) == sorted(city[p] for p in ("p1", "p2", "p3"))
    assert sorted(ids_of(got, "Observation")) == sorted(o for v in city["obs"].values() for o in v)
    assert ids_of(got, "Practitioner") == [city["doc"]]
    assert ids_of(got, "Group") == [city["group"]]
    # the stored bytes as served on read, byte for byte
    with open_file(store, job, "Practitioner.1.ndjson", data_dir=tmp_path) as fh:
        assert fh.read() == store.read("Practitioner", city["doc"]).data + b"\n"


def test_patient_export_is_the_patient_compartments(
    store: Store, city: dict[str, Any], tmp_path: Path
) -> None:
    job = kick_off(store, "patient")
    run(store, tmp_path)
    got = outputs(store, job, tmp_path)
    assert len(got["Patient"]) == 3 and len(got["Observation"]) == 6
    assert ids_of(got, "Encounter") == [city["enc"]]
    assert "Practitioner" not in got  # not in any patient's compartment


def test_group_export_has_only_the_members_compartments(
    store: Store, city: dict[str, Any], tmp_path: Path
) -> None:
    job = kick_off(store, "group", group_id=city["group"])
    run(store, tmp_path)
    got = outputs(store, job, tmp_path)
    assert sorted(ids_of(got, "Patient")) == sorted([city["p1"], city["p2"]])
    assert sorted(ids_of(got, "Observation")) == sorted(city["obs"]["p1"] + city["obs"]["p2"])
    for o in city["obs"]["p3"]:  # the inactive member's data is absent
        assert o not in ids_of(got, "Observation")
    assert ids_of(got, "Encounter") == [city["enc"]]
    assert "Practitioner" not in got


def test_the_patient_parameter_narrows_to_given_patients(
    store: Store, city: dict[str, Any], tmp_path: Path
) -> None:
    job = kick_off(store, "patient", patients=[f"Patient/{city['p3']}"])
    in_group = kick_off(
        store,
        "group",
        group_id=city["group"],
        patients=[f"Patient/{city['p2']}", f"Patient/{city['p3']}"],
    )
    run(store, tmp_path)
    got = outputs(store, job, tmp_path)
    assert ids_of(got, "Patient") == [city["p3"]]
    assert sorted(ids_of(got, "Observation")) == sorted(city["obs"]["p3"])
    got = outputs(store, in_group, tmp_path)  # p3 is not an active member
    assert ids_of(got, "Patient") == [city["p2"]]
    with pytest.raises(BadRequest):
        kick_off(store, "patient", patients=["Practitioner/x"])
    with pytest.raises(BadRequest):
        kick_off(store, "system", patients=[f"Patient/{city['p3']}"])


def test_group_export_of_an_unknown_group_is_404(store: Store, city: dict[str, Any]) -> None:
    with pytest.raises(NotFound):
        kick_off(store, "group", group_id="nope")


def test_type_limits_the_types(store: Store, city: dict[str, Any], tmp_path: Path) -> None:
    job = kick_off(store, "system", types="Patient,Practitioner")
    run(store, tmp_path)
    assert set(outputs(store, job, tmp_path)) == {"Patient", "Practitioner"}
    job = kick_off(store, "group", group_id=city["group"], types=["Observation"])
    run(store, tmp_path)
    assert list(outputs(store, job, tmp_path)) == ["Observation"]


def test_since_keeps_only_later_changes(store: Store, city: dict[str, Any], tmp_path: Path) -> None:
    cut = now_us()
    time.sleep(0.002)
    late = store.create(obs(city["p1"], "29463-7")).rid
    store.update(
        "Practitioner",
        city["doc"],
        {"resourceType": "Practitioner", "id": city["doc"], "name": [{"family": "Dr"}]},
    )
    job = kick_off(store, "system", since=cut)
    run(store, tmp_path)
    got = outputs(store, job, tmp_path)
    assert ids_of(got, "Observation") == [late]
    assert [r["name"][0]["family"] for r in got["Practitioner"]] == ["Dr"]
    assert "Patient" not in got
    with pytest.raises(BadRequest):
        kick_off(store, "system", since="yesterday")


def test_type_filter_applies_per_type_and_ors_within_a_type(
    store: Store, city: dict[str, Any], tmp_path: Path
) -> None:
    job = kick_off(store, "patient", type_filters=["Observation?code=http://loinc.org|8867-4"])
    run(store, tmp_path)
    got = outputs(store, job, tmp_path)
    assert sorted(ids_of(got, "Observation")) == sorted(v[0] for v in city["obs"].values())
    assert len(got["Patient"]) == 3  # types without a filter are not filtered
    job = kick_off(
        store, "system", types="Observation",
        type_filters="Observation?code=8867-4&subject=Patient/" + city["p1"],
    )  # fmt: skip
    job2 = kick_off(
        store, "system", types="Observation",
        type_filters=["Observation?code=8867-4&subject=Patient/" + city["p1"],
                      "Observation?subject=Patient/" + city["p2"]],
    )  # fmt: skip
    run(store, tmp_path)
    assert ids_of(outputs(store, job, tmp_path), "Observation") == [city["obs"]["p1"][0]]
    assert sorted(ids_of(outputs(store, job2, tmp_path), "Observation")) == sorted(
        [city["obs"]["p1"][0], *city["obs"]["p2"]]
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"output_format": "application/json"},
        {"output_format": "text/csv"},
        {"types": "Patient,Spaceship"},
        {"type_filters": ["Observation?no-such-param=1"]},
        {"type_filters": ["Observation"]},
        {"type_filters": ["Observation?_count=5"]},
        {"types": "Patient", "type_filters": ["Observation?status=final"]},
    ],
)
def test_bad_kick_off_parameters_are_400(store: Store, kwargs: dict[str, Any]) -> None:
    with pytest.raises(BadRequest):
        kick_off(store, "system", **kwargs)


def test_patient_level_refuses_types_outside_the_compartment(store: Store) -> None:
    with pytest.raises(BadRequest, match="Practitioner"):
        kick_off(store, "patient", types="Practitioner")


def test_ndjson_output_formats_are_accepted(store: Store) -> None:
    for fmt in ("application/fhir+ndjson", "application/ndjson", "ndjson"):
        kick_off(store, "system", output_format=fmt)


def test_life_cycle_queued_running_completed(
    store: Store, city: dict[str, Any], tmp_path: Path
) -> None:
    job = kick_off(store, "system", types="Observation")
    st = status(store, job, base_url=BASE)
    assert (st.status, st.in_progress, st.manifest) == ("queued", True, None)
    BulkWorker(store, tmp_path, chunk_size=2).run_pending(max_chunks=1)
    st = status(store, job, base_url=BASE)
    assert st.status == "running" and st.in_progress
    assert st.percent == 33 and st.progress.startswith("33%")  # 2 of 6
    BulkWorker(store, tmp_path, chunk_size=2, stale_after=0).run_pending()
    st = status(store, job, base_url=BASE)
    assert st.status == "completed" and st.manifest is not None and st.percent == 100


def test_restart_mid_job_resumes_and_writes_each_resource_once(
    store: Store, city: dict[str, Any], tmp_path: Path
) -> None:
    job = kick_off(store, "system")
    first = BulkWorker(store, tmp_path, chunk_size=2)
    first.run_pending(max_chunks=1)  # the worker "dies" after a chunk: the job stays running
    folder = bulk_root(tmp_path) / job
    [partial] = list(folder.iterdir())
    with partial.open("ab") as fh:  # ... and had written a chunk it never committed
        fh.write(b'{"resourceType":"Patient","id":"half-writ')
    assert BulkWorker(store, tmp_path, chunk_size=2).run_pending() == 0  # its lease is fresh
    assert status(store, job, base_url=BASE).status == "running"
    restarted = BulkWorker(store, tmp_path, chunk_size=2, stale_after=0)  # the dead one's is stale
    assert restarted.run_pending() == 1
    got = outputs(store, job, tmp_path)
    every = Counter((t, r["id"]) for t, rs in got.items() for r in rs)
    assert set(every.values()) == {1}
    assert len(every) == 3 + 6 + 1 + 1 + 1


def test_the_background_thread_runs_jobs(
    store: Store, city: dict[str, Any], tmp_path: Path
) -> None:
    worker = BulkWorker(store, tmp_path, chunk_size=1, poll_interval=0.05)
    worker.start()
    try:
        job = kick_off(store, "system")
        worker.notify()
        deadline = time.monotonic() + 30
        while status(store, job, base_url=BASE).in_progress:
            assert time.monotonic() < deadline, "the background worker did not finish the job"
            time.sleep(0.05)
    finally:
        worker.stop()
    assert sum(len(v) for v in outputs(store, job, tmp_path).values()) == 12


def test_a_clean_stop_requeues_the_job_with_its_progress(
    store: Store, city: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first_chunk, release = threading.Event(), threading.Event()
    real_commit = Lease.commit

    def commit_then_pause(self: Lease, conn: Any, **kw: Any) -> None:  # hold the worker mid-job
        real_commit(self, conn, **kw)
        if kw.get("files"):
            first_chunk.set()
            release.wait(10)

    monkeypatch.setattr(Lease, "commit", commit_then_pause)
    job = kick_off(store, "system")
    worker = BulkWorker(store, tmp_path, chunk_size=2, poll_interval=0.05)
    worker.start()
    assert first_chunk.wait(10)
    stopper = threading.Thread(target=worker.stop)
    stopper.start()
    time.sleep(0.2)  # stop() has raised its flag and is waiting for the chunk to end
    release.set()
    stopper.join(10)
    st = status(store, job, base_url=BASE)
    assert st.status == "queued"
    monkeypatch.setattr(Lease, "commit", real_commit)
    assert BulkWorker(store, tmp_path, chunk_size=2).run_pending() == 1  # no stale wait needed
    every = Counter((t, r["id"]) for t, rs in outputs(store, job, tmp_path).items() for r in rs)
    assert len(every) == 12 and set(every.values()) == {1}


def test_a_lost_database_connection_requeues_the_job(
    store: Store,
    city: dict[str, Any],
    tmp_path: Path,
    backend: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if backend != "postgresql":
        pytest.skip("terminates PostgreSQL sessions")
    real_commit = Lease.commit
    killed: list[int] = []

    def commit_then_kill(self: Lease, conn: Any, **kw: Any) -> None:
        real_commit(self, conn, **kw)
        if kw.get("files") and not killed:  # after the first chunk: every other session dies
            killed.append(1)
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )

    monkeypatch.setattr(Lease, "commit", commit_then_kill)
    job = kick_off(store, "system")
    assert BulkWorker(store, tmp_path, chunk_size=2).run_pending() == 0
    store.dispose()  # drop the killed sessions from the pools (the read pool does not pre-ping)
    assert killed and status(store, job, base_url=BASE).status == "queued"  # not stuck, not failed
    assert BulkWorker(store, tmp_path, chunk_size=2).run_pending() == 1
    every = Counter((t, r["id"]) for t, rs in outputs(store, job, tmp_path).items() for r in rs)
    assert len(every) == 12 and set(every.values()) == {1}


def test_snapshot_at_transaction_time(store: Store, city: dict[str, Any], tmp_path: Path) -> None:
    job = kick_off(store, "system", types="Patient,Observation")
    store.update(
        "Patient",
        city["p1"],
        {"resourceType": "Patient", "id": city["p1"], "name": [{"family": "x"}]},
    )
    store.delete("Observation", city["obs"]["p3"][0])
    store.create({"resourceType": "Patient", "name": [{"family": "newcomer"}]})
    run(store, tmp_path)
    got = outputs(store, job, tmp_path)
    families = sorted(r["name"][0]["family"] for r in got["Patient"])
    assert families == ["p1", "p2", "p3"]  # as of the kick-off: no change, no newcomer
    assert city["obs"]["p3"][0] in ids_of(got, "Observation")


def test_large_types_are_split_into_several_files(
    store: Store, city: dict[str, Any], tmp_path: Path
) -> None:
    job = kick_off(store, "system", types="Observation")
    run(store, tmp_path, chunk_size=2, max_file_resources=4)
    st = status(store, job, base_url=BASE)
    assert [(e["url"].rsplit("/", 1)[1], e["count"]) for e in st.manifest["output"]] == [  # type: ignore[index]
        ("Observation.1.ndjson", 4),
        ("Observation.2.ndjson", 2),
    ]


def test_cancel_stops_the_job_and_deletes_its_files(
    store: Store, city: dict[str, Any], tmp_path: Path
) -> None:
    running = kick_off(store, "system")
    BulkWorker(store, tmp_path, chunk_size=2).run_pending(max_chunks=1)
    assert (bulk_root(tmp_path) / running).exists()
    cancel(store, running, data_dir=tmp_path)
    assert not (bulk_root(tmp_path) / running).exists()
    with pytest.raises(NotFound):
        status(store, running, base_url=BASE)
    assert BulkWorker(store, tmp_path, stale_after=0).run_pending() == 0  # nothing to resume
    assert not (bulk_root(tmp_path) / running).exists()

    done = kick_off(store, "system", types="Patient")
    run(store, tmp_path)
    assert any((bulk_root(tmp_path) / done).iterdir())
    cancel(store, done, data_dir=tmp_path)
    assert not (bulk_root(tmp_path) / done).exists()
    with pytest.raises(NotFound):
        open_file(store, done, "Patient.1.ndjson", data_dir=tmp_path)
    with pytest.raises(NotFound):
        cancel(store, done, data_dir=tmp_path)


def test_a_failed_job_says_why_in_an_error_file(
    store: Store, city: dict[str, Any], tmp_path: Path
) -> None:
    job = kick_off(store, "system", types="Observation")
    BulkWorker(store, tmp_path, chunk_size=2).run_pending(max_chunks=1)
    (bulk_root(tmp_path) / job / "Observation.1.ndjson").unlink()  # the disk lost the file
    assert BulkWorker(store, tmp_path, chunk_size=2, stale_after=0).run_pending() == 1
    st = status(store, job, base_url=BASE)
    assert st.status == "failed" and not st.in_progress
    assert st.outcome is not None and "missing" in st.outcome["issue"][0]["diagnostics"]
    assert st.manifest is not None and st.manifest["output"] == []
    [err] = st.manifest["error"]
    assert err["type"] == "OperationOutcome" and err["url"] == f"{BASE}/{job}/error.ndjson"
    with open_file(store, job, "error.ndjson", data_dir=tmp_path) as fh:
        [line] = fh.read().splitlines()
    outcome = orjson.loads(line)
    assert outcome["resourceType"] == "OperationOutcome"
    assert "Observation.1.ndjson is missing" in outcome["issue"][0]["diagnostics"]


@pytest.mark.parametrize(
    "name",
    [
        "../../../etc/passwd",
        "..",
        "/etc/passwd",
        "Patient.1.ndjson/../../x",
        "error.ndjson",
        "x.ndjson",
    ],
)
def test_download_refuses_names_the_job_did_not_write(
    store: Store, city: dict[str, Any], tmp_path: Path, name: str
) -> None:
    job = kick_off(store, "system", types="Patient")
    other = kick_off(store, "system", types="Practitioner")
    run(store, tmp_path)
    (bulk_root(tmp_path) / job / "x.ndjson").write_bytes(b"not registered")
    with pytest.raises(NotFound):
        open_file(store, job, name, data_dir=tmp_path)
    with pytest.raises(NotFound):
        open_file(store, job, f"../{other}/Practitioner.1.ndjson", data_dir=tmp_path)
    with pytest.raises(NotFound):
        open_file(store, "../" + job, "Patient.1.ndjson", data_dir=tmp_path)
    open_file(store, job, "Patient.1.ndjson", data_dir=tmp_path).close()


def test_jobs_are_visible_to_their_owner_only(
    store: Store, city: dict[str, Any], tmp_path: Path
) -> None:
    job = kick_off(store, "system", types="Patient", owner="client-a")
    run(store, tmp_path)
    assert status(store, job, base_url=BASE, owner="client-a").status == "completed"
    with pytest.raises(NotFound):
        status(store, job, base_url=BASE, owner="client-b")
    with pytest.raises(NotFound):
        open_file(store, job, "Patient.1.ndjson", owner="client-b", data_dir=tmp_path)
    with pytest.raises(NotFound):
        cancel(store, job, owner="client-b", data_dir=tmp_path)


def test_purge_removes_finished_jobs_and_their_files(
    store: Store, city: dict[str, Any], tmp_path: Path
) -> None:
    old = kick_off(store, "system", types="Patient")
    run(store, tmp_path)
    cut = now_us()
    queued = kick_off(store, "system", types="Patient")
    assert purge(store, older_than_us=cut, data_dir=tmp_path) == 1
    assert not (bulk_root(tmp_path) / old).exists()
    with pytest.raises(NotFound):
        status(store, old, base_url=BASE)
    assert status(store, queued, base_url=BASE).status == "queued"  # unfinished jobs stay
