"""``_include`` and ``_revinclude``: http://hl7.org/fhir/R4/search.html#include

``_include=Source:param[:Target]`` adds the resources that the page's ``Source`` resources refer
to through ``param``; ``_revinclude=Source:param[:Target]`` adds the ``Source`` resources that
refer to the page's resources through ``param``. ``*`` (``_include=*``, ``Source:*``) means every
reference parameter. ``:iterate`` (R3 ``:recurse``) applies the include again to what was
included, round after round, until nothing new comes in.

Bounded: at most ``limit`` included resources per page and :data:`MAX_ROUNDS` rounds; when the
bound cuts the list short the caller adds a warning to the Bundle. Only current, non-deleted
resources are included, each once, and never a resource that is already a match. With a
compartment, included resources must be in it too; with a restriction (authorization), they
must pass it too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import FromClause, Select, and_, false, select
from sqlalchemy.engine import Connection

from ehr.search.params import Include
from ehr.search.sql import PatientIds, compartment_condition
from ehr.search.tables import idx_reference
from ehr.storage.tables import resources

__all__ = ["MAX_ROUNDS", "Hit", "hit_columns", "resolve_includes"]

MAX_ROUNDS = 8


@dataclass(frozen=True)
class Hit:
    """One resource in a search result: the stored bytes are served as they are."""

    pk: int
    rtype: str
    rid: str
    version: int
    last_updated: int
    data: bytes


def hit_columns(r: FromClause) -> list[Any]:
    return [r.c.pk, r.c.rtype, r.c.rid, r.c.version, r.c.last_updated, r.c.data]


def _query(
    inc: Include,
    frontier: list[int],
    limit: int,
    compartment: tuple[str, PatientIds] | None,
    restrict: Callable[[FromClause], Any] | None = None,
) -> Select[Any]:
    ref, other, out = idx_reference.alias(), resources.alias(), resources.alias()
    where = []
    if inc.source is not None:
        where.append(ref.c.rtype == inc.source)
    if inc.param is not None:
        where.append(ref.c.param == inc.param)
    join = and_(other.c.rtype == ref.c.target_type, other.c.rid == ref.c.target_id)
    if inc.reverse:  # ``other`` are the page's resources, the source rows are the result
        where.append(other.c.pk.in_(frontier))
        if inc.target is not None:
            where.append(other.c.rtype == inc.target)
        sub = select(ref.c.pk).join(other, join).where(*where)
    else:  # the references of the page's resources, ``other`` are the result
        where.append(ref.c.pk.in_(frontier))
        if inc.target is not None:
            where.append(ref.c.target_type == inc.target)
        sub = select(other.c.pk).join(other, join).where(*where)
    conds = [out.c.pk.in_(sub), out.c.deleted == false()]
    if compartment is not None:
        conds.append(compartment_condition(out, compartment, None))
    if restrict is not None:
        conds.append(restrict(out))
    return select(*hit_columns(out)).where(*conds).order_by(out.c.pk).limit(limit)


def resolve_includes(
    conn: Connection,
    includes: Sequence[Include],
    matches: Sequence[Hit],
    *,
    limit: int,
    compartment: tuple[str, PatientIds] | None = None,
    restrict: Callable[[FromClause], Any] | None = None,
) -> tuple[list[Hit], bool]:
    """The included resources of a page and whether ``limit`` cut them short; ``restrict``
    is an extra condition on the included resources (authorization)."""
    if not includes or not matches:
        return [], False
    seen = {h.pk for h in matches}
    out: list[Hit] = []
    frontier = [h.pk for h in matches]
    active = list(includes)
    for _round in range(MAX_ROUNDS):
        new: list[Hit] = []
        for inc in active:
            room = limit - len(out) - len(new)
            if room <= 0:
                return out + new, True
            rows = conn.execute(_query(inc, frontier, room + 1, compartment, restrict)).all()
            for row in rows:
                if row.pk not in seen:
                    seen.add(row.pk)
                    new.append(Hit(*row))
            if len(out) + len(new) > limit:
                return (out + new)[:limit], True
        out += new
        active = [i for i in active if i.iterate]
        if not new or not active:
            return out, False
        frontier = [h.pk for h in new]
    return out, True
