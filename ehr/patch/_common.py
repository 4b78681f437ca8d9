"""Helpers shared by both patch formats (http://hl7.org/fhir/R4/http.html#patch).

* :func:`clone`: a fresh copy of a JSON tree (no shared sub-objects, unlike ``copy.deepcopy``,
  which would keep aliasing and break the identity-based location of FHIRPath results).
* :func:`check_identity_kept`: a patch may never change ``id`` or ``resourceType``.
* :func:`bad` / :func:`unprocessable`: the two error kinds, with the failing operation named.
"""

from __future__ import annotations

from typing import Any

from ehr.errors import BadRequest, Unprocessable

__all__ = ["PROTECTED", "bad", "check_identity_kept", "clone", "json_equal", "unprocessable"]

#: Root elements a patch may not touch: the id comes from the URL, the type from the endpoint.
PROTECTED = ("id", "resourceType")


def clone(value: Any) -> Any:
    """A deep copy of a JSON value that shares no dict or list with the original."""
    if isinstance(value, dict):
        return {k: clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clone(v) for v in value]
    return value


def json_equal(a: Any, b: Any) -> bool:
    """JSON equality (RFC 6902 section 4.6): numbers compare by value, but ``true`` is not ``1``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def _where(index: int | None, label: str) -> str:
    return f"operation {index} ({label})" if index is not None else "patch"


def bad(
    index: int | None,
    label: str,
    message: str,
    *,
    expression: str | None = None,
    code: str = "invalid",
) -> BadRequest:
    """400: the patch document itself is malformed."""
    return BadRequest(
        f"{_where(index, label)}: {message}",
        code,
        expression=(expression,) if expression else (),
    )


def unprocessable(
    index: int | None, label: str, message: str, *, expression: str | None = None
) -> Unprocessable:
    """422: a well-formed patch that cannot be applied to this resource."""
    return Unprocessable(
        f"{_where(index, label)}: {message}",
        "processing",
        expression=(expression,) if expression else (),
    )


def check_identity_kept(before: dict[str, Any], after: Any) -> None:
    """Refuse (422) a patch whose result is not an object or has another id or resourceType."""
    if not isinstance(after, dict):
        raise unprocessable(None, "", "the patched resource is not a JSON object")
    for key in PROTECTED:
        if before.get(key) != after.get(key):
            raise unprocessable(None, "", f"the result may not change '{key}'")
