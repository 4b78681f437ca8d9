"""``$reindex`` over HTTP (fhir_api.operations.reindex) on the secured app, both databases: the
async life cycle (202, Content-Location, progress, 200), resuming a job whose runner died (a
restart), the instance form, cancelling, errors, and who may run it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update
from test_reindex import NICK, NICK_URL, N, assert_indexed_exactly_once, nickname_param
from test_security_support import FHIR_JSON, SecureApp, bearer, secure_app

from ehr.search.jobs_tables import reindex_jobs
from ehr.search.reindex import create_job, job_status, run_job
from ehr.store import Store

ADMIN_SCOPE = "system/*.cruds"


@pytest.fixture
def sa(store: Store, tmp_path: Path) -> Iterator[SecureApp]:
    """The secured app over N patients written before the nickname parameter existed."""
    store.custom.refresh_interval = 0.05
    with store.write() as ctx:
        for i in range(N):
            ctx.create({
                "resourceType": "Patient", "name": [{"family": f"王{i}", "given": ["小明"]}],
                "extension": [{"url": NICK, "valueString": f"Nick {i}"}],
            })  # fmt: skip
    store.create(nickname_param())
    with secure_app(store, tmp_path) as app:
        yield app


def params(body: dict[str, Any]) -> dict[str, Any]:
    assert body["resourceType"] == "Parameters"
    return {
        p["name"]: next(v for k, v in p.items() if k.startswith("value")) for p in body["parameter"]
    }


def nicknamed(sa: SecureApp, token: str) -> int:
    r = sa.client.get("/Patient?nickname=nick&_count=100", headers=bearer(token))
    assert r.status_code == 200, r.text
    return len([e for e in r.json().get("entry", []) if e["search"]["mode"] == "match"])


def poll(sa: SecureApp, url: str, token: str, timeout: float = 30.0) -> dict[str, Any]:
    """Poll a status URL until it answers 200; the last body."""
    deadline = time.monotonic() + timeout
    while True:
        r = sa.client.get(url, headers=bearer(token))
        if r.status_code == 200:
            return dict(r.json())
        assert r.status_code == 202, r.text
        assert "resources" in r.headers["X-Progress"] and r.headers["Retry-After"]
        assert time.monotonic() < deadline, f"still running: {r.headers['X-Progress']}"
        time.sleep(0.05)


def jobs(store: Store) -> int:
    with store.read_conn() as conn:
        return int(conn.execute(select(func.count()).select_from(reindex_jobs)).scalar_one())


def test_type_reindex_life_cycle(sa: SecureApp) -> None:
    token = sa.token(ADMIN_SCOPE, client_id="ops")
    assert nicknamed(sa, token) == 0  # written before the parameter: not indexed yet
    r = sa.client.post("/Patient/$reindex?batchSize=5", headers=bearer(token))
    assert r.status_code == 202, r.text
    started = params(r.json())
    assert started["type"] == "Patient" and started["total"] == N
    url = r.headers["Content-Location"]
    assert url == f"http://localhost/fhir/Patient/$reindex-status/{started['job']}"
    other = url.replace("/Patient/", "/Observation/")  # a typed status URL is for its type
    assert sa.client.get(other, headers=bearer(token)).status_code == 404

    done = params(poll(sa, url, token))
    assert (done["status"], done["done"], done["total"]) == ("done", N, N)
    assert done["rate"] > 0 and "finished" in done
    assert nicknamed(sa, token) == N
    assert_indexed_exactly_once(sa.store, "Patient")


def test_system_reindex_with_a_parameters_body(sa: SecureApp) -> None:
    token = sa.token(ADMIN_SCOPE, client_id="ops")
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "searchParameter", "valueUri": NICK_URL},
        {"name": "batchSize", "valueInteger": 7},
    ]}  # fmt: skip
    r = sa.client.post("/$reindex", json=body, headers=bearer(token, **{"Content-Type": FHIR_JSON}))
    assert r.status_code == 202, r.text
    p = params(r.json())
    assert p["searchParameter"] == NICK_URL and p["type"] == "Patient"  # the parameter's base
    done = params(poll(sa, r.headers["Content-Location"], token))
    assert (done["status"], done["done"]) == ("done", N)
    assert job_status(sa.store, p["job"]).chunk == 7
    assert nicknamed(sa, token) == N


def test_a_job_whose_runner_died_is_resumed(sa: SecureApp) -> None:
    """A restart: the job row says running, but its heartbeat stopped; the next status request
    resumes it from its last committed chunk."""
    store, token = sa.store, sa.token(ADMIN_SCOPE, client_id="ops")
    job = create_job(store, rtype="Patient", chunk=5)
    first = run_job(store, job.id, max_chunks=2)  # two chunks, then the "process dies"
    assert (first.status, first.done) == ("running", 10) and first.heartbeat is not None
    url = f"/$reindex-status/{job.id}"

    r = sa.client.get(url, headers=bearer(token))  # fresh heartbeat: someone runs it
    assert r.status_code == 202 and params(r.json())["done"] == 10
    assert job_status(store, job.id).done == 10  # and nobody else took it over

    with store.engine.begin() as conn:  # the heartbeat is two minutes old
        conn.execute(
            update(reindex_jobs)
            .where(reindex_jobs.c.id == job.id)
            .values(heartbeat=first.heartbeat - 120_000_000)
        )
    done = params(poll(sa, url, token))
    assert (done["status"], done["done"], done["total"]) == ("done", N, N)
    assert nicknamed(sa, token) == N
    assert_indexed_exactly_once(store, "Patient")


def test_a_failed_job_reports_500_and_resumes_on_request(sa: SecureApp) -> None:
    store, token = sa.store, sa.token(ADMIN_SCOPE, client_id="ops")
    job = create_job(store, rtype="Patient", chunk=5)

    def crash(status: Any) -> None:
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        run_job(store, job.id, progress=crash)
    url = f"/$reindex-status/{job.id}"
    r = sa.client.get(url, headers=bearer(token))
    assert r.status_code == 500
    issue = r.json()["issue"][0]
    assert issue["code"] == "exception" and "disk on fire" in issue["diagnostics"]
    assert job_status(store, job.id).status == "failed"  # a status request does not retry it

    r = sa.client.post(f"/$reindex?job={job.id}", headers=bearer(token))
    assert r.status_code == 202 and r.headers["Content-Location"].endswith(url)
    done = params(poll(sa, url, token))
    assert (done["status"], done["done"]) == ("done", N)
    assert jobs(store) == 1


def test_cancel(sa: SecureApp) -> None:
    store, token = sa.store, sa.token(ADMIN_SCOPE, client_id="ops")
    job = create_job(store, rtype="Patient")  # queued, no runner yet
    url = f"/$reindex-status/{job.id}"
    r = sa.client.delete(url, headers=bearer(token))
    assert r.status_code == 202 and params(r.json())["status"] == "cancelled"
    r = sa.client.get(url, headers=bearer(token))  # a cancelled job is not resumed
    assert r.status_code == 200 and params(r.json())["status"] == "cancelled"
    assert job_status(store, job.id).done == 0
    assert nicknamed(sa, token) == 0


def test_instance_reindex(sa: SecureApp) -> None:
    token = sa.token(ADMIN_SCOPE, client_id="ops")
    r = sa.client.get("/Patient?family=王7&_count=1", headers=bearer(token))
    pid = r.json()["entry"][0]["resource"]["id"]
    r = sa.client.post(f"/Patient/{pid}/$reindex", headers=bearer(token))
    assert r.status_code == 200, r.text
    p = params(r.json())
    assert p["resource"] == f"Patient/{pid}" and p["rows-string"] > 0
    r = sa.client.get("/Patient?nickname=nick", headers=bearer(token))
    assert [e["resource"]["id"] for e in r.json()["entry"]] == [pid]
    assert jobs(sa.store) == 0  # synchronous: no job
    r = sa.client.post("/Patient/nope/$reindex", headers=bearer(token))
    assert r.status_code == 404 and r.json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize(
    ("path", "status", "text"),
    [
        ("/$reindex?colour=blue", 400, "Unknown $reindex parameter"),
        ("/$reindex?batchSize=0", 400, "batchSize"),
        ("/$reindex?batchSize=many", 400, "batchSize"),
        ("/$reindex?type=Unicorn", 400, "Unknown resource type"),
        ("/Patient/$reindex?type=Patient", 400, "already names the type"),
        ("/$reindex?searchParameter=http://nowhere/sp", 404, "No search parameter"),
        ("/$reindex?job=0123456789abcdef", 404, "No reindex job"),
    ],
)
def test_kick_off_errors(sa: SecureApp, path: str, status: int, text: str) -> None:
    r = sa.client.post(path, headers=bearer(sa.token(ADMIN_SCOPE, client_id="ops")))
    assert r.status_code == status, r.text
    assert r.json()["resourceType"] == "OperationOutcome"
    assert text in r.json()["issue"][0]["diagnostics"]
    assert jobs(sa.store) == 0


def test_unknown_job_status_is_404(sa: SecureApp) -> None:
    r = sa.client.get("/$reindex-status/nope", headers=bearer(sa.token(ADMIN_SCOPE)))
    assert r.status_code == 404 and r.json()["resourceType"] == "OperationOutcome"


def test_who_may_reindex(sa: SecureApp) -> None:
    store = sa.store
    pid = sa.client.get("/Patient?_count=1", headers=bearer(sa.token(ADMIN_SCOPE))).json()["entry"][
        0
    ]["resource"]["id"]
    denied = {
        "patient": sa.token("patient/*.cruds", sub="user-a", patient=pid,
                            fhirUser=f"Patient/{pid}", role="citizen"),
        "clinician": sa.token("user/*.cruds", sub="user-p1", fhirUser="Practitioner/p1",
                              role="practitioner"),
        "read-only backend": sa.token("system/*.rs", client_id="analytics"),
        "other type": sa.token("system/Observation.cruds", client_id="obs-loader"),
    }  # fmt: skip
    job = create_job(store, rtype="Patient")
    for who, token in denied.items():
        for method, path in [
            ("POST", "/$reindex"),
            ("POST", "/Patient/$reindex"),
            ("POST", f"/Patient/{pid}/$reindex"),
            ("GET", f"/$reindex-status/{job.id}"),
            ("DELETE", f"/$reindex-status/{job.id}"),
        ]:
            r = sa.client.request(method, path, headers=bearer(token))
            assert r.status_code in (403, 404), (who, method, path, r.status_code)
            if path != f"/Patient/{pid}/$reindex" or who != "clinician":
                assert r.status_code == 403, (who, method, path, r.text)
            assert r.json()["resourceType"] == "OperationOutcome"
    r = sa.client.post("/$reindex")
    assert r.status_code == 401
    assert jobs(store) == 1 and job_status(store, job.id).status == "queued"  # nothing ran

    allowed = {
        "system/*.cruds": sa.token("system/*.cruds", client_id="ops"),
        "system/Patient.rus (its type)": sa.token("system/Patient.rus", client_id="ops2"),
        "administrator": sa.token("user/*.cruds", sub="admin-1", role="admin"),
    }
    for who, token in allowed.items():
        r = sa.client.post("/Patient/$reindex", headers=bearer(token))
        assert r.status_code == 202, (who, r.text)
        poll(sa, r.headers["Content-Location"], token)
    assert jobs(store) == 4
