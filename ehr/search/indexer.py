"""Write-time search indexing: a resource -> its rows in the index tables.

http://hl7.org/fhir/R4/search.html (and #ptypes for what each type indexes).

Row conventions the query side relies on (beyond ``ehr/search/tables.py``):

* ``:identifier`` on a reference parameter: a Reference's ``identifier`` is indexed in the
  **token** table under ``param = "<code>:identifier"`` (e.g. ``subject:identifier``), with
  ``system`` = Identifier.system, ``code`` = Identifier.value, ``text`` = normalized
  Identifier.type.text. Written whether or not the Reference also has a literal ``reference``.
* ``:of-type`` on a token parameter: every Identifier with a ``type`` adds, per type coding, a
  **token** row ``param = "<code>:of-type"`` (e.g. ``identifier:of-type``), ``system`` /
  ``code`` = the type coding's system / code, ``text`` = Identifier.value exactly as written.
* Token: CodeableConcept -> a row per coding (text = normalized display) plus a row
  ``(NULL, NULL, normalized CodeableConcept.text)``; Identifier -> ``(system, value,
  type.text)``; ContactPoint -> ``(ContactPoint.system, value)``; boolean -> ``"true"`` /
  ``"false"``; a ``code`` has ``system`` NULL.
* Reference: ``Patient/1`` -> target_type/target_id; an absolute URL -> ``url`` only, unless it
  lies under ``base_url`` (then also target_type/target_id); canonical ``u|v`` -> url ``u``,
  version ``v``; ``#contained`` -> nothing; a target type outside the parameter's ``target``
  list -> nothing. ``where(resolve() is T)`` keeps a Reference whose literal names type T, or,
  with no literal reference, whose ``type`` is T or absent (so ``patient:identifier`` finds an
  identifier-only subject). Contained resources are not indexed.
* Date: ``[low, high]`` inclusive µs; open Period ends are ``indexers.date.MIN_US``/``MAX_US``.
* Number/quantity: ``low``/``high`` are the precision interval ``[value - ½ulp, value + ½ulp)``
  of the last written digit; open Range ends are ±``indexers.number.UNBOUNDED``.
  ``canon_value``/``canon_code``: :func:`ehr.search.ucum.canonical` of UCUM quantities (the query
  side converts the searched value with the same function).
* String: HumanName parts plus ``"given family"`` (and ``family+given`` for CJK names).
* Composite: see :mod:`ehr.search.indexers.composite`.

Parameters without an expression, ``special`` ones, and ``_id`` / ``_lastUpdated`` (kept on the
resources table) are not indexed; ``_tag``, ``_profile``, ``_security`` and ``_source`` are.
Rows come back deduplicated, each with every value column of its table (``None`` when unset),
without ``pk``/``rtype`` (the store adds them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ehr.definitions import SearchParamDef, SearchParamRegistry, search_parameters
from ehr.search.fhirpath import Node, compile_path
from ehr.search.indexers import INDEXERS, Context, Indexer

__all__ = ["SKIPPED", "IndexRows", "extract"]

#: param type ("string", "token", ...) -> rows for that table
IndexRows = dict[str, list[dict[str, Any]]]

#: parameters the store keeps on the resources table instead
SKIPPED = frozenset({"_id", "_lastUpdated"})


@dataclass(frozen=True, slots=True)
class _Step:
    """One parameter to index on a type: its definition, indexer and compiled expression."""

    sp: SearchParamDef
    indexer: Indexer
    nodes: Callable[[list[Node], Node], list[Node]]


@dataclass(frozen=True, slots=True)
class _Plan:
    registry: SearchParamRegistry
    params: tuple[SearchParamDef, ...]  # what the plan was made from (registries change)
    steps: tuple[_Step, ...]


#: (id(registry), type) -> the parameters to evaluate on a resource of that type
_PLANS: dict[tuple[int, str], _Plan] = {}
_MAX_PLANS = 4096


def _plan(reg: SearchParamRegistry, rtype: str) -> tuple[_Step, ...]:
    """The steps for ``rtype``, made once per type and kept while ``reg``'s parameters for the
    type stay the same objects (a custom SearchParameter added or removed makes a new plan)."""
    params = reg.for_type(rtype)
    sig = tuple(params.values())
    key = (id(reg), rtype)
    plan = _PLANS.get(key)
    if plan is None or plan.registry is not reg or plan.params != sig:
        steps = []
        for code, sp in params.items():
            indexer = INDEXERS.get(sp.type)
            if not sp.expression or code in SKIPPED or indexer is None:  # None: special
                continue
            steps.append(_Step(sp, indexer, compile_path(sp.expression, rtype).on))
        if len(_PLANS) >= _MAX_PLANS:
            _PLANS.clear()
        plan = _PLANS[key] = _Plan(reg, sig, tuple(steps))
    return plan.steps


def extract(
    resource: dict[str, Any],
    registry: SearchParamRegistry | None = None,
    *,
    base_url: str | None = None,
) -> IndexRows:
    """Every index row of ``resource`` for the parameters of ``registry`` (default: the standard
    R4 parameters plus any custom ones added to :func:`ehr.definitions.search_parameters`).
    ``base_url`` is this server's FHIR base (absolute references under it count as local)."""
    reg = registry if registry is not None else search_parameters()
    rtype: str = resource["resourceType"]
    root: Node = (rtype, resource)
    ctx = Context(root=root, registry=reg, base_url=base_url)
    out: IndexRows = {}
    seen: set[tuple[Any, ...]] = set()
    focus = [root]
    for step in _plan(reg, rtype):
        nodes = step.nodes(focus, root)
        if not nodes:
            continue
        for table, row in step.indexer.index(step.sp, nodes, ctx):
            key = (table, *row.values())
            if key not in seen:
                seen.add(key)
                out.setdefault(table, []).append(row)
    return out
