"""Composite search index: http://hl7.org/fhir/R4/search.html#composite

The parameter's expression selects the parent elements (``Observation.component``, or the
Observation itself for ``code-value-quantity``); each component expression is evaluated on one
parent at a time, so ``component-code-value-quantity`` pairs a component's code with that same
component's value. One row per parent and combination of component values (a code with two
codings gives two rows). Component *n* fills ``c<n>_*`` with what its own indexer puts in a
composite slot: token -> ``system``/``code``; string, uri, reference -> ``str`` (a reference as
``Type/id`` or its url); number, date -> ``low``/``high`` (dates as microseconds); quantity ->
``low``/``high``/``system``/``code`` (unit as written, not canonicalized).

A component is indexed by the type of its SearchParameter definition. When the value's type does
not fit that type, the value's own type decides: R4's ``DocumentReference-relationship`` lists
its components' definitions swapped (``relatesto`` for ``code``, ``relation`` for ``target``), so
its c1 holds the relation code (token) and c2 the target (reference), as the values say.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping

from ehr.definitions import SearchParamDef
from ehr.search.fhirpath import Node, compile_path
from ehr.search.indexers.base import Context, Indexer, Row

__all__ = ["CompositeIndexer"]

_NATURAL_ORDER = ("token", "reference", "quantity", "date", "number", "string", "uri")
MAX_COMPONENTS = 3


class CompositeIndexer(Indexer):
    param_type = "composite"
    accepts = frozenset()

    def __init__(self, components: Mapping[str, Indexer]) -> None:
        super().__init__()
        self.components = components

    def _pick(self, declared: str | None, value_type: str) -> Indexer | None:
        ix = self.components.get(declared or "")
        if ix is not None and value_type in ix.accepts:
            return ix
        for name in _NATURAL_ORDER:
            if value_type in self.components[name].accepts:
                return self.components[name]
        return None

    def values(self, node: Node, ctx: Context) -> Iterator[Row]:
        raise NotImplementedError("composite rows are built by index()")

    def index(
        self, sp: SearchParamDef, nodes: list[Node], ctx: Context
    ) -> Iterator[tuple[str, Row]]:
        comps: list[tuple[str | None, str]] = []
        for url, expr in sp.component[:MAX_COMPONENTS]:
            d = ctx.registry.by_url(url)
            comps.append((d.type if d else None, expr))
        if not comps:
            return
        for parent in nodes:
            slots: list[list[Row]] = []
            for n, (declared, expr) in enumerate(comps, 1):
                options = self._slot(n, declared, expr, parent, ctx)
                if not options:
                    break
                slots.append(options)
            else:
                for combo in itertools.product(*slots):
                    row: Row = {}
                    for part in combo:
                        row.update(part)
                    yield self.param_type, self.row(sp.code, row)

    def _slot(
        self, n: int, declared: str | None, expr: str, parent: Node, ctx: Context
    ) -> list[Row]:
        """The ``c<n>_*`` options of one component on one parent. Composites of a type share
        components (Observation's eight all take ``code`` or a ``value[x]`` of the same parents),
        so each is worked out once per resource (``ctx.memo``; the rows are only read)."""
        key = (n, declared, expr, parent[0], id(parent[1]))
        options: list[Row] | None = ctx.memo.get(key)
        if options is None:
            options = []
            root = ctx.root
            for value in compile_path(expr, parent[0], root[0]).on([parent], root):
                ix = self._pick(declared, value[0])
                if ix is None:
                    continue
                for cols in ix.values(value, ctx):
                    slot = ix.component(cols)
                    options.append({f"c{n}_{k}": v for k, v in slot.items()})
            ctx.memo[key] = options
        return options

    def component(self, cols: Row) -> Row:
        raise NotImplementedError("a composite is not a component")
