"""The audit trail: an AuditEvent for every interaction, tamper-evident, fast to write.

Specs: AuditEvent (http://hl7.org/fhir/R4/auditevent.html) in the style of IHE Basic Audit Log
Patterns (BALP, https://profiles.ihe.net/ITI/BALP/): ``type`` rest, ``subtype`` the RESTful
interaction, ``action`` C/R/U/D/E, ``recorded``, ``outcome`` 0 (success) / 4 (the request was
refused or failed: 4xx) / 8 (server failure: 5xx), agents (the user with ``requestor``, their
client app, their organization; network address; token id as ``policy``; purpose of use),
``source`` (this server), entities (the patient(s), role 1; the resource, role 4; a search as
``entity.query``, base64, role 24), ``purposeOfEvent`` (``BTG`` for break-the-glass, else
treatment / patient request / operations). Logins, token grants and OAuth refusals of the
authorization server are recorded too (DICOM 110114 User Authentication / 110113 Security
Alert).

How a record travels:

1. the HTTP layer builds an :class:`AuditRecord` (a few fields, no JSON) when the response
   starts, appends it to the local spool (:mod:`ehr.security.spool`) and queues it: a few
   microseconds on the request path;
2. the writer thread (:class:`AuditTrail`) fsyncs the spool every ``fsync_interval`` (50 ms)
   and takes the queue every ``flush_interval`` (0.25 s, or when ``batch_size`` records wait),
   finds the patients of the resources read (two indexed queries per batch and type),
   and appends the batch to ``audit_chain`` as one row, a *block*, in one transaction: the
   block holds each record's canonical JSON line (the patients found included) and
   ``hash = sha256(prev_hash || block)``; the head row of ``audit_state`` is locked meanwhile
   (one appender at a time, across processes). The AuditEvent is a pure function of the record
   (:func:`event_of`), so the chain fixes the AuditEvent without the cost of building it now;
3. the AuditEvents are then **materialized** as FHIR resources (``AuditEvent?patient=`` etc.
   use the ordinary search index; the index rows are built directly, equal to what the generic
   indexer makes, at a fraction of its cost). Materialization yields to live traffic: with the
   default ``materialize="idle"`` it runs once no record came for ``idle_after`` (2 s), or
   when more than ``max_lag`` events wait (so the backlog stays bounded under sustained load); :meth:`AuditTrail.sync` (called before any request that may
   read AuditEvents) flushes and materializes everything first, so a reader always sees every
   event recorded before its request (in this process; other processes' within their
   ``flush_interval``).

Under ``ehr serve`` (``shipper="process"``) steps 1 and 2 are split between processes: a worker
only serializes its record and copies it into its spool segment (no queue, no writer thread),
and the audit shipper process (:mod:`ehr.security.shipper`) reads the workers' segments, syncs
them and appends their records to the chain, then materializes as above; a worker that must
see its own events (``sync``) runs a cycle of the shipper's itself.

Guarantees: an interaction's record is on local disk before its response is sent; a process
crash loses none (the spool is replayed by the next process); a power loss at most the last
``fsync_interval`` of records. When the queue is full (the database is down) requests are
refused with 503 before any work (:meth:`AuditTrail.accepting`): no access without audit.
Writing audit records never goes through the API, so it is not itself audited.

Tamper evidence: :func:`verify_audit_chain` recomputes the chain, checks the head, and compares
every materialized AuditEvent resource with the event its chain record gives; a changed,
deleted, inserted or reordered row is reported.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import hashlib
import itertools
import logging
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from ehr.model import dumps, stamp
from ehr.search.dates import date_range, now_us, us_to_instant
from ehr.search.normalize import normalize_string
from ehr.storage.db import is_postgres
from ehr.storage.tables import resources
from ehr.store import Store, WriteContext

from .scheduling import paced
from .spool import SEGMENT_BYTES, SEGMENTS, Spool, orphans, read_segment
from .tables import GENESIS, audit_chain, audit_state
from .visibility import stored_patients

__all__ = [
    "AuditRecord",
    "AuditReport",
    "AuditTrail",
    "Entry",
    "canonical",
    "chain_events",
    "event_of",
    "index_rows",
    "new_event_id",
    "record_in_transaction",
    "resolve_key",
    "verify_audit_chain",
]

log = logging.getLogger("ehr.security.audit")

EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
INTERACTION = "http://hl7.org/fhir/restful-interaction"
LOCAL_SUBTYPE = "urn:ehr:audit-subtype"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
ROLE_CLASS = "http://terminology.hl7.org/CodeSystem/v3-RoleClass"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
CLIENT_SYSTEM = "urn:ehr:oauth-client"
NETWORK_IP = "2"

#: interaction -> action (BALP: reads R, searches and operations E)
ACTIONS = {
    "create": "C",
    "read": "R",
    "vread": "R",
    "history-instance": "R",
    "update": "U",
    "patch": "U",
    "delete": "D",
}
PURPOSES = {
    "BTG": "break the glass",
    "TREAT": "treatment",
    "PATRQT": "patient requested",
    "HOPERAT": "healthcare operations",
}
#: auth-server events: name -> (type code, display) (DICOM)
SECURITY_TYPES = {
    "login": ("110114", "User Authentication"),
    "logout": ("110114", "User Authentication"),
    "token": ("110114", "User Authentication"),
    "grant-revoked": ("110113", "Security Alert"),
    "oauth-error": ("110113", "Security Alert"),
}


_ID_PREFIX = os.urandom(6).hex()
#: from 1,000,000: seven digits, so one process's ids of one microsecond sort by their count
#: (for its first 9 million events; past that a tie in time may sort out of count order)
_ID_COUNTER = itertools.count(1_000_000)


def _new_id_prefix() -> None:  # a forked worker must not share its parent's ids
    global _ID_PREFIX
    _ID_PREFIX = os.urandom(6).hex()


os.register_at_fork(after_in_child=_new_id_prefix)


def new_event_id(us: int | None = None) -> str:
    """A time-ordered unique id: µs clock (``us``: the record's time, when taken already), a
    random per-process prefix, a counter. Time first, so the unique indexes of the chain and of
    the resources table grow at their right edge; no system call (the request path must not
    give up the interpreter lock for it). In decimal: the int formatting every response
    already runs for its ``Content-Length``, where hex digits of a fixed width cost the
    request audit 3,000 instructions more and a code path of their own, cold on every request
    (``bench/RESULTS.md``, session 14)."""
    if us is None:
        us = time.time_ns() // 1000
    return f"{us}{_ID_PREFIX}{next(_ID_COUNTER)}"


@dataclass
class AuditRecord:
    """What the request path knows of one interaction (cheap to make; :func:`event_of` turns it
    into an AuditEvent). ``resolve``: the writer adds the patients of ``rtype/rid``."""

    interaction: str
    status: int
    id: str = field(default_factory=new_event_id)
    recorded: int = field(default_factory=lambda: time.time_ns() // 1000)
    kind: str = "rest"  # rest | login | token | grant-revoked | oauth-error
    method: str | None = None
    path: str | None = None
    query: str | None = None
    rtype: str | None = None
    rid: str | None = None
    version: str | None = None
    operation: str | None = None
    user: str | None = None  # fhirUser, relative
    subject: str | None = None  # token subject (user id or client id)
    client_id: str | None = None
    token_id: str | None = None
    organizations: list[str] = field(default_factory=list)
    ip: str | None = None
    patients: list[str] = field(default_factory=list)
    resolve: bool = False
    purpose: str | None = None  # TREAT | PATRQT | HOPERAT
    break_glass: str | None = None  # the reason, when asserted
    detail: str | None = None  # why it was refused / failed
    site: str | None = None  # AuditEvent.source.site (set by the writer)
    action: str | None = None  # C R U D E, when not the interaction's (ACTIONS)
    codes: list[list[str]] = field(default_factory=list)  # more subtypes: [system, code, display]

    def line(self) -> bytes:
        """The record as one line of JSON: the fields that differ from their defaults (None,
        False, empty lists), with ``patients`` kept while ``resolve`` is on (the writer splices
        them in: :func:`_resolved`). :meth:`from_line` gives the same record back. A short line
        costs less all the way: spool, queue, hash, the chain's blocks."""
        d = self.__dict__
        keep = d["resolve"]
        return orjson.dumps(
            {
                k: v
                for k, v in d.items()
                if v is not None and v is not False and (v != [] or (keep and k == "patients"))
            }
        )

    @classmethod
    def from_line(cls, line: bytes) -> AuditRecord:
        raw = orjson.loads(line)
        if raw.keys() <= _RECORD_FIELDS:  # (a line written by another version may differ)
            return cls(**raw)
        return cls(**{k: v for k, v in raw.items() if k in _RECORD_FIELDS})


_RECORD_FIELDS = frozenset(f.name for f in fields(AuditRecord))


#: about the size of a read's record line (the spool's backlog limit counts records by it)
RECORD_BYTES = 400
#: spool segments a host's live workers hold (a current and a spare each) before any of them
#: counts as backlog (shipped spools: :meth:`AuditTrail.accepting`)
LIVE_SEGMENTS = 64

#: a queued record: (serialized line, (rtype, rid) to resolve or None, event id, recorded µs)
Entry = tuple[bytes, tuple[str, str] | None, str, int]


def resolve_key(resolve: Any, rtype: str | None, rid: str | None) -> tuple[str, str] | None:
    """The resource whose patients the writer adds to a record (an :data:`Entry`'s key)."""
    return (rtype, rid) if resolve and rtype and rid else None


def _entry(rec: AuditRecord, line: bytes | None = None) -> Entry:
    key = resolve_key(rec.resolve, rec.rtype, rec.rid)
    return (line if line is not None else rec.line(), key, rec.id, rec.recorded)


#: what reading a damaged spool line raises (not JSON; JSON but not a record)
DAMAGED = (orjson.JSONDecodeError, KeyError, TypeError, AttributeError)


def _entry_of_line(line: bytes) -> Entry:
    """:func:`_entry` of a spooled line, without building its record (the spool's readers:
    the shipper, once per record it ships). Raises one of :data:`DAMAGED` for a damaged
    line."""
    d = orjson.loads(line)
    # (the type and id are looked at only when the record asks to be resolved)
    key = resolve_key(True, d.get("rtype"), d.get("rid")) if d.get("resolve") else None
    return (line, key, d["id"], d["recorded"])


def block_lines(record: bytes) -> list[bytes]:
    """The records (JSON lines) of a chain block, in order."""
    return bytes(record).split(b"\n")


def _not_chained(
    conn: Connection, entries: Sequence[Entry], since: int | None = None
) -> list[Entry]:
    """``entries`` without those the chain already holds, each event once (a replay; a spool
    that repeats a line must not stop the writing). The blocks that may hold one of them are
    those whose latest record is no older than the oldest of them, or than ``since`` when only
    records from then on may be there (``recorded`` is indexed): the chain's tail, read only on
    these rare paths."""
    if not entries:
        return []
    known: set[str] = set()
    oldest = min(e[3] for e in entries) if since is None else since
    for block in conn.execute(
        select(audit_chain.c.record).where(audit_chain.c.recorded >= oldest)
    ).scalars():
        for line in block_lines(block):
            with contextlib.suppress(*DAMAGED):
                known.add(orjson.loads(line)["id"])
    out = []
    for e in entries:
        if e[2] not in known:
            known.add(e[2])
            out.append(e)
    return out


# ------------------------------------------------------------------------------ the AuditEvent


def _coding(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    out = {"system": system, "code": code}
    if display:
        out["display"] = display
    return out


def _outcome(status: int) -> str:
    return "0" if status < 400 else "4" if status < 500 else "8"


def event_of(
    rec: AuditRecord, patients: Iterable[str] = (), *, site: str = "ehr-exchange"
) -> dict[str, Any]:
    """The AuditEvent (a dict, without ``meta``) of a record; ``patients`` adds to its own.
    Deterministic: the same record always gives the same event."""
    site = rec.site or site
    pats = list(dict.fromkeys([*rec.patients, *patients]))
    if rec.kind == "rest":
        action = ACTIONS.get(rec.interaction, "E")
        etype = _coding(EVENT_TYPE, "rest", "RESTful Operation")
        subtype = [_coding(INTERACTION, rec.interaction)]
        if rec.operation:
            subtype.append(_coding(LOCAL_SUBTYPE, rec.operation.lstrip("$")))
    else:
        action = "E"
        code, display = SECURITY_TYPES.get(rec.kind, ("110113", "Security Alert"))
        etype = _coding(DCM, code, display)
        subtype = [_coding(LOCAL_SUBTYPE, rec.kind)]
    action = rec.action or action
    subtype += [_coding(*c[:3]) for c in rec.codes]
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": rec.id,
        "type": etype,
        "subtype": subtype,
        "action": action,
        "recorded": us_to_instant(rec.recorded),
        "outcome": _outcome(rec.status),
    }
    desc = f"{rec.status}" + (f" {rec.detail}" if rec.detail else "")
    event["outcomeDesc"] = desc[:1000]
    purposes = []
    if rec.break_glass:
        purposes.append(
            {"coding": [_coding(ACT_REASON, "BTG", PURPOSES["BTG"])], "text": rec.break_glass}
        )
    elif rec.purpose:
        purposes.append({"coding": [_coding(ACT_REASON, rec.purpose, PURPOSES.get(rec.purpose))]})
    if purposes:
        event["purposeOfEvent"] = purposes
    agents: list[dict[str, Any]] = []
    person = rec.user is not None or (rec.subject is not None and rec.subject != rec.client_id)
    if person:
        who: dict[str, Any] = {"reference": rec.user} if rec.user else {"display": rec.subject}
        agent: dict[str, Any] = {
            "type": {"coding": [_coding(PARTICIPATION, "AUT" if action in "CUD" else "IRCP")]},
            "who": who,
        }
        if rec.subject:
            agent["altId"] = rec.subject
        agent["requestor"] = True
        if rec.token_id:
            agent["policy"] = [rec.token_id]
        if rec.ip:
            agent["network"] = {"address": rec.ip, "type": NETWORK_IP}
        if purposes:
            agent["purposeOfUse"] = purposes
        agents.append(agent)
    if rec.client_id:
        app: dict[str, Any] = {
            "type": {"coding": [_coding(DCM, "110150", "Application")]},
            "who": {
                "identifier": {"system": CLIENT_SYSTEM, "value": rec.client_id},
                "type": "Device",
                "display": rec.client_id,
            },
            "requestor": not person,
        }
        if not person:
            if rec.token_id:
                app["policy"] = [rec.token_id]
            if rec.ip:
                app["network"] = {"address": rec.ip, "type": NETWORK_IP}
        agents.append(app)
    for org in rec.organizations:
        agents.append(
            {
                "type": {"coding": [_coding(ROLE_CLASS, "PROV", "healthcare provider")]},
                "who": {"reference": org},
                "requestor": False,
            }
        )
    if not agents:  # no token at all
        anon: dict[str, Any] = {"who": {"display": "anonymous"}, "requestor": True}
        if rec.ip:
            anon["network"] = {"address": rec.ip, "type": NETWORK_IP}
        agents.append(anon)
    event["agent"] = agents
    event["source"] = {
        "site": site,
        "observer": {"display": f"{site} FHIR server"},
        "type": [_coding(SOURCE_TYPE, "4", "Application Server")],
    }
    entities: list[dict[str, Any]] = [
        {
            "what": {"reference": f"Patient/{p}"},
            "type": _coding(ENTITY_TYPE, "1", "Person"),
            "role": _coding(OBJECT_ROLE, "1", "Patient"),
        }
        for p in pats
    ]
    if (
        rec.rtype
        and rec.rid
        and not (rec.rtype == "Patient" and rec.rid in pats and not rec.version)
    ):
        ref = f"{rec.rtype}/{rec.rid}" + (f"/_history/{rec.version}" if rec.version else "")
        entities.append(
            {
                "what": {"reference": ref},
                "type": _coding(ENTITY_TYPE, "2", "System Object"),
                "role": _coding(OBJECT_ROLE, "4", "Domain Resource"),
            }
        )
    if rec.query is not None or (rec.kind == "rest" and not rec.rid and rec.path):
        text = f"{rec.method or 'GET'} {rec.path or ''}" + (f"?{rec.query}" if rec.query else "")
        entities.append(
            {
                "type": _coding(ENTITY_TYPE, "2", "System Object"),
                "role": _coding(OBJECT_ROLE, "24", "Query"),
                "description": text[:2000],
                "query": base64.b64encode(text.encode()).decode(),
            }
        )
    if entities:
        event["entity"] = entities
    return event


def canonical(event: dict[str, Any]) -> bytes:
    """The bytes hashed into the chain: sorted keys, no ``meta``."""
    return orjson.dumps(
        {k: v for k, v in event.items() if k != "meta"}, option=orjson.OPT_SORT_KEYS
    )


def chain_hash(prev: str, record: bytes) -> str:
    return hashlib.sha256(prev.encode("ascii") + record).hexdigest()


# ------------------------------------------------------------------------------ index rows


def _tok(param: str, c: dict[str, Any]) -> dict[str, Any]:
    display = c.get("display")
    return {
        "param": param,
        "system": c.get("system"),
        "code": c.get("code"),
        "text": normalize_string(display) if display else None,
    }


def _ref(param: str, ref: str) -> dict[str, Any]:
    rtype, rest = ref.split("/", 1)
    return {
        "param": param,
        "target_type": rtype,
        "target_id": rest.split("/", 1)[0],
        "url": None,
        "version": None,
    }


def index_rows(event: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The search-index rows of an AuditEvent made by :func:`event_of`: equal to what
    :func:`ehr.search.indexer.extract` returns for it (a test holds them equal), built directly
    because the generic indexer evaluates every FHIRPath expression (~20x slower)."""
    token: list[dict[str, Any]] = []
    reference: list[dict[str, Any]] = []
    string: list[dict[str, Any]] = []
    uri: list[dict[str, Any]] = []
    patient: list[dict[str, Any]] = []
    token.append({"param": "action", "system": None, "code": event["action"], "text": None})
    for agent in event.get("agent", []):
        who = agent.get("who") or {}
        if "reference" in who:
            reference.append(_ref("agent", who["reference"]))
            if who["reference"].startswith("Patient/"):
                patient.append(_ref("patient", who["reference"]))
        if "identifier" in who:
            ident = who["identifier"]
            token.append(
                {
                    "param": "agent:identifier",
                    "system": ident.get("system"),
                    "code": ident.get("value"),
                    "text": None,
                }
            )
        if "altId" in agent:
            token.append({"param": "altid", "system": None, "code": agent["altId"], "text": None})
        addr = (agent.get("network") or {}).get("address")
        if addr:
            string.append({"param": "address", "value": normalize_string(addr), "exact": addr})
        for pol in agent.get("policy") or []:
            uri.append({"param": "policy", "value": pol})
    lo, hi = date_range(event["recorded"])
    date = [{"param": "date", "low": lo, "high": hi}]
    for ent in event.get("entity", []):
        what = (ent.get("what") or {}).get("reference")
        if what:
            reference.append(_ref("entity", what))
            if what.startswith("Patient/"):
                patient.append(_ref("patient", what))
        if "role" in ent:
            token.append(_tok("entity-role", ent["role"]))
        if "type" in ent:
            token.append(_tok("entity-type", ent["type"]))
    token.append({"param": "outcome", "system": None, "code": event["outcome"], "text": None})
    site = (event.get("source") or {}).get("site")
    if site:
        token.append({"param": "site", "system": None, "code": site, "text": None})
    for st in event.get("subtype", []):
        token.append(_tok("subtype", st))
    token.append(_tok("type", event["type"]))
    out: dict[str, list[dict[str, Any]]] = {}
    for table, rows in (("date", date), ("reference", reference + patient), ("string", string),
                        ("token", token), ("uri", uri)):  # fmt: skip
        unique = list({tuple(sorted(r.items(), key=lambda kv: kv[0])): r for r in rows}.values())
        if unique:
            out[table] = unique
    return out


# ------------------------------------------------------------------------------ the writer


_CHAIN_COLS = [c.name for c in audit_chain.columns]

# the statements of every append, made once: building a statement anew cost ~0.14 ms on top of
# the ~0.23 ms of running it (measured, bench/RESULTS.md), and a shipper appends several times a
# second
_HEAD = (
    select(audit_state.c.seq, audit_state.c.hash)
    .where(audit_state.c.name == "head")
    .with_for_update()
)
_APPEND = insert(audit_chain)
_MOVE_HEAD = (
    update(audit_state)
    .where(audit_state.c.name == "head")
    .values(seq=bindparam("new_seq"), hash=bindparam("new_hash"))
)

#: a chain row (a block): (seq, event_id, recorded, record, prev_hash, hash, events), in
#: :data:`_CHAIN_COLS` order
ChainRow = tuple[int, str, int, bytes, str, str, int]


#: how a record with no patients yet that asks to be resolved serializes (fixed field order)
_UNRESOLVED = b'"patients":[],"resolve":true'


#: :func:`_fill` of the patient sets met recently (a patient's resources are read again and
#: again: serialized once)
_FILLS: dict[tuple[str, ...], bytes] = {}


def _fill(patients: Sequence[str]) -> bytes:
    """What replaces :data:`_UNRESOLVED` in a record resolved to ``patients``."""
    return b'"patients":' + orjson.dumps(list(dict.fromkeys(patients)))  # (no "resolve": False)


def _resolved(line: bytes, patients: Sequence[str], fill: bytes | None = None) -> bytes:
    """``line`` with ``patients`` added and ``resolve`` off: the bytes ``AuditRecord.line()``
    gives for the updated record. The common case (no patients yet) splices them in, without
    parsing the record again (quotes inside JSON strings are escaped, so the pattern can only
    be the field itself); ``fill``: :func:`_fill` of ``patients``, when already made."""
    if line.count(_UNRESOLVED) == 1:
        return line.replace(_UNRESOLVED, fill if fill is not None else _fill(patients))
    rec = AuditRecord.from_line(line)
    rec.patients = list(dict.fromkeys([*rec.patients, *patients]))
    rec.resolve = False
    return rec.line()


def _chain_append(
    conn: Connection,
    entries: Sequence[Entry],
    owners: dict[tuple[str, str], tuple[str, ...]] | None = None,
    *,
    yield_every: int = 0,
) -> ChainRow:
    """Append ``entries`` (at least one) to the chain as one block, in ``conn``'s transaction,
    holding the head row's lock until it ends (one appender at a time, across processes);
    ``owners``: the patients found for the entries to resolve; ``yield_every``: hand the core
    over after every so many (:func:`~ehr.security.scheduling.paced`). Returns the row
    appended."""
    head = conn.execute(_HEAD).first()
    if head is None:  # the first append ever (two at once: the second waits, then reads it)
        _ensure_state(conn, "head")
        head = conn.execute(_HEAD).one()
    fills = _FILLS
    if len(fills) > 50_000:
        fills.clear()
    lines = []
    for line, key, _, _ in paced(entries, yield_every):
        if key is not None and owners:
            pats = owners.get(key)
            if pats:
                fill = fills.get(pats)
                if fill is None:
                    fill = fills[pats] = _fill(pats)
                if line.count(_UNRESOLVED) == 1:  # (the common case of _resolved, inlined)
                    line = line.replace(_UNRESOLVED, fill)
                else:
                    line = _resolved(line, pats, fill)
        lines.append(line)
    block = b"\n".join(lines)
    prev = str(head.hash)
    seq, digest = int(head.seq) + 1, chain_hash(prev, block)
    row = (seq, entries[0][2], max(e[3] for e in entries), block, prev, digest, len(lines))
    conn.execute(_APPEND, dict(zip(_CHAIN_COLS, row, strict=True)))
    conn.execute(_MOVE_HEAD, {"new_seq": seq, "new_hash": digest})
    return row


def _store_events(
    ctx: WriteContext, store: Store, lines: Iterable[bytes], site: str, *, yield_every: int = 0
) -> None:
    """Store chain records (their JSON lines) as AuditEvent resources (in ``ctx``);
    ``yield_every``: as :func:`_chain_append`'s."""
    fast = _standard_auditevent_params(store)
    ts = now_us()
    for line in paced(lines, yield_every):
        ts = max(ts + 1, now_us())
        rec = AuditRecord.from_line(line)
        body = stamp(event_of(rec, site=site), rec.id, 1, ts)
        idx = index_rows(body) if fast else store.index(body)
        ctx.repo.insert_new("AuditEvent", rec.id, ts, dumps(body), idx)


def record_in_transaction(
    ctx: WriteContext, records: Sequence[AuditRecord], *, site: str = "ehr-exchange"
) -> None:
    """Write ``records`` to the audit trail inside ``ctx``'s transaction, so they commit or roll
    back with the change they record (the EMPI's identity changes: :mod:`ehr.empi.audit`).

    They are appended to the chain at once (the head row stays locked until the transaction
    ends: keep such transactions short), and stored as AuditEvent resources at once too when
    the trail has no backlog (no server, or an idle one); otherwise the server's
    :class:`AuditTrail` stores them in chain order with the rest."""
    if not records:
        return
    conn = ctx.conn
    for rec in records:
        rec.site = rec.site or site
    row = _chain_append(conn, [_entry(rec) for rec in records])
    seq = row[0]
    _ensure_state(conn, "materialized")
    stmt = select(audit_state.c.seq).where(audit_state.c.name == "materialized")
    if is_postgres(conn):
        stmt = stmt.with_for_update(skip_locked=True)  # a trail materializing: leave it to it
    at = conn.execute(stmt).scalar()
    if at is None or int(at) != seq - 1:
        return
    _store_events(ctx, ctx.store, block_lines(row[3]), site)
    conn.execute(update(audit_state).where(audit_state.c.name == "materialized").values(seq=seq))


def _ensure_state(conn: Connection, name: str) -> None:
    """The state row ``name`` exists afterwards. Two workers starting together may both find it
    missing: the insert skips a row another one made first (no unique violation)."""
    if conn.execute(select(audit_state.c.seq).where(audit_state.c.name == name)).first() is None:
        dialect = pg_insert if is_postgres(conn) else sqlite_insert
        conn.execute(
            dialect(audit_state)
            .values(name=name, seq=0, hash=GENESIS)
            .on_conflict_do_nothing(index_elements=[audit_state.c.name])
        )


#: the writer thread's name, also given to its OS thread (``/proc/PID/task/TID/comm``), so
#: its CPU time can be told from the request path's (``bench/bench_audit.py``, ``top -H``)
WRITER_THREAD = "audit-writer"


def _name_os_thread(name: str) -> None:
    """Name the calling thread in the kernel (Linux ``prctl(PR_SET_NAME)``; Python 3.11 names
    only its own thread object). Best effort: elsewhere, or if it fails, nothing happens."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME


class AuditTrail:
    """The audit writer of one process (see the module docstring). ``record()`` is thread-safe
    and cheap; the writer thread starts with the first record."""

    def __init__(
        self,
        store: Store,
        *,
        spool_dir: Path | None = None,
        flush_interval: float = 0.25,
        fsync_interval: float = 0.05,
        batch_size: int = 5000,
        max_queue: int = 200_000,
        materialize: str = "idle",
        max_lag: int = 50_000,
        site: str = "ehr-exchange",
        shipper: str = "thread",
        yield_every: int = 0,
    ) -> None:
        if materialize not in ("idle", "eager", "never"):
            raise ValueError("materialize is idle | eager | never")
        if shipper not in ("thread", "process"):
            raise ValueError("shipper is thread | process")
        if shipper == "process" and spool_dir is None:
            raise ValueError("a shipper process reads the spool: a spool_dir is needed")
        #: ``process``: this process only spools its records; a shipper process
        #: (:mod:`ehr.security.shipper`) moves them into the chain
        self.shipped = shipper == "process"
        self.store = store
        self.flush_interval = flush_interval
        self.fsync_interval = min(fsync_interval, flush_interval)
        self.batch_size = batch_size
        self.max_queue = max_queue
        self.materialize_mode = materialize
        self.max_lag = max_lag
        self.site = site
        #: the shipper process's: records handled between yields of its core, while shipping
        #: and materializing (:func:`~ehr.security.scheduling.paced`; 0: never)
        self.yield_every = yield_every
        self._queue: deque[Entry] = deque()
        self._lock = threading.Lock()  # queue + spool appends
        self._flush_lock = threading.Lock()  # one flush at a time
        self._mat_lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._spool = Spool(spool_dir, shipped=self.shipped) if spool_dir is not None else None
        self.spool_dir = spool_dir
        #: (when looked at, whether the spool's backlog is under its limit): shipped mode
        self._backlog_ok = (0.0, True)
        self.failures = 0
        self.appended = 0
        self.materialized = 0
        #: when the last record came (idle detection) and the lag was last looked at
        self._last_record = 0.0
        self._lag_checked = 0.0
        #: (rtype, rid) -> (valid until, patients): recently resolved owners
        self._owners: dict[tuple[str, str], tuple[float, tuple[str, ...]]] = {}
        self.owner_ttl = 30.0
        #: quiet time after which the server counts as idle (materialization may run)
        self.idle_after = max(0.5, 8 * flush_interval)
        if spool_dir is not None and not self.shipped:
            self.replay()

    # -- the request path ----------------------------------------------------------------------
    def record(self, rec: AuditRecord) -> None:
        """Spool and queue one record (a few microseconds). The queue holds the serialized line
        and the resource to resolve (bytes and a tuple of strings: objects the garbage collector
        does not track, so a long queue costs the collector nothing)."""
        rec.site = rec.site or self.site
        self.record_entry(_entry(rec))

    def record_entry(self, entry: Entry) -> None:
        """:meth:`record` of a record already serialized (the request audit's)."""
        spool = self._spool
        if self.shipped and spool is not None:  # (closed: as a closed writer thread's trail)
            with self._lock:
                spool.append(entry[0])
            return
        with self._lock:
            if self._spool is not None:
                self._spool.append(entry[0])
            self._queue.append(entry)
            n = len(self._queue)
        self._last_record = time.monotonic()
        if self._thread is None:
            self._start()
        if n >= self.batch_size:
            self._wake.set()

    def accepting(self) -> bool:
        """False when the backlog is full (the database has been unreachable): refuse work.
        Shipped: the spool's segments count (looked at once a second): beyond the live ones
        (:data:`LIVE_SEGMENTS`), room for ``max_queue`` records."""
        if not self.shipped:
            return len(self._queue) < self.max_queue
        at, ok = self._backlog_ok
        now = time.monotonic()
        if now - at > 1.0:
            assert self.spool_dir is not None
            segments = sum(1 for _ in self.spool_dir.glob(SEGMENTS))
            ok = segments <= LIVE_SEGMENTS + self.max_queue * RECORD_BYTES // SEGMENT_BYTES
            self._backlog_ok = (now, ok)
        return ok

    @property
    def pending(self) -> int:
        return len(self._queue)

    # -- the writer thread ---------------------------------------------------------------------
    def _start(self) -> None:
        with self._lock:
            if self._thread is not None or self._stopping:
                return
            self._thread = threading.Thread(target=self._run, name=WRITER_THREAD, daemon=True)
            self._thread.start()

    def _run(self) -> None:
        """Every ``fsync_interval``: make the spool durable. Every ``flush_interval`` (sooner
        when ``batch_size`` records wait): append the queue to the chain, in one transaction
        (a flush has a fixed cost of a few round trips: batching makes it a few microseconds
        per record). Then perhaps materialize."""
        _name_os_thread(WRITER_THREAD)
        last_flush = time.monotonic()
        retry_at = 0.0
        backoff = self.flush_interval
        while not self._stopping:
            self._wake.wait(self.fsync_interval)
            self._wake.clear()
            if self._spool is not None:
                self._spool.fsync()
            now = time.monotonic()
            full = len(self._queue) >= self.batch_size
            if now < retry_at or not (full or now - last_flush >= self.flush_interval):
                continue
            try:
                n = self.flush()
                last_flush, backoff = time.monotonic(), self.flush_interval
                self._maybe_materialize(n)
            except Exception:
                self.failures += 1
                log.exception("audit flush failed; will retry")
                backoff = min(5.0, max(backoff * 2, 0.1))
                retry_at = time.monotonic() + backoff

    def _maybe_materialize(self, flushed: int, *, once: bool = False) -> int | None:
        """Materialize now? ``eager``: always. ``idle``: when no record came for
        :attr:`idle_after` (live traffic first), or when the backlog passed ``max_lag`` (looked
        at once a second), so it stays bounded under sustained load. ``once``: one batch at
        most (the shipper: it reads new records between batches, in the same thread); returns
        how many were stored then (None: not due)."""
        mode = self.materialize_mode
        if mode == "never":
            return None
        now = time.monotonic()
        due = mode == "eager" or now - self._last_record > self.idle_after
        if not due and now - self._lag_checked > 1.0:
            self._lag_checked = now
            due = self.lag() > self.max_lag
        if due and once:
            return self.materialize(limit=self.batch_size, wait=False)
        if due:
            while self.materialize(limit=self.batch_size, wait=False) and (
                mode == "eager" or time.monotonic() - self._last_record > self.idle_after
            ):
                if self._stopping or len(self._queue) >= self.batch_size:
                    break
        return None

    def close(self) -> None:
        """Stop the writer after writing every queued record (application shutdown)."""
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(30)
        committed = False
        try:
            if not self.shipped:  # (shipped: the shipper takes what is spooled)
                self.flush()
                committed = not self._queue
        except Exception:
            log.exception("audit flush at shutdown failed; the spool keeps the records")
        if self._spool is not None:
            self._spool.close(committed=committed)
            self._spool = None

    # -- stage 1: the chain --------------------------------------------------------------------
    def flush(self) -> int:
        """Append every queued record to the chain now; returns how many. Shipped: every
        record spooled so far, this process's and the others' (a cycle of the shipper's)."""
        if self.shipped:
            from .shipper import Shipper

            assert self.spool_dir is not None
            shipper = Shipper(self, self.spool_dir)
            try:
                return shipper.cycle(force=True)
            finally:
                shipper.close()
        with self._flush_lock:
            with self._lock:
                taken = list(self._queue)
                self._queue.clear()
                if self._spool is not None:
                    self._spool.rotate()
            if not taken:
                return 0
            done = 0
            try:
                for start in range(0, len(taken), self.batch_size):
                    chunk = taken[start : start + self.batch_size]
                    self._append(chunk)
                    done += len(chunk)
            except BaseException:
                with self._lock:
                    self._queue.extendleft(reversed(taken[done:]))
                raise
            if self._spool is not None:
                self._spool.release()
                self._spool.prepare()
            self.appended += done
            return done

    def _patients(
        self, conn: Connection, keys: set[tuple[str, str]], *, yield_every: int = 0
    ) -> dict[tuple[str, str], tuple[str, ...]]:
        """The patients of the resources the records touched. Resolved within a second of the
        access; a recently resolved resource comes from a small cache (:attr:`owner_ttl`), as
        resources rarely change patient. ``yield_every``: as :func:`_chain_append`'s."""
        now = time.monotonic()
        cache = self._owners
        out: dict[tuple[str, str], tuple[str, ...]] = {}
        missing = []
        for k in paced(keys, yield_every):
            hit = cache.get(k)
            if hit is not None and hit[0] >= now:
                out[k] = hit[1]
            else:
                missing.append(k)
        if missing:
            found = stored_patients(conn, missing)
            if len(cache) + len(found) > 50_000:
                cache.clear()
            until = now + self.owner_ttl
            for k, pats in paced(found.items(), yield_every):
                owners = out[k] = tuple(sorted(pats))
                cache[k] = (until, owners)
        return out

    def _append(self, entries: Sequence[Entry], *, skip_known: bool = False) -> None:
        """Append queued entries to the chain in one transaction (see the module docstring);
        ``skip_known``: leave out those already there (a replay)."""
        for attempt in range(3):
            try:
                with self.store.write() as ctx:
                    conn = ctx.conn
                    if skip_known:
                        entries = _not_chained(conn, entries)
                        if not entries:
                            return
                    owners = self._patients(conn, {e[1] for e in entries if e[1] is not None})
                    _chain_append(conn, entries, owners)
                return
            except IntegrityError:
                if attempt == 2:
                    raise
                time.sleep(0.01 * (attempt + 1))  # two first appenders raced on the head row

    # -- stage 2: AuditEvent resources ---------------------------------------------------------
    def lag(self) -> int:
        """Events in the chain not yet stored as AuditEvent resources."""
        at = (
            select(func.coalesce(func.max(audit_state.c.seq), 0))
            .where(audit_state.c.name == "materialized")
            .scalar_subquery()
        )
        with self.store.read_conn() as conn:
            return int(
                conn.execute(
                    select(func.coalesce(func.sum(audit_chain.c.events), 0)).where(
                        audit_chain.c.seq > at
                    )
                ).scalar_one()
            )

    def materialize(self, limit: int = 1000, *, wait: bool = True) -> int:
        """Store the chain's next blocks as AuditEvent resources, until ``limit`` events (at
        least one block; in chain order, in one transaction with the watermark); returns how
        many events. ``wait=False``: give up at once if another process is doing it."""
        if not self._mat_lock.acquire(blocking=wait):
            return 0
        try:
            with self.store.write() as ctx:
                conn = ctx.conn
                _ensure_state(conn, "materialized")
                stmt = select(audit_state.c.seq).where(audit_state.c.name == "materialized")
                if is_postgres(conn):
                    stmt = stmt.with_for_update(nowait=False, skip_locked=not wait)
                at = conn.execute(stmt).scalar()
                if at is None:
                    return 0  # another process holds it
                done, last = 0, int(at)
                while done < limit:
                    block = conn.execute(
                        select(audit_chain.c.seq, audit_chain.c.record)
                        .where(audit_chain.c.seq > last)
                        .order_by(audit_chain.c.seq)
                        .limit(1)
                    ).first()
                    if block is None:
                        break
                    lines = block_lines(block.record)
                    _store_events(ctx, self.store, lines, self.site, yield_every=self.yield_every)
                    done, last = done + len(lines), int(block.seq)
                if not done:
                    return 0
                conn.execute(
                    update(audit_state).where(audit_state.c.name == "materialized").values(seq=last)
                )
            self.materialized += done
            return done
        finally:
            self._mat_lock.release()

    def sync(self) -> None:
        """Flush and materialize everything recorded so far (before AuditEvents are read)."""
        self.flush()
        while self.materialize(limit=5000, wait=True):
            pass

    # -- recovery ------------------------------------------------------------------------------
    def replay(self, directory: Path | None = None) -> int:
        """Append the records of spool segments left by dead processes (of this trail's spool
        folder, or of ``directory``); returns how many."""
        directory = directory or self.spool_dir
        if directory is None:
            return 0
        total = 0
        for path, fd in orphans(directory):
            if self._spool is not None and self._spool.owns(path):
                os.close(fd)
                continue
            try:
                entries = []
                for line in read_segment(fd):
                    try:
                        entries.append(_entry_of_line(line))
                    except DAMAGED:
                        log.warning("skipping a damaged line in %s", path)
                for start in range(0, len(entries), self.batch_size):
                    self._append(entries[start : start + self.batch_size], skip_known=True)
                total += len(entries)
                path.unlink(missing_ok=True)
            finally:
                os.close(fd)
        if total:
            log.warning("replayed %d audit records from the spool", total)
        return total


def _standard_auditevent_params(store: Store) -> bool:
    """True unless custom AuditEvent search parameters are active (then the generic indexer
    must index AuditEvents, or those parameters would miss them)."""
    from ehr.definitions import search_parameters

    std = search_parameters().for_type("AuditEvent")
    mine = store.registry.for_type("AuditEvent")
    return mine.keys() == std.keys() and all(mine[k] is std[k] for k in std)


# ------------------------------------------------------------------------------ verification


@dataclass
class AuditReport:
    """The result of :func:`verify_audit_chain`: ``rows`` events in ``blocks`` chain rows;
    ``head_seq`` and ``materialized`` count blocks."""

    ok: bool
    rows: int
    head_seq: int
    head_hash: str
    materialized: int
    problems: list[str] = field(default_factory=list)
    blocks: int = 0

    def summary(self) -> str:
        state = "OK" if self.ok else f"BROKEN ({len(self.problems)} problem(s))"
        return (
            f"audit chain {state}: {self.rows} events in {self.blocks} blocks, head "
            f"#{self.head_seq} {self.head_hash}, blocks up to #{self.materialized} stored as "
            "AuditEvent resources"
        )


def chain_events(store: Store) -> list[dict[str, Any]]:
    """Every AuditEvent of the chain, in order, as derived from the chain records (small
    trails and tests; an audit reads the AuditEvent resources)."""
    with store.read_conn() as conn:
        blocks = conn.execute(select(audit_chain.c.record).order_by(audit_chain.c.seq)).scalars()
        return [event_of(AuditRecord.from_line(line)) for b in blocks for line in block_lines(b)]


def _stored_match(conn: Connection, seq: int, lines: Sequence[bytes], problem: Any) -> int:
    """Compare the AuditEvent resources of block ``seq`` (materialized) with its ``lines``;
    returns how many of them exist. Each line is parsed once: its id and its AuditEvent."""
    ids: list[str] = []
    events: list[bytes | None] = []
    for n, line in enumerate(lines, 1):
        try:
            rec = AuditRecord.from_line(line)
        except (orjson.JSONDecodeError, TypeError, KeyError):
            problem(f"#{seq}: its line {n} is not an audit record")
            ids.append("")
            events.append(None)
            continue
        ids.append(rec.id)
        try:
            events.append(canonical(event_of(rec)))
        except (TypeError, KeyError, ValueError):
            events.append(None)
    stored = {
        rid: (bool(deleted), version, data)
        for rid, deleted, version, data in conn.execute(
            select(resources.c.rid, resources.c.deleted, resources.c.version, resources.c.data)
            .where(resources.c.rtype == "AuditEvent", resources.c.rid.in_([i for i in ids if i]))
        ).all()
    }  # fmt: skip
    for event_id, event in zip(ids, events, strict=True):
        got = stored.get(event_id) if event_id else None
        if event_id and got is None:
            problem(f"#{seq}: AuditEvent/{event_id} is missing")
        elif got is None:
            continue
        elif got[0] or got[1] != 1 or got[2] is None:
            problem(f"#{seq}: AuditEvent/{event_id} was changed or deleted")
        elif canonical(orjson.loads(bytes(got[2]))) != event:
            problem(f"#{seq}: AuditEvent/{event_id} differs from the chain")
    return len(stored)


def verify_audit_chain(store: Store, *, chunk: int = 20, max_problems: int = 100) -> AuditReport:
    """Recompute the hash chain (``chunk`` blocks read at a time), check the head, and compare
    every materialized AuditEvent resource with the event its line gives; list what does not
    hold."""
    problems: list[str] = []

    def problem(text: str) -> None:
        if len(problems) < max_problems:
            problems.append(text)

    with store.read_conn() as conn:
        state = dict(
            (name, (int(seq), h))
            for name, seq, h in conn.execute(
                select(audit_state.c.name, audit_state.c.seq, audit_state.c.hash)
            ).all()
        )
        head_seq, head_hash = state.get("head", (0, GENESIS))
        materialized = state.get("materialized", (0, None))[0]
        prev, expected, blocks, events, last, found = GENESIS, 1, 0, 0, 0, 0
        while True:
            batch = conn.execute(
                select(audit_chain.c.seq, audit_chain.c.record, audit_chain.c.prev_hash,
                       audit_chain.c.hash, audit_chain.c.events)
                .where(audit_chain.c.seq > last)
                .order_by(audit_chain.c.seq)
                .limit(chunk)
            ).all()  # fmt: skip
            if not batch:
                break
            for seq, record, prev_hash, digest, count in batch:
                blocks += 1
                last = seq
                record = bytes(record)
                if seq != expected:
                    problem(f"#{expected}: missing (the next row is #{seq})")
                    expected = seq
                if prev_hash != prev:
                    problem(f"#{seq}: prev_hash does not match the hash of #{seq - 1}")
                if chain_hash(prev_hash, record) != digest:
                    problem(f"#{seq}: its record does not match its hash (changed)")
                prev, expected = digest, seq + 1
                lines = block_lines(record)
                events += len(lines)
                if count != len(lines):
                    problem(f"#{seq}: it says it holds {count} events, its record {len(lines)}")
                if seq <= materialized:
                    found += _stored_match(conn, seq, lines, problem)
        if last != head_seq or (blocks and prev != head_hash):
            problem(f"the chain ends at #{last} but the head says #{head_seq}: rows were removed")
        total = conn.execute(
            select(func.count()).select_from(resources).where(resources.c.rtype == "AuditEvent")
        ).scalar_one()
        if total > found:
            problem(f"{total - found} AuditEvent resource(s) are not in the chain (inserted)")
    return AuditReport(
        not problems, events, head_seq, head_hash, int(materialized), problems, blocks
    )
