"""Patient/$match: http://hl7.org/fhir/R4/patient-operation-match.html

The input Patient is matched as a registration would be (features, blocking, scores graded per
golden record; :class:`ehr.empi.candidates.Matcher`), without writing anything. The answer is a
``searchset`` Bundle with one entry per citizen, best first:

- the entry is the citizen's **golden record** (the record to use from now on: "the single most
  appropriate match that should be used with future interactions"), or the source Patient
  itself when it has no golden record yet;
- ``search.mode`` ``match``, ``search.score`` the match probability 0..1 (0.99 at the auto-link
  threshold; 1 for an identifier rule), and on ``search`` the match-grade extension
  (http://hl7.org/fhir/StructureDefinition/match-grade: ``certain`` | ``probable`` |
  ``possible``) plus :data:`~ehr.empi.links.EXPLANATION_EXT`, the fields and weights that gave
  the score. Citizens graded ``certainly-not`` are left out.

``onlyCertainMatches``: only ``certain`` entries (an identifier rule), and none at all when more
than one citizen is certain (the spec: "If there are multiple potential matches, then the match
should not return the results with this flag set to true"); an ``outcome`` entry says why.
``count``: at most that many entries (default 10). A clear citizen ID in the input
(``urn:oid:2.16.156.10011.1.3``) is hashed with the exchange key before it is compared, never
compared or stored in clear.
"""

from __future__ import annotations

from typing import Any

from ehr.empi.candidates import Candidate
from ehr.empi.hook import get_empi
from ehr.empi.links import EXPLANATION_EXT, MATCH_GRADE_EXT, load_patients
from ehr.errors import BadRequest, Unprocessable
from ehr.store import Store

__all__ = ["match_operation", "patient_match"]


def _entry(c: Candidate, resource: dict[str, Any], base: str | None) -> dict[str, Any]:
    path = f"Patient/{resource['id']}"
    return {
        "fullUrl": f"{base.rstrip('/')}/{path}" if base else path,
        "resource": resource,
        "search": {
            "extension": [
                {"url": MATCH_GRADE_EXT, "valueCode": c.grade},
                {"url": EXPLANATION_EXT, "valueString": c.score.explain()},
            ],
            "mode": "match",
            "score": c.score.probability,
        },
    }


def patient_match(
    store: Store,
    patient: dict[str, Any],
    *,
    count: int = 10,
    only_certain: bool = False,
    base: str | None = None,
) -> dict[str, Any]:
    """``Patient/$match`` of ``patient``: a searchset Bundle (see the module docstring)."""
    if not isinstance(patient, dict) or patient.get("resourceType") != "Patient":
        raise BadRequest("$match needs a Patient resource", "structure")
    if count < 1:
        raise BadRequest("count must be a positive integer", "value")
    empi = get_empi(store)
    f = empi.matcher.extract(patient)
    if not (f.names or f.citizen_ids or f.keys):
        raise Unprocessable("$match needs at least a name or an identifier", "required")
    exclude = {str(patient["id"])} if patient.get("id") else set()
    with store.read_conn() as conn:
        found = [
            c
            for c in empi.matcher.candidates(conn, f, exclude=exclude)
            if c.grade != "certainly-not"
        ]
        issues: list[dict[str, Any]] = []
        if only_certain:
            certain = [c for c in found if c.grade == "certain"]
            if len(certain) > 1:
                issues.append(
                    {"severity": "information", "code": "multiple-matches",
                     "diagnostics": f"{len(certain)} citizens match certainly: none is returned"}
                )  # fmt: skip
                certain = []
            found = certain
        found = found[:count]
        rows = load_patients(conn, [c.key for c in found])
    entries = [_entry(c, rows[c.key][2], base) for c in found if c.key in rows]
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "total": len(entries)}
    if issues:
        entries.append(
            {
                "resource": {"resourceType": "OperationOutcome", "issue": issues},
                "search": {"mode": "outcome"},
            }
        )
    if entries:
        bundle["entry"] = entries
    return bundle


def match_operation(
    store: Store, parameters: dict[str, Any], *, base: str | None = None
) -> dict[str, Any]:
    """``POST Patient/$match`` with its input Parameters (``resource``, ``onlyCertainMatches``,
    ``count``); a bare Patient body is accepted as ``resource``."""
    if isinstance(parameters, dict) and parameters.get("resourceType") == "Patient":
        return patient_match(store, parameters, base=base)
    if not isinstance(parameters, dict) or parameters.get("resourceType") != "Parameters":
        raise BadRequest("$match takes a Parameters resource", "structure")
    resource: dict[str, Any] | None = None
    only_certain, count = False, 10
    for p in parameters.get("parameter") or ():
        name = p.get("name")
        if name == "resource":
            resource = p.get("resource")
        elif name == "onlyCertainMatches":
            only_certain = bool(p.get("valueBoolean"))
        elif name == "count":
            value = p.get("valueInteger")
            if not isinstance(value, int) or isinstance(value, bool):
                raise BadRequest("count must be an integer (valueInteger)", "value")
            count = value
        else:
            raise BadRequest(f"$match has no parameter '{name}'", "not-supported")
    if resource is None:
        raise BadRequest("$match needs the 'resource' parameter (a Patient)", "required")
    return patient_match(store, resource, count=count, only_certain=only_certain, base=base)
