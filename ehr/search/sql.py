"""Search criteria -> SQLAlchemy Core conditions: http://hl7.org/fhir/R4/search.html

Every criterion becomes a condition on an alias of ``resources`` (``r``), of the form
``r.pk IN (SELECT pk FROM idx_<type> WHERE rtype = :t AND param = :code AND <value test>)``, so
the database looks values up through the ``(rtype, param, value)`` indexes of
:mod:`ehr.search.tables`; ``:not``, ``:missing=true`` and ``ne``-free negations are ``NOT IN``.
Chains join ``idx_reference`` to the target resources; ``_has`` selects the targets of the
source resources' references. One builder per parameter type (:data:`BUILDERS`).

Range semantics (http://hl7.org/fhir/R4/search.html#prefix). A date value in the index covers
``[low, high]`` (inclusive µs) and a number or quantity ``[low, high)`` (half a unit of its
last digit either side); the searched value covers its own range ``[qlo, qhi]`` likewise:

======  ===================================================  ==============================
prefix  the spec's wording                                   test on the row
======  ===================================================  ==============================
eq      the search range fully contains the target range     ``low >= qlo and high <= qhi``
ne      ... does not fully contain it                        ``not eq``
gt      the range above the search value intersects          ``high > qhi``
lt      the range below the search value intersects          ``low < qlo``
ge      gt, or eq                                            ``high > qhi or eq``
le      lt, or eq                                            ``low < qlo or eq``
sa      starts after: no overlap, above                      ``low > qhi`` (numbers ``>=``)
eb      ends before: no overlap, below                       ``high < qlo`` (numbers ``<=``)
ap      the ranges overlap, the search range widened by 10%  overlap
======  ===================================================  ==============================

``ap`` widens a number by 10% of its value and a date by 10% of its distance from now. A
resource matches when any one of its values (rows) passes; ``ne`` is per value too.

Quantities with a UCUM unit also match values in another unit of the same dimension through
the canonical value (:func:`ehr.search.ucum.canonical`); such a value is compared as a point.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import (
    BinaryExpression,
    ColumnElement,
    FromClause,
    ScalarSelect,
    Text,
    and_,
    false,
    func,
    intersect,
    literal,
    not_,
    null,
    or_,
    select,
    true,
    tuple_,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.sql import operators

from ehr.definitions import patient_compartment, resource_types
from ehr.errors import BadRequest
from ehr.search.dates import now_us
from ehr.search.params import (
    REF_RE,
    Chain,
    CompositeValue,
    Criterion,
    Has,
    Leaf,
    ListRef,
    QuantityValue,
    RangeValue,
    RefValue,
    StringValue,
    TokenValue,
    UriValue,
    ValueSetValue,
)
from ehr.search.tables import (
    idx_composite,
    idx_date,
    idx_number,
    idx_quantity,
    idx_reference,
    idx_string,
    idx_token,
    idx_uri,
)
from ehr.storage.tables import resources

__all__ = [
    "BUILDERS",
    "PatientIds",
    "Restrict",
    "SqlContext",
    "compartment_condition",
    "condition",
    "contains_chars",
    "index_pks",
    "pk_bounded",
    "same_param_intersections",
    "starts_with",
]

Cond = ColumnElement[bool]
#: a test on one row of an index-table alias
Test = Callable[[Any], Cond]

#: a ValueSet url -> its (system, code) pairs
Expander = Callable[[str], list[tuple[str | None, str]]]


@dataclass(frozen=True)
class SqlContext:
    dialect: str  # "sqlite" | "postgresql"
    base: str | None  # this server's base URL (absolute references to it are local)
    expand: Expander
    #: what the requester may see (authorization): ANDed to the resources a chain or ``_has``
    #: looks at, so neither can test a resource the requester could not read
    restrict: Restrict | None = None


#: an extra condition on a ``resources`` alias (see :data:`ehr.search.engine.ambient_restriction`)
Restrict = Callable[[FromClause, SqlContext], "Cond"]
#: the ids of a compartment: one id, several, or a subquery selecting them
PatientIds = str | Sequence[str] | Any


# ------------------------------------------------------------------------------ helpers


@cache
def _all_types() -> tuple[str, ...]:
    return tuple(sorted(resource_types()))


def _next_prefix(prefix: str) -> str | None:
    """The smallest string greater than every string starting with ``prefix`` (code point
    order), or None."""
    last = ord(prefix[-1])
    if last >= 0x10FFFF:
        return None
    nxt = last + 1
    if 0xD800 <= nxt <= 0xDFFF:
        nxt = 0xE000
    return prefix[:-1] + chr(nxt)


def starts_with(col: Any, prefix: str, ctx: SqlContext) -> Cond:
    """``col`` starts with ``prefix`` as one range in code-point order: SQLite's BINARY
    collation, and ``COLLATE "C"`` on PostgreSQL whatever the database's collation (the string
    lookup index is built in "C", revision 0005). Exact by itself: no ``LIKE`` re-check, which
    PostgreSQL would count as a second, independent filter and so underestimate the matches by
    orders of magnitude (and pick nested loops over 10,000 rows)."""
    if not prefix:
        return true()
    if ctx.dialect == "postgresql":
        col = col.collate("C")
    upper = _next_prefix(prefix)
    cond = col >= prefix
    if upper is not None:
        cond = and_(cond, col < upper)
    return cond


def _types_filter(col: Any, types: tuple[str, ...] | None) -> list[Cond]:
    """``rtype`` condition; every type when None, so the ``(rtype, param, ...)`` indexes apply."""
    if types is None:
        return [col.in_(_all_types())]
    if len(types) == 1:
        return [col == types[0]]
    return [col.in_(types)]


def _in_idx(table: Any, code: str, types: tuple[str, ...] | None, test: Test | None) -> Any:
    """``SELECT pk FROM <table> WHERE param = code [AND rtype IN types] AND test(row)``."""
    t = table.alias()
    where = [t.c.param == code, *_types_filter(t.c.rtype, types)]
    if test is not None:
        where.append(test(t))
    return select(t.c.pk).where(*where)


# ------------------------------------------------------------------------------ ranges


def _range_test(
    prefix: str,
    lo: Any,
    hi: Any,
    q: RangeValue | QuantityValue,
    *,
    half_open: bool,
    is_date: bool,
    value: Any = None,
) -> Cond:
    """The prefix table above on a row range ``[lo, hi]``. ``value`` (a number or quantity
    row's value, which lies in its range) adds the bound ``eq``/``sa``/``eb`` imply on it, so
    the ``(rtype, param, value)`` index narrows the scan; it never changes the result."""
    qlo, qhi = q.low, q.high
    if is_date:  # the columns are integer µs: compare with integers so their indexes apply
        qlo, qhi = int(qlo), int(qhi)
    eq = and_(lo >= qlo, hi <= qhi)
    if prefix == "eq":
        return eq if value is None else and_(value >= qlo, value <= qhi, eq)
    if prefix == "ne":
        return not_(eq)
    if prefix == "gt":
        return hi > qhi
    if prefix == "lt":
        return lo < qlo
    if prefix == "ge":
        return or_(hi > qhi, eq)
    if prefix == "le":
        return or_(lo < qlo, eq)
    if prefix == "sa":
        test = lo >= qhi if half_open else lo > qhi
        return test if value is None else and_(value >= qhi, test)
    if prefix == "eb":
        test = hi <= qlo if half_open else hi < qlo
        return test if value is None else and_(value <= qlo, test)
    if prefix == "ap":
        margin = abs(now_us() - q.value if is_date else q.value) * 0.1
        alo, ahi = min(qlo, q.value - margin), max(qhi, q.value + margin)
        if is_date:
            alo, ahi = math.floor(alo), math.ceil(ahi)
        if half_open:
            return and_(lo < ahi, hi > alo)
        return and_(lo <= ahi, hi >= alo)
    raise BadRequest(f"Unknown prefix {prefix}")  # pragma: no cover - parse rejects it


def _point_test(prefix: str, p: Any, lo: float, hi: float, value: float) -> Cond:
    """A point value ``p`` against the half-open search range ``[lo, hi)``."""
    if prefix == "eq":
        return and_(p >= lo, p < hi)
    if prefix == "ne":
        return or_(p < lo, p >= hi)
    if prefix in ("gt", "sa"):
        return p >= hi
    if prefix in ("lt", "eb"):
        return p < lo
    if prefix == "ge":
        return p >= lo
    if prefix == "le":
        return p < hi
    margin = abs(value) * 0.1  # ap
    return and_(p >= min(lo, value - margin), p < max(hi, value + margin))


# ------------------------------------------------------------------------------ builders


def contains_chars(pattern: str) -> list[str]:
    """The characters a string containing ``pattern`` must have, for the GIN index of revision
    0009 on ``string_to_array(value, NULL)`` (a string's characters); empty (no index condition)
    for a pattern of ASCII characters only, where single letters select most rows and the plain
    scan is as fast. A Chinese pattern (``秀英``: two of several thousand characters) narrows
    the rows to test to a handful; pg_trgm could not serve it (it needs three characters)."""
    if pattern.isascii():
        return []
    return sorted(set(pattern))


def _text_array(values: list[str]) -> Any:
    return literal(values, ARRAY(Text))


def _string(leaf: Leaf, r: FromClause, ctx: SqlContext) -> Cond:
    def test(t: Any) -> Cond:
        tests = []
        for v in leaf.values:
            assert isinstance(v, StringValue)
            if leaf.modifier == "exact":
                tests.append(t.c.exact == v.raw)
            elif leaf.modifier == "contains":
                test = t.c.value.contains(v.norm, autoescape=True)
                chars = contains_chars(v.norm)
                if chars and ctx.dialect == "postgresql":  # the GIN index of characters (0009)
                    value_chars = func.string_to_array(t.c.value, null())
                    test = and_(value_chars.op("@>")(_text_array(chars)), test)
                tests.append(test)
            else:
                tests.append(starts_with(t.c.value, v.norm, ctx))
        return or_(*tests)

    return r.c.pk.in_(_in_idx(idx_string, leaf.code, leaf.types, test))


def token_test(
    t: Any, v: TokenValue, implied_system: bool, sys_col: str = "system", code_col: str = "code"
) -> Cond:
    system, code = t.c[sys_col], t.c[code_col]
    if v.no_system:
        return and_(system.is_(None), code == v.code)
    if v.system is None:
        return code == v.code
    sys_test = or_(system == v.system, system.is_(None)) if implied_system else system == v.system
    if v.code is None:
        return sys_test
    return and_(sys_test, code == v.code)


def _token(leaf: Leaf, r: FromClause, ctx: SqlContext) -> Cond:
    if leaf.modifier == "text":

        def text_test(t: Any) -> Cond:
            return or_(*(starts_with(t.c.text, v.norm, ctx) for v in leaf.values))

        return r.c.pk.in_(_in_idx(idx_token, leaf.code, leaf.types, text_test))
    if leaf.modifier == "of-type":

        def of_type(t: Any) -> Cond:
            tests = []
            for v in leaf.values:
                sys_test = t.c.system == v.system if v.system else t.c.system.is_(None)
                tests.append(and_(sys_test, t.c.code == v.code, t.c.text == v.text))
            return or_(*tests)

        sub = _in_idx(idx_token, leaf.code + ":of-type", leaf.types, of_type)
        return r.c.pk.in_(sub)
    if leaf.modifier in ("in", "not-in"):
        pairs: list[tuple[str | None, str]] = []
        for v in leaf.values:
            assert isinstance(v, ValueSetValue)
            pairs += ctx.expand(v.url)

        def in_test(t: Any) -> Cond:
            with_system = sorted({(s, c) for s, c in pairs if s})
            without = sorted({c for s, c in pairs if not s})
            tests: list[Cond] = []
            if with_system:
                tests.append(tuple_(t.c.system, t.c.code).in_(with_system))
            if without:
                tests.append(t.c.code.in_(without))
            if leaf.implied_system and with_system:
                tests.append(
                    and_(t.c.system.is_(None), t.c.code.in_(sorted({c for _, c in with_system})))
                )
            return or_(*tests) if tests else false()

        sub = _in_idx(idx_token, leaf.code, leaf.types, in_test)
        return r.c.pk.not_in(sub) if leaf.modifier == "not-in" else r.c.pk.in_(sub)

    def test(t: Any) -> Cond:
        return or_(*(token_test(t, v, leaf.implied_system) for v in leaf.values))

    sub = _in_idx(idx_token, leaf.code, leaf.types, test)
    return r.c.pk.not_in(sub) if leaf.modifier == "not" else r.c.pk.in_(sub)


def _local_url(url: str, ctx: SqlContext) -> tuple[str, str] | None:
    if not ctx.base:
        return None
    base = ctx.base.rstrip("/") + "/"
    if url.startswith(base) and (m := REF_RE.match(url[len(base) :])):
        return m["type"], m["id"]
    return None


def ref_test(t: Any, v: RefValue, ctx: SqlContext, targets: Sequence[str] = ()) -> Cond:
    if v.url is not None:
        tests = [t.c.url == v.url]
        if v.version is not None:
            tests = [and_(t.c.url == v.url, t.c.version == v.version)]
        if local := _local_url(v.url, ctx):
            tests.append(and_(t.c.target_type == local[0], t.c.target_id == local[1]))
        return or_(*tests)
    if v.type is not None:
        return and_(t.c.target_type == v.type, t.c.target_id == v.id)
    cond = t.c.target_id == v.id
    real = [x for x in targets if x != "Resource"]
    if real and len(real) == len(targets):
        cond = and_(cond, t.c.target_type.in_(real))
    return cond


def _reference(leaf: Leaf, r: FromClause, ctx: SqlContext) -> Cond:
    if leaf.modifier == "identifier":

        def ident(t: Any) -> Cond:
            return or_(*(token_test(t, v, False) for v in leaf.values))

        return r.c.pk.in_(_in_idx(idx_token, leaf.code + ":identifier", leaf.types, ident))
    targets = leaf.sp.target if leaf.sp else ()

    def test(t: Any) -> Cond:
        return or_(*(ref_test(t, v, ctx, targets) for v in leaf.values))

    return r.c.pk.in_(_in_idx(idx_reference, leaf.code, leaf.types, test))


def _date(leaf: Leaf, r: FromClause, ctx: SqlContext) -> Cond:
    def test(t: Any) -> Cond:
        return or_(
            *(
                _range_test(v.prefix, t.c.low, t.c.high, v, half_open=False, is_date=True)
                for v in leaf.values
            )
        )

    return r.c.pk.in_(_in_idx(idx_date, leaf.code, leaf.types, test))


def _number(leaf: Leaf, r: FromClause, ctx: SqlContext) -> Cond:
    def test(t: Any) -> Cond:
        return or_(
            *(
                _range_test(
                    v.prefix, t.c.low, t.c.high, v, half_open=True, is_date=False, value=t.c.value
                )
                for v in leaf.values
            )
        )

    return r.c.pk.in_(_in_idx(idx_number, leaf.code, leaf.types, test))


def quantity_test(t: Any, v: QuantityValue) -> Cond:
    direct = _range_test(
        v.prefix, t.c.low, t.c.high, v, half_open=True, is_date=False, value=t.c.value
    )
    if v.system is None and v.code is None:
        return direct
    if v.system is None:  # ||code: the code or the unit as written
        return and_(or_(t.c.code == v.code, t.c.unit == v.code), direct)
    if v.code is None:
        return and_(t.c.system == v.system, direct)
    same = and_(t.c.system == v.system, t.c.code == v.code, direct)
    if v.canon is None:
        return same
    clo, chi, cval, cunit = v.canon
    other = and_(
        t.c.canon_code == cunit,
        or_(t.c.code.is_(None), t.c.code != v.code),
        _point_test(v.prefix, t.c.canon_value, clo, chi, cval),
    )
    return or_(same, other)


def _quantity(leaf: Leaf, r: FromClause, ctx: SqlContext) -> Cond:
    def test(t: Any) -> Cond:
        return or_(*(quantity_test(t, v) for v in leaf.values))

    return r.c.pk.in_(_in_idx(idx_quantity, leaf.code, leaf.types, test))


def _uri_test(t: Any, v: UriValue, modifier: str | None, ctx: SqlContext) -> Cond:
    if modifier == "below":
        return starts_with(t.c.value, v.value, ctx)
    if modifier == "above":
        prefixes = {v.value}
        s = v.value.rstrip("/")
        while "/" in s and not s.endswith(":/") and not s.endswith(":"):
            s = s.rsplit("/", 1)[0]
            if s.endswith(":/") or s.endswith(":"):
                break
            prefixes.add(s)
        return t.c.value.in_(sorted(prefixes))
    return t.c.value == v.value


def _uri(leaf: Leaf, r: FromClause, ctx: SqlContext) -> Cond:
    def test(t: Any) -> Cond:
        return or_(*(_uri_test(t, v, leaf.modifier, ctx) for v in leaf.values))

    return r.c.pk.in_(_in_idx(idx_uri, leaf.code, leaf.types, test))


def _component(t: Any, n: int, ptype: str, v: Any, ctx: SqlContext) -> Cond:
    c = f"c{n}_"
    if ptype == "token":
        return token_test(t, v, False, c + "system", c + "code")
    if ptype == "string":
        return starts_with(t.c[c + "str"], v.norm, ctx)
    if ptype == "uri":
        return t.c[c + "str"] == v.value
    if ptype == "reference":
        if v.url is not None:
            return t.c[c + "str"] == v.url
        if v.type is not None:
            return t.c[c + "str"] == f"{v.type}/{v.id}"
        return t.c[c + "str"].endswith("/" + v.id)
    lo, hi = t.c[c + "low"], t.c[c + "high"]
    if ptype == "date":
        return _range_test(v.prefix, lo, hi, v, half_open=False, is_date=True)
    test = _range_test(v.prefix, lo, hi, v, half_open=True, is_date=False)
    if ptype == "quantity":
        if v.system is not None:
            test = and_(test, t.c[c + "system"] == v.system)
        if v.code is not None:
            test = and_(test, t.c[c + "code"] == v.code)
    return test


def _composite(leaf: Leaf, r: FromClause, ctx: SqlContext) -> Cond:
    def test(t: Any) -> Cond:
        alts = []
        for v in leaf.values:
            assert isinstance(v, CompositeValue)
            alts.append(
                and_(
                    *(
                        _component(t, n, pt, part, ctx)
                        for n, (pt, part) in enumerate(zip(v.types, v.parts, strict=True), 1)
                    )
                )
            )
        return or_(*alts)

    return r.c.pk.in_(_in_idx(idx_composite, leaf.code, leaf.types, test))


def _id(leaf: Leaf, r: FromClause, ctx: SqlContext) -> Cond:
    if leaf.modifier == "missing":
        return false() if leaf.values[0] else true()
    cond = r.c.rid.in_(list(leaf.values))
    return not_(cond) if leaf.modifier == "not" else cond


def _last_updated(leaf: Leaf, r: FromClause, ctx: SqlContext) -> Cond:
    if leaf.modifier == "missing":
        return false() if leaf.values[0] else true()
    col = r.c.last_updated
    return or_(
        *(_range_test(v.prefix, col, col, v, half_open=False, is_date=True) for v in leaf.values)
    )


def _list(leaf: Leaf, r: FromClause, ctx: SqlContext) -> Cond:
    ref, lst = idx_reference.alias(), resources.alias()
    ids = [v.id for v in leaf.values if isinstance(v, ListRef)]
    sub = (
        select(ref.c.target_type, ref.c.target_id)
        .join(lst, lst.c.pk == ref.c.pk)
        .where(
            lst.c.rtype == "List",
            lst.c.rid.in_(ids),
            lst.c.deleted == false(),
            ref.c.param == "item",
        )
    )
    return tuple_(r.c.rtype, r.c.rid).in_(sub)


BUILDERS: dict[str, Callable[[Leaf, FromClause, SqlContext], Cond]] = {
    "string": _string,
    "token": _token,
    "reference": _reference,
    "date": _date,
    "number": _number,
    "quantity": _quantity,
    "uri": _uri,
    "composite": _composite,
    "id": _id,
    "lastUpdated": _last_updated,
    "list": _list,
}

_MISSING_TABLES = {
    "string": idx_string,
    "token": idx_token,
    "reference": idx_reference,
    "date": idx_date,
    "number": idx_number,
    "quantity": idx_quantity,
    "uri": idx_uri,
    "composite": idx_composite,
}


# ------------------------------------------------------------------------------ criteria


def condition(crit: Criterion, r: FromClause, ctx: SqlContext) -> Cond:
    """The SQL condition on the resources alias ``r`` for one criterion."""
    if isinstance(crit, Leaf):
        if crit.modifier == "missing" and crit.ptype in _MISSING_TABLES:
            table = _MISSING_TABLES[crit.ptype]
            sub = _in_idx(table, crit.code, crit.types, None)
            return r.c.pk.not_in(sub) if crit.values[0] else r.c.pk.in_(sub)
        return BUILDERS[crit.ptype](crit, r, ctx)
    if isinstance(crit, Chain):
        return or_(*(_chain_branch(crit, target, inner, r, ctx) for target, inner in crit.branches))
    if isinstance(crit, Has):
        return _has(crit, r, ctx)
    raise TypeError(crit)  # pragma: no cover


def _lookup(cond: Cond, r: FromClause) -> Any:
    """The subquery of a plain index lookup ``r.pk IN (SELECT pk FROM idx_… WHERE …)``, else
    None (``:not``, ``_id``, ``_has``, a chain with several target types, ...)."""
    if (
        isinstance(cond, BinaryExpression)
        and cond.operator is operators.in_op
        and cond.left is r.c.pk
        and isinstance(cond.right, ScalarSelect)
    ):
        return cond.right.element
    return None


def index_pks(conds: Sequence[Cond], r: FromClause) -> Any:
    """``SELECT pk`` of the resources passing every condition of ``conds`` (built by
    :func:`condition` on ``r``), read from the index tables alone; None unless each condition is
    a plain lookup ``r.pk IN (SELECT pk FROM idx_… WHERE rtype … AND …)``.

    Index rows exist only for current, non-deleted resources (they are replaced on every write
    and removed on delete) and carry the resource type, so such lookups need nothing from
    ``resources``. Counting from them (``_total``) reads each criterion's index entries once
    instead of probing ``resources`` once per match: 3 ms instead of 20 ms for the 9,500
    ``family=王`` of 100,000 patients (``bench/RESULTS-search.md``). The rows of one resource
    may repeat: count distinct ``pk``."""
    subs = [_lookup(cond, r) for cond in conds]
    if not subs or any(sub is None for sub in subs):
        return None
    return subs[0] if len(subs) == 1 else intersect(*subs)


def same_param_intersections(
    conds: Sequence[Cond], criteria: Sequence[Criterion], r: FromClause
) -> list[Cond]:
    """``conds`` (one per criterion, built by :func:`condition` on ``r``) with the plain index
    lookups of a repeated parameter (``birthdate=ge1990&birthdate=lt1991``) merged into one
    ``r.pk IN (lookup INTERSECT lookup)``.

    Each bound alone usually selects a large part of the type (a third and two thirds of the
    patients); as separate ``IN`` conditions PostgreSQL estimates them independently (badly: the
    histogram of ``idx_date.low`` is mostly other types' dates) and probes one bound once per row
    of the other. Intersecting the two pk lists first reads each range once (index-only) and
    hashes them: the result is the same (a resource matches when each criterion matches some
    row of it), so only the plan changes. Other criteria stay separate: a selective one
    (``subject=``) is better probed than intersected."""
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, (cond, crit) in enumerate(zip(conds, criteria, strict=True)):
        if isinstance(crit, Leaf) and _lookup(cond, r) is not None:
            groups.setdefault((crit.code, crit.ptype, crit.types, crit.modifier), []).append(i)
    merged = {g[0]: g for g in groups.values() if len(g) > 1}
    if not merged:
        return list(conds)
    skip = {i for g in merged.values() for i in g[1:]}
    out: list[Cond] = []
    for i, cond in enumerate(conds):
        if i in skip:
            continue
        if i in merged:
            both = intersect(*(_lookup(conds[j], r) for j in merged[i])).subquery("both")
            cond = r.c.pk.in_(select(both.c.pk))
        out.append(cond)
    return out


def pk_bounded(conds: Sequence[Cond], r: FromClause, pk: int, forward: bool) -> list[Cond]:
    """``conds`` with every plain index lookup limited to ``pk``s after ``pk`` (``forward``) or
    before it. A keyset page in ``pk`` order then reads each criterion's rows from the cursor on,
    as the page itself does: PostgreSQL does not carry a range on ``r.pk`` over into an ``IN``
    subquery, and a merge join would otherwise walk every row before the cursor (page 50 as
    slow as OFFSET 2450)."""
    out: list[Cond] = []
    for cond in conds:
        sub = _lookup(cond, r)
        if sub is None:
            out.append(cond)
            continue
        col = sub.selected_columns[0]
        out.append(r.c.pk.in_(sub.where(col > pk if forward else col < pk)))
    return out


def _chain_branch(
    crit: Chain, target: str, inner: Criterion, r: FromClause, ctx: SqlContext
) -> Cond:
    ref, t = idx_reference.alias(), resources.alias()
    sub = (
        select(ref.c.pk)
        .join(t, and_(t.c.rtype == ref.c.target_type, t.c.rid == ref.c.target_id))
        .where(
            ref.c.param == crit.code,
            *_types_filter(ref.c.rtype, crit.types),
            ref.c.target_type == target,
            t.c.deleted == false(),
            condition(inner, t, ctx),
            *([ctx.restrict(t, ctx)] if ctx.restrict is not None else []),
        )
    )
    return r.c.pk.in_(sub)


def _has(crit: Has, r: FromClause, ctx: SqlContext) -> Cond:
    """``_has``: driven from the (usually small) side of the sources. When the inner criterion
    is a plain index lookup and nothing restricts what the requester sees, the source pks come
    from the index table alone (index rows exist only for current resources, and
    ``ref.rtype`` names the source type), with no probe of ``resources`` per source."""
    ref, s = idx_reference.alias(), resources.alias()
    inner = condition(crit.inner, s, ctx)
    lookup = _lookup(inner, s) if ctx.restrict is None else None
    if lookup is not None:
        sources = lookup
    else:
        sources = select(s.c.pk).where(
            s.c.rtype == crit.source,
            s.c.deleted == false(),
            inner,
            *([ctx.restrict(s, ctx)] if ctx.restrict is not None else []),
        )
    where = [ref.c.rtype == crit.source, ref.c.param == crit.code, ref.c.pk.in_(sources)]
    if crit.types is not None and len(crit.types) == 1:
        where.append(ref.c.target_type == crit.types[0])
        return r.c.rid.in_(select(ref.c.target_id).where(*where))
    return tuple_(r.c.rtype, r.c.rid).in_(select(ref.c.target_type, ref.c.target_id).where(*where))


def compartment_condition(
    r: FromClause, compartment: tuple[str, PatientIds], types: tuple[str, ...] | None
) -> Cond:
    """``r`` is in the compartment: the compartment resource itself, or a resource whose
    compartment parameters (CompartmentDefinition) refer to it.

    The id may also be several ids (a list or tuple) or a subquery selecting ids (e.g. the
    patients a clinician treats): ``r`` is then in the compartment of any of them."""
    ctype, cid = compartment
    if ctype != "Patient":
        raise BadRequest(f"Only the Patient compartment is supported, not {ctype}", "not-supported")
    defs = patient_compartment()
    pairs = sorted((t, p) for t in (types if types is not None else defs) for p in defs.get(t, ()))
    if isinstance(cid, list | tuple | set | frozenset):
        ids: Any = sorted(cid)
        if not ids:
            return false()

        def is_id(col: Any) -> Cond:
            return col.in_(ids)
    elif isinstance(cid, str):

        def is_id(col: Any) -> Cond:
            return col == cid  # type: ignore[no-any-return]
    else:  # a subquery of ids

        def is_id(col: Any) -> Cond:
            return col.in_(cid)  # type: ignore[no-any-return]

    conds: list[Cond] = []
    if pairs:
        ref = idx_reference.alias()
        sub = select(ref.c.pk).where(
            is_id(ref.c.target_id),
            ref.c.target_type == ctype,
            tuple_(ref.c.rtype, ref.c.param).in_(pairs),
        )
        conds.append(r.c.pk.in_(sub))
    if types is None or ctype in types:
        conds.append(and_(r.c.rtype == ctype, is_id(r.c.rid)))
    return or_(*conds) if conds else false()
