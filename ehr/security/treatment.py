"""Which patients a clinician treats: the care relationship that opens a record to them.

A clinician (a user with role ``practitioner`` or ``nurse``) is identified by their
Practitioner (``fhirUser``), their PractitionerRole and their Organization (token claims). They
**treat** Patient X when any of these current, non-deleted resources exists:

=================  =================================================================================
resource           link (search parameters, so it is read from the reference index)
=================  =================================================================================
Encounter          ``subject`` = X and (``service-provider`` = their organization, or
                   ``participant``/``practitioner`` = them or their role, or ``location`` = a
                   Location whose ``organization`` is their organization)
Appointment        ``patient`` = X and (``practitioner``/``actor`` = them or their role, or
                   ``location`` = a Location of their organization)
EpisodeOfCare      ``patient`` = X and (``organization`` = their organization or
                   ``care-manager`` = them)
CareTeam           ``patient`` = X and ``participant`` = them, their role or their organization
Patient            X itself, with ``general-practitioner`` = them, their role or their
                   organization, or ``organization`` (managingOrganization) = their organization
=================  =================================================================================

The status of the linking resource is not looked at (a cancelled Appointment still links: the
clinician was asked to see the patient), and the link does not expire. The set is a SQL subquery
over the ``idx_reference`` target index (:func:`treated_patients`), so it is never loaded into
memory: a search uses it as its compartment (``compartment=("Patient", subquery)``), a read tests
one patient against it.

Writing the linking resource is how care starts: a clinician may create or update an Encounter,
Appointment, EpisodeOfCare or CareTeam that links a patient to them or their organization
(:func:`establishes_treatment`), even before the patient is in their set.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, and_, false, literal, or_, select, tuple_, union
from sqlalchemy.engine import Connection

from ehr.search.tables import idx_reference
from ehr.storage.tables import resources

from .principal import Principal, relative_ref

__all__ = ["TREATMENT_LINKS", "establishes_treatment", "is_treated", "treated_patients"]

#: linking type -> (the parameter naming the patient, parameters naming a person or role,
#: parameters naming an organization, parameters naming a Location of the organization)
TREATMENT_LINKS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "Encounter": ("subject", ("participant", "practitioner"), ("service-provider",), ("location",)),
    "Appointment": ("patient", ("practitioner", "actor"), (), ("location",)),
    "EpisodeOfCare": ("patient", ("care-manager",), ("organization",), ()),
    "CareTeam": ("patient", ("participant",), ("participant",), ()),
}


def _split(refs: Sequence[str]) -> list[tuple[str, str]]:
    return [tuple(r.split("/", 1)) for r in refs if "/" in r]  # type: ignore[misc]


def _targets(ref: Any, pairs: list[tuple[str, str]]) -> Any:
    if not pairs:
        return false()
    return tuple_(ref.c.target_type, ref.c.target_id).in_(pairs)


def treated_patients(principal: Principal) -> Select[Any]:
    """``SELECT patient_id`` of every patient ``principal`` treats (see the module docstring);
    empty when the principal names neither a person, a role nor an organization.

    Built on a CTE (``WITH treated_patients AS …``) of flat joins on the reference index, so it
    can be embedded in a search's conditions, even several times, without deep nesting
    (SQLite's parser has a nesting limit)."""
    people = _split([r for r in (principal.fhir_user, principal.practitioner_role) if r])
    orgs = _split(list(principal.organizations))
    parts: list[Select[Any]] = []

    location_ids = None
    if orgs:
        lo, loc = idx_reference.alias("lo"), resources.alias("loc")
        location_ids = (
            select(loc.c.rid)
            .select_from(loc.join(lo, lo.c.pk == loc.c.pk))
            .where(lo.c.rtype == "Location", lo.c.param == "organization", _targets(lo, orgs))
        )
    for rtype, (pparam, person_params, org_params, loc_params) in TREATMENT_LINKS.items():
        link = idx_reference.alias(f"l_{rtype}")
        linked: list[Any] = []
        if people and person_params:
            linked.append(and_(link.c.param.in_(person_params), _targets(link, people)))
        if orgs and org_params:
            linked.append(and_(link.c.param.in_(org_params), _targets(link, orgs)))
        if location_ids is not None and loc_params:
            linked.append(
                and_(
                    link.c.param.in_(loc_params),
                    link.c.target_type == "Location",
                    link.c.target_id.in_(location_ids),
                )
            )
        if not linked:
            continue
        pat = idx_reference.alias(f"p_{rtype}")
        parts.append(
            select(pat.c.target_id.label("patient_id"))
            .select_from(pat.join(link, link.c.pk == pat.c.pk))
            .where(
                pat.c.rtype == rtype,
                pat.c.param == pparam,
                pat.c.target_type == "Patient",
                link.c.rtype == rtype,
                or_(*linked),
            )
        )
    gp_targets = people + orgs
    if gp_targets:
        gp, p = idx_reference.alias("gp"), resources.alias("p")
        conds = [and_(gp.c.param == "general-practitioner", _targets(gp, gp_targets))]
        if orgs:
            conds.append(and_(gp.c.param == "organization", _targets(gp, orgs)))
        parts.append(
            select(p.c.rid.label("patient_id"))
            .select_from(p.join(gp, gp.c.pk == p.c.pk))
            .where(p.c.rtype == "Patient", gp.c.rtype == "Patient", or_(*conds))
        )
    if not parts:
        return select(literal("").label("patient_id")).where(false())
    cte = (parts[0] if len(parts) == 1 else union(*parts)).cte("treated_patients")
    return select(cte.c.patient_id)


def is_treated(conn: Connection, principal: Principal, patient_ids: Sequence[str]) -> set[str]:
    """Those of ``patient_ids`` that ``principal`` treats (one indexed query)."""
    if not patient_ids:
        return set()
    sub = treated_patients(principal).subquery("t")
    rows = conn.execute(
        select(sub.c.patient_id).where(sub.c.patient_id.in_(sorted(set(patient_ids)))).distinct()
    ).scalars()
    return {str(x) for x in rows}


def _refs(value: Any) -> list[str]:
    """Every ``reference`` found anywhere in ``value`` (relative form)."""
    out: list[str] = []
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            ref = node.get("reference")
            if isinstance(ref, str):
                rel = relative_ref(ref)
                if rel:
                    out.append(rel)
            stack.extend(v for k, v in node.items() if k != "contained")
        elif isinstance(node, list):
            stack.extend(node)
    return out


def establishes_treatment(resource: dict[str, Any], principal: Principal) -> bool:
    """True if writing ``resource`` links its patient to ``principal`` (an Encounter with their
    organization as service provider or them as participant, an Appointment with them as a
    participant, an EpisodeOfCare of their organization, a CareTeam they are in, a Patient
    registered with their organization or with them as general practitioner)."""
    mine = {r for r in (principal.fhir_user, principal.practitioner_role) if r}
    orgs = set(principal.organizations)
    rtype = resource.get("resourceType")
    if rtype == "Encounter":
        provider = _refs(resource.get("serviceProvider"))
        people = _refs([p.get("individual") for p in resource.get("participant") or []])
        return bool(orgs.intersection(provider) or mine.intersection(people))
    if rtype == "Appointment":
        actors = _refs([p.get("actor") for p in resource.get("participant") or []])
        return bool(mine.intersection(actors))
    if rtype == "EpisodeOfCare":
        return bool(
            orgs.intersection(_refs(resource.get("managingOrganization")))
            or mine.intersection(_refs(resource.get("careManager")))
        )
    if rtype == "CareTeam":
        members = _refs([p.get("member") for p in resource.get("participant") or []])
        return bool((mine | orgs).intersection(members))
    if rtype == "Patient":  # registering a patient with their practice
        return bool(
            orgs.intersection(_refs(resource.get("managingOrganization")))
            or (mine | orgs).intersection(_refs(resource.get("generalPractitioner")))
        )
    return False
