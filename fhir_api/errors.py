"""Every failure leaves the API as an OperationOutcome (http://hl7.org/fhir/R4/http.html#2.21.0.9).

=========================================  ================================================
raised                                     response
=========================================  ================================================
``ehr.errors.FhirError`` (and subclasses)  its status, its issues, its headers
``RequestValidationError`` (FastAPI)       400 invalid
``HTTPException`` (Starlette): no route    404 not-found
``HTTPException``: method not allowed      405 not-supported, ``Allow`` lists the methods
any other ``HTTPException``                its status
the database unreachable or overloaded     503 transient, ``Retry-After``, logged (SQLAlchemy's
(``OperationalError``: refused, too many   or psycopg's ``OperationalError``; the transaction
clients, a statement timeout, a deadlock)  was rolled back: nothing was written)
any other ``Exception``                    500 exception, logged, no traceback in the body
=========================================  ================================================

The 500 rendering is done by the edge middleware (:class:`fhir_api.edge.EdgeMiddleware`) rather
than an ``Exception`` handler, so the error is logged once, there, and not re-raised into the
server.
"""

from __future__ import annotations

import logging

import orjson
import psycopg
import sqlalchemy.exc
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match

from ehr.errors import FhirError, Issue, operation_outcome

__all__ = ["install_error_handlers", "outcome_bytes", "outcome_response"]

log = logging.getLogger("fhir_api.errors")

_CONTENT_TYPE = "application/fhir+json; charset=utf-8"


def outcome_bytes(issues: list[Issue]) -> bytes:
    return orjson.dumps(operation_outcome(issues))


def outcome_response(err: FhirError) -> Response:
    """The OperationOutcome response of a :class:`FhirError` (its status and headers)."""
    return Response(
        outcome_bytes(err.issues),
        status_code=err.status,
        headers=err.headers or None,
        media_type=_CONTENT_TYPE,
    )


def _allowed_methods(request: Request) -> list[str]:
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches({**request.scope, "method": "OPTIONS-PROBE"})
        if match is not Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods)


async def _fhir_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, FhirError)
    return outcome_response(exc)


async def _validation_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    issues = []
    for e in exc.errors():
        where = ".".join(str(p) for p in e.get("loc", ()))
        issues.append(Issue("invalid", f"{where}: {e.get('msg', 'invalid')}"))
    return outcome_response(FhirError(400, "invalid", "Invalid request", issues=issues or []))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    headers: dict[str, str] = dict(exc.headers or {})
    if status == 404:
        code, text = "not-found", f"No such endpoint: {request.method} {request.url.path}"
    elif status == 405:
        allowed = _allowed_methods(request)
        headers["Allow"] = ", ".join(allowed)
        code = "not-supported"
        text = (
            f"{request.method} is not allowed on {request.url.path} (allowed: {', '.join(allowed)})"
        )
    else:
        code, text = ("invalid" if status < 500 else "exception"), str(exc.detail)
    return outcome_response(FhirError(status, code, text, headers=headers))


async def _database_unavailable(request: Request, exc: Exception) -> Response:
    log.warning("database unavailable on %s %s: %s", request.method, request.url.path, exc)
    text = "The database is unavailable or overloaded; nothing was written. Retry shortly."
    return outcome_response(FhirError(503, "transient", text, headers={"Retry-After": "1"}))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(FhirError, _fhir_error)
    app.add_exception_handler(sqlalchemy.exc.OperationalError, _database_unavailable)
    app.add_exception_handler(psycopg.OperationalError, _database_unavailable)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
