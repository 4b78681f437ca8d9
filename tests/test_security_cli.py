"""``ehr audit verify``, ``ehr audit sync`` and ``ehr consent rebuild`` through the real ``ehr``
command line (:func:`fhir_api.cli.main`), on both databases: the audit trail a secured server
wrote verifies, a tampered row makes ``verify`` exit 1 and name the row, records left in the
spool by a crashed server are brought in by ``sync``."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, update
from test_security_support import bearer, build_world, secure_app, tokens

from ehr.security import AuditRecord, AuditTrail
from ehr.security.tables import audit_chain, consent_rules
from ehr.settings import get_settings
from ehr.store import Store
from fhir_api.cli import main
from fhir_api.security import SecuritySettings

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def ehr(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[Run]:
    """``ehr ARGS`` against the test database; returns (exit code, stdout, stderr)."""
    monkeypatch.setenv("EHR_DATABASE_URL", db_url)
    monkeypatch.setenv("EHR_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()

    def run(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(list(argv))
        out = capsys.readouterr()
        return code, out.out, out.err

    yield run
    get_settings.cache_clear()


def test_audit_verify_reports_an_intact_and_a_tampered_trail(
    store: Store, tmp_path: Path, ehr: Run
) -> None:
    w = build_world(store)
    with secure_app(store, tmp_path) as sa:
        t = tokens(sa)
        for role in ("citizen_a", "clinician_2", "anonymous"):
            sa.client.get(f"/Observation/{w['obs-pa']}", headers=bearer(t[role]))
            sa.trail.sync()  # (a block each)
    code, out, err = ehr("audit", "verify")
    assert code == 0, err
    assert out.startswith("audit chain OK: 3 events in 3 blocks, head #3 ")
    code, out, _ = ehr("audit", "verify", "--json")
    report = json.loads(out)
    assert code == 0 and report["ok"] and report["rows"] == report["materialized"] == 3
    assert report["blocks"] == report["head_seq"] == 3
    head = report["head_hash"]
    with store.engine.begin() as conn:  # an administrator rewrites history: 404 -> 200
        row = conn.execute(select(audit_chain).where(audit_chain.c.seq == 2)).one()
        assert b'"status":404' in bytes(row.record)
        forged = bytes(row.record).replace(b'"status":404', b'"status":200')
        conn.execute(update(audit_chain).where(audit_chain.c.seq == 2).values(record=forged))
    code, out, err = ehr("audit", "verify")
    assert code == 1
    assert out.startswith("audit chain BROKEN")
    assert "#2: its record does not match its hash (changed)" in err
    # re-hashing the forged row to hide it breaks the link to the next row, and the head
    from ehr.security.audit import chain_hash

    with store.engine.begin() as conn:
        conn.execute(
            update(audit_chain)
            .where(audit_chain.c.seq == 2)
            .values(hash=chain_hash(row.prev_hash, forged))
        )
    code, out, err = ehr("audit", "verify", "--json")
    report = json.loads(out)
    assert code == 1 and report["head_hash"] == head
    assert "#3: prev_hash does not match the hash of #2" in report["problems"]


def test_audit_sync_replays_a_crashed_servers_spool(db_url: str, store: Store, ehr: Run) -> None:
    data = Path(get_settings().data_dir)
    spool = SecuritySettings().spool_for(
        data, store.engine.url.render_as_string(hide_password=True)
    )
    trail = AuditTrail(store, spool_dir=spool, flush_interval=3600)
    rec = AuditRecord("read", 200, rtype="Patient", rid="pa", subject="u", client_id="c")
    trail.record(rec)
    assert trail._spool is not None  # the server dies with the record only in its spool
    trail._spool._current.close(delete=False)
    if trail._spool._spare is not None:
        trail._spool._spare.close(delete=True)
    trail._stopping = True
    code, out, _ = ehr("audit", "sync")
    assert code == 0 and "0 event(s) left to store" in out
    code, out, _ = ehr("audit", "verify")
    assert code == 0 and out.startswith("audit chain OK: 1 events")
    assert store.read("AuditEvent", rec.id).resource()["entity"][0]["what"] == {
        "reference": "Patient/pa"
    }


def test_consent_rebuild(store: Store, ehr: Run) -> None:
    build_world(store)
    consent = {
        "resourceType": "Consent",
        "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                              "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": "Patient/pa"},
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                                   "code": "OPTIN"}]},
        "provision": {"type": "deny", "actor": [{
            "role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                 "code": "PRCP"}]},
            "reference": {"reference": "Organization/org1"}}]},
    }  # fmt: skip
    store.create(consent)  # a bulk load: no server, no hook, no rules
    with store.read_conn() as conn:
        assert conn.execute(select(consent_rules)).all() == []
    code, out, _ = ehr("consent", "rebuild")
    assert code == 0 and out.strip() == "consent rules rebuilt: 1 rule(s)"
    with store.read_conn() as conn:
        (rule,) = conn.execute(select(consent_rules)).all()
    assert (rule.patient_id, rule.kind, rule.actor) == ("pa", "deny", "Organization/org1")
