"""Audit records of the health one-card: taps, issues, revocations, and the revoked-card alert.

AuditEvent: http://hl7.org/fhir/R4/auditevent.html, written through the exchange's tamper-evident
audit trail (:mod:`ehr.security.audit`): the card code builds :class:`AuditRecord` s and hands
them to an :data:`AuditSink` (the API's trail, or :func:`store_sink` outside a server).

=================  =========================================  ========  =======================
event              AuditEvent.type / subtype                  outcome   entity
=================  =========================================  ========  =======================
tap accepted       rest / operation + ``card-tap``            0         the Patient
tap refused        rest / operation + ``card-tap``            4         the Patient when the
                                                                        card proved genuine
revoked card used  DICOM 110113 Security Alert / ``card-      4         the Patient
                   alert``
card issued        rest / operation + ``issue-card``          0         the Patient
card revoked       rest / operation + ``revoke-card``         0         the Patient
check-in by card   rest / operation + ``card-checkin``        0 / 4     the Patient, the
                                                                        Appointment
scope refused      rest / operation + the operation           4         (none)
=================  =========================================  ========  =======================

``outcomeDesc`` carries the card id and, for a refusal, the failing check (the terminal gets only
the reason code). The terminal (OAuth client) is the requesting agent, with its token id and
network address.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ehr.security.audit import AuditRecord, AuditTrail
from ehr.store import Store

from .verify import TapVerdict

__all__ = [
    "ALERT_KIND",
    "AuditSink",
    "Requester",
    "alert_record",
    "card_record",
    "checkin_record",
    "refusal_record",
    "store_sink",
    "tap_record",
]

AuditSink = Callable[[AuditRecord], None]
ALERT_KIND = "card-alert"


@dataclass(frozen=True)
class Requester:
    """Who asks: an OAuth client (terminal, registration counter) and, for a user token, the
    user; plus what the HTTP layer knows of the request."""

    client_id: str | None = None
    subject: str | None = None
    user: str | None = None  # fhirUser (relative reference)
    token_id: str | None = None
    ip: str | None = None
    method: str | None = None
    path: str | None = None

    def fill(self, rec: AuditRecord) -> AuditRecord:
        rec.client_id = self.client_id
        rec.subject = self.subject or self.client_id
        rec.user = self.user
        rec.token_id = self.token_id
        rec.ip = self.ip
        rec.method = self.method
        rec.path = self.path
        rec.purpose = "HOPERAT"
        return rec


def tap_record(
    who: Requester, verdict: TapVerdict, patient_id: str | None, detail: str | None = None
) -> AuditRecord:
    """One tap, accepted or refused (``detail``: what the audit log says beyond the verdict)."""
    if verdict.accepted:
        text = f"accepted {verdict.kind} card {verdict.cid}: {verdict.detail}"
    else:
        card = f" card {verdict.cid}" if verdict.cid else ""
        text = f"refused {verdict.reason}: {verdict.kind or 'unknown'}{card}: {verdict.detail}"
    if detail:
        text += f"; {detail}"
    rec = AuditRecord(
        interaction="operation",
        operation="$card-tap",
        status=200 if verdict.accepted else 400 if verdict.reason == "bad-request" else 403,
        patients=[patient_id] if patient_id else [],
        detail=text[:1000],
    )
    return who.fill(rec)


def alert_record(
    who: Requester, cid: str, patient_id: str | None, reason: str | None
) -> AuditRecord:
    """A Security Alert: a revoked card was presented (by the card itself: it proved genuine)."""
    rec = AuditRecord(
        interaction=ALERT_KIND,
        kind=ALERT_KIND,
        status=403,
        patients=[patient_id] if patient_id else [],
        detail=(
            f"revoked health card {cid} (revoked: {reason or 'unknown'}) presented at terminal "
            f"{who.client_id or '?'}"
        )[:1000],
    )
    return who.fill(rec)


def card_record(who: Requester, operation: str, patient_id: str, detail: str) -> AuditRecord:
    """A card life-cycle event: ``$issue-card`` or ``$revoke-card``."""
    rec = AuditRecord(
        interaction="operation",
        operation=operation,
        status=200,
        rtype="Patient",
        rid=patient_id,
        patients=[patient_id],
        detail=detail[:1000],
    )
    return who.fill(rec)


def checkin_record(
    who: Requester, appointment_id: str, patient_id: str | None, status: int, detail: str
) -> AuditRecord:
    """A check-in from a terminal after an accepted tap (``$card-checkin``)."""
    rec = AuditRecord(
        interaction="operation",
        operation="$card-checkin",
        status=status,
        rtype="Appointment",
        rid=appointment_id,
        patients=[patient_id] if patient_id else [],
        detail=detail[:1000],
    )
    return who.fill(rec)


def refusal_record(who: Requester, operation: str, status: int, detail: str) -> AuditRecord:
    """A card operation refused before any work (a token without the scope, no valid tap)."""
    rec = AuditRecord(
        interaction="operation", operation=operation, status=status, detail=detail[:1000]
    )
    return who.fill(rec)


def store_sink(store: Store) -> AuditSink:
    """A sink that writes each record to ``store``'s audit trail at once, AuditEvent resource
    included (for the command line and library use; the API passes its own trail instead).
    Raises when the record cannot be written: no card operation without its audit record."""

    def sink(rec: AuditRecord) -> None:
        trail = AuditTrail(store, materialize="never")
        try:
            trail.record(rec)
            trail.flush()
        finally:
            trail.close()
        while trail.materialize(limit=1000):
            pass

    return sink
