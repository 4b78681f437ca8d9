"""The audit trail, through the real API on both databases: an AuditEvent for every interaction
(refusals included), a citizen's view of who accessed their record, the hash chain and its
verification (tampering is detected), crash recovery from the spool, and refusal of work when
the trail cannot keep up."""

from __future__ import annotations

import json
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, func, select, update
from test_security_support import (
    FHIR_JSON,
    _obs,
    bearer,
    build_world,
    secure_app,
    tokens,
)

from ehr.model import stamp
from ehr.search.indexer import extract
from ehr.security import AuditRecord, AuditTrail, verify_audit_chain
from ehr.security.audit import (
    WRITER_THREAD,
    block_lines,
    chain_events,
    event_of,
    index_rows,
    new_event_id,
)
from ehr.security.spool import Spool, read_segment
from ehr.security.tables import audit_chain
from ehr.storage.tables import resources
from ehr.store import Store
from ehr.validation import validate_resource


def events(store: Store) -> list[dict[str, Any]]:
    return chain_events(store)


def blocks(store: Store) -> list[tuple[int, list[bytes]]]:
    """The chain's rows: (seq, the lines of its block)."""
    with store.read_conn() as conn:
        rows = conn.execute(select(audit_chain.c.seq, audit_chain.c.record).order_by("seq")).all()
    return [(int(seq), block_lines(record)) for seq, record in rows]


def summary(e: dict[str, Any]) -> tuple[str, str, str]:
    return (e["subtype"][0]["code"], e["action"], e["outcome"])


def send(sa: Any, token: str | None, method: str, url: str, body: Any = None, **h: str) -> Any:
    headers = bearer(token, **h)
    if body is not None:
        headers.setdefault("Content-Type", FHIR_JSON)
    return sa.client.request(
        method, url, content=json.dumps(body) if body is not None else None, headers=headers
    )


def test_every_interaction_is_audited_refusals_too(store: Store, tmp_path: Path) -> None:
    w = build_world(store)
    with secure_app(store, tmp_path) as sa:
        t = tokens(sa)
        a, c2 = t["citizen_a"], t["clinician_2"]
        obs = w["obs-pa"]
        calls = [
            (a, "GET", f"/Observation/{obs}", None, ("read", "R", "0")),
            (a, "GET", f"/Observation/{obs}/_history/1", None, ("vread", "R", "0")),
            (a, "GET", f"/Observation/{obs}/_history", None, ("history-instance", "R", "0")),
            (a, "GET", "/Observation?code=29463-7", None, ("search-type", "E", "0")),
            (a, "POST", "/Observation", _obs("pa"), ("create", "C", "0")),
            (a, "PATCH", f"/Observation/{obs}", [{"op": "replace", "path": "/status",
                                                   "value": "amended"}], ("patch", "U", "0")),
            (a, "DELETE", f"/Condition/{w['cond-pa']}", None, ("delete", "D", "0")),
            (a, "POST", "", {"resourceType": "Bundle", "type": "batch", "entry": [
                {"request": {"method": "GET", "url": f"Observation/{obs}"}}]},
             ("transaction", "E", "0")),
            (None, "GET", f"/Observation/{obs}", None, ("read", "R", "4")),  # 401
            (t["terminal"], "GET", f"/Observation/{obs}", None, ("read", "R", "4")),  # 403
            (c2, "GET", f"/Observation/{obs}", None, ("read", "R", "4")),  # 404: not theirs
            (c2, "PUT", f"/Observation/{obs}", {**_obs("pa"), "id": obs}, ("update", "U", "4")),
            (t["citizen_b"], "POST", "/Observation", _obs("pa"), ("create", "C", "4")),  # 403
        ]  # fmt: skip
        for token, method, url, body, _ in calls:
            extra = {"Content-Type": "application/json-patch+json"} if method == "PATCH" else {}
            send(sa, token, method, url, body, **extra)
        sa.client.get("/metadata")  # public: not an access to anyone's record
        sa.trail.sync()
        got = events(store)
        assert [summary(e) for e in got] == [c[-1] for c in calls]
        for e in got:
            validate_resource(stamp(e, e["id"], 1, 1_700_000_000_000_000))
        # the middleware serializes its records itself: the bytes of AuditRecord.line(), field
        # order and omitted defaults included (the patients splice relies on them)
        lines = [line for _, block in blocks(store) for line in block]
        assert len(lines) == len(calls)
        assert all(AuditRecord.from_line(line).line() == line for line in lines)
        # the write's patient is known; a refusal names only what the requester sent
        assert {"reference": "Patient/pa"} in [x.get("what") for x in got[4]["entity"]]
        refused = got[10]
        assert refused["outcomeDesc"].startswith("404")
        assert [x["what"]["reference"] for x in refused["entity"]] == [f"Observation/{obs}"]
        assert got[8]["agent"][0]["who"] == {"display": "anonymous"}
        # AuditEvents are resources too, and only the server writes them (not audited itself)
        with store.read_conn() as conn:
            stored = conn.execute(
                select(func.count()).where(resources.c.rtype == "AuditEvent")
            ).scalar_one()
        assert stored == len(calls)
        r = send(sa, t["backend"], "GET", "/AuditEvent?_count=1&_total=accurate")
        assert r.json()["total"] == len(calls)  # the search itself is recorded after it ran
        r = send(sa, a, "POST", "/AuditEvent", got[0])
        assert r.status_code == 403


def test_citizen_sees_who_accessed_their_record(store: Store, tmp_path: Path) -> None:
    w = build_world(store)
    with secure_app(store, tmp_path) as sa:
        t = tokens(sa)
        send(sa, t["clinician_1"], "GET", f"/Observation/{w['obs-pa']}")
        send(sa, t["clinician_2"], "GET", f"/Observation/{w['obs-pb']}")
        send(sa, t["backend"], "GET", "/Patient/pa")
        r = send(sa, t["citizen_a"], "GET", "/AuditEvent?patient=pa&_sort=date")
        assert r.status_code == 200
        seen = [e["resource"] for e in r.json()["entry"]]
        who = [[a["who"].get("reference") or a["who"].get("display") for a in e["agent"]]
               for e in seen]  # fmt: skip
        assert who == [["Practitioner/p1", "test-app", "Organization/org1"], ["analytics"]]
        first = seen[0]
        assert first["purposeOfEvent"][0]["coding"][0]["code"] == "TREAT"
        assert first["recorded"] and first["outcome"] == "0"
        assert {"reference": "Patient/pa"} in [x.get("what") for x in first["entity"]]
        # never someone else's log: B's is out of A's reach
        other = send(sa, t["citizen_a"], "GET", "/AuditEvent?patient=pb")
        assert other.status_code == 200 and "entry" not in other.json()
        assert send(sa, t["citizen_a"], "GET", f"/AuditEvent/{seen[0]['id']}").status_code == 200
        theirs = [e for e in events(store) if "Practitioner/p2" in json.dumps(e)][0]
        assert send(sa, t["citizen_a"], "GET", f"/AuditEvent/{theirs['id']}").status_code == 404


def test_chain_verifies_and_tampering_is_detected(store: Store, tmp_path: Path) -> None:
    w = build_world(store)
    with secure_app(store, tmp_path) as sa:
        t = tokens(sa)
        for i in range(5):
            send(sa, t["citizen_a"], "GET", f"/Observation/{w['obs-pa']}")
            if i in (1, 4):  # (the writer thread may cut blocks in between too)
                sa.trail.sync()
    chain = blocks(store)
    report = verify_audit_chain(store)
    assert report.ok, report.problems
    assert report.rows == 5 and report.blocks == report.materialized == report.head_seq
    assert [seq for seq, _ in chain] == list(range(1, len(chain) + 1)) and len(chain) >= 2
    # the third event: its block and its line there
    seq, n = next((seq, 2 - sum(len(b) for _, b in chain[:i]))
                  for i, (seq, _) in enumerate(chain) if sum(len(b) for _, b in chain[: i + 1]) >= 3)  # fmt: skip
    with store.engine.begin() as conn:
        rec = conn.execute(select(audit_chain).where(audit_chain.c.seq == seq)).one()
        lines = block_lines(rec.record)
        event_id = AuditRecord.from_line(lines[n]).id
        lines[n] = lines[n].replace(b'"status":200', b'"status":403')
        forged = b"\n".join(lines)
        conn.execute(update(audit_chain).where(audit_chain.c.seq == seq).values(record=forged))
    report = verify_audit_chain(store)
    assert not report.ok
    assert any(p.startswith(f"#{seq}: its record does not match") for p in report.problems)
    assert f"#{seq}: AuditEvent/{event_id} differs from the chain" in report.problems
    with store.engine.begin() as conn:  # put it back; change the resource instead
        conn.execute(update(audit_chain).where(audit_chain.c.seq == seq).values(record=rec.record))
        data = conn.execute(
            select(resources.c.data).where(resources.c.rid == event_id)
        ).scalar_one()
        conn.execute(
            update(resources)
            .where(resources.c.rid == event_id)
            .values(data=bytes(data).replace(b'"action":"R"', b'"action":"D"'))
        )
    report = verify_audit_chain(store)
    assert report.problems == [f"#{seq}: AuditEvent/{event_id} differs from the chain"]
    with store.engine.begin() as conn:  # a removed row breaks the links
        conn.execute(update(resources).where(resources.c.rid == event_id).values(data=data))
        conn.execute(delete(audit_chain).where(audit_chain.c.seq == len(chain)))
    report = verify_audit_chain(store)
    assert not report.ok and any("rows were removed" in p for p in report.problems)
    assert any("not in the chain (inserted)" in p for p in report.problems)


def test_spool_replay_after_a_crash(store: Store, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    trail = AuditTrail(store, spool_dir=spool, flush_interval=3600)
    recs = [AuditRecord("read", 200, rtype="Patient", rid="pa", subject="u", client_id="c")
            for _ in range(3)]  # fmt: skip
    for rec in recs:
        trail.record(rec)
    # the process dies: nothing was written to the database, the spool holds the records
    assert events(store) == []
    assert trail._spool is not None
    segment = trail._spool._current.path
    fd = os.open(segment, os.O_RDONLY)
    assert len(read_segment(fd)) == 3
    os.close(fd)
    used = trail._spool._current.used
    trail._spool._current.close(delete=False)  # the locks go with the process
    if trail._spool._spare is not None:
        trail._spool._spare.close(delete=False)
    trail._stopping = True
    with segment.open("r+b") as f:  # a line torn by the crash, mid-write
        f.seek(used)
        f.write(b'{"interaction": "read", "sta')
    survivor = AuditTrail(store, spool_dir=spool, flush_interval=3600)
    assert [e["id"] for e in events(store)] == [r.id for r in recs]
    assert not segment.exists()
    assert survivor._spool is not None
    assert all(survivor._spool.owns(p) for p in spool.glob("audit-*.jsonl"))
    AuditTrail(store, spool_dir=spool, flush_interval=3600).close()
    survivor.close()
    assert len(events(store)) == 3  # replayed once
    assert verify_audit_chain(store).ok


def test_no_access_without_audit(store: Store, tmp_path: Path) -> None:
    """When the trail cannot keep up, requests are refused before any work (503)."""
    w = build_world(store)
    config = {"audit_max_queue": 1, "audit_flush_ms": 3_600_000, "audit_batch": 1_000_000}
    with secure_app(store, tmp_path, **config) as sa:
        t = tokens(sa)
        assert send(sa, t["citizen_a"], "GET", f"/Observation/{w['obs-pa']}").status_code == 200
        r = send(sa, t["citizen_a"], "POST", "/Observation", _obs("pa"))
        assert r.status_code == 503 and r.headers["retry-after"]
        assert store.search("Observation", [("subject", "Patient/pa")]).total == 1
        sa.trail.flush()
        assert send(sa, t["citizen_a"], "POST", "/Observation", _obs("pa")).status_code == 201
    assert [summary(e)[2] for e in events(store)] == ["0", "8", "0"]  # 503: a server failure


def test_a_failure_after_the_check_is_audited_as_a_server_failure(
    store: Store, tmp_path: Path
) -> None:
    """The edge's catch-all answer (500) is recorded like a route's own: the audit observes
    every response the edge lets out, whatever produced it."""
    from fastapi import APIRouter, Depends

    from fhir_api.app import include_before_interactions
    from fhir_api.deps import authorize

    w = build_world(store)
    router = APIRouter()

    @router.get("/{rtype}/{rid}/boom", dependencies=[Depends(authorize("read"))])
    async def boom() -> None:
        raise RuntimeError("unexpected")

    with secure_app(store, tmp_path) as sa:
        include_before_interactions(sa.app, router)
        t = tokens(sa)
        r = send(sa, t["citizen_a"], "GET", f"/Observation/{w['obs-pa']}/boom")
        assert r.status_code == 500 and "unexpected" not in r.text
        r = send(sa, t["citizen_b"], "GET", f"/Observation/{w['obs-pa']}/boom")
        assert r.status_code == 404  # refused before the route ran
        sa.trail.sync()
    got = events(store)
    assert [summary(e) for e in got] == [("read", "R", "8"), ("read", "R", "4")]
    assert got[0]["outcomeDesc"].startswith("500")
    assert {"reference": "Patient/pa"} in [x.get("what") for x in got[0]["entity"]]


def test_authorization_server_events(store: Store, tmp_path: Path) -> None:
    with secure_app(store, tmp_path) as sa:
        auth = sa.app.state.auth
        auth.emit("login", outcome="invalid", username="zhang.wei", user_id=None, ip="10.0.0.9")
        auth.emit("token", grant_type="authorization_code", client_id="app", user_id="u1",
                  scope="patient/*.rs", patient="pa", jti="j1", ip="10.0.0.9")  # fmt: skip
        auth.emit("login", outcome="refused", username="li.na", user_id=None, ip="10.0.0.9",
                  reason="witness for user u1: administer:MedicationRequest/m1")  # fmt: skip
        auth.emit("logout", outcome="ok", user_id="u1", client_id="app", ip="10.0.0.9")
        sa.trail.sync()
    got = events(store)
    assert [(e["type"]["code"], e["subtype"][0]["code"], e["outcome"]) for e in got] == [
        ("110114", "login", "4"),
        ("110114", "token", "0"),
        ("110114", "login", "4"),  # a second nurse refused as witness
        ("110114", "logout", "0"),
    ]
    assert got[2]["outcomeDesc"].startswith("403 ")  # refused, not a bad password (401)
    assert "witness for user u1" in got[2]["outcomeDesc"]
    assert {"reference": "Patient/pa"} in [x.get("what") for x in got[1]["entity"]]


@pytest.mark.parametrize(
    "rec",
    [
        AuditRecord("read", 200, rtype="Observation", rid="o1", user="Practitioner/p1",
                    subject="u1", client_id="app", token_id="jti", ip="10.1.2.3",
                    organizations=["Organization/o1"], patients=["a"], purpose="TREAT"),
        AuditRecord("search-type", 200, rtype="Observation", method="GET", path="/fhir/Observation",
                    query="code=x&_include=Observation:subject", user="Patient/a", subject="u2",
                    client_id="app", ip="::1", patients=["a"], purpose="PATRQT"),
        AuditRecord("vread", 404, rtype="Observation", rid="o2", version="3", client_id="svc",
                    subject="svc", detail="Version 3 of Observation/o2 not found"),
        AuditRecord("read", 401, rtype="Patient", rid="a", ip="1.2.3.4"),
        AuditRecord("read", 200, rtype="Patient", rid="a", patients=["a"], user="Practitioner/p1",
                    subject="u1", client_id="app", break_glass="昏迷 unconscious"),
        AuditRecord("operation", 200, operation="$everything", rtype="Patient", rid="a",
                    patients=["a", "b"], user="Practitioner/p1", subject="u", client_id="c"),
        AuditRecord("login", 401, kind="login", subject="u1", ip="1.1.1.1"),
        AuditRecord("operation", 200, operation="$empi-merge", rtype="Provenance", rid="m1",
                    user="Practitioner/p1", patients=["a", "b"], action="U",
                    codes=[["http://ehr.example.cn/fhir/CodeSystem/empi", "merge", "Patient merge"]],
                    detail="Patient/a merged into Patient/b"),
    ],
)  # fmt: skip
def test_fast_index_rows_equal_the_indexer(rec: AuditRecord) -> None:
    """AuditEvents are indexed without FHIRPath, to the very same rows."""
    event = stamp(event_of(rec), rec.id, 1, 1_704_067_200_123_456)
    validate_resource(event)

    def norm(rows: dict[str, list[dict[str, Any]]]) -> dict[str, list[Any]]:
        return {k: sorted(sorted(r.items()) for r in v) for k, v in rows.items() if v}

    assert norm(index_rows(event)) == norm(extract(event))


def test_empi_identity_changes_go_through_the_one_trail(store: Store, tmp_path: Path) -> None:
    """The EMPI's AuditEvents (links, merges) are chain records like every other, written in the
    transaction of the change: a rolled-back change leaves none, and the chain verifies."""
    from dataclasses import replace

    from test_empi_service import KEY, cid, patient

    from ehr.empi.features import DEFAULT_IDENTITY
    from ehr.empi.links import EMPI_SYSTEM
    from ehr.empi.service import install as install_empi

    install_empi(store, identity=replace(DEFAULT_IDENTITY, hmac_key=KEY))
    # a server is running with a backlog: the EMPI's events wait their turn in chain order
    trail = AuditTrail(
        store, spool_dir=tmp_path / "spool", flush_interval=3600, materialize="never"
    )
    trail.record(AuditRecord("read", 200, rtype="Patient", rid="x", subject="c", client_id="c"))
    trail.flush()
    a = store.create(patient("hosp-01", "A-1", citizen=cid(7))).rid
    b = store.create(patient("hosp-02", "B-1", citizen=cid(7))).rid
    got = events(store)
    assert [e["subtype"][-1]["code"] for e in got] == ["read", "link"]
    link = got[1]
    assert link["subtype"][-1]["system"] == EMPI_SYSTEM and link["action"] == "U"
    assert link["agent"][0]["who"] == {"display": "EMPI (automatic matching)"}
    assert {f"Patient/{b}"} <= {x["what"]["reference"] for x in link["entity"]}
    assert store.search("AuditEvent", [("subtype", f"{EMPI_SYSTEM}|link")]).matches == []
    trail.sync()  # stored in chain order once the trail catches up
    found = store.search("AuditEvent", [("subtype", f"{EMPI_SYSTEM}|link")]).matches
    assert [h.rid for h in found] == [link["id"]]
    validate_resource(store.read("AuditEvent", link["id"]).resource())
    trail.close()
    # no trail behind: stored at once, in the same transaction
    with pytest.raises(RuntimeError), store.write() as ctx:
        ctx.create(patient("hosp-03", "C-1", citizen=cid(7)))
        assert len(events(store)) == 2  # (other connection: not yet committed)
        raise RuntimeError("the change is rolled back")
    assert len(events(store)) == 2
    store.create(patient("hosp-03", "C-1", citizen=cid(7)))
    assert len(events(store)) == 3
    assert len(store.search("AuditEvent", [("subtype", f"{EMPI_SYSTEM}|link")]).matches) == 2
    assert a != b and verify_audit_chain(store).ok


@pytest.mark.parametrize(
    "rec",
    [
        AuditRecord("read", 200, rtype="Observation", rid="o1", subject="s", client_id="c",
                    query='"patients":[],"resolve":true', resolve=True),
        AuditRecord("read", 200, rtype="Observation", rid="o1", patients=["b"], resolve=True),
        AuditRecord("read", 200, rtype="Patient", rid="a", detail="ü 患者", resolve=True),
    ],
)  # fmt: skip
def test_resolving_patients_gives_the_bytes_of_the_updated_record(rec: AuditRecord) -> None:
    """The writer adds the patients it found to a serialized record without parsing it again:
    the hashed bytes must be exactly those of the record updated and serialized anew."""
    from ehr.security.audit import _resolved

    line = rec.line()
    rec.patients = list(dict.fromkeys([*rec.patients, "a", "c"]))
    rec.resolve = False
    assert _resolved(line, ("a", "c")) == rec.line()


def test_spool_keeps_a_segment_filled_after_the_rotation(tmp_path: Path) -> None:
    """``release`` deletes only the segments taken with the queue by ``rotate``: a segment filled
    meanwhile holds records not yet committed and must stay until the next flush."""
    spool = Spool(tmp_path, segment_bytes=8192)
    taken = [f'{{"n":{i},"pad":"{"x" * 100}"}}'.encode() for i in range(10)]
    for line in taken:
        spool.append(line)
    spool.rotate()  # (the flush took these ten records)
    later = [f'{{"n":{i},"pad":"{"y" * 100}"}}'.encode() for i in range(100)]
    for line in later:  # fills the new segment: it is closed before the flush commits
        spool.append(line)
    spool.fsync()
    spool.release()  # the ten are committed
    kept: list[bytes] = []
    for path in sorted(tmp_path.glob("audit-*.jsonl")):
        fd = os.open(path, os.O_RDONLY)
        try:
            kept += read_segment(fd)
        finally:
            os.close(fd)
    assert sorted(kept) == sorted(later)  # the pages mapped in ahead hold no stray bytes
    spool.close(committed=True)
    assert not list(tmp_path.glob("audit-*.jsonl"))


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="Linux /proc only")
def test_the_writer_thread_is_named_in_the_kernel(store: Store) -> None:
    """Its CPU time can be told from the request path's (``bench/bench_audit.py``, ``top -H``)."""
    trail = AuditTrail(store, flush_interval=3600)
    try:
        trail.record(AuditRecord("read", 200, rtype="Patient", rid="pa"))
        assert trail._thread is not None
        deadline = time.monotonic() + 10
        names: set[str] = set()
        while WRITER_THREAD not in names and time.monotonic() < deadline:
            names = {(t / "comm").read_text().strip() for t in Path("/proc/self/task").iterdir()}
            time.sleep(0.01)
        assert WRITER_THREAD in names
        assert threading.current_thread().name != WRITER_THREAD
        assert (Path("/proc/self/task") / str(os.getpid()) / "comm").read_text().strip() != (
            WRITER_THREAD
        )  # only the writer's own thread was renamed
    finally:
        trail.close()
    assert len(events(store)) == 1


def test_two_workers_starting_together_make_one_state_row(store: Store) -> None:
    """Each worker makes the trail's state rows on its first write; two at once must not fail
    (the second worker's insert waits for the first one's, then skips it)."""
    from ehr.security.audit import _ensure_state
    from ehr.security.tables import audit_state

    errors: list[BaseException] = []
    with store.write() as first:
        _ensure_state(first.conn, "race-test")  # not committed yet

        def second() -> None:
            try:
                with store.write() as ctx:
                    _ensure_state(ctx.conn, "race-test")
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        t = threading.Thread(target=second)
        t.start()
        t.join(0.5)  # PostgreSQL: blocked on the first one's row; SQLite: on the single writer
    t.join(30)
    assert not t.is_alive() and errors == []
    with store.read_conn() as conn:
        rows = conn.execute(select(audit_state).where(audit_state.c.name == "race-test")).all()
    assert len(rows) == 1


def test_a_chain_written_before_blocks_verifies_and_goes_on_in_blocks(db_url: str) -> None:
    """Migration 0010: the rows of a chain written one per event (before blocks) are blocks of
    one event; the chain verifies as it was and the next batch is appended as one block."""
    from alembic import command
    from sqlalchemy import insert as sql_insert

    from ehr.security.audit import chain_hash
    from ehr.security.tables import GENESIS, audit_state
    from ehr.storage.db import make_engine
    from ehr.storage.migrate import alembic_config, upgrade

    engine = make_engine(db_url)
    cfg = alembic_config()
    recs = [AuditRecord("read", 200, rtype="Patient", rid="a", subject="u", site="s")
            for _ in range(3)]  # fmt: skip
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0009")
        old = sa_table_before_blocks()
        prev = GENESIS
        with engine.begin() as conn:
            for seq, rec in enumerate(recs, 1):
                line, digest = rec.line(), chain_hash(prev, rec.line())
                conn.execute(sql_insert(old).values(seq=seq, event_id=rec.id, recorded=rec.recorded,
                                                    record=line, prev_hash=prev, hash=digest))  # fmt: skip
                prev = digest
            conn.execute(sql_insert(audit_state).values(name="head", seq=3, hash=prev))
    finally:
        upgrade(engine)
        engine.dispose()
    store = Store(db_url)
    try:
        report = verify_audit_chain(store)
        assert report.ok, report.problems
        assert report.rows == report.blocks == report.head_seq == 3
        trail = AuditTrail(store, materialize="never")
        for _ in range(4):
            trail.record(AuditRecord("read", 200, rtype="Patient", rid="a", subject="u"))
        trail.flush()
        trail.close()
        report = verify_audit_chain(store)
        assert report.ok and report.rows == 7 and report.blocks == 4
        assert [e["id"] for e in events(store)][:3] == [r.id for r in recs]
    finally:
        store.dispose()


def sa_table_before_blocks() -> Any:
    """``audit_chain`` as revision 0009 left it (no ``events``)."""
    from sqlalchemy import BigInteger, Column, LargeBinary, MetaData, String, Table

    return Table(
        "audit_chain",
        MetaData(),
        Column("seq", BigInteger, primary_key=True),
        Column("event_id", String(64)),
        Column("recorded", BigInteger),
        Column("record", LargeBinary),
        Column("prev_hash", String(64)),
        Column("hash", String(64)),
    )


def test_stored_patients_match_each_resource_by_type_and_id_together(store: Store) -> None:
    """The shipper resolves a batch's resources of every type in one lookup (``rtype = ANY``
    and ``rid = ANY``): a same id under another type asked about in the batch is not theirs."""
    from ehr.security.visibility import stored_patients

    def subject(pid: str) -> dict[str, str]:
        return {"reference": f"Patient/{pid}"}

    code = {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]}
    with store.write() as ctx:
        for pid in ("sp-a", "sp-b"):
            ctx.update("Patient", pid, {"resourceType": "Patient", "id": pid})
        ctx.update("Observation", "same", {"resourceType": "Observation", "id": "same",
                                           "status": "final", "code": code,
                                           "subject": subject("sp-a")})  # fmt: skip
        for cid in ("same", "other"):
            ctx.update("Condition", cid, {"resourceType": "Condition", "id": cid,
                                          "subject": subject("sp-b")})  # fmt: skip
    asked = [("Observation", "same"), ("Condition", "other"), ("Patient", "sp-a"),
             ("Observation", "missing")]  # fmt: skip
    with store.read_conn() as conn:
        got = stored_patients(conn, asked)
    assert got == {
        ("Observation", "same"): {"sp-a"},
        ("Condition", "other"): {"sp-b"},
        ("Patient", "sp-a"): {"sp-a"},
        ("Observation", "missing"): set(),
    }


def test_a_record_names_its_own_requester_when_two_tokens_share_a_jti() -> None:
    """The middleware makes a token's requester fields once (by ``jti``); a token of another
    issuer with the same ``jti`` and another subject gets its own."""
    import orjson

    from ehr.accounts.scopes import parse_scopes
    from ehr.security import Principal, Target
    from fhir_api.security.context import AuditContext
    from fhir_api.security.request_audit import entry_of

    scope = {"type": "http", "method": "GET", "path": "/fhir/Observation/o1"}

    def record(p: Principal) -> dict[str, Any]:
        ctx = AuditContext()
        ctx.target, ctx.principal = Target("read", "Observation", "o1"), p
        line = entry_of(scope, ctx, 200, [], "site")[0]
        assert AuditRecord.from_line(line).line() == line
        return dict(orjson.loads(line))

    def doctor(sub: str, user: str, org: str) -> Principal:
        return Principal(subject=sub, client_id="app", scopes=parse_scopes("user/*.rs"),
                         fhir_user=user, organizations=(org,), roles=("practitioner",),
                         token_id="jti-shared")  # fmt: skip

    a = doctor("u1", "Practitioner/p1", "Organization/o1")
    b = doctor("u2", "Practitioner/p2", "Organization/o2")
    for p, user, org in ((a, "Practitioner/p1", "Organization/o1"),
                         (b, "Practitioner/p2", "Organization/o2"),
                         (a, "Practitioner/p1", "Organization/o1")):  # fmt: skip
        got = record(p)
        assert (got["user"], got["subject"], got["organizations"], got["purpose"]) == (
            user,
            p.subject,
            [org],
            "TREAT",
        )


def test_a_shipped_spool_makes_its_next_spare_segment_off_the_request_path(tmp_path: Path) -> None:
    """A worker whose records a shipper takes has no writer thread: once a rotation uses its
    spare segment, the next spare is made in a thread of its own, not by a later request."""
    spool = Spool(tmp_path, 4096, shipped=True)

    def segments() -> int:
        return len(list(tmp_path.glob("*.jsonl")))

    assert segments() == 2  # the current one and its spare
    for _ in range(14):  # (13 lines of 301 bytes fit in 4,096: the 14th goes to the spare)
        spool.append(b"x" * 300)
    deadline = time.monotonic() + 5
    while segments() < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert segments() == 3  # the full one (sealed), the current one, a new spare
    spool.close(committed=True)
    assert segments() == 1  # the full one waits for the shipper; the spare is gone


def test_event_ids_are_fhir_ids_unique_time_first_and_new_in_a_forked_worker() -> None:
    """An event id is the AuditEvent's id: a valid FHIR id, unique within a process (two in
    one microsecond too) and across forked workers (which share their parent's counter), and
    ordered by time first (the chain's and the resources' unique indexes grow at their
    right edge)."""
    us = 1796031201504630
    time_digits = len(str(us))
    a, b, later = new_event_id(us), new_event_id(us), new_event_id(us + 1)
    assert len({a, b, later}) == 3
    for i in (a, b, later, new_event_id()):
        assert re.fullmatch(r"[A-Za-z0-9\-.]{1,64}", i), i
    assert a.startswith(str(us)) and later.startswith(str(us + 1))
    assert a < later and b < later
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover (the forked worker)
        os.write(write, new_event_id(us).encode())
        os._exit(0)
    os.waitpid(child, 0)
    theirs = os.read(read, 200).decode()
    os.close(read)
    os.close(write)
    assert theirs.startswith(str(us)) and theirs != b
    prefix = slice(time_digits, time_digits + 12)  # (the per-process part)
    assert theirs[prefix] != b[prefix]
