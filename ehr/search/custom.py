"""Custom search parameters: SearchParameter resources that clients write take effect.

http://hl7.org/fhir/R4/searchparameter.html and http://hl7.org/fhir/R4/search.html#custom

:class:`CustomSearchParameters` is a :class:`~ehr.store.WriteHook` that every :class:`~ehr.Store`
installs (``Store(custom_search_parameters=False)`` turns it off). A SearchParameter whose
``status`` is ``active`` is a custom parameter: its ``code`` becomes searchable on each ``base``
type and new writes of those types are indexed with its ``expression``. ``retired``, ``draft``,
``unknown`` or a delete take it out again.

Rules (decided here):

* Checked on write, before anything is stored (422 ``Unprocessable``): ``base`` names resource
  types (or ``Resource`` / ``DomainResource`` for all); ``type`` is one this server indexes
  (``special`` is not); ``code`` is a plain name (letters, digits, ``-``, ``_``; not starting
  with ``_``; at most 64 characters); ``expression`` is present, is FHIRPath that parses, names
  elements that exist on the base type(s), and (when its result type is known) selects values
  a parameter of that type can index; a composite's components resolve to known parameters.
  Only ``active`` parameters are checked: a draft may be incomplete.
* Conflicts (409): a code that is a **standard** parameter of one of its base types is refused,
  not overridden (the index rows of the standard parameter would mix with the custom one's and
  every client relying on the standard meaning would silently get other results; pick another
  code). Two active SearchParameters with the same ``url``, or with the same ``code`` on an
  overlapping base, are refused too.
* Index rows of a custom parameter always come from its current definition: when one becomes
  active, changes its code/type/base/expression/target/components, or stops being active, its
  rows are deleted in the same transaction. **Existing resources are not re-indexed**: run
  ``ehr reindex`` (or the ``$reindex`` operation, :mod:`ehr.search.reindex`) so they are found.
* The registry of the store changes only **after commit** (``WriteContext.after_commit``); a
  transaction Bundle that creates a SearchParameter and resources indexes those resources
  without it.

Several processes (``ehr serve --workers N``): each store loads every active SearchParameter
from the database on its first search or write, and before later ones checks, at most once per
:attr:`CustomSearchParameters.refresh_interval` (1 s), a fingerprint of the SearchParameter rows
(``count(*)`` and ``sum(version)``, which change with every create, update and delete whatever
the clocks say) and reloads them when it changed. So another worker serves a new parameter
within about a second; a reindex started right after a change first waits out that second, so
no worker still indexing with the old definition writes behind it.

The store's registry is private to the store (a copy of the standard one is made when a store
uses the process-wide default), so stores on different databases never see each other's
parameters.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, false, func, select
from sqlalchemy.engine import Connection

from ehr.definitions import (
    SearchParamDef,
    SearchParamRegistry,
    resource_types,
    search_parameters,
)
from ehr.errors import Conflict, Issue, Unprocessable
from ehr.model import loads
from ehr.search.fhirpath import compile_path
from ehr.search.indexers import INDEXERS
from ehr.search.tables import INDEX_TABLES
from ehr.storage.tables import resources

if TYPE_CHECKING:
    from ehr.store import PendingWrite, Store, WriteContext

__all__ = [
    "SUPPORTED_TYPES",
    "CustomSearchParameters",
    "check_definition",
    "private_registry",
    "syntax_error",
]

log = logging.getLogger(__name__)

#: parameter types a custom SearchParameter may have
SUPPORTED_TYPES = frozenset(INDEXERS)
_ABSTRACT = ("Resource", "DomainResource")
_CODE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
_SP = "SearchParameter"


# ------------------------------------------------------------------------------ checks


def syntax_error(expression: str) -> str | None:
    """Why ``expression`` is not FHIRPath (the FHIRPath N1 grammar), or None when it parses."""
    from antlr4 import CommonTokenStream, InputStream, Token
    from antlr4.error.ErrorListener import ErrorListener
    from fhirpathpy.parser.generated.FHIRPathLexer import FHIRPathLexer
    from fhirpathpy.parser.generated.FHIRPathParser import FHIRPathParser

    class _Raise(ErrorListener):  # type: ignore[misc]
        def syntaxError(  # noqa: N802 (antlr's name)
            self, _r: Any, _sym: Any, _line: int, column: int, msg: str, _e: Any
        ) -> None:
            raise ValueError(f"at character {column + 1}: {msg}")

    lexer = FHIRPathLexer(InputStream(expression))
    lexer.removeErrorListeners()
    lexer.addErrorListener(_Raise())
    stream = CommonTokenStream(lexer)
    parser = FHIRPathParser(stream)
    parser.removeErrorListeners()
    parser.addErrorListener(_Raise())
    try:
        parser.entireExpression()
        if stream.LA(1) != Token.EOF:  # pragma: no cover - entireExpression ends with EOF
            return "unexpected text at the end"
    except ValueError as exc:
        return str(exc)
    except Exception as exc:  # antlr recognition errors
        return str(exc) or type(exc).__name__
    return None


def _bases(d: SearchParamDef) -> tuple[str, ...]:
    """The concrete resource types a definition applies to."""
    if any(b in _ABSTRACT for b in d.base):
        return tuple(sorted(resource_types()))
    return tuple(d.base)


def _standard_on(registry: SearchParamRegistry, code: str, types: Iterable[str]) -> list[str]:
    """The types among ``types`` on which ``code`` is a standard (non-custom) parameter."""
    out = []
    for t in types:
        sp = registry.get(t, code)
        if sp is not None and not sp.custom:
            out.append(t)
    return out


def _expression_issues(d: SearchParamDef, expression: str, where: str) -> list[str]:
    problems: list[str] = []
    err = syntax_error(expression)
    if err is not None:
        return [f"{where} is not valid FHIRPath ({err}): {expression!r}"]
    abstract = any(b in _ABSTRACT for b in d.base)
    selects: dict[str, frozenset[str] | None] = {}  # type -> result types (None: not known)
    unknown: dict[str, str] = {}
    for t in _bases(d):
        try:
            compiled = compile_path(expression, t)
            if compiled.compiled:
                compiled({"resourceType": t})
            else:
                compiled({"resourceType": t, "id": "x"})  # must run on a minimal resource
        except Exception as exc:
            problems.append(f"{where} cannot be evaluated on {t}: {exc}")
            continue
        if compiled.compiled:
            selects[t] = compiled.types
        elif compiled.reason.startswith("no element"):
            unknown[t] = compiled.reason
        else:
            selects[t] = None
    if problems:
        return problems
    if abstract:
        if not any(v is None or v for v in selects.values()):
            problems.append(f"{where} selects nothing on any resource type: {expression!r}")
    else:
        for t in _bases(d):
            if t in unknown:
                problems.append(f"{where} names an element that {t} does not have ({unknown[t]})")
            elif selects.get(t) == frozenset():
                problems.append(f"{where} can select nothing on base {t}: {expression!r}")
    if problems or d.type == "composite" or where != "expression":
        return problems
    accepts = INDEXERS[d.type].accepts
    known = [v for v in selects.values() if v]
    if known and not any(v & accepts for v in known):
        got = ", ".join(sorted(set().union(*known)))
        problems.append(
            f"expression selects {got}, which a {d.type} parameter cannot index "
            f"(it indexes {', '.join(sorted(accepts))})"
        )
    return problems


def check_definition(resource: dict[str, Any], registry: SearchParamRegistry) -> SearchParamDef:
    """The custom parameter an active SearchParameter defines; 422 when it cannot be used."""
    issues: list[Issue] = []

    def bad(message: str, element: str) -> None:
        issues.append(Issue("invalid", message, "error", (f"SearchParameter.{element}",)))

    url, code, ptype = resource.get("url"), resource.get("code"), resource.get("type")
    base = resource.get("base")
    if not isinstance(url, str) or not url:
        bad("A SearchParameter needs a url (its identity on this server)", "url")
    if not isinstance(code, str) or not _CODE_RE.match(code):
        bad(
            f"code {code!r} is not usable as a search parameter name: use letters, digits, '-' "
            "and '_', starting with a letter, at most 64 characters",
            "code",
        )
    if ptype not in SUPPORTED_TYPES:
        bad(
            f"type {ptype!r} is not supported for custom search parameters "
            f"(supported: {', '.join(sorted(SUPPORTED_TYPES))})",
            "type",
        )
    if not isinstance(base, list) or not base:
        bad("base must name at least one resource type", "base")
    else:
        for b in base:
            if b not in resource_types() and b not in _ABSTRACT:
                bad(f"base {b!r} is not an R4 resource type", "base")
    for t in resource.get("target") or ():
        if t not in resource_types() and t not in _ABSTRACT:
            bad(f"target {t!r} is not an R4 resource type", "target")
    expression = resource.get("expression")
    if not isinstance(expression, str) or not expression.strip():
        bad(
            "expression is required: this server indexes custom parameters by their FHIRPath "
            "expression (xpath is not used)",
            "expression",
        )
    if issues:
        raise Unprocessable(issues[0].diagnostics, issues=issues)
    try:
        d = SearchParamDef.from_json(resource, custom=True)
    except (KeyError, TypeError, ValueError) as exc:
        raise Unprocessable(f"SearchParameter cannot be read: {exc}", "structure") from exc
    for msg in _expression_issues(d, str(expression), "expression"):
        bad(msg, "expression")
    if d.type == "composite":
        if not d.component:
            bad("a composite parameter needs components", "component")
        if len(d.component) > 3:
            bad("at most 3 components are supported", "component")
        for i, (defn, expr) in enumerate(d.component):
            if registry.by_url(defn) is None:
                bad(f"component {i + 1}: unknown search parameter {defn!r}", "component.definition")
            err = syntax_error(expr)
            if err is not None:
                bad(
                    f"component {i + 1}: expression is not valid FHIRPath ({err})",
                    "component.expression",
                )
    if issues:
        raise Unprocessable(issues[0].diagnostics, issues=issues)
    return d


def _index_key(d: SearchParamDef) -> tuple[Any, ...]:
    """What the index rows of a parameter depend on."""
    return (d.code, d.type, d.base, d.expression, d.target, d.component)


# ------------------------------------------------------------------------------ registry


def private_registry(registry: SearchParamRegistry) -> SearchParamRegistry:
    """A copy of ``registry`` that can change without touching the original."""
    seen: dict[int, SearchParamDef] = {}
    for t in sorted(resource_types()):
        for sp in registry.for_type(t).values():
            seen.setdefault(id(sp), sp)
    out = SearchParamRegistry()
    for sp in seen.values():
        out.add(sp)
    return out


def drop_rows(conn: Connection, d: SearchParamDef) -> None:
    """Delete every index row of custom parameter ``d`` (its code on its base types)."""
    params = [d.code, f"{d.code}:identifier", f"{d.code}:of-type"]
    types = list(_bases(d))
    for table in INDEX_TABLES.values():
        conn.execute(delete(table).where(table.c.rtype.in_(types), table.c.param.in_(params)))


class CustomSearchParameters:
    """The write hook and registry synchronisation for custom SearchParameters of one store."""

    def __init__(self, store: Store, *, refresh_interval: float = 1.0) -> None:
        self.store = store
        self.refresh_interval = refresh_interval
        self._active: dict[str, SearchParamDef] = {}  # url -> the custom definition we added
        self._mark: tuple[int, int] | None = None
        self._checked = float("-inf")
        self._lock = threading.RLock()
        #: bumped whenever the custom parameters in effect change (caches key on it, e.g. the
        #: CapabilityStatement)
        self.generation = 0

    @classmethod
    def install(cls, store: Store, *, refresh_interval: float = 1.0) -> CustomSearchParameters:
        """Hook into ``store`` (once): a private registry, and the write hook."""
        for h in store.hooks:
            if isinstance(h, cls):
                return h
        if store.registry is search_parameters():
            store.registry = private_registry(store.registry)
        hook = cls(store, refresh_interval=refresh_interval)
        store.hooks.append(hook)
        return hook

    @property
    def registry(self) -> SearchParamRegistry:
        return self.store.registry

    def active(self) -> dict[str, SearchParamDef]:
        """url -> definition of the custom parameters in effect in this process."""
        return dict(self._active)

    # -- write hook ----------------------------------------------------------------------------
    def before_write(self, ctx: WriteContext, write: PendingWrite) -> None:
        if write.rtype != _SP:
            return
        old = self._effective(write.previous)
        new: SearchParamDef | None = None
        res = write.resource
        if res is not None and res.get("status") == "active":
            new = check_definition(res, self.registry)
            self._check_conflicts(ctx, write.rid, new)
        changed = (old is None) != (new is None) or (
            old is not None and new is not None and _index_key(old) != _index_key(new)
        )
        if changed:
            for d in (old, new):
                if d is not None:
                    drop_rows(ctx.conn, d)
        old_url = old.url if old is not None else None
        ctx.after_commit.append(lambda: self._apply(old_url, new))

    def _effective(self, resource: dict[str, Any] | None) -> SearchParamDef | None:
        """The custom parameter a stored SearchParameter version defined (None if it did not)."""
        if not resource or resource.get("status") != "active":
            return None
        try:
            d = SearchParamDef.from_json(resource, custom=True)
        except (KeyError, TypeError, ValueError):
            return None
        if d.type not in SUPPORTED_TYPES or not d.expression or not _CODE_RE.match(d.code):
            return None
        if _standard_on(self.registry, d.code, _bases(d)):
            return None  # never ours to drop
        return d

    def _check_conflicts(self, ctx: WriteContext, rid: str, d: SearchParamDef) -> None:
        std = _standard_on(self.registry, d.code, _bases(d))
        if std:
            where = ", ".join(std[:5]) + (" …" if len(std) > 5 else "")
            raise Conflict(
                f"'{d.code}' is a standard search parameter of {where}; a custom SearchParameter "
                "cannot redefine it (choose another code)",
                "business-rule",
                expression=("SearchParameter.code",),
            )
        ctx.lock_condition(_SP, [("code", d.code)])
        ctx.lock_condition(_SP, [("url", d.url)])
        for cur in ctx.match(_SP, [("url", d.url), ("status", "active")], limit=20):
            if cur.rid != rid:
                raise Conflict(
                    f"SearchParameter/{cur.rid} already defines the active parameter {d.url}",
                    "duplicate",
                    expression=("SearchParameter.url",),
                )
        mine = set(_bases(d))
        for cur in ctx.match(_SP, [("code", d.code), ("status", "active")], limit=200):
            if cur.rid == rid or cur.data is None:
                continue
            other = self._effective(loads(cur.data))
            if other is not None and mine & set(_bases(other)):
                raise Conflict(
                    f"SearchParameter/{cur.rid} already defines '{d.code}' on "
                    f"{', '.join(sorted(mine & set(_bases(other)))[:5])}",
                    "duplicate",
                    expression=("SearchParameter.code",),
                )

    # -- the registry --------------------------------------------------------------------------
    def _apply(self, old_url: str | None, new: SearchParamDef | None) -> None:
        with self._lock:
            if old_url is not None and old_url in self._active:
                self.registry.remove(old_url)
                del self._active[old_url]
            if new is not None:
                if new.url in self._active:
                    self.registry.remove(new.url)
                self.registry.add(new)
                self._active[new.url] = new
            self.generation += 1  # after the change: what is cached under it is current

    @staticmethod
    def fingerprint(conn: Connection) -> tuple[int, int]:
        """``(count, sum of versions)`` of the SearchParameter rows: changes with every write."""
        row = conn.execute(
            select(func.count(), func.coalesce(func.sum(resources.c.version), 0)).where(
                resources.c.rtype == _SP
            )
        ).one()
        return int(row[0]), int(row[1])

    def refresh(self, *, force: bool = False) -> bool:
        """Reload the custom parameters if the SearchParameter rows changed (checked at most
        once per :attr:`refresh_interval` unless ``force``). True when something was reloaded."""
        now = time.monotonic()
        if not force and now - self._checked < self.refresh_interval:
            return False
        with self._lock:
            if not force and now - self._checked < self.refresh_interval:
                return False
            with self.store.read_conn() as conn:
                mark = self.fingerprint(conn)
                if mark == self._mark:
                    self._checked = time.monotonic()
                    return False
                rows = conn.execute(
                    select(resources.c.rid, resources.c.data)
                    .where(resources.c.rtype == _SP, resources.c.deleted == false())
                    .order_by(resources.c.pk)
                ).all()
            self._load(rows)
            self._mark = mark
            self._checked = time.monotonic()
            return True

    def _load(self, rows: Iterable[Any]) -> None:
        wanted: dict[str, SearchParamDef] = {}
        for rid, data in rows:
            if data is None:
                continue
            res = loads(data)
            if res.get("status") != "active":
                continue
            try:
                d = check_definition(res, self.registry)
            except Unprocessable as exc:
                log.warning("SearchParameter/%s is active but unusable: %s", rid, exc.diagnostics)
                continue
            if _standard_on(self.registry, d.code, _bases(d)):
                log.warning("SearchParameter/%s redefines the standard '%s'; ignored", rid, d.code)
                continue
            wanted[d.url] = d
        for url in [u for u, d in self._active.items() if wanted.get(u) != d]:
            self.registry.remove(url)
            del self._active[url]
            self.generation += 1
        for url, d in wanted.items():
            if url not in self._active:
                self.registry.add(d)
                self._active[url] = d
                self.generation += 1

    @property
    def refresh_due(self) -> bool:
        """Would :meth:`refresh` look at the database now (so a caller can skip a thread hop)?"""
        return time.monotonic() - self._checked >= self.refresh_interval

    def last_change(self, conn: Connection) -> int | None:
        """``last_updated`` (µs) of the latest SearchParameter write, or None."""
        v = conn.execute(
            select(func.max(resources.c.last_updated)).where(resources.c.rtype == _SP)
        ).scalar()
        return int(v) if v is not None else None
