"""Tables of the security layer, on the store's shared metadata (Alembic revision ``0007``).

* ``audit_chain``: the tamper-evident audit log, one row per AuditEvent, in append order.
  ``seq`` is gap-free; ``record`` is the canonical JSON of the audit record (the AuditEvent is
  a pure function of it, :func:`ehr.security.audit.event_of`); ``hash`` =
  sha256(``prev_hash`` || ``record``) in hex, ``prev_hash`` the previous row's ``hash`` (64
  zeros for the first row). Changing, removing or reordering a row breaks
  every later hash (:func:`ehr.security.audit.verify_audit_chain`).
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
)

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
