"""Audit of identity changes: one AuditEvent per link, unlink, merge, unmerge and review decision.

AuditEvent: http://hl7.org/fhir/R4/auditevent.html ; type ``rest``
(http://terminology.hl7.org/CodeSystem/audit-event-type), subtype from the EMPI code system
(``link``, ``unlink``, ``no-match``, ``merge``, ``unmerge``).

Stand-in until the exchange's audit module exists: everything goes through :func:`_audit`, so
that module replaces one function. The event is written in the same transaction as the change it
records (no change without its audit, no audit of a change rolled back). Every Patient involved is
an entity with role ``1`` (Patient), so ``AuditEvent?patient=Patient/x`` lists a citizen's
identity changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ehr.empi.links import EMPI_SYSTEM
from ehr.search.dates import now_us, us_to_instant
from ehr.store import WriteContext

__all__ = ["ACTIONS", "_audit"]

ACTIONS = {
    "link": "EMPI link",
    "unlink": "EMPI unlink",
    "no-match": "EMPI no-match decision",
    "merge": "Patient merge",
    "unmerge": "Patient unmerge",
}


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
    entities: list[dict[str, Any]] = [
        {
            "what": {"reference": f"Patient/{pid}"},
            "type": {
                "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                "code": "1",
                "display": "Person",
            },
            "role": {
                "system": "http://terminology.hl7.org/CodeSystem/object-role",
                "code": "1",
                "display": "Patient",
            },
        }
        for pid in dict.fromkeys(patients)
    ]
    if record:
        entities.append(
            {
                "what": {"reference": record},
                "type": {
                    "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                    "code": "2",
                    "display": "System Object",
                },
            }
        )
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "type": {
            "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
            "code": "rest",
            "display": "RESTful Operation",
        },
        "subtype": [
            {"system": EMPI_SYSTEM, "code": action, "display": ACTIONS.get(action, action)}
        ],
        "action": "U",
        "recorded": us_to_instant(now_us()),
        "outcome": "0",
        "agent": [
            {
                "who": {"reference": by} if by else {"display": "EMPI (automatic matching)"},
                "requestor": by is not None,
            }
        ],
        "source": {
            "observer": {"display": "ehr-exchange EMPI"},
            "type": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/security-source-type",
                    "code": "4",
                    "display": "Application Server",
                }
            ],
        },
        "entity": entities,
    }
    if description:
        event["outcomeDesc"] = description
    ctx.create(event, validate=False)
