"""Reindex (ehr.search.reindex): resumable after a crash, every resource indexed exactly once,
progress reported; the ``ehr reindex`` command. Both databases."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from ehr.errors import NotFound
from ehr.search.reindex import (
    ReindexStatus,
    cancel_job,
    create_job,
    find_resumable,
    job_status,
    run_job,
    start_background,
)
from ehr.search.tables import INDEX_TABLES, idx_string
from ehr.settings import get_settings
from ehr.storage.tables import resources
from ehr.store import Store

ROOT = Path(__file__).resolve().parents[1]
NICK = "http://example.org/fhir/StructureDefinition/nickname"
NICK_URL = "http://example.org/fhir/SearchParameter/patient-nickname"
N = 23


def nickname_param() -> dict[str, Any]:
    return {
        "resourceType": "SearchParameter", "url": NICK_URL, "name": "Nickname",
        "status": "active", "description": "what friends call the patient", "code": "nickname",
        "base": ["Patient"], "type": "string", "expression": f"Patient.extension('{NICK}').value",
    }  # fmt: skip


@pytest.fixture
def loaded(store: Store) -> Iterator[Store]:
    """N patients written before the nickname parameter exists, plus two observations."""
    store.custom.refresh_interval = 0.05
    with store.write() as ctx:
        for i in range(N):
            ctx.create({
                "resourceType": "Patient", "name": [{"family": f"王{i}", "given": ["小明"]}],
                "extension": [{"url": NICK, "valueString": f"Nick {i}"}],
            })  # fmt: skip
        for i in range(2):
            ctx.create(
                {"resourceType": "Observation", "status": "final", "code": {"text": f"o{i}"}}
            )
    store.create(nickname_param())
    yield store


def nicknamed(store: Store) -> int:
    return len(store.search("Patient", [("nickname", "nick"), ("_count", "100")]).matches)


def assert_indexed_exactly_once(store: Store, rtype: str) -> None:
    """Each resource's rows in the index tables are exactly what indexing it gives: none
    missing, none twice."""
    with store.read_conn() as conn:
        current = conn.execute(
            select(resources.c.pk, resources.c.data).where(resources.c.rtype == rtype)
        ).all()
        assert current
        for pk, data in current:
            expected: Counter[tuple[Any, ...]] = Counter()
            for kind, rows in store.index(json.loads(data)).items():
                cols = [c.name for c in INDEX_TABLES[kind].columns if c.name not in ("pk", "rtype")]
                expected.update((kind, *(r[c] for c in cols)) for r in rows)
            found: Counter[tuple[Any, ...]] = Counter()
            for kind, table in INDEX_TABLES.items():
                values = [c for c in table.columns if c.name not in ("pk", "rtype")]
                found.update(
                    (kind, *r) for r in conn.execute(select(*values).where(table.c.pk == pk))
                )
            assert found == expected, f"pk {pk}"


def test_resume_after_an_interrupted_run(loaded: Store) -> None:
    store = loaded
    assert nicknamed(store) == 0  # written before the parameter: not indexed
    job = create_job(store, rtype="Patient", chunk=5)
    assert (job.status, job.done, job.total, job.rtypes) == ("queued", 0, N, ("Patient",))

    seen: list[ReindexStatus] = []
    first = run_job(store, job.id, max_chunks=1, progress=seen.append)  # one chunk, then stop
    assert (first.done, first.status) == (5, "running")
    assert nicknamed(store) == 5

    def crash(status: ReindexStatus) -> None:
        seen.append(status)
        if status.done >= 10:
            raise RuntimeError("worker crashed")

    with pytest.raises(RuntimeError):
        run_job(store, job.id, progress=crash)
    failed = job_status(store, job.id)
    assert (failed.status, failed.done, failed.cursor > first.cursor) == ("failed", 10, True)
    assert "worker crashed" in (failed.error or "")
    assert find_resumable(store, rtype="Patient") == failed

    final = run_job(store, job.id, progress=seen.append)
    assert (final.status, final.done, final.total, final.error) == ("done", N, N, None)
    assert [s.done for s in seen] == [5, 10, 15, 20, N, N]  # progress after every chunk
    assert all(s.total == N for s in seen[:-1])
    assert final.rate is not None and final.rate > 0 and final.finished is not None
    params = {
        p["name"]: next(v for k, v in p.items() if k != "name")
        for p in final.to_parameters()["parameter"]
    }
    assert (params["status"], params["done"], params["total"]) == ("done", N, N)

    assert nicknamed(store) == N
    assert_indexed_exactly_once(store, "Patient")
    assert_indexed_exactly_once(store, "Observation")
    assert run_job(store, job.id).status == "done"  # a finished job stays finished
    assert find_resumable(store, rtype="Patient") is None


def test_resume_after_the_process_is_killed(loaded: Store, db_url: str) -> None:
    """A real crash: a separate process runs the job and is killed after its first chunk."""
    store = loaded
    job = create_job(store, chunk=4)  # every type: patients, observations, the SearchParameter
    code = textwrap.dedent(f"""
        import sys, time
        from ehr.store import Store
        from ehr.search.reindex import run_job
        def progress(s):
            print(s.done, flush=True)
            time.sleep(60)  # killed here, "mid-run"
        run_job(Store({db_url!r}, pool_size=1), {job.id!r}, progress=progress)
    """)
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "4"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    dead = job_status(store, job.id)
    assert (dead.status, dead.done) == ("running", 4)  # the worker is gone; the job is not
    final = run_job(store, job.id)
    assert (final.status, final.done) == ("done", N + 3)
    assert nicknamed(store) == N
    assert_indexed_exactly_once(store, "Patient")


def test_concurrent_writes_during_a_reindex_are_kept(loaded: Store) -> None:
    store = loaded
    job = create_job(store, rtype="Patient", chunk=10)
    run_job(store, job.id, max_chunks=1)
    page = store.search("Patient", [("_count", "100")])
    last = page.matches[-1]
    body = {
        **store.read("Patient", last.rid).resource(),
        "extension": [{"url": NICK, "valueString": "Renamed"}],
    }
    store.update("Patient", last.rid, body)  # ahead of the cursor: written with its new value
    first = page.matches[0]
    body = {
        **store.read("Patient", first.rid).resource(),
        "extension": [{"url": NICK, "valueString": "Changed"}],
    }
    store.update("Patient", first.rid, body)  # behind the cursor
    new = store.create(
        {"resourceType": "Patient", "extension": [{"url": NICK, "valueString": "Late"}]}
    )
    final = run_job(store, job.id)
    assert final.status == "done" and final.done == N + 1  # the late one is covered too
    for value, rid in (("renamed", last.rid), ("changed", first.rid), ("late", new.rid)):
        assert {h.rid for h in store.search("Patient", [("nickname", value)]).matches} == {rid}
    assert_indexed_exactly_once(store, "Patient")


def test_scope_by_search_parameter_and_errors(loaded: Store) -> None:
    store = loaded
    job = create_job(store, param_url=NICK_URL)
    assert job.rtypes == ("Patient",) and job.param_url == NICK_URL and job.total == N
    with pytest.raises(NotFound):
        create_job(store, param_url="http://example.org/nothing")
    with pytest.raises(NotFound):
        create_job(store, rtype="Nonsense")
    with pytest.raises(NotFound):
        job_status(store, "nope")
    cancelled = cancel_job(store, job.id)
    assert cancelled.status == "cancelled"
    assert run_job(store, job.id).done == 0  # a cancelled job does not run
    assert nicknamed(store) == 0


def test_background_job_for_the_operation(loaded: Store) -> None:
    store = loaded
    job = start_background(store, param_url=NICK_URL, chunk=3)
    import time

    for _ in range(200):
        status = job_status(store, job.id)
        if status.status == "done":
            break
        time.sleep(0.05)
    assert status.status == "done" and status.done == N
    assert nicknamed(store) == N


@pytest.fixture
def configured(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("EHR_DATABASE_URL", db_url)
    get_settings.cache_clear()
    yield db_url
    get_settings.cache_clear()


def test_cli_reindex_and_resume(
    loaded: Store, configured: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from fhir_api.reindex_cli import add_subcommands

    parser = argparse.ArgumentParser(prog="ehr")
    add_subcommands(parser.add_subparsers(dest="command", required=True))

    def ehr(*argv: str) -> int:
        args = parser.parse_args(list(argv))
        return int(args.fn(args))

    job = create_job(loaded, rtype="Patient", chunk=10)
    run_job(loaded, job.id, max_chunks=1)
    assert ehr("reindex", "--type", "Patient", "--resume", "--quiet") == 0
    out = capsys.readouterr().out
    assert job.id in out and f"done      {N}/{N}" in out
    assert nicknamed(loaded) == N
    assert ehr("reindex", "--list") == 0
    assert job.id in capsys.readouterr().out
    with loaded.read_conn() as conn:
        before = conn.execute(select(idx_string.c.pk).where(idx_string.c.param == "nickname")).all()
    assert ehr("reindex", "--quiet", "--chunk", "7") == 0  # everything again: same rows
    with loaded.read_conn() as conn:
        after = conn.execute(select(idx_string.c.pk).where(idx_string.c.param == "nickname")).all()
    assert sorted(before) == sorted(after)
