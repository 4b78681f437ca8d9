"""Cheap route matching for the long, ordered route list of the FHIR API.

Starlette's router tries every route in order until one matches; with the ``$operations``
mounted before the generic interactions, a read (``GET /fhir/Patient/123``) walks some seventy
routes, each a (FastAPI) ``matches`` call with a regular expression, a large share of the CPU
time of a request. :func:`prefilter` puts a cheap, exact pre-check in front of a route's
``matches``: a path can only match a route's pattern if it starts with the pattern's literal
prefix (the text before the first ``{param}``, which ``compile_path`` escapes into the regular
expression verbatim), ends with its literal suffix (the text after the last ``{param}``: the
expression is anchored at the end) and, when every parameter's convertor excludes ``/``, has
as many ``/`` as the pattern. A route that fails the pre-check answers ``Match.NONE``, which is
what its own ``matches`` would have answered; every other route is asked as before, in the same
order. So the routing decisions (including 405 for a known path with another method) are
unchanged.

:class:`RouteIndex` (installed by :func:`index_routes` as the router's own middleware) goes one
step further. Whether a path passes the prefix and ``/`` parts of the pre-check of a route
depends only on the longest route prefix the path starts with and on its number of ``/``; so
the routes that pass them (the *candidates*, in their order, with the routes that have no
pre-check) are computed once per such key and cached. The router then walks the candidates
from the first one that matches, with its own code (FULL before PARTIAL, 405 and the rest); a
path that no candidate matches goes through the whole router as before (trailing-slash
redirect, 404). A read asks a handful of cheap pre-checks instead of seventy.
"""

from __future__ import annotations

import copy
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
from starlette.routing import BaseRoute, Match, Route, Router
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["RouteIndex", "index_routes", "prefilter"]

#: convertors whose pattern never matches a "/" (``path`` does)
_NO_SLASH: tuple[type[Convertor[Any]], ...] = (
    StringConvertor,
    IntegerConvertor,
    FloatConvertor,
    UUIDConvertor,
)
_MARK = "_ehr_prefiltered"
#: a pre-checked route's (literal prefix, number of "/" or -1 for any)
_SHAPE = "_ehr_shape"


def _slash_free(convertor: Convertor[Any]) -> bool:
    if isinstance(convertor, _NO_SLASH):
        return True
    regex = getattr(convertor, "regex", "")
    # a plain character class of letters/digits (e.g. the resource-type convertor) has no "/"
    return bool(regex) and all(c.isalnum() or c in "[]-_*+" for c in regex)


def _wrap(route: Route) -> None:
    prefix = route.path.split("{", 1)[0]
    # the literal text after the last parameter (the pattern is anchored at the end)
    suffix = route.path.rsplit("}", 1)[1] if "{" in route.path else ""
    slashes = (
        route.path.count("/") if all(map(_slash_free, route.param_convertors.values())) else -1
    )
    inner: Callable[[Scope], tuple[Match, Scope]] = route.matches

    def matches(scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http":
            path = get_route_path(scope)
            if (
                not path.startswith(prefix)
                or (slashes >= 0 and path.count("/") != slashes)
                or not path.endswith(suffix)
            ):
                return Match.NONE, {}
        return inner(scope)

    setattr(route, "matches", matches)  # noqa: B010 (an instance attribute shadows the method)
    setattr(route, _MARK, True)  # noqa: B010
    setattr(route, _SHAPE, (prefix, slashes))  # noqa: B010


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


class RouteIndex:
    """The router's own middleware (``router.middleware_stack``): route an HTTP request through
    the candidate routes of its path only (see the module docstring). Every change to the
    router's list of routes (added, removed, replaced) is seen on the next request: the index is
    rebuilt when the list differs from the one it was built from, route by route by identity."""

    def __init__(self, router: Router, app: ASGIApp) -> None:
        self.router = router
        self.app = app  # the router's own dispatch (``router.app``)
        self._indexed: list[BaseRoute] = []
        self._ids: list[int] = []  # of the routes indexed (held, so never reused meanwhile)

    def _rebuild(self, routes: list[BaseRoute]) -> None:
        prefilter(routes)
        self._indexed = list(routes)
        self._ids = list(map(id, routes))
        #: per route: its pre-check shape, or None for a route asked whatever the path
        self._shapes: list[tuple[str, int] | None] = [getattr(r, _SHAPE, None) for r in routes]
        prefixes = {shape[0] for shape in self._shapes if shape is not None}
        by_length: dict[int, set[str]] = {}
        for prefix in prefixes:
            by_length.setdefault(len(prefix), set()).add(prefix)
        self._by_length = sorted(
            ((n, frozenset(p)) for n, p in by_length.items()), key=lambda item: -item[0]
        )
        self._max_slashes = max((s[1] for s in self._shapes if s is not None), default=0)
        self._candidates: dict[tuple[str | None, int], list[BaseRoute]] = {}
        self._views: dict[tuple[str | None, int, int], Router] = {}

    def _key(self, path: str) -> tuple[str | None, int]:
        """(the longest route prefix ``path`` starts with, its number of "/" capped): the prefix
        and "/" parts of every pre-check answer the same for two paths with the same key."""
        longest = None
        for n, prefixes in self._by_length:
            if path[:n] in prefixes:
                longest = path[:n]
                break
        return longest, min(path.count("/"), self._max_slashes + 1)

    def _candidates_of(self, key: tuple[str | None, int]) -> list[BaseRoute]:
        longest, slashes = key
        found = []
        for route, shape in zip(self._indexed, self._shapes, strict=True):
            if shape is not None:
                prefix, want = shape
                if longest is None or not longest.startswith(prefix):
                    continue
                if want >= 0 and want != slashes:
                    continue
            found.append(route)
        self._candidates[key] = found
        return found

    def _view(self, key: tuple[str | None, int], start: int, routes: list[BaseRoute]) -> Router:
        """A shallow copy of the router that walks ``routes[start:]`` only."""
        view = copy.copy(self.router)
        view.routes = routes[start:]
        self._views[(key[0], key[1], start)] = view
        return view

    def select(self, scope: Scope) -> Router | None:
        """The router (a view of it) that routes this HTTP request as the whole router would;
        None when no route can match it."""
        routes = self.router.routes
        # by identity: a route replaced by an "equal" one (same path, endpoint and methods,
        # other dependencies, e.g. a gated copy) must be seen too
        if list(map(id, routes)) != self._ids:
            self._rebuild(routes)
        key = self._key(get_route_path(scope))
        candidates = self._candidates.get(key)
        if candidates is None:
            candidates = self._candidates_of(key)
        for start, route in enumerate(candidates):
            match, _ = route.matches(scope)
            if match is not Match.NONE:
                return self._views.get((key[0], key[1], start)) or self._view(
                    key, start, candidates
                )
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        view = self.select(scope) if scope["type"] == "http" else None
        if view is None:  # not HTTP, or nothing can match: the whole router (redirect, 404)
            await self.app(scope, receive, send)
            return
        if "router" not in scope:
            scope["router"] = self.router  # url_for & co. see every route
        await view.app(scope, receive, send)


def index_routes(router: Router) -> None:
    """Install :class:`RouteIndex` on ``router`` (once; not when the router has middleware of
    its own, which the index must not bypass)."""
    stack = router.middleware_stack
    if isinstance(stack, RouteIndex):
        return
    if stack != router.app:  # bound methods compare by function and instance
        return
    router.middleware_stack = RouteIndex(router, router.app)
