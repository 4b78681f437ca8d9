"""Tables of the security layer, on the store's shared metadata (Alembic revision ``0007``).

* ``audit_chain``: the tamper-evident audit log, in append order, one row per *block* of
  AuditEvents (the records one transaction appended: up to the trail's batch size, one for a
  lone record). ``seq`` is gap-free; ``record`` is the block: the canonical JSON line of each
  audit record, joined by newlines (the AuditEvent is a pure function of its line,
  :func:`ehr.security.audit.event_of`); ``hash`` = sha256(``prev_hash`` || ``record``) in
  hex, ``prev_hash`` the previous row's ``hash`` (64 zeros for the first row). Changing,
  removing or reordering a row, or a line in it, breaks every later hash
  (:func:`ehr.security.audit.verify_audit_chain`). ``event_id`` is the block's first event's
  id, ``recorded`` the latest ``recorded`` in it (µs; indexed: which blocks may hold a given
  record), ``events`` how many lines it holds. Why blocks: one row per event cost the
  database ~10 µs per event (two index entries, a row of its own) and the writer ~4 µs more;
  a block costs both well under 1 µs per event (``bench/RESULTS.md``). Migration ``0010``;
  a chain written before it is a chain of one-event blocks.
* ``audit_state``: two named positions: ``head`` (last ``seq`` and ``hash`` appended; the row
  locked while appending, so writers from several processes append one after the other) and
  ``materialized`` (last ``seq`` stored as an AuditEvent resource too).
* ``consent_rules``: what the active patient-privacy Consents deny, one row per rule, kept in
  step with the Consent resources by a write hook (:mod:`ehr.security.consent`). ``kind`` is
  ``deny`` (``actor``: whom, None for everyone; ``rtype``/``system``/``code``: which resources,
  None for all) or ``exempt`` (``actor``: an organization a whole-audience deny does not bind,
  the Consent's own organization). ``not_before``/``not_after`` bound the rule in time (µs).

Reference: http://hl7.org/fhir/R4/consent.html, http://hl7.org/fhir/R4/auditevent.html.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, LargeBinary, String, Table

from ehr.storage.tables import metadata

__all__ = ["GENESIS", "audit_chain", "audit_state", "consent_rules"]

#: ``prev_hash`` of the first row of the chain
GENESIS = "0" * 64

audit_chain = Table(
    "audit_chain",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("event_id", String(64), nullable=False, unique=True),
    Column("recorded", BigInteger, nullable=False),
    Column("record", LargeBinary, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Column("events", Integer, nullable=False, server_default="1"),
)
Index("ix_audit_chain_recorded", audit_chain.c.recorded)

audit_state = Table(
    "audit_state",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=True),
)

consent_rules = Table(
    "consent_rules",
    metadata,
    Column("consent_id", String(64), primary_key=True),
    Column("n", Integer, primary_key=True, autoincrement=False),
    Column("patient_id", String(64), nullable=False),
    Column("kind", String(8), nullable=False),
    Column("actor", String(200), nullable=True),
    Column("rtype", String(64), nullable=True),
    Column("system", String(512), nullable=True),
    Column("code", String(512), nullable=True),
    Column("not_before", BigInteger, nullable=True),
    Column("not_after", BigInteger, nullable=True),
)
Index("ix_consent_rules_patient_id", consent_rules.c.patient_id)
Index("ix_consent_rules_actor", consent_rules.c.actor)
