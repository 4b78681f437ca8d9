"""Cheap route matching for the long, ordered route list of the FHIR API.

Starlette's router tries every route in order until one matches; with the ``$operations``
mounted before the generic interactions, a read (``GET /fhir/Patient/123``) walks some seventy
routes, each a (FastAPI) ``matches`` call with a regular expression, a large share of the CPU
time of a request. :func:`prefilter` puts a cheap, exact pre-check in front of a route's
``matches``: a path can only match a route's pattern if it starts with the pattern's literal
prefix (the text before the first ``{param}``, which ``compile_path`` escapes into the regular
expression verbatim) and, when every parameter's convertor excludes ``/``, has as many ``/`` as
the pattern. A route that fails the pre-check answers ``Match.NONE``, which is what its own
``matches`` would have answered; every other route is asked as before, in the same order. So the
routing decisions (including 405 for a known path with another method) are unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from starlette._utils import get_route_path
from starlette.convertors import (
    Convertor,
    FloatConvertor,
    IntegerConvertor,
    StringConvertor,
    UUIDConvertor,
)
from starlette.routing import BaseRoute, Match, Route
from starlette.types import Scope

__all__ = ["prefilter"]

#: convertors whose pattern never matches a "/" (``path`` does)
_NO_SLASH: tuple[type[Convertor[Any]], ...] = (
    StringConvertor,
    IntegerConvertor,
    FloatConvertor,
    UUIDConvertor,
)
_MARK = "_ehr_prefiltered"


def _slash_free(convertor: Convertor[Any]) -> bool:
    if isinstance(convertor, _NO_SLASH):
        return True
    regex = getattr(convertor, "regex", "")
    # a plain character class of letters/digits (e.g. the resource-type convertor) has no "/"
    return bool(regex) and all(c.isalnum() or c in "[]-_*+" for c in regex)


def _wrap(route: Route) -> None:
    prefix = route.path.split("{", 1)[0]
    slashes = (
        route.path.count("/") if all(map(_slash_free, route.param_convertors.values())) else -1
    )
    inner: Callable[[Scope], tuple[Match, Scope]] = route.matches

    def matches(scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http":
            path = get_route_path(scope)
            if not path.startswith(prefix) or (slashes >= 0 and path.count("/") != slashes):
                return Match.NONE, {}
        return inner(scope)

    setattr(route, "matches", matches)  # noqa: B010 (an instance attribute shadows the method)
    setattr(route, _MARK, True)  # noqa: B010


def _wrap_included(included: Any) -> None:
    """An included router (``app.include_router``, e.g. the authorization server's routes):
    it can only match a path that starts with the literal prefix of one of its routes (their
    paths under the inclusion prefix). Routes added to it later are taken into account; when
    one of them is not a plain route the pre-check stands aside."""
    router = included.original_router
    prefix = getattr(getattr(included, "include_context", None), "prefix", None)
    if not isinstance(prefix, str) or not isinstance(getattr(router, "routes", None), list):
        return
    inner: Callable[[Scope], tuple[Match, Scope]] = included.matches
    known: list[Any] = [None, ()]  # (routes count, literal prefixes or None)

    def literals() -> tuple[str, ...] | None:
        routes = router.routes
        if known[0] != len(routes):
            ok = all(isinstance(r, Route) for r in routes)
            known[0] = len(routes)
            known[1] = tuple(prefix + r.path.split("{", 1)[0] for r in routes) if ok else None
        found: tuple[str, ...] | None = known[1]
        return found

    def matches(scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http":
            starts = literals()
            if starts is not None and not get_route_path(scope).startswith(starts):
                return Match.NONE, {}
        return inner(scope)

    setattr(included, "matches", matches)  # noqa: B010
    setattr(included, _MARK, True)  # noqa: B010


def prefilter(routes: Iterable[BaseRoute]) -> None:
    """Add the pre-check to every plain route (``Route``/``APIRoute``) and included router of
    ``routes`` that does not have it yet (mounts are left as they are)."""
    for route in routes:
        if getattr(route, _MARK, False):
            continue
        if isinstance(route, Route):
            _wrap(route)
        elif hasattr(route, "original_router"):  # FastAPI's included router
            _wrap_included(route)
