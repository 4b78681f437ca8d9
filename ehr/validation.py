"""Validation of a resource before the store accepts it (http://hl7.org/fhir/R4/validation.html).

Cheap checks first, as in http://hl7.org/fhir/R4/http.html#create and #update:

1. the body is a JSON object whose ``resourceType`` is a known R4 type and matches the URL
   (else :class:`~ehr.errors.BadRequest`, 400);
2. ``id`` is a FHIR id (http://hl7.org/fhir/R4/datatypes.html#id) and, on update, equals the id
   in the URL (400);
3. structure, cardinality, primitive formats (date, dateTime, instant, ...) and required elements,
   by the fhir.resources R4B model of the type (R4B shares R4's structure; the R4-only types
   without an R4B model skip this step);
4. the JSON rules fhir.resources lets through (http://hl7.org/fhir/R4/json.html): booleans and
   numbers as JSON booleans and numbers, no ``null`` outside primitive arrays, no empty arrays
   or objects, valid ids and known types of nested resources;
5. codes of required bindings (http://hl7.org/fhir/R4/terminologies.html#required), from the
   generated table ``definitions/data/required_bindings.json``, also inside data types,
   backbone elements, extensions and contained resources.

Steps 3 to 5 report together: one :class:`~ehr.errors.Issue` per problem, each with a
FHIRPath-like expression such as ``Patient.name[0].given[1]``, in an
:class:`~ehr.errors.Unprocessable` (422).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from ehr.definitions import load_table, resource_types
from ehr.errors import BadRequest, Issue, Unprocessable

__all__ = ["ID_RE", "check_id", "validate_resource"]

ID_RE = re.compile(r"[A-Za-z0-9\-.]{1,64}")


def check_id(rid: str) -> None:
    """Raise :class:`BadRequest` unless ``rid`` is a FHIR logical id."""
    if not _is_id(rid):
        raise BadRequest(_bad_id(rid), "value")


def _is_id(rid: Any) -> bool:
    return isinstance(rid, str) and ID_RE.fullmatch(rid) is not None


def _bad_id(rid: Any) -> str:
    return f"{rid!r} is not a valid resource id (1-64 of A-Z a-z 0-9 - .)"


def validate_resource(
    resource: Any, *, expected_type: str | None = None, expected_id: str | None = None
) -> None:
    """Check ``resource`` (parsed JSON) for the store; return quietly or raise a FhirError.

    ``expected_type`` is the type in the URL; ``expected_id`` the id in the URL of an update,
    which the body must then carry.
    """
    if not isinstance(resource, dict):
        raise BadRequest("the resource must be a JSON object", "structure")
    rtype = resource.get("resourceType")
    if not isinstance(rtype, str) or not rtype:
        raise BadRequest("the resource has no resourceType", expression=("resourceType",))
    if expected_type is not None and rtype != expected_type:
        raise BadRequest(
            f"resourceType {rtype!r} does not match the type {expected_type!r} in the URL",
            expression=("resourceType",),
        )
    if rtype not in resource_types():
        raise BadRequest(f"unknown resource type {rtype!r}", expression=("resourceType",))
    rid = resource.get("id")
    if "id" in resource and not _is_id(rid):
        raise BadRequest(_bad_id(rid), "value", expression=(f"{rtype}.id",))
    if expected_id is not None:
        if rid is None:
            raise BadRequest(
                "the resource in an update must carry its id", expression=(f"{rtype}.id",)
            )
        if rid != expected_id:
            raise BadRequest(
                f"the id {rid!r} in the body does not match the id {expected_id!r} in the URL",
                expression=(f"{rtype}.id",),
            )

    if resource.get("meta") == {}:
        # the server stamps meta (versionId, lastUpdated), so an empty one never gets stored
        resource = {k: v for k, v in resource.items() if k != "meta"}
    issues = _model_issues(rtype, resource)
    walked: list[Issue] = []
    _walk(_schema().nodes.get(rtype, _schema().element), resource, rtype, walked)
    if walked:
        # the walk names the place of what the model could only fail on (nested unknown types)
        issues = [i for i in issues if i.expression]
        seen = [e for i in issues for e in i.expression]
        issues += [i for i in walked if not any(_covers(s, e) for s in seen for e in i.expression)]
    if issues:
        first = issues[0]
        more = f" (and {len(issues) - 1} more)" if len(issues) > 1 else ""
        raise Unprocessable(
            f"{first.expression[0] if first.expression else rtype}: {first.diagnostics}{more}",
            first.code,
            expression=first.expression,
            issues=issues,
        )


# --- step 3: the fhir.resources model --------------------------------------------------------


@cache
def _model_class(rtype: str) -> Any:
    try:
        return get_fhir_model_class(rtype)
    except (KeyError, ValueError):
        return None  # an R4 type that R4B dropped (MedicinalProduct*, Substance*, ...)


def _model_issues(rtype: str, resource: dict[str, Any]) -> list[Issue]:
    model = _model_class(rtype)
    if model is None:
        return []
    try:
        model.model_validate(resource)
    except ValidationError as exc:
        return [_pydantic_issue(rtype, err) for err in exc.errors(include_url=False)]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        # fhir.resources fails this way on a nested resource of an unknown type; the walk
        # below names the place. Keep a general issue in case it does not.
        return [Issue("structure", f"the resource cannot be read: {type(exc).__name__} {exc}")]
    return []


_STRUCTURE_ERRORS = frozenset(
    {
        "extra_forbidden",
        "json_invalid",
        "list_type",
        "dict_type",
        "model_type",
        "model_attributes_type",
    }
)


def _pydantic_issue(rtype: str, err: Any) -> Issue:
    kind: str = err["type"]
    loc = list(err["loc"])
    if loc and loc[-1] == "root" and kind.startswith("model_"):
        loc.pop()
    expression = _fhirpath(rtype, loc)
    msg = str(err["msg"]).removeprefix("Value error, ")
    value = err.get("input")
    where = (expression,)
    if kind == "extra_forbidden":
        return Issue("structure", f"unknown element {str(loc[-1])!r}", expression=where)
    if kind == "missing" or kind.endswith(".missing"):
        return Issue("required", f"missing required element {str(loc[-1])!r}", expression=where)
    if kind == "list_type" and not isinstance(value, list):
        return Issue("structure", f"an array is expected, not {_short(value)}", expression=where)
    if kind.endswith("_type") and isinstance(value, list):
        return Issue("structure", "a single value is expected, not an array", expression=where)
    if kind in _STRUCTURE_ERRORS or (kind.endswith("_type") and isinstance(value, dict)):
        return Issue("structure", f"{msg} (got {_short(value)})", expression=where)
    return Issue("value", f"{msg} (got {_short(value)})", expression=where)


def _fhirpath(rtype: str, loc: Iterable[Any]) -> str:
    parts = [rtype]
    for p in loc:
        if isinstance(p, int):
            parts.append(f"[{p}]")
        else:
            parts.append("." + str(p).removeprefix("_"))
    return "".join(parts)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _covers(outer: str, inner: str) -> bool:
    return inner == outer or inner.startswith((outer + ".", outer + "["))


# --- steps 4 and 5: one walk over the JSON, led by the generated node graph ------------------

_CODE, _CONCEPT, _BOOLEAN, _INTEGER, _DECIMAL = range(5)
_KINDS = {"boolean": _BOOLEAN, "integer": _INTEGER, "decimal": _DECIMAL}
_RESOURCE: dict[str, Any] = {}  # marker node: any resource, dispatched on resourceType


@dataclass(frozen=True, slots=True)
class _ValueSet:
    url: str
    codes: frozenset[str]
    pairs: frozenset[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class _Entry:
    """What the walk knows of one JSON key of a node."""

    check: int | None  # _CODE, _CONCEPT, _BOOLEAN, _INTEGER, _DECIMAL or None
    valueset: _ValueSet | None
    child: dict[str, _Entry] | None  # node of the value's type, or _RESOURCE


_PRIMITIVE_EXT = _Entry(None, None, None)  # "_birthDate": {id, extension}: any element


@dataclass(frozen=True, slots=True)
class _Schema:
    nodes: dict[str, dict[str, _Entry]]
    element: dict[str, _Entry]  # any element: only extension / modifierExtension known


@cache
def _schema() -> _Schema:
    table = load_table("required_bindings.json")
    valuesets = {
        url: _ValueSet(
            url,
            frozenset(c for codes in by_system.values() for c in codes),
            frozenset((s, c) for s, codes in by_system.items() for c in codes),
        )
        for url, by_system in table["valuesets"].items()
    }
    raw: dict[str, dict[str, dict[str, str]]] = table["nodes"]
    nodes: dict[str, dict[str, _Entry]] = {name: {} for name in raw}
    nodes["Resource"] = _RESOURCE
    element: dict[str, _Entry] = {}
    for name, spec in raw.items():
        node = nodes[name]
        keys = set().union(*(spec.get(part, {}) for part in ("b", "cc", "c", "p")))
        for key in keys:
            check: int | None = None
            valueset = None
            if key in spec.get("b", {}):
                check, valueset = _CODE, valuesets[spec["b"][key]]
            elif key in spec.get("cc", {}):
                check, valueset = _CONCEPT, valuesets[spec["cc"][key]]
            elif key in spec.get("p", {}):
                check = _KINDS[spec["p"][key]]
            child_name = spec.get("c", {}).get(key)
            node[key] = _Entry(check, valueset, nodes[child_name] if child_name else None)
    ext = _Entry(None, None, nodes["Extension"])
    for node in (*nodes.values(), element):
        if node is not _RESOURCE:
            node.setdefault("extension", ext)
            node.setdefault("modifierExtension", ext)
    return _Schema(nodes, element)


def _walk(node: dict[str, _Entry], obj: dict[str, Any], path: str, issues: list[Issue]) -> None:
    """Check one JSON object whose type's node is ``node``; ``path`` is its expression."""
    for key, value in obj.items():
        if key == "resourceType" or key == "fhir_comments":
            continue
        entry = node.get(key)
        if entry is None and key[:1] == "_":
            entry = _PRIMITIVE_EXT
            name = key[1:]
        else:
            name = key
        if value is None:
            issues.append(
                Issue("structure", "null is not allowed here", expression=(f"{path}.{name}",))
            )
        elif type(value) is list:
            if not value:
                issues.append(
                    Issue("structure", "arrays must not be empty", expression=(f"{path}.{name}",))
                )
                continue
            for i, item in enumerate(value):
                if item is None:
                    twin = key[1:] if key[:1] == "_" else "_" + key
                    if twin not in obj:
                        issues.append(
                            Issue(
                                "structure",
                                "null is allowed in an array only beside its _ twin",
                                expression=(f"{path}.{name}[{i}]",),
                            )
                        )
                else:
                    _value(entry, item, f"{path}.{name}[{i}]", issues)
        else:
            _value(entry, value, f"{path}.{name}", issues)


def _value(entry: _Entry | None, value: Any, path: str, issues: list[Issue]) -> None:
    if entry is not None and entry.check is not None:
        _check(entry, value, path, issues)
    if type(value) is dict:
        if not value:
            issues.append(Issue("structure", "objects must not be empty", expression=(path,)))
            return
        child = entry.child if entry is not None else None
        if child is _RESOURCE:
            _resource(value, path, issues)
        else:
            _walk(child if child is not None else _schema().element, value, path, issues)


def _check(entry: _Entry, value: Any, path: str, issues: list[Issue]) -> None:
    check = entry.check
    vs = entry.valueset
    if check == _CODE:
        assert vs is not None
        if type(value) is str and value not in vs.codes:
            issues.append(
                Issue(
                    "code-invalid",
                    f"{value!r} is not in the required value set {vs.url}{_choices(vs.codes)}",
                    expression=(path,),
                )
            )
    elif check == _CONCEPT:
        assert vs is not None
        if type(value) is dict:
            codings = value.get("coding")
            if not isinstance(codings, list) or not any(
                type(c) is dict and (c.get("system"), c.get("code")) in vs.pairs for c in codings
            ):
                expected = {f"{s}|{c}" for s, c in vs.pairs}
                issues.append(
                    Issue(
                        "code-invalid",
                        f"no coding from the required value set {vs.url}{_choices(expected)}",
                        expression=(path,),
                    )
                )
    elif check == _BOOLEAN:
        if value is not True and value is not False:
            issues.append(_kind_issue("boolean", value, path))
    elif check == _INTEGER:
        if type(value) is not int:
            issues.append(_kind_issue("integer", value, path))
    elif check == _DECIMAL and type(value) not in (int, float):
        issues.append(_kind_issue("decimal", value, path))


def _kind_issue(kind: str, value: Any, path: str) -> Issue:
    want = "true or false" if kind == "boolean" else "a JSON number"
    return Issue("value", f"a FHIR {kind} must be {want}, not {_short(value)}", expression=(path,))


def _choices(codes: Iterable[str]) -> str:
    ordered = sorted(codes)
    if len(ordered) > 12:
        return ""
    return " (" + ", ".join(ordered) + ")"


def _resource(value: dict[str, Any], path: str, issues: list[Issue]) -> None:
    """A nested resource (contained, Bundle.entry.resource, Parameters.parameter.resource)."""
    rtype = value.get("resourceType")
    if not isinstance(rtype, str):
        issues.append(
            Issue("required", "a nested resource needs a resourceType", expression=(path,))
        )
        return
    if rtype not in resource_types():
        issues.append(Issue("structure", f"unknown resource type {rtype!r}", expression=(path,)))
        return
    if "id" in value and not _is_id(value["id"]):
        issues.append(Issue("value", _bad_id(value["id"]), expression=(f"{path}.id",)))
    _walk(_schema().nodes.get(rtype, _schema().element), value, path, issues)
