"""Audit of identity changes: one AuditEvent per link, unlink, merge, unmerge and review decision.

AuditEvent: http://hl7.org/fhir/R4/auditevent.html ; type ``rest``
(http://terminology.hl7.org/CodeSystem/audit-event-type), action ``U``, subtype the EMPI code
(``link``, ``unlink``, ``no-match``, ``merge``, ``unmerge``; :data:`EMPI_SYSTEM`) after the
``operation`` interaction. Written through the exchange's one tamper-evident audit trail
(:func:`ehr.security.audit.record_in_transaction`), in the same transaction as the change it
records: no change without its audit, no audit of a change rolled back. Every Patient involved
is an entity with role ``1`` (Patient), so ``AuditEvent?patient=Patient/x`` lists a citizen's
identity changes; the resource holding the details (the merge Provenance, the review Task) is
the event's domain-resource entity.
"""

from __future__ import annotations

from collections.abc import Sequence

from ehr.empi.links import EMPI_SYSTEM
from ehr.security.audit import AuditRecord, record_in_transaction
from ehr.security.principal import relative_ref
from ehr.store import WriteContext

__all__ = ["ACTIONS", "AUTOMATIC", "_audit"]

ACTIONS = {
    "link": "EMPI link",
    "unlink": "EMPI unlink",
    "no-match": "EMPI no-match decision",
    "merge": "Patient merge",
    "unmerge": "Patient unmerge",
}
#: the agent of the EMPI's own automatic decisions
AUTOMATIC = "EMPI (automatic matching)"


def _audit(
    ctx: WriteContext,
    action: str,
    patients: Sequence[str],
    *,
    by: str | None = None,
    description: str | None = None,
    record: str | None = None,
) -> None:
    """Write the AuditEvent of one identity change. ``patients``: the Patient ids involved
    (golden records included); ``by``: the acting user as a reference (``Practitioner/x``), None
    for the EMPI's own automatic decisions; ``record``: a reference to the resource holding the
    details (the merge Provenance, the review Task)."""
    ref = relative_ref(record) if record else None
    rtype, rid = ref.split("/", 1) if ref else (None, None)
    rec = AuditRecord(
        interaction="operation",
        status=200,
        operation=f"$empi-{action}",
        rtype=rtype,
        rid=rid,
        user=by,
        subject=None if by else AUTOMATIC,
        patients=list(dict.fromkeys(patients)),
        detail=description[:1000] if description else None,
        action="U",
        codes=[[EMPI_SYSTEM, action, ACTIONS.get(action, action)]],
    )
    record_in_transaction(ctx, [rec])
