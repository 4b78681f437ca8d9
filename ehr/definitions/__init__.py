"""FHIR R4 definitions the server needs at run time, read from the generated tables in ``data/``.

* :data:`RESOURCE_TYPES`: every concrete R4 resource type.
* :func:`search_parameters`: the search-parameter registry (standard plus custom ones).
* :data:`PATIENT_COMPARTMENT`: resource type -> the params that put it in a Patient's compartment.

Regenerate the tables with ``python -m ehr.definitions.generate``.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

__all__ = [
    "PATIENT_COMPARTMENT",
    "RESOURCE_TYPES",
    "SearchParamDef",
    "SearchParamRegistry",
    "load_table",
    "patient_compartment",
    "resource_types",
    "search_parameters",
]

DATA = Path(__file__).parent / "data"


def load_table(name: str) -> Any:
    """Read one generated table from ``data/``."""
    return json.loads((DATA / name).read_text(encoding="utf-8"))


@cache
def resource_types() -> frozenset[str]:
    """Every concrete R4 resource type."""
    return frozenset(load_table("resource_types.json")["types"])


@cache
def patient_compartment() -> dict[str, tuple[str, ...]]:
    """Resource type -> the search params that link it to a Patient (CompartmentDefinition)."""
    return {k: tuple(v) for k, v in load_table("patient_compartment.json")["resources"].items()}


def __getattr__(name: str) -> Any:
    if name == "RESOURCE_TYPES":
        return resource_types()
    if name == "PATIENT_COMPARTMENT":
        return patient_compartment()
    raise AttributeError(name)


@dataclass(frozen=True)
class SearchParamDef:
    """One search parameter as the server uses it."""

    code: str
    url: str
    type: str  # number date string token reference composite quantity uri special
    base: tuple[str, ...]
    expression: str | None
    target: tuple[str, ...] = ()
    comparator: tuple[str, ...] = ()
    modifier: tuple[str, ...] = ()
    component: tuple[tuple[str, str], ...] = ()  # (definition url, expression)
    description: str = ""
    custom: bool = False

    @classmethod
    def from_json(cls, d: dict[str, Any], custom: bool = False) -> SearchParamDef:
        return cls(
            code=d["code"],
            url=d.get("url", ""),
            type=d["type"],
            base=tuple(d.get("base", ())),
            expression=d.get("expression"),
            target=tuple(d.get("target", ())),
            comparator=tuple(d.get("comparator", ())),
            modifier=tuple(d.get("modifier", ())),
            component=tuple((c["definition"], c["expression"]) for c in d.get("component", ())),
            description=d.get("description", ""),
            custom=custom,
        )


@dataclass
class SearchParamRegistry:
    """Search parameters by resource type and code, and by canonical url.

    Parameters whose base is ``Resource`` or ``DomainResource`` apply to every type. Custom
    SearchParameter resources are added with :meth:`add` (and take precedence over a standard
    one with the same code on the same base).
    """

    _by_type: dict[str, dict[str, SearchParamDef]] = field(default_factory=dict)
    _common: dict[str, SearchParamDef] = field(default_factory=dict)
    _by_url: dict[str, SearchParamDef] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, sp: SearchParamDef) -> None:
        with self._lock:
            self._by_url[sp.url] = sp
            for base in sp.base:
                if base in ("Resource", "DomainResource"):
                    self._common[sp.code] = sp
                else:
                    self._by_type.setdefault(base, {})[sp.code] = sp

    def remove(self, url: str) -> None:
        with self._lock:
            sp = self._by_url.pop(url, None)
            if sp is None:
                return
            for base in sp.base:
                table = (
                    self._common
                    if base in ("Resource", "DomainResource")
                    else self._by_type.get(base, {})
                )
                if table.get(sp.code) is sp:
                    del table[sp.code]

    def for_type(self, rtype: str) -> dict[str, SearchParamDef]:
        """All parameters that apply to ``rtype``, keyed by code."""
        return {**self._common, **self._by_type.get(rtype, {})}

    def get(self, rtype: str, code: str) -> SearchParamDef | None:
        return self._by_type.get(rtype, {}).get(code) or self._common.get(code)

    def by_url(self, url: str) -> SearchParamDef | None:
        return self._by_url.get(url)


@cache
def search_parameters() -> SearchParamRegistry:
    """The process-wide registry, loaded once from the generated table."""
    reg = SearchParamRegistry()
    for d in load_table("search_parameters.json")["parameters"]:
        reg.add(SearchParamDef.from_json(d))
    return reg
