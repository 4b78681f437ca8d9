"""Parse a search query into a :class:`SearchRequest`: http://hl7.org/fhir/R4/search.html

The query arrives as ``[(name, value), ...]`` (already URL-decoded). Each name is one of

* a search parameter of the searched type(s), with an optional ``:modifier``
  (``family:exact``, ``code:not``, ``subject:Patient``, ``identifier:of-type``);
* a chain ``subject:Patient.name`` / ``general-practitioner.name`` (any depth, see
  :data:`MAX_DEPTH`);
* a reverse chain ``_has:Observation:patient:code`` (nestable);
* a result parameter (``_sort``, ``_count``, ``_include``, ... see :data:`RESULT_PARAMS`).

Values are OR-ed on unescaped commas (``\\,`` is a literal comma; ``\\|`` and ``\\$`` are literal
too) and repeated names are AND-ed. Every value is parsed here, for its parameter's type, into
a typed value (:class:`StringValue`, :class:`TokenValue`, :class:`RangeValue`, ...), so a bad
date, number or prefix is a 400 before any SQL runs.

Unknown parameters, modifiers the server does not support, and unknown ``_sort`` / ``_include``
targets are errors in strict mode (``Prefer: handling=strict``) and are otherwise dropped with a
warning :class:`~ehr.errors.Issue` (and left out of the ``self`` link).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from ehr.definitions import SearchParamDef, SearchParamRegistry, resource_types
from ehr.errors import BadRequest, Issue
from ehr.search.dates import date_range
from ehr.search.normalize import normalize_string
from ehr.search.ucum import UCUM, canonical

__all__ = [
    "MAX_CRITERIA",
    "MAX_DEPTH",
    "PREFIXES",
    "REF_RE",
    "RESULT_PARAMS",
    "Chain",
    "CompositeValue",
    "Criterion",
    "Has",
    "Include",
    "Leaf",
    "ListRef",
    "QuantityValue",
    "RangeValue",
    "RefValue",
    "SearchRequest",
    "SortKey",
    "StringValue",
    "TokenValue",
    "UriValue",
    "ValueSetValue",
    "number_range",
    "parse_request",
    "parse_criteria",
    "split_unescaped",
    "unescape",
]

#: the comparison prefixes of number, date and quantity values
PREFIXES = frozenset({"eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"})
#: parameters that shape the result rather than select resources
RESULT_PARAMS = frozenset(
    {"_sort", "_count", "_include", "_revinclude", "_summary", "_total", "_elements",
     "_contained", "_containedType", "_cursor", "_format", "_pretty"}
)  # fmt: skip
#: the only _contained / _containedType values supported (the defaults)
_CONTAINED_DEFAULTS = frozenset({("_contained", "false"), ("_containedType", "container")})
#: passed through to the links, otherwise ignored (the HTTP layer renders them)
PASS_THROUGH = frozenset({"_format", "_pretty"})
#: deepest chain / _has nesting accepted
MAX_DEPTH = 6
#: most keys in _sort, most _include/_revinclude parameters
MAX_SORT_KEYS = 5
#: most search parameters (AND-ed criteria) in one query
MAX_CRITERIA = 100
MAX_INCLUDE_PARAMS = 20

_MODIFIERS: dict[str, frozenset[str]] = {
    "string": frozenset({"exact", "contains", "missing"}),
    "token": frozenset({"not", "text", "of-type", "in", "not-in", "missing"}),
    "reference": frozenset({"identifier", "missing"}),
    "date": frozenset({"missing"}),
    "number": frozenset({"missing"}),
    "quantity": frozenset({"missing"}),
    "uri": frozenset({"above", "below", "missing"}),
    "composite": frozenset(),
    "special": frozenset(),
}
_NUMBER_RE = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$")
REF_RE = re.compile(r"^(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$")
_ID_RE = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_ABSOLUTE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")
_ELEMENT_RE = re.compile(r"^[a-z][A-Za-z0-9_]*(\[x\])?$")
_TZ_SPACE_RE = re.compile(r"(T\d\d:\d\d(?::\d\d(?:\.\d+)?)?) (\d\d:\d\d)$")


# ------------------------------------------------------------------------------ typed values


@dataclass(frozen=True)
class StringValue:
    raw: str  # unescaped, as sent (for :exact)
    norm: str  # normalized (default starts-with, :contains, token :text)


@dataclass(frozen=True)
class TokenValue:
    """``code`` (any system), ``system|code``, ``|code`` (no system), ``system|`` (any code)."""

    system: str | None
    code: str | None
    no_system: bool = False
    text: str | None = None  # :of-type: the identifier value


@dataclass(frozen=True)
class ValueSetValue:
    """``:in`` / ``:not-in``: a ValueSet canonical url (``url|version``) or ``ValueSet/id``."""

    url: str


@dataclass(frozen=True)
class RangeValue:
    """A date or number with its prefix: ``low``/``high`` is the range the value's precision
    implies (dates: inclusive µs; numbers: ``[low, high)``); ``value`` the number itself."""

    prefix: str
    low: float
    high: float
    value: float


@dataclass(frozen=True)
class QuantityValue:
    prefix: str
    low: float
    high: float
    value: float
    system: str | None
    code: str | None
    #: for a UCUM unit: the range in the canonical unit and that unit's code
    canon: tuple[float, float, float, str] | None = None


@dataclass(frozen=True)
class RefValue:
    """``Type/id``, a bare ``id`` (``type`` None unless a ``:Type`` modifier gave it), or an
    absolute / canonical ``url`` (``version`` for ``url|version``)."""

    type: str | None = None
    id: str | None = None
    url: str | None = None
    version: str | None = None


@dataclass(frozen=True)
class UriValue:
    value: str


@dataclass(frozen=True)
class CompositeValue:
    parts: tuple[Any, ...]  # one typed value per component
    types: tuple[str, ...]  # the component parameter types


@dataclass(frozen=True)
class ListRef:
    """``_list=id``: resources that are entries of List/id."""

    id: str


# ------------------------------------------------------------------------------ criteria


@dataclass(frozen=True)
class Leaf:
    """One parameter on resources of ``types`` (None: any type); ``values`` are OR-ed."""

    code: str
    ptype: str  # string token reference date number quantity uri composite | id lastUpdated list
    modifier: str | None
    values: tuple[Any, ...]
    types: tuple[str, ...] | None
    sp: SearchParamDef | None = None
    implied_system: bool = False  # token on a ``code``-typed element: rows keep system NULL


@dataclass(frozen=True)
class Chain:
    """``code[:Type].rest``: resources whose reference ``code`` points at a ``Type`` resource
    matching the branch criterion (one branch per possible target type)."""

    code: str
    types: tuple[str, ...] | None
    branches: tuple[tuple[str, Criterion], ...]


@dataclass(frozen=True)
class Has:
    """``_has:Source:code:rest``: resources referenced (through ``Source.code``) by a
    ``Source`` resource matching ``inner``."""

    source: str
    code: str
    inner: Criterion
    types: tuple[str, ...] | None


Criterion = Leaf | Chain | Has


@dataclass(frozen=True)
class SortKey:
    code: str  # _id, _lastUpdated or a parameter code
    ptype: str
    descending: bool


@dataclass(frozen=True)
class Include:
    """``_include=Source:param[:Target]`` or ``_revinclude=...``; ``param`` None for ``*``."""

    source: str | None  # None for ``*``
    param: str | None
    target: str | None
    iterate: bool
    reverse: bool


@dataclass
class SearchRequest:
    rtype: str | None
    types: tuple[str, ...] | None  # the resource types searched (None: every type)
    criteria: list[Criterion] = field(default_factory=list)
    sort: list[SortKey] = field(default_factory=list)
    count: int = 50
    total: str | None = None  # none | estimate | accurate (None: the default)
    summary: str | None = None
    elements: tuple[str, ...] | None = None
    includes: list[Include] = field(default_factory=list)
    cursor: str | None = None
    #: the parameters applied, in order, for the self/next/previous links (without _cursor)
    applied: list[tuple[str, str]] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)


# ------------------------------------------------------------------------------ escaping


def split_unescaped(value: str, sep: str, maxsplit: int = -1) -> list[str]:
    """Split on ``sep`` not preceded by a backslash; escapes are kept (see :func:`unescape`)."""
    parts: list[str] = []
    buf: list[str] = []
    i = 0
    while i < len(value):
        ch = value[i]
        if ch == "\\" and i + 1 < len(value):
            buf.append(value[i : i + 2])
            i += 2
            continue
        if ch == sep and (maxsplit < 0 or len(parts) < maxsplit):
            parts.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
        i += 1
    parts.append("".join(buf))
    return parts


def unescape(value: str) -> str:
    """``\\,`` ``\\$`` ``\\|`` ``\\\\`` -> the character itself."""
    return re.sub(r"\\([,$|\\])", r"\1", value)


# ------------------------------------------------------------------------------ value parsers


class _Unsupported(Exception):
    """A parameter or modifier the server does not support (strict: 400, lenient: ignored)."""


def _bad(param: str, message: str) -> BadRequest:
    return BadRequest(f"Search parameter '{param}': {message}", "invalid", expression=(param,))


def _prefix(param: str, value: str, allowed: bool = True) -> tuple[str, str]:
    if len(value) >= 2 and value[:2].isalpha() and value[:2].islower():
        if value[:2] not in PREFIXES:
            raise _bad(
                param,
                f"unknown prefix '{value[:2]}' in '{value}' (use one of eq ne gt lt ge le sa eb ap)",
            )
        if not allowed:
            raise _bad(param, f"a prefix is not allowed here: '{value}'")
        return value[:2], value[2:]
    return "eq", value


def number_range(text: str) -> tuple[float, float, float] | None:
    """``(value, low, high)`` of a decimal as written: ``100`` -> ``[99.5, 100.5)``,
    ``100.0`` -> ``[99.95, 100.05)``, ``1e2`` -> ``[50, 150)`` (half a unit of the last digit)."""
    if not _NUMBER_RE.match(text):
        return None
    try:
        d = Decimal(text)
    except InvalidOperation:
        return None
    exp = d.as_tuple().exponent
    assert isinstance(exp, int)
    half = Decimal(5).scaleb(exp - 1)
    return float(d), float(d - half), float(d + half)


def _date(param: str, raw: str) -> RangeValue:
    prefix, text = _prefix(param, raw)
    text = _TZ_SPACE_RE.sub(r"\1+\2", text)  # an unencoded '+' in the zone arrives as ' '
    try:
        low, high = date_range(text)
    except ValueError:
        raise _bad(
            param,
            f"'{raw}' is not a valid date (YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm[:ss][zone])",
        ) from None
    return RangeValue(prefix, float(low), float(high), float(low))


def _number(param: str, raw: str) -> RangeValue:
    prefix, text = _prefix(param, raw)
    r = number_range(text)
    if r is None:
        raise _bad(param, f"'{raw}' is not a valid number")
    return RangeValue(prefix, r[1], r[2], r[0])


def _quantity(param: str, raw: str) -> QuantityValue:
    parts = split_unescaped(raw, "|")
    if len(parts) not in (1, 3):
        raise _bad(param, f"'{raw}' is not a quantity (number, or number|system|code)")
    prefix, text = _prefix(param, unescape(parts[0]))
    r = number_range(text)
    if r is None:
        raise _bad(param, f"'{raw}' does not start with a valid number")
    system = unescape(parts[1]) or None if len(parts) == 3 else None
    code = unescape(parts[2]) or None if len(parts) == 3 else None
    canon = None
    if system == UCUM and code:
        lo, unit = canonical(r[1], code)
        hi, _ = canonical(r[2], code)
        val, _ = canonical(r[0], code)
        canon = (min(lo, hi), max(lo, hi), val, unit)
    return QuantityValue(prefix, r[1], r[2], r[0], system, code, canon)


def _token(param: str, raw: str) -> TokenValue:
    parts = split_unescaped(raw, "|", 1)
    if len(parts) == 1:
        return TokenValue(None, unescape(parts[0]))
    system, code = unescape(parts[0]), unescape(parts[1])
    if not system and not code:
        raise _bad(param, "'|' alone is not a token")
    if not system:
        return TokenValue(None, code, no_system=True)
    return TokenValue(system, code or None)


def _of_type(param: str, raw: str) -> TokenValue:
    parts = split_unescaped(raw, "|")
    if len(parts) != 3 or not parts[1] or not parts[2]:
        raise _bad(param, f"':of-type' needs system|code|value, got '{raw}'")
    return TokenValue(unescape(parts[0]) or None, unescape(parts[1]), text=unescape(parts[2]))


def _string(raw: str) -> StringValue:
    text = unescape(raw)
    return StringValue(text, normalize_string(text))


def _reference(
    param: str, raw: str, type_modifier: str | None, sp: SearchParamDef | None
) -> RefValue:
    text = unescape(raw)
    if (m := REF_RE.match(text)) and m["type"] in resource_types():
        if type_modifier and type_modifier != m["type"]:
            raise _bad(param, f"'{text}' does not name a {type_modifier}")
        return RefValue(m["type"], m["id"])
    if _ABSOLUTE_RE.match(text):
        url, _, version = text.partition("|")
        return RefValue(url=url, version=version or None)
    if _ID_RE.match(text):
        if (
            type_modifier is None
            and sp is not None
            and len(sp.target) == 1
            and sp.target[0] != "Resource"
        ):
            type_modifier = sp.target[0]
        return RefValue(type_modifier, text)
    if "/" in text:  # Type/id with an unknown type, or a relative url: compare as a url
        return RefValue(url=text)
    raise _bad(param, f"'{text}' is not a reference (Type/id, id or an absolute URL)")


def _parse_value(
    param: str, ptype: str, modifier: str | None, raw: str, sp: SearchParamDef | None,
    registry: SearchParamRegistry,
) -> Any:  # fmt: skip
    if ptype == "string":
        return _string(raw)
    if ptype == "token":
        if modifier == "text":
            return _string(raw)
        if modifier == "of-type":
            return _of_type(param, raw)
        if modifier in ("in", "not-in"):
            return ValueSetValue(unescape(raw))
        return _token(param, raw)
    if ptype == "date" or ptype == "lastUpdated":
        return _date(param, raw)
    if ptype == "number":
        return _number(param, raw)
    if ptype == "quantity":
        return _quantity(param, raw)
    if ptype == "reference":
        if modifier == "identifier":
            return _token(param, raw)
        return _reference(param, raw, modifier, sp)
    if ptype == "uri":
        return UriValue(unescape(raw))
    if ptype == "id":
        text = unescape(raw)
        if not _ID_RE.match(text):
            raise _bad(param, f"'{text}' is not a resource id")
        return text
    if ptype == "list":
        text = unescape(raw)
        if not _ID_RE.match(text):
            raise _unsupported(
                param, f"'{text}' is not a List id (functional lists are not supported)"
            )
        return ListRef(text)
    if ptype == "composite":
        assert sp is not None
        return _composite(param, raw, sp, registry)
    raise _unsupported(param, f"parameters of type {ptype} are not supported")


def _composite(
    param: str, raw: str, sp: SearchParamDef, registry: SearchParamRegistry
) -> CompositeValue:
    comps = []
    for url, _expr in sp.component:
        d = registry.by_url(url)
        if d is None:
            raise _unsupported(param, f"component {url} is unknown")
        comps.append(d)
    parts = split_unescaped(raw, "$")
    if len(parts) != len(comps):
        raise _bad(param, f"'{raw}' needs {len(comps)} values separated by '$'")
    values: list[Any] = []
    for d, part in zip(comps, parts, strict=True):
        if d.type == "reference":
            values.append(_reference(param, part, None, d))
        elif d.type in ("string", "token", "date", "number", "quantity", "uri"):
            values.append(_parse_value(param, d.type, None, part, d, registry))
        else:
            raise _unsupported(param, f"composite components of type {d.type} are not supported")
    return CompositeValue(tuple(values), tuple(d.type for d in comps))


def _unsupported(param: str, message: str) -> _Unsupported:
    return _Unsupported(f"Search parameter '{param}': {message}")


# ------------------------------------------------------------------------------ names


class _Parser:
    def __init__(self, registry: SearchParamRegistry, max_or: int, *, strict: bool) -> None:
        self.registry = registry
        self.max_or = max_or
        self.strict = strict

    def defs(self, code: str, types: tuple[str, ...] | None) -> SearchParamDef | None:
        """The definition of ``code`` shared by every type in ``types`` (None: common params)."""
        if types is None:
            return self.registry.get("Resource", code)
        found = [self.registry.get(t, code) for t in types]
        if not found or any(f is None for f in found):
            return None
        first = found[0]
        assert first is not None
        if any(f is not None and f.type != first.type for f in found):
            return None
        return first

    def criterion(
        self, name: str, value: str, types: tuple[str, ...] | None, depth: int = 0
    ) -> Criterion:
        if depth > MAX_DEPTH:
            raise BadRequest(
                f"Search parameter '{name}' nests chains deeper than {MAX_DEPTH}", "too-costly"
            )
        if name.startswith("_has:"):
            return self.has(name, value, types, depth)
        head, dot, rest = name.partition(".")
        if dot:
            return self.chain(name, head, rest, value, types, depth)
        return self.leaf(name, value, types)

    def has(self, name: str, value: str, types: tuple[str, ...] | None, depth: int) -> Has:
        parts = name.split(":", 3)
        if len(parts) != 4 or not all(parts[1:]):
            raise _bad(name, "expected _has:Type:reference-param:search-param")
        _, source, code, rest = parts
        if source not in resource_types():
            raise _unsupported(name, f"unknown resource type '{source}'")
        sp = self.registry.get(source, code)
        if sp is None or sp.type != "reference":
            raise _unsupported(name, f"'{code}' is not a reference parameter of {source}")
        if (
            types is not None
            and sp.target
            and "Resource" not in sp.target
            and not set(types) & set(sp.target)
        ):
            raise _unsupported(name, f"{source}.{code} cannot refer to {', '.join(types)}")
        inner = self.criterion(rest, value, (source,), depth + 1)
        return Has(source, code, inner, types)

    def chain(
        self, name: str, head: str, rest: str, value: str, types: tuple[str, ...] | None, depth: int
    ) -> Chain:
        code, _, modifier = head.partition(":")
        sp = self.defs(code, types)
        if sp is None:
            raise _unsupported(name, f"unknown parameter '{code}'")
        if sp.type != "reference":
            raise _unsupported(name, f"'{code}' is not a reference parameter, it cannot be chained")
        if modifier:
            if modifier not in resource_types():
                raise _unsupported(name, f"unknown resource type '{modifier}' in the chain")
            targets: tuple[str, ...] = (modifier,)
        else:
            targets = tuple(t for t in sp.target if t != "Resource")
            if not targets:
                raise _bad(
                    name, f"'{code}' may refer to any type: name one ('{code}:Patient.{rest}')"
                )
        branches: list[tuple[str, Criterion]] = []
        for target in targets:
            try:
                branches.append((target, self.criterion(rest, value, (target,), depth + 1)))
            except _Unsupported:
                continue  # ``rest`` is not a parameter of this target type
        if not branches:
            raise _unsupported(name, f"'{rest}' is not a parameter of {' or '.join(targets)}")
        return Chain(code, types, tuple(branches))

    def values(self, name: str, value: str) -> list[str]:
        raw = [v for v in split_unescaped(value, ",")]
        if len(raw) > self.max_or:
            raise BadRequest(
                f"Search parameter '{name}' has {len(raw)} comma-separated values; at most "
                f"{self.max_or} are allowed (split the search)",
                "too-costly",
                expression=(name,),
            )
        if any(v == "" for v in raw):
            raise _bad(name, f"empty value in '{value}'")
        return raw

    def leaf(self, name: str, value: str, types: tuple[str, ...] | None) -> Leaf:
        code, _, modifier_s = name.partition(":")
        modifier = modifier_s or None
        if code == "_id":
            return self._special(name, code, "id", modifier, value, types, {"not", "missing"})
        if code == "_lastUpdated":
            return self._special(name, code, "lastUpdated", modifier, value, types, set())
        if code == "_list":
            return self._special(name, code, "list", modifier, value, types, set())
        sp = self.defs(code, types)
        if sp is None:
            where = ", ".join(types) if types else "every resource type"
            raise _unsupported(name, f"unknown parameter '{code}' for {where}")
        if sp.type == "special" or (not sp.expression and code not in ("_id", "_lastUpdated")):
            raise _unsupported(name, f"'{code}' is not supported by this server")
        if modifier is not None:
            ok = modifier in _MODIFIERS.get(sp.type, frozenset())
            if sp.type == "reference" and modifier in resource_types():
                ok = True
                if sp.target and "Resource" not in sp.target and modifier not in sp.target:
                    raise _unsupported(name, f"'{code}' cannot refer to a {modifier}")
            if not ok:
                raise _unsupported(
                    name, f"modifier ':{modifier}' is not supported on {sp.type} parameters"
                )
        if modifier == "missing":
            return Leaf(code, sp.type, modifier, (self._bool(name, value),), types, sp)
        vals = tuple(
            _parse_value(name, sp.type, modifier, v, sp, self.registry)
            for v in self.values(name, value)
        )
        implied = sp.type == "token" and self._implied_system(sp, types)
        return Leaf(code, sp.type, modifier, vals, types, sp, implied)

    def _special(
        self, name: str, code: str, ptype: str, modifier: str | None, value: str,
        types: tuple[str, ...] | None, modifiers: set[str],
    ) -> Leaf:  # fmt: skip
        if modifier is not None and modifier not in modifiers:
            raise _unsupported(name, f"modifier ':{modifier}' is not supported on {code}")
        if modifier == "missing":
            return Leaf(code, ptype, modifier, (self._bool(name, value),), types)
        vals = tuple(
            _parse_value(name, ptype, modifier, v, None, self.registry)
            for v in self.values(name, value)
        )
        return Leaf(code, ptype, modifier, vals, types)

    @staticmethod
    def _bool(name: str, value: str) -> bool:
        if value not in ("true", "false"):
            raise _bad(name, f"':missing' takes true or false, not '{value}'")
        return value == "true"

    @staticmethod
    def _implied_system(sp: SearchParamDef, types: tuple[str, ...] | None) -> bool:
        """True when the parameter selects ``code``-like primitives, whose rows have no system
        (``gender=http://hl7.org/fhir/administrative-gender|male`` then still matches)."""
        if not sp.expression:
            return False
        from ehr.search.fhirpath import compile_path

        for t in types or ("Resource",):
            try:
                compiled = compile_path(sp.expression, t)
            except Exception:  # pragma: no cover - the indexer compiles the same expressions
                continue
            if compiled.compiled and compiled.types & {"code", "string", "id", "uri", "boolean"}:
                return True
        return False


# ------------------------------------------------------------------------------ the request


def _result_error(strict: bool, issues: list[Issue], name: str, message: str) -> None:
    if strict:
        raise BadRequest(
            f"Search parameter '{name}': {message}", "not-supported", expression=(name,)
        )
    issues.append(
        Issue("not-supported", f"Ignored search parameter '{name}': {message}", "warning")
    )


def parse_criteria(
    registry: SearchParamRegistry,
    types: tuple[str, ...] | None,
    params: list[tuple[str, str]],
    *,
    strict: bool,
    max_or_values: int,
) -> tuple[list[Criterion], list[tuple[str, str]], list[Issue]]:
    """The criteria of ``params`` (result parameters must have been removed)."""
    if len(params) > MAX_CRITERIA:
        raise BadRequest(f"At most {MAX_CRITERIA} search parameters in one search", "too-costly")
    parser = _Parser(registry, max_or_values, strict=strict)
    criteria: list[Criterion] = []
    applied: list[tuple[str, str]] = []
    issues: list[Issue] = []
    for name, value in params:
        if value == "":
            issues.append(
                Issue(
                    "informational", f"Ignored search parameter '{name}' with no value", "warning"
                )
            )
            continue
        try:
            criteria.append(parser.criterion(name, value, types))
        except _Unsupported as exc:
            if strict:
                raise BadRequest(str(exc), "not-supported", expression=(name,)) from None
            issues.append(Issue("not-supported", f"Ignored: {exc}", "warning", (name,)))
            continue
        applied.append((name, value))
    return criteria, applied, issues


def _types_param(value: str) -> tuple[str, ...]:
    types = tuple(t.strip() for t in value.split(",") if t.strip())
    unknown = [t for t in types if t not in resource_types()]
    if unknown:
        raise BadRequest(
            f"_type: unknown resource type(s) {', '.join(unknown)}", "value", expression=("_type",)
        )
    return types


def parse_request(
    registry: SearchParamRegistry,
    rtype: str | None,
    params: list[tuple[str, str]],
    *,
    strict: bool,
    default_count: int,
    max_count: int,
    max_or_values: int,
) -> SearchRequest:
    """Parse a whole search query (criteria and result parameters)."""
    types: tuple[str, ...] | None = (rtype,) if rtype else None
    criteria_params: list[tuple[str, str]] = []
    result_params: list[tuple[str, str]] = []
    type_params: list[tuple[str, str]] = []
    for name, value in params:
        base = name.split(":", 1)[0]
        if base == "_type" and not rtype:
            type_params.append((name, value))
        elif base in RESULT_PARAMS:
            result_params.append((name, value))
        else:
            criteria_params.append((name, value))
    req = SearchRequest(rtype=rtype, types=types, count=default_count)
    for name, value in type_params:
        found = _types_param(value)
        req.types = found if req.types is None else tuple(t for t in req.types if t in found)
        req.applied.append((name, value))
    if rtype is None and req.types is not None and len(req.types) == 0:
        req.types = ()
    crit_types = req.types if req.types else None
    criteria, applied, issues = parse_criteria(
        registry, crit_types, criteria_params, strict=strict, max_or_values=max_or_values
    )
    req.criteria = criteria
    req.applied += applied
    req.issues += issues
    for name, value in result_params:
        _result_param(req, registry, name, value, strict=strict, max_count=max_count)
    return req


def _result_param(
    req: SearchRequest,
    registry: SearchParamRegistry,
    name: str,
    value: str,
    *,
    strict: bool,
    max_count: int,
) -> None:
    base, _, modifier = name.partition(":")
    issues = req.issues
    if base == "_cursor":
        req.cursor = value
        return
    if base in PASS_THROUGH:
        req.applied.append((name, value))
        return
    if base == "_count":
        try:
            n = int(value)
        except ValueError:
            raise BadRequest(
                f"_count must be a whole number, not '{value}'", "value", expression=("_count",)
            ) from None
        if n < 0:
            raise BadRequest(
                f"_count must not be negative ({value})", "value", expression=("_count",)
            )
        req.count = min(n, max_count)
        req.applied.append((name, str(req.count)))
        return
    if base == "_total":
        if value not in ("none", "estimate", "accurate"):
            return _result_error(
                strict, issues, name, f"'{value}' is not one of none, estimate, accurate"
            )
        req.total = value
    elif base == "_summary":
        if value not in ("true", "false", "text", "data", "count"):
            raise BadRequest(
                f"_summary must be true, false, text, data or count, not '{value}'", "value"
            )
        req.summary = value
    elif base == "_elements":
        req.elements = tuple(_element(e.strip()) for e in value.split(",") if e.strip())
    elif base == "_sort":
        keys = _sort(req, registry, value, strict)
        if keys is None:
            return
        req.sort = keys
    elif base in ("_include", "_revinclude"):
        if modifier not in ("", "iterate", "recurse"):
            return _result_error(strict, issues, name, f"unknown modifier ':{modifier}'")
        if len(req.includes) >= MAX_INCLUDE_PARAMS:
            raise BadRequest(
                f"At most {MAX_INCLUDE_PARAMS} _include/_revinclude parameters", "too-costly"
            )
        inc = _include(registry, base == "_revinclude", bool(modifier), value)
        if isinstance(inc, str):
            return _result_error(strict, issues, name, inc)
        req.includes.append(inc)
    elif base in ("_contained", "_containedType") and (base, value) not in _CONTAINED_DEFAULTS:
        return _result_error(strict, issues, name, "searching contained resources is not supported")
    req.applied.append((name, value))


def _element(path: str) -> str:
    """``name``, ``Patient.name`` or ``name.family`` -> the top-level element ``name``."""
    parts = path.split(".")
    if len(parts) > 1 and parts[0][:1].isupper():
        parts = parts[1:]
    if not _ELEMENT_RE.match(parts[0]):
        raise BadRequest(
            f"_elements: '{path}' is not an element name", "value", expression=("_elements",)
        )
    return parts[0]


def _sort(
    req: SearchRequest, registry: SearchParamRegistry, value: str, strict: bool
) -> list[SortKey] | None:
    keys: list[SortKey] = []
    for item in (s.strip() for s in value.split(",")):
        if not item:
            continue
        desc = item.startswith("-")
        code = item[1:] if desc else item
        if code in ("_id", "_lastUpdated"):
            keys.append(SortKey(code, code, desc))
            continue
        types = req.types if req.types else ("Resource",)
        defs = [registry.get(t, code) for t in types]
        ptypes = {d.type for d in defs if d is not None}
        if any(d is None for d in defs) or len(ptypes) != 1:
            _result_error(strict, req.issues, "_sort", f"cannot sort by unknown parameter '{code}'")
            return None
        ptype = ptypes.pop()
        if ptype not in ("string", "token", "date", "number", "quantity", "reference", "uri"):
            _result_error(strict, req.issues, "_sort", f"cannot sort by {ptype} parameter '{code}'")
            return None
        keys.append(SortKey(code, ptype, desc))
    if len(keys) > MAX_SORT_KEYS:
        raise BadRequest(f"_sort: at most {MAX_SORT_KEYS} keys", "too-costly")
    return keys


def _include(
    registry: SearchParamRegistry, reverse: bool, iterate: bool, value: str
) -> Include | str:
    if value == "*":
        return Include(None, None, None, iterate, reverse)
    parts = value.split(":")
    if len(parts) not in (2, 3):
        return f"'{value}' is not Type:parameter[:targetType]"
    source, code = parts[0], parts[1]
    target = parts[2] if len(parts) == 3 else None
    if source not in resource_types():
        return f"unknown resource type '{source}'"
    if target is not None and target not in resource_types():
        return f"unknown target type '{target}'"
    if code == "*":
        return Include(source, None, target, iterate, reverse)
    sp = registry.get(source, code)
    if sp is None or sp.type != "reference":
        return f"'{code}' is not a reference parameter of {source}"
    return Include(source, code, target, iterate, reverse)
