"""ValueSet expansion for the token modifiers ``:in`` / ``:not-in``:
http://hl7.org/fhir/R4/search.html#modifiers and http://hl7.org/fhir/R4/valueset.html#expansion

Only ValueSet and CodeSystem resources held in this store are used (no terminology server).
A ValueSet is found by ``ValueSet/id`` or by canonical ``url`` (``url|version``). Its codes are
its ``expansion.contains`` when it has one, else its ``compose``: ``include`` with a ``concept``
list, a whole CodeSystem we hold (all its concepts, nested ones too), the filters ``is-a``,
``descendent-of``, ``is-not-a`` and ``=`` on ``concept``, other value sets (``valueSet``,
intersected), minus ``exclude``. Anything else is a 400 that says what could not be expanded.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
from sqlalchemy import false, select
from sqlalchemy.engine import Connection

from ehr.errors import BadRequest
from ehr.search.tables import idx_token, idx_uri
from ehr.storage.tables import resources

__all__ = ["MAX_CODES", "expand_valueset"]

#: the most codes one ``:in`` may expand to
MAX_CODES = 10_000
_MAX_NESTING = 8

Code = tuple[str | None, str]


def _by_url(conn: Connection, rtype: str, canonical: str) -> dict[str, Any] | None:
    url, _, version = canonical.partition("|")
    u = idx_uri.alias()
    stmt = (
        select(resources.c.data)
        .join(u, u.c.pk == resources.c.pk)
        .where(
            u.c.rtype == rtype, u.c.param == "url", u.c.value == url, resources.c.deleted == false()
        )
        .order_by(resources.c.pk.desc())
    )
    if version:
        v = idx_token.alias()
        stmt = stmt.where(
            resources.c.pk.in_(
                select(v.c.pk).where(
                    v.c.rtype == rtype, v.c.param == "version", v.c.code == version
                )
            )
        )
    data = conn.execute(stmt.limit(1)).scalar()
    return orjson.loads(data) if data else None


def _by_id(conn: Connection, rtype: str, rid: str) -> dict[str, Any] | None:
    data = conn.execute(
        select(resources.c.data).where(
            resources.c.rtype == rtype, resources.c.rid == rid, resources.c.deleted == false()
        )
    ).scalar()
    return orjson.loads(data) if data else None


def _concepts(
    concepts: Any, parent_path: tuple[str, ...] = ()
) -> Iterator[tuple[str, tuple[str, ...]]]:
    """(code, ancestors) of every concept of a CodeSystem, nested ones included."""
    for c in concepts or ():
        if isinstance(c, dict) and isinstance(c.get("code"), str):
            yield c["code"], parent_path
            yield from _concepts(c.get("concept"), (*parent_path, c["code"]))


class _Expander:
    def __init__(self, conn: Connection, limit: int) -> None:
        self.conn = conn
        self.limit = limit

    def check(self, codes: set[Code], what: str) -> set[Code]:
        if len(codes) > self.limit:
            raise BadRequest(f"{what} expands to more than {self.limit} codes", "too-costly")
        return codes

    def valueset(self, ref: str, depth: int) -> set[Code]:
        if depth > _MAX_NESTING:
            raise BadRequest(f"ValueSet {ref} nests value sets too deeply", "too-costly")
        if ref.startswith("ValueSet/"):
            vs = _by_id(self.conn, "ValueSet", ref.split("/", 1)[1])
        else:
            vs = _by_url(self.conn, "ValueSet", ref)
        if vs is None:
            raise BadRequest(
                f"Unknown ValueSet '{ref}' (':in' uses ValueSets stored on this server)",
                "not-found",
            )
        contains = (vs.get("expansion") or {}).get("contains")
        if contains:
            return self.check(set(self._contains(contains)), f"ValueSet {ref}")
        compose = vs.get("compose") or {}
        codes: set[Code] = set()
        for inc in compose.get("include") or ():
            codes |= self.include(inc, ref, depth)
            self.check(codes, f"ValueSet {ref}")
        for exc in compose.get("exclude") or ():
            codes -= self.include(exc, ref, depth)
        return codes

    def _contains(self, items: Any) -> Iterator[Code]:
        for c in items or ():
            if isinstance(c, dict):
                if isinstance(c.get("code"), str):
                    yield c.get("system"), c["code"]
                yield from self._contains(c.get("contains"))

    def include(self, inc: dict[str, Any], ref: str, depth: int) -> set[Code]:
        system = inc.get("system")
        parts: list[set[Code]] = []
        if system:
            if inc.get("concept"):
                parts.append(
                    {
                        (system, c["code"])
                        for c in inc["concept"]
                        if isinstance(c, dict) and c.get("code")
                    }
                )
            else:
                parts.append(
                    self.codesystem(system, inc.get("version"), inc.get("filter") or [], ref)
                )
        for other in inc.get("valueSet") or ():
            parts.append(self.valueset(other, depth + 1))
        if not parts:
            return set()
        result = parts[0]
        for p in parts[1:]:
            result = result & p
        return result

    def codesystem(
        self, system: str, version: str | None, filters: list[Any], ref: str
    ) -> set[Code]:
        cs = _by_url(self.conn, "CodeSystem", f"{system}|{version}" if version else system)
        if cs is None:
            raise BadRequest(
                f"Cannot expand ValueSet {ref}: CodeSystem {system} is not stored on this server",
                "not-supported",
            )
        all_codes = list(_concepts(cs.get("concept")))
        selected = {code for code, _ in all_codes}
        for f in filters:
            prop, op, value = f.get("property"), f.get("op"), f.get("value")
            if prop != "concept" or op not in ("is-a", "descendent-of", "is-not-a", "="):
                raise BadRequest(
                    f"Cannot expand ValueSet {ref}: filter {prop} {op} is not supported",
                    "not-supported",
                )
            if op == "=":
                keep = {value}
            else:
                below = {code for code, anc in all_codes if value in anc}
                keep = below | {value} if op in ("is-a", "is-not-a") else below
                if op == "is-not-a":
                    keep = {code for code, _ in all_codes} - keep
            selected &= keep
        return self.check({(system, c) for c in selected}, f"CodeSystem {system}")


def expand_valueset(conn: Connection, ref: str, *, limit: int = MAX_CODES) -> list[Code]:
    """The (system, code) pairs of the ValueSet ``ref`` (``ValueSet/id`` or ``url[|version]``)."""
    return sorted(_Expander(conn, limit).valueset(ref, 0), key=lambda c: (c[0] or "", c[1]))
