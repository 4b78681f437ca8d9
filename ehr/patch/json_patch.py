"""JSON Patch (RFC 6902, https://www.rfc-editor.org/rfc/rfc6902) for the FHIR patch interaction
(http://hl7.org/fhir/R4/http.html#patch), with JSON Pointers per RFC 6901.

Operations are applied in order to a private copy; the first failure aborts the whole patch and
the input is never modified.

* 400 (``BadRequest``): the document is not a list of operation objects, an ``op`` is unknown,
  ``path``/``from``/``value`` is missing, or a pointer is syntactically wrong.
* 422 (``Unprocessable``, code ``processing``): a ``test`` fails, a location does not exist, an
  array index is out of range or not a number, ``move`` into its own child, or an operation
  writes ``/id`` or ``/resourceType`` (a patch may not change either; the result is also
  compared with the original).
"""

from __future__ import annotations

import re
from typing import Any

from ehr.patch._common import PROTECTED, bad, check_identity_kept, clone, json_equal, unprocessable

__all__ = ["apply_json_patch"]

_OPS = {"add", "remove", "replace", "move", "copy", "test"}
_NEEDS_VALUE = {"add", "replace", "test"}
_NEEDS_FROM = {"move", "copy"}
_INDEX = re.compile(r"0|[1-9][0-9]*")
_BAD_ESCAPE = re.compile(r"~(?![01])")


class _Fail(Exception):
    """Internal: an operation cannot be applied; carries the message for the 422."""


def parse_pointer(pointer: Any) -> list[str]:
    """Split an RFC 6901 pointer into unescaped reference tokens ('' is the whole document)."""
    if not isinstance(pointer, str):
        raise ValueError("a JSON pointer must be a string")
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise ValueError(f"JSON pointer {pointer!r} must start with '/'")
    if _BAD_ESCAPE.search(pointer):
        raise ValueError(f"JSON pointer {pointer!r} has a '~' not followed by '0' or '1'")
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]


def _index(token: str, size: int, *, append_ok: bool) -> int:
    if token == "-" and append_ok:
        return size
    if not _INDEX.fullmatch(token):
        raise _Fail(f"{token!r} is not an array index")
    i = int(token)
    if i > size or (i == size and not append_ok):
        raise _Fail(f"array index {i} is out of range (length {size})")
    return i


def _resolve(doc: Any, tokens: list[str]) -> Any:
    node = doc
    for depth, token in enumerate(tokens):
        where = "/" + "/".join(tokens[: depth + 1])
        if isinstance(node, dict):
            if token not in node:
                raise _Fail(f"{where} does not exist")
            node = node[token]
        elif isinstance(node, list):
            node = node[_index(token, len(node), append_ok=False)]
        else:
            raise _Fail(f"{where} does not exist (parent is not an object or array)")
    return node


def _add(doc: Any, tokens: list[str], value: Any) -> Any:
    if not tokens:
        return value
    parent = _resolve(doc, tokens[:-1])
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(last, len(parent), append_ok=True), value)
    else:
        raise _Fail("the parent of the target is not an object or array")
    return doc


def _remove(doc: Any, tokens: list[str]) -> tuple[Any, Any]:
    """Remove the value at tokens; return (document, removed value)."""
    if not tokens:
        raise _Fail("cannot remove the whole document")
    parent = _resolve(doc, tokens[:-1])
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise _Fail(f"/{'/'.join(tokens)} does not exist")
        return doc, parent.pop(last)
    if isinstance(parent, list):
        return doc, parent.pop(_index(last, len(parent), append_ok=False))
    raise _Fail(f"/{'/'.join(tokens)} does not exist (parent is not an object or array)")


def _apply_one(doc: Any, op: str, tokens: list[str], frm: list[str], value: Any) -> Any:
    if op == "add":
        return _add(doc, tokens, clone(value))
    if op == "remove":
        return _remove(doc, tokens)[0]
    if op == "replace":
        _resolve(doc, tokens)  # the target must exist
        if not tokens:
            return clone(value)
        parent = _resolve(doc, tokens[:-1])
        key: Any = int(tokens[-1]) if isinstance(parent, list) else tokens[-1]
        parent[key] = clone(value)
        return doc
    if op == "move":
        if tokens[: len(frm)] == frm and len(tokens) > len(frm):
            raise _Fail("cannot move a value into one of its own children")
        if tokens == frm:
            _resolve(doc, frm)
            return doc
        doc, moved = _remove(doc, frm)
        return _add(doc, tokens, moved)
    if op == "copy":
        return _add(doc, tokens, clone(_resolve(doc, frm)))
    # test
    if not json_equal(_resolve(doc, tokens), value):
        raise _Fail("test failed: the value differs")
    return doc


def apply_json_patch(resource: dict[str, Any], operations: Any) -> dict[str, Any]:
    """Apply an RFC 6902 JSON Patch document to a copy of ``resource`` and return the copy."""
    if not isinstance(operations, list):
        raise bad(
            None, "", "a JSON Patch document must be a JSON array of operations", code="structure"
        )
    doc: Any = clone(resource)
    for i, item in enumerate(operations):
        if not isinstance(item, dict):
            raise bad(i, "?", "an operation must be a JSON object", code="structure")
        op = item.get("op")
        label = f"{op} {item.get('path')}"
        if op not in _OPS:
            raise bad(i, label, f"unknown op {op!r}; expected one of {', '.join(sorted(_OPS))}")
        if "path" not in item:
            raise bad(i, label, "missing 'path'")
        if op in _NEEDS_VALUE and "value" not in item:
            raise bad(i, label, "missing 'value'")
        if op in _NEEDS_FROM and "from" not in item:
            raise bad(i, label, "missing 'from'")
        try:
            tokens = parse_pointer(item["path"])
            frm = parse_pointer(item["from"]) if op in _NEEDS_FROM else []
        except ValueError as exc:
            raise bad(i, label, str(exc)) from exc
        touched = [tokens] if op != "test" else []
        if op == "move":
            touched.append(frm)
        for t in touched:
            if len(t) == 1 and t[0] in PROTECTED:
                raise unprocessable(i, label, f"a patch may not change '{t[0]}'")
        try:
            doc = _apply_one(doc, op, tokens, frm, item.get("value"))
        except _Fail as exc:
            raise unprocessable(i, label, str(exc)) from exc
    check_identity_kept(resource, doc)
    return doc  # type: ignore[no-any-return]
