"""Patient/$everything: http://hl7.org/fhir/R4/patient-operation-everything.html

The result is a searchset Bundle of:

* the Patient (or the Patients of ``patient_ids``, e.g. the linked records behind an EMPI golden
  record) — ``search.mode = match``;
* every current resource in their compartment, as the Patient CompartmentDefinition says
  (:func:`ehr.definitions.patient_compartment`: type -> the reference parameters that put a
  resource in it), read from the reference index — ``match``;
* one level of the resources those refer to (Practitioner, PractitionerRole, Organization,
  Location, Medication, Device, Encounter of another compartment type ...): every local
  reference the reference index holds for a compartment member, i.e. every reference that a
  reference-type search parameter covers — ``include``.

Isolation (never another patient's data): a Patient not in ``patient_ids`` is never included
(even one whose ``link`` puts it in the compartment), and a referenced resource that is itself in
another patient's compartment (an Observation of someone else referred to by mistake) is left
out. A resource shared by no compartment (a Practitioner, an Organization) is included. A
resource in the compartment that *also* names another patient (a Coverage whose subscriber is a
parent) is in this patient's compartment by definition and is included, but the references it
holds to the other patient are not followed. Within a request of the secured API, only what the
requester may see is listed (matches, includes and the total alike): the request's restriction
(:data:`ehr.search.engine.ambient_restriction`, set by :mod:`ehr.security`) is part of the query.

Parameters (declared in :data:`PARAMETERS`): ``_since`` (only resources whose
``meta.lastUpdated`` is at or after it), ``_type`` (only these types; references are still
followed from the whole compartment, so ``_type=Practitioner`` lists the patient's
practitioners), ``_count`` (page size, default and cap from the store), ``_cursor`` (paging),
``_mdm`` (HAPI FHIR's parameter: ``true`` spans every record of the citizen the Patient belongs
to, through its EMPI golden record; the HTTP layer picks the Patient ids, this module checks the
value). ``start``/``end`` (care dates) are not supported (400).

Paging: the result is ordered by ``pk`` (creation order, stable across updates) and paged by
keyset (``pk > last``); the cursor also holds the snapshot of page 1 (largest ``pk``), the total,
and a fingerprint of the request, so resources created while a client pages never join the
result and every resource of the snapshot is shown exactly once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import (
    ColumnElement,
    CompoundSelect,
    Select,
    and_,
    exists,
    false,
    func,
    literal,
    not_,
    select,
    tuple_,
    union,
    union_all,
)

from ehr.cursor import decode_cursor, encode_cursor
from ehr.definitions import patient_compartment, resource_types
from ehr.errors import BadRequest, Gone, NotFound
from ehr.search.bundle import searchset_bundle
from ehr.search.dates import instant_us
from ehr.search.engine import SearchPage, ambient_restriction
from ehr.search.include import Hit, hit_columns
from ehr.search.params import PASS_THROUGH
from ehr.search.tables import idx_reference
from ehr.storage.repository import Repository
from ehr.storage.tables import resources
from ehr.store import Store
from ehr.validation import check_id

__all__ = [
    "PARAMETERS",
    "EverythingRequest",
    "everything_bundle",
    "everything_page",
    "parameters_to_params",
    "parse_everything_params",
]

#: the operation's parameters (http://hl7.org/fhir/R4/operation-patient-everything.html):
#: name -> (FHIR type, max repetitions; 0 = unbounded)
PARAMETERS: dict[str, tuple[str, int]] = {
    "_since": ("instant", 1),
    "_type": ("code", 0),
    "_count": ("integer", 1),
    "_cursor": ("string", 1),
    "_mdm": ("boolean", 1),
}
_UNSUPPORTED = frozenset({"start", "end"})
_CURSOR_TAG = "everything/1"


@dataclass(frozen=True)
class EverythingRequest:
    """The parsed parameters of one ``$everything`` page."""

    since: int | None = None  # µs since the epoch
    types: tuple[str, ...] | None = None
    count: int = 50
    cursor: str | None = None
    #: the parameters applied, for the ``self`` / ``next`` links (``_cursor`` left out)
    applied: list[tuple[str, str]] = field(default_factory=list)


def parse_everything_params(
    params: Sequence[tuple[str, str]], *, default_count: int, max_count: int
) -> EverythingRequest:
    """Check ``params`` against :data:`PARAMETERS`; an unknown or malformed one is a 400."""
    since: int | None = None
    types: tuple[str, ...] | None = None
    count = default_count
    cursor: str | None = None
    applied: list[tuple[str, str]] = []
    seen: dict[str, int] = {}
    for name, value in params:
        if name in PASS_THROUGH:
            applied.append((name, value))
            continue
        if name in _UNSUPPORTED:
            raise BadRequest(
                f"$everything: '{name}' is not supported", "not-supported", expression=(name,)
            )
        if name not in PARAMETERS:
            raise BadRequest(
                f"$everything has no parameter '{name}'", "not-supported", expression=(name,)
            )
        seen[name] = seen.get(name, 0) + 1
        if PARAMETERS[name][1] and seen[name] > PARAMETERS[name][1]:
            raise BadRequest(
                f"$everything: '{name}' given more than once", "invalid", expression=(name,)
            )
        if name == "_since":
            try:
                since = instant_us(value)
            except ValueError as exc:
                raise BadRequest(
                    f"_since: {value!r} is not an instant", "value", expression=(name,)
                ) from exc
        elif name == "_type":
            found = tuple(t.strip() for t in value.split(",") if t.strip())
            unknown = [t for t in found if t not in resource_types()]
            if unknown or not found:
                raise BadRequest(
                    f"_type: unknown resource type(s) {', '.join(unknown) or repr(value)}",
                    "value",
                    expression=(name,),
                )
            types = tuple(dict.fromkeys((types or ()) + found))
        elif name == "_count":
            try:
                count = int(value)
            except ValueError as exc:
                raise BadRequest(
                    f"_count: {value!r} is not an integer", "value", expression=(name,)
                ) from exc
            if count < 0:
                raise BadRequest("_count must not be negative", "value", expression=(name,))
            count = min(count, max_count)
            value = str(count)
        elif name == "_mdm":
            if value not in ("true", "false"):
                raise BadRequest(
                    f"_mdm: {value!r} is not true or false", "value", expression=(name,)
                )
        else:
            cursor = value
            continue
        applied.append((name, value))
    return EverythingRequest(since, types, count, cursor, applied)


def parameters_to_params(body: object) -> list[tuple[str, str]]:
    """The parameters of ``POST Patient/{id}/$everything`` (a ``Parameters`` resource) as
    query-style pairs for :func:`everything_page` (``valueInstant``, ``valueCode``, ...)."""
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise BadRequest("The body of POST $everything must be a Parameters resource", "invalid")
    out: list[tuple[str, str]] = []
    for p in body.get("parameter") or ():
        name = p.get("name") if isinstance(p, dict) else None
        values = [v for k, v in p.items() if k.startswith("value")] if isinstance(p, dict) else []
        if not isinstance(name, str) or len(values) != 1 or isinstance(values[0], (dict, list)):
            raise BadRequest(
                "Each $everything parameter needs a name and one primitive value[x]", "invalid"
            )
        out.append(
            (name, str(values[0]).lower() if isinstance(values[0], bool) else str(values[0]))
        )
    return out


# ------------------------------------------------------------------------------------- SQL


def _pairs() -> list[tuple[str, str]]:
    """(resource type, parameter) of every compartment link but Patient.link (another Patient
    is never part of this one's record)."""
    return sorted((t, p) for t, ps in patient_compartment().items() if t != "Patient" for p in ps)


def _compartment(ids: Sequence[str]) -> CompoundSelect:
    """pks of the Patients ``ids`` and of every resource in their compartments."""
    ref = idx_reference.alias("cref")
    pat = resources.alias("cpat")
    return union(
        select(ref.c.pk.label("pk")).where(
            ref.c.target_type == "Patient",
            ref.c.target_id.in_(ids),
            tuple_(ref.c.rtype, ref.c.param).in_(_pairs()),
        ),
        select(pat.c.pk.label("pk")).where(pat.c.rtype == "Patient", pat.c.rid.in_(ids)),
    )


def _foreign(r: object, ids: Sequence[str]) -> ColumnElement[bool]:
    """``r`` belongs to another patient: it is another Patient, or in another's compartment."""
    x = idx_reference.alias("other")
    rc = r.c  # type: ignore[attr-defined]
    in_other = exists().where(
        x.c.pk == rc.pk,
        x.c.target_type == "Patient",
        x.c.target_id.not_in(ids),
        tuple_(x.c.rtype, x.c.param).in_(_pairs()),
    )
    return (rc.rtype == "Patient") | in_other


def _members(ids: Sequence[str]) -> Select[tuple[int, int]]:
    """(pk, is_match) of everything in the result: compartment members (1) and the resources
    they refer to that belong to no other patient (0)."""
    comp = _compartment(ids).cte("comp")
    src = idx_reference.alias("src")
    target = resources.alias("target")
    referenced = (
        select(target.c.pk.label("pk"))
        .select_from(
            src.join(
                target,
                and_(target.c.rtype == src.c.target_type, target.c.rid == src.c.target_id),
            )
        )
        .where(src.c.pk.in_(select(comp.c.pk)), not_(_foreign(target, ids)))
    )
    both = union_all(
        select(comp.c.pk, literal(1).label("m")),
        select(referenced.subquery().c.pk, literal(0).label("m")),
    ).subquery("both")
    return select(both.c.pk.label("pk"), func.max(both.c.m).label("m")).group_by(both.c.pk)


def _conditions(r: object, req: EverythingRequest, max_pk: int) -> list[ColumnElement[bool]]:
    rc = r.c  # type: ignore[attr-defined]
    conds: list[ColumnElement[bool]] = [rc.deleted == false(), rc.pk <= max_pk]
    if req.types is not None:
        conds.append(rc.rtype.in_(req.types))
    if req.since is not None:
        conds.append(rc.last_updated >= req.since)
    return conds


def _fingerprint(ids: Sequence[str], req: EverythingRequest) -> str:
    key = repr((sorted(ids), req.types, req.since))
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _decode(token: str, fingerprint: str) -> tuple[int, int, int | None]:
    v = decode_cursor(token)
    ok = (
        len(v) == 5
        and v[0] == _CURSOR_TAG
        and v[1] == fingerprint
        and isinstance(v[2], int)
        and isinstance(v[3], int)
        and (v[4] is None or isinstance(v[4], int))
    )
    if not ok:
        raise BadRequest("Invalid paging cursor (it belongs to another request?)", "invalid")
    return v[2], v[3], v[4]


# ------------------------------------------------------------------------------- operation


def _check_patient(store: Store, patient_id: str) -> None:
    check_id(patient_id)
    with store.read_conn() as conn:
        cur = Repository(conn).current("Patient", patient_id)
    if cur is None:
        raise NotFound(f"Patient/{patient_id} not found")
    if cur.deleted:
        raise Gone(f"Patient/{patient_id} was deleted")


def everything_page(
    store: Store,
    patient_id: str,
    params: Sequence[tuple[str, str]] = (),
    *,
    patient_ids: Sequence[str] | None = None,
) -> SearchPage:
    """One page of ``Patient/{patient_id}/$everything``.

    ``patient_ids`` (EMPI hook): export the union of several linked Patients' records (a golden
    record); ``patient_id`` is always one of them and must exist (404 / 410 otherwise), the
    others may be absent. Raises :class:`~ehr.errors.BadRequest` for bad parameters.
    """
    _check_patient(store, patient_id)
    ids = sorted({patient_id, *(patient_ids or ())})
    for i in ids:
        check_id(i)
    req = parse_everything_params(
        params, default_count=store.default_count, max_count=store.max_count
    )
    fp = _fingerprint(ids, req)
    r = resources.alias("r")
    with store.read_conn() as conn:
        if req.cursor:
            after, max_pk, total = _decode(req.cursor, fp)
        else:
            after, total = 0, None
            max_pk = int(conn.execute(select(func.max(resources.c.pk))).scalar() or 0)
        mem = _members(ids).subquery("mem")
        conds = _conditions(r, req, max_pk)
        restrict = ambient_restriction.get()  # what the request may see (ehr.security)
        if restrict is not None:
            conds.append(restrict(r, store.search_engine._ctx(conn, None)))
        joined = r.join(mem, mem.c.pk == r.c.pk)
        if total is None:
            total = int(
                conn.execute(select(func.count()).select_from(joined).where(*conds)).scalar_one()
            )
        page = SearchPage(None, [], [], total, list(req.applied))
        if req.count == 0:
            return page
        rows = conn.execute(
            select(*hit_columns(r), mem.c.m)
            .select_from(joined)
            .where(*conds, r.c.pk > after)
            .order_by(r.c.pk)
            .limit(req.count + 1)
        ).all()
    more = len(rows) > req.count
    rows = rows[: req.count]
    for row in rows:
        hit = Hit(row.pk, row.rtype, row.rid, row.version, row.last_updated, row.data)
        (page.matches if row.m else page.includes).append(hit)
    if more:
        token = encode_cursor([_CURSOR_TAG, fp, int(rows[-1].pk), max_pk, total])
        page.next_params = [*req.applied, ("_cursor", token)]
    return page


def everything_bundle(
    store: Store,
    patient_id: str,
    params: Sequence[tuple[str, str]] = (),
    *,
    base: str,
    patient_ids: Sequence[str] | None = None,
    path: str | None = None,
) -> bytes:
    """``Patient/{patient_id}/$everything`` as a serialized searchset Bundle; links are
    ``{base}/{path}?…`` (``path`` defaults to ``Patient/{patient_id}/$everything``)."""
    page = everything_page(store, patient_id, params, patient_ids=patient_ids)
    return searchset_bundle(page, base=base, path=path or f"Patient/{patient_id}/$everything")
