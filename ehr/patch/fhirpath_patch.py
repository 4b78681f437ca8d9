"""FHIRPath Patch (http://hl7.org/fhir/R4/fhirpatch.html) for the FHIR patch interaction
(http://hl7.org/fhir/R4/http.html#patch).

The patch is a Parameters resource with one ``operation`` parameter per operation; each has the
parts ``type`` (add | insert | delete | replace | move), ``path`` (FHIRPath) and, by type,
``name``, ``value``, ``index``, ``source``, ``destination``. Operations apply in order to a
private copy; the first failure aborts the whole patch and the input is never modified.

Semantics, per operation (a "location" is found by :mod:`ehr.patch._locate`):

* add: ``path`` must select exactly one object; ``name`` is appended to it (to the end of the
  list for a repeating element, which is created as a list; a non-repeating element must not
  have a value yet). ``name`` may be a choice base: ``deceased`` + ``valueBoolean`` writes
  ``deceasedBoolean``.
* insert: ``path`` is ``<parent>.<list element>``; the parent must be one object and
  0 <= ``index`` <= length of the list (an absent list counts as empty).
* delete: ``path`` selects at most one element (none: nothing happens). Emptied lists and objects
  are removed, since FHIR JSON allows neither.
* replace: ``path`` selects exactly one element; a choice element takes the key of the new
  value's type (``deceasedBoolean`` -> ``deceasedDateTime``).
* move: ``path`` is ``<parent>.<list element>``; the item at ``source`` moves to
  ``destination`` (both 0-based and within the list).

A ``value`` part carries a ``value[x]`` (written as its JSON: ``valueDate`` a string,
``valueBoolean`` a bool, ``valueHumanName`` an object) or nested ``part``s that build an object
(e.g. a ``Patient.contact``); a nested part named for a repeating element becomes a list item.
A primitive's ``_element`` (its id and extensions) goes with it on delete, replace and move.

Errors: 400 (``BadRequest``) when the Parameters document is malformed (not Parameters, no
``operation`` parameters, unknown or missing parts, unknown type, FHIRPath syntax errors or
unsupported functions such as ``resolve()``); 422 (``Unprocessable``, code ``processing``) when
a well-formed operation cannot be applied (nothing or several elements selected, index out of
range, an element the type does not have, a value already present). Changing ``id`` or
``resourceType`` is refused with 422: the id comes from the URL and the type from the endpoint.
Whether the result is valid FHIR is the store's concern.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ehr.patch._common import PROTECTED, bad, check_identity_kept, clone, unprocessable
from ehr.patch._locate import (
    Ast,
    Loc,
    NotLocatable,
    PathEvalError,
    PathSyntaxError,
    choice_key,
    compile_path,
    get,
    locate,
    split_member,
)
from ehr.patch._types import (
    Element,
    ModelClass,
    choice_alternatives,
    class_at,
    elements,
    resolve_name,
)

__all__ = ["apply_fhirpath_patch"]

_TYPES = ("add", "insert", "delete", "replace", "move")
_PARTS = {"type", "path", "name", "value", "index", "source", "destination"}
_REQUIRED = {
    "add": ("path", "name", "value"),
    "insert": ("path", "value", "index"),
    "delete": ("path",),
    "replace": ("path", "value"),
    "move": ("path", "source", "destination"),
}


@dataclass
class _Value:
    """A ``value`` part: a JSON value with the type named by its ``value[x]`` key, or parts."""

    json: Any = None
    suffix: str | None = None  # "Date" for valueDate; None for a resource or parts
    parts: list[dict[str, Any]] | None = None


@dataclass
class _Op:
    index: int
    type: str
    path: str
    ast: Ast
    name: str | None = None
    value: _Value | None = None
    position: int | None = None  # the ``index`` part
    source: int | None = None
    destination: int | None = None
    label: str = field(init=False)

    def __post_init__(self) -> None:
        self.label = f"{self.type} {self.path}"

    def fail(self, message: str) -> Exception:
        return unprocessable(
            self.index, self.label, message, expression=f"Parameters.parameter[{self.index}]"
        )


# --- reading the Parameters document -----------------------------------------------------


def _value_keys(part: dict[str, Any]) -> list[str]:
    return [k for k in part if k.startswith("value") and len(k) > 5 and k[5].isupper()]


def _read_value(part: dict[str, Any], fail: Any) -> _Value:
    keys = _value_keys(part)
    if len(keys) > 1:
        raise fail(f"part {part.get('name')!r} has more than one value[x]")
    if keys:
        return _Value(json=part[keys[0]], suffix=keys[0][5:])
    if "resource" in part:
        return _Value(json=part["resource"])
    sub = part.get("part")
    if isinstance(sub, list) and sub:
        for p in sub:
            if not isinstance(p, dict) or not isinstance(p.get("name"), str):
                raise fail(f"the nested parts of {part.get('name')!r} need a name each")
            _read_value(p, fail)  # checks the whole tree before anything is applied
        return _Value(parts=sub)
    raise fail(f"part {part.get('name')!r} has no value[x] and no nested parts")


def _parse_operation(i: int, param: Any) -> _Op:
    where = f"Parameters.parameter[{i}]"

    def fail(message: str) -> Exception:
        return bad(i, label, message, expression=where)

    label = "?"
    if not isinstance(param, dict) or param.get("name") != "operation":
        raise bad(i, label, "every parameter must be named 'operation'", expression=where)
    parts = param.get("part")
    if not isinstance(parts, list) or not parts:
        raise fail("an operation needs its parts (type, path, ...)")
    found: dict[str, dict[str, Any]] = {}
    for part in parts:
        name = part.get("name") if isinstance(part, dict) else None
        if name not in _PARTS:
            raise fail(f"unknown part {name!r}; expected {', '.join(sorted(_PARTS))}")
        if name in found:
            raise fail(f"part {name!r} is given twice")
        found[name] = part

    def text(name: str) -> str:
        keys = _value_keys(found[name])
        value = found[name][keys[0]] if len(keys) == 1 else None
        if not isinstance(value, str):
            raise fail(f"part {name!r} needs a string value (valueString or valueCode)")
        return value

    def integer(name: str) -> int:
        keys = _value_keys(found[name])
        value = found[name][keys[0]] if len(keys) == 1 else None
        if not isinstance(value, int) or isinstance(value, bool):
            raise fail(f"part {name!r} needs an integer value (valueInteger)")
        return value

    if "type" not in found:
        raise fail("missing part 'type'")
    kind = text("type")
    label = kind
    if kind not in _TYPES:
        raise fail(f"unknown operation type {kind!r}; expected one of {', '.join(_TYPES)}")
    for name in _REQUIRED[kind]:
        if name not in found:
            raise fail(f"missing part {name!r}")
    path = text("path")
    label = f"{kind} {path}"
    try:
        ast = compile_path(path)
    except PathSyntaxError as exc:
        raise fail(f"invalid FHIRPath: {exc}") from exc
    op = _Op(index=i, type=kind, path=path, ast=ast)
    if kind == "add":
        op.name = text("name")
    if kind in ("add", "insert", "replace"):
        op.value = _read_value(found["value"], fail)
    if kind == "insert":
        op.position = integer("index")
    if kind == "move":
        op.source = integer("source")
        op.destination = integer("destination")
    return op


def _parse(parameters: Any) -> list[_Op]:
    if not isinstance(parameters, dict) or parameters.get("resourceType") != "Parameters":
        raise bad(None, "", "a FHIRPath Patch must be a Parameters resource", code="structure")
    params = parameters.get("parameter")
    if not isinstance(params, list) or not params:
        raise bad(
            None, "", "the Parameters resource has no 'operation' parameters", code="structure"
        )
    return [_parse_operation(i, p) for i, p in enumerate(params)]


# --- building values ---------------------------------------------------------------------


def _materialize(value: _Value, model: ModelClass | None, op: _Op) -> Any:
    if value.parts is None:
        return clone(value.json)
    return _build(value.parts, model, op)


def _build(parts: list[dict[str, Any]], model: ModelClass | None, op: _Op) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for part in parts:
        name = part["name"]
        value = _read_value(part, lambda m: bad(op.index, op.label, m))  # checked by _parse
        el = resolve_name(model, name, value.suffix) if model is not None else None
        if model is not None and el is None:
            raise op.fail(f"{model.__name__} has no element {name!r} for this value")
        key = el.key if el is not None else name
        item = _materialize(value, el.type if el is not None else None, op)
        if el is not None and el.repeats:
            out.setdefault(key, []).append(item)
        elif key in out:
            if el is not None:
                raise op.fail(f"{key!r} is not repeating but is given twice")
            out[key] = (out[key] if isinstance(out[key], list) else [out[key]]) + [item]
        else:
            out[key] = item
    return out


# --- editing the tree --------------------------------------------------------------------


def _shadow(parent: dict[str, Any], key: str, size: int) -> list[Any] | None:
    """The ``_key`` list that runs parallel to a list of primitives, if any."""
    shadow = parent.get("_" + key)
    return shadow if isinstance(shadow, list) and len(shadow) == size else None


def _tidy_shadow(parent: dict[str, Any], key: str) -> None:
    shadow = parent.get("_" + key)
    if isinstance(shadow, list) and all(s is None for s in shadow):
        del parent["_" + key]


def _remove_at(root: dict[str, Any], loc: Loc) -> None:
    parent = get(root, loc[:-1])
    last = loc[-1]
    if isinstance(last, int):
        owner = get(root, loc[:-2]) if len(loc) >= 2 else None
        key = loc[-2]
        if isinstance(owner, dict) and isinstance(key, str):
            shadow = _shadow(owner, key, len(parent))
            if shadow is not None:
                shadow.pop(last)
            parent.pop(last)
            _tidy_shadow(owner, key)
        else:
            parent.pop(last)
    else:
        parent.pop(last, None)
        parent.pop("_" + last, None)


def _prune(root: dict[str, Any], loc: Loc) -> None:
    """Remove the now empty containers from ``loc`` upwards (never the root)."""
    while loc:
        node = get(root, loc)
        if node not in ({}, []):
            return
        _remove_at(root, loc)
        loc = loc[:-1]


def _element_at(root: dict[str, Any], loc: Loc) -> tuple[ModelClass | None, Element | None]:
    """The model of the object that holds the element at ``loc``, and the element itself."""
    key_pos = len(loc) - 1 if isinstance(loc[-1], str) else len(loc) - 2
    key = loc[key_pos]
    owner = class_at(root, loc[:key_pos])
    if owner is None or not isinstance(key, str):
        return owner, None
    return owner, elements(owner).get(key)


def _refuse_protected(op: _Op, loc: Loc) -> None:
    if not loc:
        raise op.fail(f"{op.type} cannot target the resource itself")
    if len(loc) == 1 and loc[0] in PROTECTED:
        raise op.fail(f"a patch may not change {loc[0]!r}")


def _locate(root: dict[str, Any], ast: Ast, op: _Op) -> list[Loc]:
    try:
        return locate(root, ast)
    except PathSyntaxError as exc:
        raise bad(op.index, op.label, f"invalid FHIRPath: {exc}") from exc
    except (PathEvalError, NotLocatable) as exc:
        raise op.fail(f"cannot evaluate the path: {exc}") from exc


def _one(root: dict[str, Any], ast: Ast, op: _Op, what: str = "the path") -> Loc:
    locs = _locate(root, ast, op)
    if not locs:
        raise op.fail(f"{what} matches nothing in the resource")
    if len(locs) > 1:
        raise op.fail(f"{what} matches {len(locs)} elements; exactly one is required")
    return locs[0]


def _list_target(root: dict[str, Any], op: _Op) -> tuple[dict[str, Any], str, Element | None]:
    """For insert and move: the object that holds the list, the list's key and its element."""
    split = split_member(op.ast)
    if split is None or split[2] is not None:
        raise bad(op.index, op.label, "the path must name a list element, like Patient.identifier")
    head, name, _ = split
    if head is None and name == root.get("resourceType"):
        raise bad(op.index, op.label, "the path must name a list element, like Patient.identifier")
    loc: Loc = () if head is None else _one(root, head, op, "the parent of the list")
    parent = get(root, loc)
    if not isinstance(parent, dict):
        raise op.fail("the parent of the list is a primitive value")
    model = class_at(root, loc)
    el = elements(model).get(name) if model is not None else None
    if model is not None and el is None:
        raise op.fail(f"{model.__name__} has no element {name!r}")
    if el is not None and not el.repeats:
        raise op.fail(f"{name!r} is not a repeating element")
    return parent, el.key if el is not None else (choice_key(parent, name) or name), el


def _add(root: dict[str, Any], op: _Op) -> None:
    assert op.name is not None and op.value is not None
    loc = _one(root, op.ast, op)
    target = get(root, loc)
    if not isinstance(target, dict):
        raise op.fail("the path selects a primitive value; elements can only be added to objects")
    if not loc and op.name in PROTECTED:
        raise op.fail(f"a patch may not change {op.name!r}")
    model = class_at(root, loc)
    el = resolve_name(model, op.name, op.value.suffix) if model is not None else None
    if model is not None and el is None:
        alternatives = choice_alternatives(model, op.name)
        if alternatives:
            raise op.fail(
                f"{op.name}[x] cannot take a value{op.value.suffix or ''}; "
                f"allowed: {', '.join(alternatives)}"
            )
        raise op.fail(f"{model.__name__} has no element {op.name!r}")
    key = el.key if el is not None else op.name
    if el is not None and el.choice is not None and model is not None:
        taken = [k for k in choice_alternatives(model, el.choice) if k in target]
        if taken:
            raise op.fail(f"{taken[0]!r} already has a value; use replace")
    new = _materialize(op.value, el.type if el is not None else None, op)
    existing = target.get(key)
    if existing is None:
        target[key] = [new] if el is not None and el.repeats else new
    elif isinstance(existing, list):
        shadow = _shadow(target, key, len(existing))
        existing.append(new)
        if shadow is not None:
            shadow.append(None)
    else:
        raise op.fail(f"{key!r} already has a value; use replace")


def _insert(root: dict[str, Any], op: _Op) -> None:
    assert op.value is not None and op.position is not None
    parent, key, el = _list_target(root, op)
    items = parent.get(key, [])
    if not isinstance(items, list):
        raise op.fail(f"{key!r} is not a list")
    if not 0 <= op.position <= len(items):
        raise op.fail(f"index {op.position} is out of range (the list has {len(items)} items)")
    shadow = _shadow(parent, key, len(items))
    items.insert(op.position, _materialize(op.value, el.type if el is not None else None, op))
    if shadow is not None:
        shadow.insert(op.position, None)
    parent[key] = items


def _delete(root: dict[str, Any], op: _Op) -> None:
    locs = _locate(root, op.ast, op)
    if not locs:
        return  # "Path of the element to delete (if found)"
    if len(locs) > 1:
        raise op.fail(f"the path matches {len(locs)} elements; only one can be deleted")
    _refuse_protected(op, locs[0])
    _remove_at(root, locs[0])
    _prune(root, locs[0][:-1])


def _replace(root: dict[str, Any], op: _Op) -> None:
    assert op.value is not None
    loc = _one(root, op.ast, op)
    _refuse_protected(op, loc)
    owner, el = _element_at(root, loc)
    new = _materialize(op.value, el.type if el is not None else None, op)
    parent = get(root, loc[:-1])
    last = loc[-1]
    suffix = op.value.suffix
    if isinstance(last, str) and el is not None and el.choice and suffix and owner is not None:
        alt = resolve_name(owner, el.choice, suffix)
        if alt is None:
            allowed = ", ".join(choice_alternatives(owner, el.choice))
            raise op.fail(f"{el.choice}[x] cannot take a value{suffix}; allowed: {allowed}")
        if alt.key != last:
            _remove_at(root, loc)
            parent[alt.key] = new
            return
    if isinstance(last, str):
        parent[last] = new
        parent.pop("_" + last, None)
        return
    parent[last] = new
    owner_obj, key = get(root, loc[:-2]), loc[-2]
    if isinstance(owner_obj, dict) and isinstance(key, str):
        shadow = _shadow(owner_obj, key, len(parent))
        if shadow is not None:
            shadow[last] = None
            _tidy_shadow(owner_obj, key)


def _move(root: dict[str, Any], op: _Op) -> None:
    assert op.source is not None and op.destination is not None
    parent, key, _ = _list_target(root, op)
    items = parent.get(key)
    if not isinstance(items, list) or not items:
        raise op.fail(f"there is no list {key!r} to move items in")
    for label, pos in (("source", op.source), ("destination", op.destination)):
        if not 0 <= pos < len(items):
            raise op.fail(f"{label} {pos} is out of range (the list has {len(items)} items)")
    shadow = _shadow(parent, key, len(items))
    items.insert(op.destination, items.pop(op.source))
    if shadow is not None:
        shadow.insert(op.destination, shadow.pop(op.source))


_APPLY = {"add": _add, "insert": _insert, "delete": _delete, "replace": _replace, "move": _move}


def apply_fhirpath_patch(resource: dict[str, Any], parameters: Any) -> dict[str, Any]:
    """Apply a FHIRPath Patch (a Parameters resource) to a copy of ``resource``; return it."""
    operations = _parse(parameters)  # every 400 before any 422
    work: dict[str, Any] = clone(resource)
    for op in operations:
        _APPLY[op.type](work, op)
    check_identity_kept(resource, work)
    return work
