"""The query side of FHIR search: http://hl7.org/fhir/R4/search.html

:class:`SearchEngine` runs a search in four steps:

1. :func:`ehr.search.params.parse_request` turns the query into a :class:`SearchRequest`
   (typed values; unknown parameters 400 in strict mode, dropped with a warning otherwise);
2. :mod:`ehr.search.sql` turns each criterion into an ``IN``/``EXISTS``-style condition on the
   index tables, and :mod:`ehr.search.paging` adds the sort keys and the keyset position;
3. the page's resources are read by primary key, then ``_include``/``_revinclude``
   (:mod:`ehr.search.include`);
4. the result is a :class:`SearchPage`, which :func:`ehr.search.bundle.searchset_bundle` renders.

``_total`` (http://hl7.org/fhir/R4/search.html#total), decided here: ``none`` gives no total;
``accurate`` always counts; by default (and for ``estimate``) the total is given when it is
cheap: free when page 1 holds the whole result, else a count that stops at :attr:`total_cap`
(10,000 by default) rows, and no total when there are more. The total of page 1 travels in
the cursor, so later pages repeat it without counting again. ``_count=0`` and
``_summary=count`` return only the total (counted accurately unless ``_total=none``).

Conditional interactions use :meth:`SearchEngine.match`, which is always strict and accepts no
result parameters: a condition must mean exactly what it says.

Authorization (``restrict``): a :data:`~ehr.search.sql.Restrict` is an extra condition on the
resources a requester may see. It is ANDed to the matches, to the count, to every included
resource and to the resources a chain or ``_has`` tests, so a search can never reveal what it
hides. It is given per call, or set for the duration of a request in :data:`ambient_restriction`
(which :meth:`SearchEngine.match` also honours, so conditional interactions only see what the
requester may see).
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from functools import cache
from typing import Any

from sqlalchemy import false, func, select
from sqlalchemy.engine import Connection

from ehr.definitions import SearchParamRegistry
from ehr.errors import BadRequest, Issue
from ehr.search.dates import now_us
from ehr.search.include import Hit, hit_columns, resolve_includes
from ehr.search.paging import Cursor, keyset_condition, order_by, sort_expression
from ehr.search.params import (
    PASS_THROUGH,
    RESULT_PARAMS,
    SearchRequest,
    parse_criteria,
    parse_request,
)
from ehr.search.sql import (
    Cond,
    PatientIds,
    Restrict,
    SqlContext,
    compartment_condition,
    condition,
    index_pks,
    pk_bounded,
    same_param_intersections,
)
from ehr.search.valueset import expand_valueset
from ehr.storage.tables import resources

__all__ = ["Hit", "SearchEngine", "SearchPage", "ambient_restriction"]

Params = list[tuple[str, str]]

#: the restriction of the current request (set by the authorization layer), used by every
#: search and conditional match that is not given one explicitly
ambient_restriction: ContextVar[Restrict | None] = ContextVar("ambient_restriction", default=None)


@dataclass
class SearchPage:
    """One page of a search result, ready for :func:`ehr.search.bundle.searchset_bundle`."""

    rtype: str | None
    matches: list[Hit]
    includes: list[Hit]
    total: int | None
    #: the parameters applied (ignored ones left out) for the ``self`` link
    self_params: Params
    next_params: Params | None = None
    previous_params: Params | None = None
    summary: str | None = None
    elements: tuple[str, ...] | None = None
    #: warnings (ignored parameters, includes cut short) for an ``outcome`` entry
    issues: list[Issue] = field(default_factory=list)


class SearchEngine:
    """FHIR search over the index tables, the same on SQLite and PostgreSQL."""

    def __init__(
        self,
        registry: SearchParamRegistry,
        *,
        default_count: int = 50,
        max_count: int = 1000,
        max_or_values: int = 100,
        max_includes: int | None = None,
        total_cap: int = 10_000,
        base_url: str | None = None,
    ) -> None:
        self.registry = registry
        self.default_count = default_count
        self.max_count = max_count
        self.max_or_values = max_or_values
        self.max_includes = max_includes if max_includes is not None else max_count
        self.total_cap = total_cap
        self.base_url = base_url

    # -- helpers -------------------------------------------------------------------------------
    def _ctx(
        self, conn: Connection, base: str | None, restrict: Restrict | None = None
    ) -> SqlContext:
        @cache
        def expand(url: str) -> list[tuple[str | None, str]]:
            return expand_valueset(conn, url)

        return SqlContext(conn.dialect.name, base or self.base_url, expand, restrict)

    @staticmethod
    def _type_condition(r: object, types: tuple[str, ...] | None) -> list[Cond]:
        col = r.c.rtype  # type: ignore[attr-defined]
        if types is None:
            return []
        if len(types) == 1:
            return [col == types[0]]
        return [col.in_(types)]

    # -- conditional interactions --------------------------------------------------------------
    def match(self, conn: Connection, rtype: str, params: Params, *, limit: int) -> list[int]:
        """pks of the current, non-deleted ``rtype`` resources matching a condition (at most
        ``limit``). Unknown parameters, result parameters and empty values are a 400."""
        crit_params: Params = []
        for name, value in params:
            base = name.split(":", 1)[0]
            if base in PASS_THROUGH:
                continue
            if base in RESULT_PARAMS:
                raise BadRequest(f"'{name}' is not allowed in a conditional request", "invalid")
            if value == "":
                raise BadRequest(
                    f"Search parameter '{name}' has no value", "invalid", expression=(name,)
                )
            crit_params.append((name, value))
        if not crit_params:
            raise BadRequest("A conditional interaction needs search parameters", "invalid")
        criteria, _, _ = parse_criteria(
            self.registry, (rtype,), crit_params, strict=True, max_or_values=self.max_or_values
        )
        r = resources.alias("r")
        restrict = ambient_restriction.get()
        ctx = self._ctx(conn, None, restrict)
        stmt = (
            select(r.c.pk)
            .where(
                r.c.rtype == rtype,
                r.c.deleted == false(),
                *(condition(c, r, ctx) for c in criteria),
                *([restrict(r, replace(ctx, restrict=None))] if restrict is not None else []),
            )
            .order_by(r.c.pk)
            .limit(limit)
        )
        return [int(pk) for pk in conn.execute(stmt).scalars()]

    # -- search --------------------------------------------------------------------------------
    def search(
        self,
        conn: Connection,
        rtype: str | None,
        params: Params,
        *,
        strict: bool = False,
        compartment: tuple[str, PatientIds] | None = None,
        base: str | None = None,
        restrict: Restrict | None = None,
    ) -> SearchPage:
        """One page of the search ``params`` on ``rtype`` (None: every type, ``_type``
        restricts), inside ``compartment`` (``("Patient", id)``; the id may be a list of ids or
        a subquery of ids) when given, limited to what ``restrict`` (default: the
        :data:`ambient_restriction`) lets through."""
        if restrict is None:
            restrict = ambient_restriction.get()
        req = parse_request(
            self.registry,
            rtype,
            params,
            strict=strict,
            default_count=self.default_count,
            max_count=self.max_count,
            max_or_values=self.max_or_values,
        )
        r = resources.alias("r")
        ctx = self._ctx(conn, base, restrict)
        conds: list[Cond] = [r.c.deleted == false(), *self._type_condition(r, req.types)]
        cursor = Cursor.decode(req.cursor, len(req.sort)) if req.cursor else None
        crit_conds = [condition(c, r, ctx) for c in req.criteria]
        if cursor is not None and not req.sort:  # pk order: every lookup starts at the cursor
            crit_conds = pk_bounded(crit_conds, r, cursor.pk, cursor.forward)
        conds += same_param_intersections(crit_conds, req.criteria, r)
        if compartment is not None:
            conds.append(compartment_condition(r, compartment, req.types))
        if restrict is not None:
            conds.append(restrict(r, replace(ctx, restrict=None)))
        if req.types == ():
            conds.append(false())

        if cursor is None:
            at = now_us()
            max_pk = conn.execute(select(func.max(resources.c.pk))).scalar() or 0
        else:
            at, max_pk = cursor.at, cursor.max_pk
        conds.append(r.c.pk <= max_pk)
        # counts read the index tables alone when every criterion is a plain index lookup
        pks = (
            index_pks(crit_conds, r)
            if compartment is None and restrict is None and req.types
            else None
        )

        page = SearchPage(
            rtype, [], [], None, self._links(req, req.cursor), summary=req.summary, elements=req.elements,
            issues=list(req.issues),
        )  # fmt: skip
        count = 0 if req.summary == "count" else req.count
        if count == 0:
            mode = req.total or "accurate"
            page.total = cursor.total if cursor else self._count(conn, r, conds, mode, pks, max_pk)
            return page

        keys = [sort_expression(k, r, at) for k in req.sort]
        inner = select(r.c.pk.label("pk"), *(k.label(f"k{i}") for i, k in enumerate(keys))).where(
            *conds
        )
        m = inner.subquery("m")
        cols = [m.c[f"k{i}"] for i in range(len(keys))]
        forward = cursor.forward if cursor else True
        stmt = select(m.c.pk, *cols)
        if cursor is not None:
            stmt = stmt.where(keyset_condition(cols, req.sort, m.c.pk, cursor))
        stmt = stmt.order_by(*order_by(cols, req.sort, m.c.pk, forward)).limit(count + 1)
        rows = list(conn.execute(stmt).all())
        more = len(rows) > count
        rows = rows[:count]
        if not forward:
            rows.reverse()

        page.matches = self._hits(conn, [row[0] for row in rows])
        if cursor is not None:
            page.total = cursor.total
        elif req.total != "none":
            page.total = (
                len(rows)
                if not more
                else self._count(conn, r, conds, req.total or "estimate", pks, max_pk)
            )

        def position(row: object, fwd: bool) -> Params:
            c = Cursor(fwd, tuple(row[1:]), int(row[0]), max_pk, at, page.total)  # type: ignore[index]
            return self._links(req, c.encode())

        if rows:
            if (more and forward) or (cursor is not None and not forward):
                page.next_params = position(rows[-1], True)
            if (more and not forward) or (cursor is not None and forward):
                page.previous_params = position(rows[0], False)

        if req.includes:
            page.includes, cut = resolve_includes(
                conn,
                req.includes,
                page.matches,
                limit=self.max_includes,
                compartment=compartment,
                restrict=(lambda o: restrict(o, replace(ctx, restrict=None)))
                if restrict is not None
                else None,
            )
            if cut:
                page.issues.append(
                    Issue(
                        "too-costly",
                        f"Included resources were limited to {self.max_includes}",
                        "warning",
                    )
                )
        return page

    # -- pieces --------------------------------------------------------------------------------
    @staticmethod
    def _links(req: SearchRequest, cursor: str | None) -> Params:
        return [*req.applied, *([("_cursor", cursor)] if cursor else [])]

    def _count(
        self,
        conn: Connection,
        r: object,
        conds: list[Cond],
        mode: str,
        pks: Any = None,
        max_pk: int = 0,
    ) -> int | None:
        """The number of matches (``mode`` accurate), or up to :attr:`total_cap` of them (None
        past it); from ``pks`` (:func:`ehr.search.sql.index_pks`) when given."""
        if mode == "none":
            return None
        if pks is not None:
            s = pks.subquery("s")
            sub = select(s.c.pk).where(s.c.pk <= max_pk).distinct()
        else:
            sub = select(r.c.pk).where(*conds)  # type: ignore[attr-defined]
        if mode != "accurate":
            sub = sub.limit(self.total_cap + 1)
        n = int(conn.execute(select(func.count()).select_from(sub.subquery())).scalar_one())
        return None if mode != "accurate" and n > self.total_cap else n

    @staticmethod
    def _hits(conn: Connection, pks: list[int]) -> list[Hit]:
        if not pks:
            return []
        rows = conn.execute(
            select(*hit_columns(resources)).where(
                resources.c.pk.in_(pks), resources.c.deleted == false()
            )
        ).all()
        by_pk = {row.pk: Hit(*row) for row in rows}
        return [by_pk[pk] for pk in pks if pk in by_pk]
