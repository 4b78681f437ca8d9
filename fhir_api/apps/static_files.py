"""The apps' static files under ``/app/``: public HTML, ES modules, CSS and vendored libraries,
with a strict Content-Security-Policy and revalidated caching.

Headers on every response of the mount (files, 304s, 404s and the ``/app/x`` -> ``/app/x/``
redirects alike):

* ``Content-Security-Policy``: scripts, styles, fonts and connections from our own origin only;
  no inline script or style element, no ``eval``, no plugins, not framed, forms post only to
  us (the login page is ours). Images may be ``data:`` (the QR code and chart exports).
  See https://www.w3.org/TR/CSP3/.
* ``Cache-Control: no-cache``: the browser keeps the file but revalidates it (ETag /
  Last-Modified, answered with 304), so a deployment is seen at once without file hashing;
* ``Referrer-Policy: no-referrer`` (an authorization code in the address must not leak),
  ``X-Content-Type-Options: nosniff``, ``X-Frame-Options: DENY``, and a ``Permissions-Policy``
  that allows the camera to our own pages (the nurse station scans wristbands).
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.responses import PlainTextResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

__all__ = ["CSP", "SECURITY_HEADERS", "AppFiles"]

CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    ]
)

SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "Cache-Control": "no-cache",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Permissions-Policy": "camera=(self), microphone=(), geolocation=()",
    "Cross-Origin-Opener-Policy": "same-origin",
}


class AppFiles(StaticFiles):
    """:class:`~starlette.staticfiles.StaticFiles` (``index.html`` for a folder, ETag and 304)
    with :data:`SECURITY_HEADERS` on every response."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
            await send(message)

        await super().__call__(scope, receive, send_with_headers)

    async def get_response(self, path: str, scope: Scope) -> Response:
        """A missing file is a plain 404 page (with the headers), not the API's error body."""
        try:
            return await super().get_response(path, scope)
        except HTTPException as exc:
            return PlainTextResponse(exc.detail, status_code=exc.status_code)
