"""The one interface every search-parameter indexer implements.

http://hl7.org/fhir/R4/search.html#ptypes

An indexer turns the typed values (:data:`~ehr.search.fhirpath.Node`) an expression selected into
rows of its index table (``ehr/search/tables.py``). ``values(node)`` gives the value columns for
one value; ``index()`` adds ``param`` and may emit rows for another table too (a Reference that
carries an ``identifier`` yields a token row for ``:identifier``). ``component(cols)`` projects
one row into the ``system``/``code``/``str``/``low``/``high`` slots of a composite row.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, ClassVar

from ehr.definitions import SearchParamDef, SearchParamRegistry
from ehr.search.fhirpath import Node
from ehr.search.normalize import normalize_string
from ehr.search.tables import INDEX_TABLES

__all__ = ["Context", "Indexer", "Row", "clip", "columns_of", "normalized"]

#: :func:`normalize_string`, memoized (displays and names repeat across resources)
normalized = lru_cache(maxsize=65536)(normalize_string)

Row = dict[str, Any]


def columns_of(param_type: str) -> tuple[str, ...]:
    """The value columns of a table (everything but ``pk`` and ``rtype``), ``param`` first."""
    return tuple(c.name for c in INDEX_TABLES[param_type].columns if c.name not in ("pk", "rtype"))


def clip(value: Any, length: int) -> Any:
    """Cut a string to its column's length (a longer value cannot match exactly anyway)."""
    return value[:length] if isinstance(value, str) and len(value) > length else value


@dataclass(frozen=True)
class Context:
    """What an indexer may need beyond the values: the resource, the registry (composite
    components) and the server's own base URL (absolute references to it are local)."""

    root: Node
    registry: SearchParamRegistry
    base_url: str | None = None
    #: what indexers work out once per resource (composite components); keys hold ``id()`` of
    #: the resource's own objects, so a context lives no longer than one resource's indexing
    memo: dict[tuple[Any, ...], Any] = field(default_factory=dict, compare=False, hash=False)


class Indexer(ABC):
    """Turns values of one search-parameter type into rows of its table."""

    #: the parameter type and table this indexer fills
    param_type: ClassVar[str]
    #: the FHIR types it understands (others are ignored)
    accepts: ClassVar[frozenset[str]]

    def __init__(self) -> None:
        self.columns = columns_of(self.param_type)
        self._blank: Row = dict.fromkeys(self.columns)

    def row(self, param: str, cols: Row) -> Row:
        """A complete row: every column present (``None`` where unset), in table order."""
        row = dict(self._blank)
        row.update(cols)
        row["param"] = param
        return row

    @abstractmethod
    def values(self, node: Node, ctx: Context) -> Iterator[Row]:
        """The value columns for one value (without ``param``)."""

    def index(
        self, sp: SearchParamDef, nodes: list[Node], ctx: Context
    ) -> Iterator[tuple[str, Row]]:
        """``(table, row)`` pairs for the values of one parameter."""
        for node in nodes:
            if node[0] in self.accepts:
                for cols in self.values(node, ctx):
                    yield self.param_type, self.row(sp.code, cols)

    @abstractmethod
    def component(self, cols: Row) -> Row:
        """One row's value as composite slots: some of system, code, str, low, high."""
