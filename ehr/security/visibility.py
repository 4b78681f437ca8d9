"""What a requester may see, as SQL: one predicate on a ``resources`` alias, used alike for
reads (is this one resource visible?), searches (matches, counts, ``_include``/``_revinclude``,
chains and ``_has``: see :data:`ehr.search.engine.ambient_restriction`) and conditional
interactions. One predicate everywhere means a search can never show what a read would refuse.

The predicate (:class:`Reach` + :func:`restriction`) is the AND of:

* **patients**: the resource is in the Patient compartment
  (http://hl7.org/fhir/R4/compartmentdefinition-patient.html) of a patient the requester may
  see (explicit ids, and/or the patients a clinician treats as a subquery), or it is of a type
  outside that compartment that the requester may see (:data:`SHARED_TYPES` for patient-context
  tokens; every non-compartment type for a clinician). No condition for a backend service.
* **types**: the resource's type is one the token's scopes allow to read or search, and matches
  the scope's constraints (``patient/Observation.rs?category=laboratory``) when only constrained
  scopes allow it (the constraint is parsed as a search and turned into its SQL condition).
* **consent**: it is not hidden from this requester by a Consent
  (:func:`ehr.security.consent.hidden_condition`).

:func:`patients_of` finds the patients a resource body belongs to (its compartment references,
or itself for a Patient), with the same search parameters as the index.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from sqlalchemy import (
    BigInteger,
    FromClause,
    and_,
    any_,
    bindparam,
    false,
    not_,
    or_,
    select,
    true,
    tuple_,
)
from sqlalchemy.engine import Connection

from ehr.accounts.scopes import ScopeSet
from ehr.definitions import SearchParamRegistry, patient_compartment, search_parameters
from ehr.errors import FhirError
from ehr.search.params import parse_criteria
from ehr.search.sql import Cond, SqlContext, compartment_condition, condition
from ehr.search.tables import idx_reference
from ehr.search.valueset import expand_valueset
from ehr.storage.tables import resources

__all__ = [
    "SHARED_TYPES",
    "Reach",
    "TypeRules",
    "compartment_types",
    "patients_of",
    "restriction",
    "sql_context",
    "stored_patients",
    "type_rules",
    "visible",
]

Params = tuple[tuple[str, str], ...]

#: types outside the Patient compartment that a patient-context token may read: the directory
#: (who and where) and knowledge / terminology resources. Other non-compartment types (Task,
#: Bundle, Binary, Group…) may hold other people's data and stay closed to patient tokens.
SHARED_TYPES = frozenset(
    {
        "Practitioner",
        "PractitionerRole",
        "Organization",
        "OrganizationAffiliation",
        "Location",
        "HealthcareService",
        "Endpoint",
        "Schedule",
        "Slot",
        "Medication",
        "MedicationKnowledge",
        "Substance",
        "ActivityDefinition",
        "PlanDefinition",
        "Questionnaire",
        "ValueSet",
        "CodeSystem",
        "ConceptMap",
        "NamingSystem",
        "StructureDefinition",
        "SearchParameter",
        "OperationDefinition",
        "CapabilityStatement",
        "CompartmentDefinition",
        "Library",
    }
)


@cache
def compartment_types() -> frozenset[str]:
    """Types that can be in a Patient compartment (the Patient itself included)."""
    return frozenset(patient_compartment()) | {"Patient"}


@dataclass(frozen=True)
class TypeRules:
    """Which types a token may read: ``free`` without condition (None: every type), and
    ``constrained`` type -> the parameter sets of its constrained scopes (one must match)."""

    free: frozenset[str] | None
    constrained: dict[str, tuple[Params, ...]] = field(default_factory=dict)

    @property
    def unlimited(self) -> bool:
        return self.free is None and not self.constrained


def type_rules(
    scopes: ScopeSet, context: str, primary: Sequence[str] = (), letters: str = "rs"
) -> TypeRules:
    """The types ``scopes`` let ``context`` read (``letters``: any of them grants). A
    constrained wildcard scope (``patient/*.rs?…``) applies only to the ``primary`` types (those
    the request names), never to included ones."""
    free: set[str] = set()
    wildcard = False
    constrained: dict[str, list[Params]] = {}
    for s in scopes.resources:
        if s.context != context or not s.interactions.intersection(letters):
            continue
        if s.params:
            for t in primary if s.rtype == "*" else (s.rtype,):
                constrained.setdefault(t, []).append(s.params)
        elif s.rtype == "*":
            wildcard = True
        else:
            free.add(s.rtype)
    if wildcard:
        return TypeRules(None)
    return TypeRules(
        frozenset(free), {t: tuple(v) for t, v in constrained.items() if t not in free}
    )


@dataclass(frozen=True)
class Reach:
    """Whose records a requester may see. ``everyone``: no patient condition (backend services).
    Otherwise the compartments of ``ids`` and, with ``treated``, of every patient ``treated_sql``
    selects; plus non-compartment types: ``shared`` (None: all of them)."""

    everyone: bool
    ids: frozenset[str] = frozenset()
    treated_sql: Any = None
    shared: frozenset[str] | None = SHARED_TYPES

    @property
    def nobody(self) -> bool:
        return not self.everyone and not self.ids and self.treated_sql is None


def sql_context(conn: Connection, base: str | None) -> SqlContext:
    @cache
    def expand(url: str) -> list[tuple[str | None, str]]:
        return expand_valueset(conn, url)

    return SqlContext(conn.dialect.name, base, expand)


def _type_condition(
    r: FromClause, rules: TypeRules, registry: SearchParamRegistry, ctx: SqlContext
) -> Cond | None:
    if rules.unlimited:
        return None
    parts: list[Cond] = []
    if rules.free is None:  # every type free, some constrained: impossible (free wins) but safe
        return None
    if rules.free:
        parts.append(r.c.rtype.in_(sorted(rules.free)))
    for rtype, sets in sorted(rules.constrained.items()):
        alternatives = []
        for params in sets:
            try:
                criteria, _, _ = parse_criteria(
                    registry, (rtype,), list(params), strict=True, max_or_values=100
                )
            except FhirError:
                continue  # a constraint we cannot apply grants nothing
            alternatives.append(and_(true(), *(condition(c, r, ctx) for c in criteria)))
        if alternatives:
            parts.append(and_(r.c.rtype == rtype, or_(*alternatives)))
    return or_(*parts) if parts else false()


def _patient_condition(r: FromClause, reach: Reach) -> Cond | None:
    if reach.everyone:
        return None
    parts: list[Cond] = []
    if reach.ids:
        parts.append(compartment_condition(r, ("Patient", sorted(reach.ids)), None))
    if reach.treated_sql is not None:
        parts.append(compartment_condition(r, ("Patient", reach.treated_sql), None))
    if reach.shared is None:
        parts.append(r.c.rtype.not_in(sorted(compartment_types())))
    elif reach.shared:
        parts.append(r.c.rtype.in_(sorted(reach.shared - compartment_types())))
    directory = (SHARED_TYPES if reach.shared is None else reach.shared) & compartment_types()
    if directory:
        parts.append(_naming_no_patient(r, directory))
    return or_(*parts) if parts else false()


def _naming_no_patient(r: FromClause, types: frozenset[str]) -> Cond:
    """``r`` is of one of the directory ``types`` that the Patient compartment lists only because
    they *may* name a patient (``Schedule.actor``), and it names none: a doctor's Schedule is
    directory data, seen like the other :data:`SHARED_TYPES` (the clinic list, call-next)."""
    defs = patient_compartment()
    pairs = sorted((t, p) for t in types for p in defs.get(t, ()))
    ref = idx_reference.alias()
    named = select(ref.c.pk).where(
        ref.c.target_type == "Patient", tuple_(ref.c.rtype, ref.c.param).in_(pairs)
    )
    return and_(r.c.rtype.in_(sorted(types)), r.c.pk.not_in(named))


Restrict = Callable[[FromClause, SqlContext], Cond]


def restriction(
    reach: Reach,
    rules: TypeRules,
    registry: SearchParamRegistry,
    hidden: Callable[[FromClause], Cond] | None = None,
) -> Restrict | None:
    """The predicate (see the module docstring); None when nothing is restricted."""
    if reach.everyone and rules.unlimited and hidden is None:
        return None

    def restrict(r: FromClause, ctx: SqlContext) -> Cond:
        conds = [
            c
            for c in (_patient_condition(r, reach), _type_condition(r, rules, registry, ctx))
            if c is not None
        ]
        if hidden is not None:
            conds.append(not_(hidden(r)))
        return and_(true(), *conds)

    return restrict


def visible(
    conn: Connection, rtype: str, rid: str, restrict: Restrict | None, base: str | None = None
) -> bool:
    """True if the current ``rtype/rid`` exists, is not deleted, and passes ``restrict``."""
    r = resources.alias("r")
    conds: list[Cond] = [r.c.rtype == rtype, r.c.rid == rid, r.c.deleted == false()]
    if restrict is not None:
        conds.append(restrict(r, sql_context(conn, base)))
    return conn.execute(select(r.c.pk).where(*conds).limit(1)).first() is not None


@cache
def _compartment_registry(rtype: str) -> SearchParamRegistry:
    """A registry with only ``rtype``'s compartment parameters (cheap to index with)."""
    full = search_parameters()
    small = SearchParamRegistry()
    for code in patient_compartment().get(rtype, ()):
        sp = full.get(rtype, code)
        if sp is not None:
            small.add(sp)
    return small


def patients_of(resource: dict[str, Any], base_url: str | None = None) -> set[str]:
    """The Patient ids whose compartment ``resource`` is in (a Patient is in its own), from the
    same compartment search parameters the index uses."""
    from ehr.search.indexer import extract

    rtype = resource.get("resourceType")
    if not isinstance(rtype, str):
        return set()
    out: set[str] = set()
    if rtype == "Patient" and isinstance(resource.get("id"), str):
        out.add(resource["id"])
    if rtype not in patient_compartment():
        return out
    rows = extract(resource, _compartment_registry(rtype), base_url=base_url)
    for row in rows.get("reference", []):
        if row.get("target_type") == "Patient" and row.get("target_id"):
            out.add(row["target_id"])
    return out


@cache
def _owner_queries(dialect: str) -> tuple[Any, Any]:
    """The two statements of :func:`stored_patients`, made once: the resources ``(rtype, rid)``
    (parameters ``types`` and ``rids``), then their references to Patients (``pks`` and
    ``params``). On PostgreSQL ``col = ANY(:array)``: one parameter, not one per value (a long
    IN list costs more to send and parse than the lookups themselves)."""
    r, ref = resources.alias("r"), idx_reference.alias("ref")

    def one_of(col: Any, name: str, item: Any) -> Any:
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import ARRAY

            return col == any_(bindparam(name, type_=ARRAY(item)))
        return col.in_(bindparam(name, expanding=True))

    found = select(r.c.pk, r.c.rtype, r.c.rid).where(
        one_of(r.c.rtype, "types", r.c.rtype.type), one_of(r.c.rid, "rids", r.c.rid.type)
    )
    refs = select(ref.c.pk, ref.c.param, ref.c.target_id).where(
        one_of(ref.c.pk, "pks", BigInteger()),
        one_of(ref.c.param, "params", ref.c.param.type),
        ref.c.target_type == "Patient",
    )
    return found, refs


def stored_patients(
    conn: Connection, keys: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], set[str]]:
    """The patients of stored resources ``(rtype, rid)``, from the reference index: two
    statements for up to 1,000 resources, whatever their types (the resources by the
    ``(rtype, rid)`` unique index, then their references by pk; a join here tempts the planner
    into scanning the reference index by target type)."""
    keys = list(dict.fromkeys(keys))
    out: dict[tuple[str, str], set[str]] = {k: set() for k in keys}
    defs = patient_compartment()
    looked = []
    for rtype, rid in keys:
        if rtype == "Patient":
            out[(rtype, rid)].add(rid)
        if rtype in defs:
            looked.append((rtype, rid))
    found_q, refs_q = _owner_queries(conn.dialect.name)
    for start in range(0, len(looked), 1000):
        chunk = looked[start : start + 1000]
        types = sorted({t for t, _ in chunk})
        # (rtype = ANY AND rid = ANY may also match another type's rid: those are left out)
        pks = {
            pk: (rtype, rid)
            for pk, rtype, rid in conn.execute(
                found_q, {"types": types, "rids": sorted({i for _, i in chunk})}
            ).all()  # (all at once: row by row costs a round of Python calls per row)
            if (rtype, rid) in out
        }
        if not pks:
            continue
        params = sorted({p for t in types for p in defs[t]})
        for pk, param, pid in conn.execute(refs_q, {"pks": list(pks), "params": params}).all():
            key = pks[pk]
            if pid and param in defs[key[0]]:
                out[key].add(pid)
    return out
