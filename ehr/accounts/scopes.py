"""SMART on FHIR scopes: parsing, matching and narrowing (pure; no I/O).

Spec: https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html (SMART App Launch 2.x).

* v2 resource scopes: ``<context>/<type|*>.<c?r?u?d?s?>[?param=value&...]`` with ``context`` one
  of ``patient`` | ``user`` | ``system``, the permission letters in that order
  (``patient/Observation.rs``, ``user/*.cruds``, ``system/Patient.r``), and optional search-style
  constraints (``patient/Observation.rs?category=http://…|laboratory``), parsed into ``params``.
* v1 forms map onto v2: ``.read`` -> ``rs``, ``.write`` -> ``cud``, ``.*`` -> ``cruds``.
* Other scopes are kept by name: ``launch``, ``launch/patient``, ``launch/encounter``, ``openid``,
  ``fhirUser``, ``profile``, ``offline_access``, ``online_access`` (and any unknown one).

Interactions are the v2 letters: ``c`` create, ``r`` read (read, vread, history of one
resource), ``u`` update (and patch), ``d`` delete, ``s`` search (and history of a type).

A constrained scope only allows the resources that match its parameters: :func:`constraints`
returns them so that enforcement can add them to the query (check before work) or test a
resource; :func:`allows` answers "may this kind of access happen at all".
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

__all__ = [
    "CONTEXTS",
    "INTERACTIONS",
    "InvalidScope",
    "LAUNCH_SCOPES",
    "OPERATION_SCOPES",
    "SCOPES_SUPPORTED",
    "ScopeSet",
    "SmartScope",
    "allows",
    "constraints",
    "parse_scope",
    "parse_scopes",
]

CONTEXTS = ("patient", "user", "system")
INTERACTIONS = "cruds"
#: the non-resource scopes this server understands
LAUNCH_SCOPES = (
    "launch",
    "launch/patient",
    "launch/encounter",
    "openid",
    "fhirUser",
    "profile",
    "offline_access",
    "online_access",
)

#: named ``system/`` scopes of this server's own operations (not resource scopes: kept by name,
#: granted to backend clients registered for them): the health one-card (``fhir_api.cards``)
OPERATION_SCOPES = frozenset({"system/health-card.tap", "system/health-card.issue"})

#: what discovery advertises (``scopes_supported``); any resource type may replace ``*``
SCOPES_SUPPORTED = [
    *LAUNCH_SCOPES,
    *(f"{c}/*.{p}" for c in CONTEXTS for p in ("cruds", "rs", "read", "write", "*")),
    *sorted(OPERATION_SCOPES),
]

_V1 = {"read": "rs", "write": "cud", "*": "cruds"}
_RESOURCE = re.compile(r"^(patient|user|system)/(\*|[A-Z][A-Za-z]{1,63})\.([A-Za-z*]+)(?:\?(.*))?$")
_V2_LETTERS = re.compile(r"^c?r?u?d?s?$")

Params = tuple[tuple[str, str], ...]


class InvalidScope(ValueError):
    """A scope that looks like a resource scope but is malformed."""


@dataclass(frozen=True)
class SmartScope:
    """One resource scope. ``rtype`` is a resource type or ``*``; ``interactions`` a subset of
    ``cruds``; ``params`` the constraints (an AND of search parameters), empty when none."""

    context: str
    rtype: str
    interactions: frozenset[str]
    params: Params = ()
    v1: bool = field(default=False, compare=False)

    def __str__(self) -> str:
        letters = "".join(c for c in INTERACTIONS if c in self.interactions)
        query = "&".join(f"{k}={v}" for k, v in self.params)
        return f"{self.context}/{self.rtype}.{letters}" + (f"?{query}" if query else "")

    def applies(self, context: str | None, rtype: str | None, interaction: str) -> bool:
        """True if this scope permits ``interaction`` on ``rtype`` (None: any type, as for a
        system-level search) in ``context`` (None: any context)."""
        if context is not None and context != self.context:
            return False
        if interaction not in self.interactions:
            return False
        return self.rtype == "*" or rtype is None or rtype == self.rtype

    def covers(self, other: SmartScope) -> bool:
        """True if everything ``other`` permits is also permitted by this scope."""
        return (
            self.context == other.context
            and (self.rtype == "*" or self.rtype == other.rtype)
            and other.interactions <= self.interactions
            and set(self.params) <= set(other.params)
        )


def parse_scope(text: str) -> SmartScope | None:
    """A resource scope, or None when ``text`` is not one (``launch``, ``openid``…).

    Raises :class:`InvalidScope` for something that starts like a resource scope but is not
    well formed (``patient/Observation.xyz``, ``user/observation.read``)."""
    if text in OPERATION_SCOPES:
        return None
    if not text.startswith(CONTEXTS) or "/" not in text or text.startswith("launch"):
        return None
    head = text.split("/", 1)[0]
    if head not in CONTEXTS:
        return None
    m = _RESOURCE.match(text)
    if m is None:
        raise InvalidScope(f"malformed scope {text!r}")
    context, rtype, perm, query = m.groups()
    v1 = perm in _V1
    if v1:
        letters = _V1[perm]
    elif perm and _V2_LETTERS.match(perm):
        letters = perm
    else:
        raise InvalidScope(f"malformed permissions in scope {text!r}")
    params: Params = ()
    if query is not None:
        try:
            pairs = parse_qsl(query, keep_blank_values=False, strict_parsing=True)
        except ValueError as exc:
            raise InvalidScope(f"malformed constraint in scope {text!r}") from exc
        params = tuple(sorted(pairs))
    return SmartScope(context, rtype, frozenset(letters), params, v1)


@dataclass(frozen=True)
class ScopeSet:
    """A parsed scope string: the resource scopes and the other scope names."""

    names: tuple[str, ...]
    resources: tuple[SmartScope, ...]
    other: frozenset[str]

    def __str__(self) -> str:
        return " ".join(self.names)

    def __contains__(self, name: object) -> bool:
        return name in self.other or name in self.names

    def __bool__(self) -> bool:
        return bool(self.names)

    def contexts(self) -> frozenset[str]:
        return frozenset(s.context for s in self.resources)

    def allows(self, context: str | None, rtype: str | None, interaction: str) -> bool:
        return any(s.applies(context, rtype, interaction) for s in self.resources)

    def constraints(
        self, context: str | None, rtype: str | None, interaction: str
    ) -> list[Params] | None:
        """How ``interaction`` on ``rtype`` is allowed: ``None`` when without condition; a list
        of parameter sets (the resource must match one of them) when only constrained scopes
        apply; an empty list when it is not allowed at all."""
        found: list[Params] = []
        for s in self.resources:
            if s.applies(context, rtype, interaction):
                if not s.params:
                    return None
                found.append(s.params)
        return found

    def covers(self, requested: ScopeSet) -> bool:
        """True if ``requested`` asks for nothing beyond this set (narrowing at refresh)."""
        if not requested.other <= self.other:
            return False
        return all(any(g.covers(r) for g in self.resources) for r in requested.resources)

    def covering(self, requested: ScopeSet) -> ScopeSet:
        """The part of ``requested`` this set covers, in the requested order (what a client may
        be granted of what it asked for)."""
        kept: list[str] = []
        for name in requested.names:
            s = parse_scope(name)
            if s is None:
                if name in self.other:
                    kept.append(name)
            elif any(g.covers(s) for g in self.resources):
                kept.append(name)
        return parse_scopes(kept)


def parse_scopes(scopes: str | Iterable[str] | ScopeSet | None) -> ScopeSet:
    """Parse a space-separated scope string (or a list of scopes). Duplicates are dropped."""
    if isinstance(scopes, ScopeSet):
        return scopes
    if scopes is None:
        items: list[str] = []
    elif isinstance(scopes, str):
        items = scopes.split()
    else:
        items = [s for item in scopes for s in str(item).split()]
    names: list[str] = []
    resources: list[SmartScope] = []
    other: set[str] = set()
    for name in items:
        if name in names:
            continue
        names.append(name)
        parsed = parse_scope(name)
        if parsed is None:
            other.add(name)
        else:
            resources.append(parsed)
    return ScopeSet(tuple(names), tuple(resources), frozenset(other))


def allows(
    scopes: str | Iterable[str] | ScopeSet,
    context_kind: str | None,
    rtype: str | None,
    interaction: str,
) -> bool:
    """May a token with ``scopes`` perform ``interaction`` (one of ``c r u d s``) on ``rtype`` in
    ``context_kind`` (``patient`` | ``user`` | ``system``; None: any)? True also when only a
    constrained scope applies: use :func:`constraints` to get the conditions."""
    if interaction not in INTERACTIONS or len(interaction) != 1:
        raise ValueError(f"interaction must be one of c r u d s, not {interaction!r}")
    return parse_scopes(scopes).allows(context_kind, rtype, interaction)


def constraints(
    scopes: str | Iterable[str] | ScopeSet,
    context_kind: str | None,
    rtype: str | None,
    interaction: str,
) -> list[Params] | None:
    """See :meth:`ScopeSet.constraints`."""
    return parse_scopes(scopes).constraints(context_kind, rtype, interaction)
