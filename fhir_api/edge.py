"""The edge of the API: one ASGI middleware, outermost of the API's own,
for what every HTTP request goes through.

* **Last-resort errors**: an unexpected exception becomes a 500 OperationOutcome, logged with
  its traceback (here, once, and not re-raised into the server); a
  :class:`~ehr.errors.FhirError` raised outside the routes (by a middleware) its own
  OperationOutcome. Once a response has started, the exception is re-raised (the server cuts
  the connection).
* **Cache policy**: a response without ``Cache-Control`` gets ``Cache-Control: no-store``:
  health records must not stay in a browser's or a proxy's cache (shared workstations, a record
  seen under break-the-glass); the static app pages set their own revalidation policy.
* **Body size** (413): a body larger than ``max_body_bytes`` is refused at once when
  ``Content-Length`` says so (nothing is read), otherwise as soon as the streamed (chunked) body
  passes the limit, so an oversized body is never held in memory.
* **Time** (408 / 503): a request still running after ``timeout_s`` is answered 408 when the
  client is still sending its body, 503 otherwise. Blocking store calls run through
  :func:`fhir_api.limits.in_thread`, which abandons (does not wait for) a thread when the time
  is up. A write that is abandoned may still commit, so the 503 says its outcome is unknown; on
  PostgreSQL the statement timeout bounds how long such a thread runs.

* **Observer** (:class:`EdgeHooks`): what must see every request as it comes and every
  response as it starts, before any byte of it leaves, whatever produced it (a route, a limit,
  the catch-all): the audit (:mod:`fhir_api.security.request_audit`).

One layer rather than four (catch-all, body limit, time limit, audit): each layer costs a
coroutine and a wrapper around ``send``/``receive`` on every request, and a wrapper around
``send`` a coroutine on every message. The order of the three is kept: the limits' answers
(413, 408, 503) carry ``no-store``; the OperationOutcome of an exception that reaches this
layer is sent as it is. The observer sees each of them.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ehr.errors import FhirError, PayloadTooLarge

from .errors import outcome_response

__all__ = ["NO_STORE", "EdgeHooks", "EdgeMiddleware", "Observer"]

log = logging.getLogger("fhir_api")

#: the default cache policy of every response that sets none of its own
NO_STORE = (b"cache-control", b"no-store")

#: methods whose request has no body to wait for (a timeout is a 503, not a 408)
_NO_BODY = frozenset({"GET", "HEAD", "DELETE", "OPTIONS"})


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The request body exceeds the limit of {limit} bytes")


def _declared_too_large(scope: Scope, limit: int) -> bool:
    """Does a ``Content-Length`` header announce more than ``limit`` bytes?"""
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                declared = -1
            if declared > limit:
                return True
    return False


class Observer(Protocol):
    def begin(self, scope: Scope) -> Any:
        """A request came: what :meth:`started` is to be given for it (None: not observed)."""

    def started(self, scope: Scope, seen: Any, message: Message) -> None:
        """Its response starts (``message``: ``http.response.start``, final headers)."""


class EdgeHooks:
    """``app.state.edge_hooks``: the edge's observer, set before the first request."""

    observer: Observer | None = None


class EdgeMiddleware:
    def __init__(
        self, app: ASGIApp, *, max_body_bytes: int, timeout_s: float, hooks: EdgeHooks
    ) -> None:
        self.app = app
        self.limit = max_body_bytes
        self.timeout = timeout_s
        self.hooks = hooks

    def _timed_out(self, scope: Scope, body_done: bool) -> FhirError:
        if not body_done:
            return FhirError(
                408, "timeout", f"The request body did not arrive within {self.timeout:g} s"
            )
        text = f"The request took longer than {self.timeout:g} s"
        if scope.get("method") not in ("GET", "HEAD"):
            text += "; its outcome is unknown (read the resource to check)"
        return FhirError(503, "timeout", text, headers={"Retry-After": "1"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False
        body_done = scope.get("method") in _NO_BODY
        received = 0
        limit = self.limit
        observer = self.hooks.observer
        seen = observer.begin(scope) if observer is not None else None

        async def edge_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                headers = message.get("headers") or []
                if not any(k.lower() == b"cache-control" for k, _ in headers):
                    message["headers"] = [*headers, NO_STORE]
                if seen is not None:
                    observer.started(scope, seen, message)  # type: ignore[union-attr]
                started = True
            await send(message)

        async def edge_receive() -> Message:
            nonlocal received, body_done
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _too_large(limit)
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        try:
            if _declared_too_large(scope, limit):
                await outcome_response(_too_large(limit))(scope, receive, edge_send)
                return
            if self.timeout <= 0:
                await self.app(scope, edge_receive, edge_send)
                return
            with anyio.move_on_after(self.timeout) as cancel_scope:
                await self.app(scope, edge_receive, edge_send)
            if cancel_scope.cancelled_caught and not started:
                await outcome_response(self._timed_out(scope, body_done))(scope, receive, edge_send)
        except FhirError as err:  # raised outside the routes (e.g. by a middleware)
            if started:
                raise
            await _answer(err, scope, receive, send, observer, seen)
        except Exception:
            log.exception("Unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise
            internal = FhirError(500, "exception", "Internal server error; the incident was logged")
            await _answer(internal, scope, receive, send, observer, seen)


async def _answer(
    err: FhirError, scope: Scope, receive: Receive, send: Send, observer: Any, seen: Any
) -> None:
    """The catch-all's answer: ``err`` sent as it is, but observed."""

    async def observed_send(message: Message) -> None:
        if seen is not None and message["type"] == "http.response.start":
            observer.started(scope, seen, message)
        await send(message)

    await outcome_response(err)(scope, receive, observed_send)
