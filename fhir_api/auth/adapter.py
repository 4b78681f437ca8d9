"""The thin Starlette adapter around Authlib's framework-neutral OAuth 2.0 server core (as
Authlib's own ``integrations/flask_oauth2`` is around Flask).

An ``async`` dependency (:func:`read_request`) reads the form body once in the event loop and
computes the public URLs; the endpoints are then plain ``def`` functions (run in the thread
pool) that hand :class:`HttpRequest` to Authlib, which is synchronous like our store.

Public URLs (https://hl7.org/fhir/smart-app-launch/conformance.html):

* the FHIR base is ``EHR_BASE_URL``, else derived from the request (``fhir_api.deps.base_url``);
* the application root is the FHIR base without the FHIR prefix (``/fhir``);
* the authorization server lives at ``{root}/auth/...``; its issuer is ``{root}/auth`` unless
  ``EHR_AUTH_ISSUER`` says otherwise.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from authlib.oauth2.rfc6749 import OAuth2Payload, OAuth2Request
from starlette.datastructures import Headers
from starlette.requests import Request

from ..deps import base_url

__all__ = ["HttpRequest", "OAuthRequest", "Urls", "read_request"]

MAX_FORM_FIELDS = 200


@dataclass(frozen=True)
class Urls:
    """The public URLs of one deployment, as seen by one request."""

    fhir_base: str
    root: str
    issuer: str

    @classmethod
    def build(cls, fhir_base: str, prefix: str, issuer: str = "") -> Urls:
        fhir_base = fhir_base.rstrip("/")
        root = fhir_base[: -len(prefix)] if prefix and fhir_base.endswith(prefix) else fhir_base
        return cls(fhir_base, root, issuer.rstrip("/") or f"{root}/auth")

    @property
    def auth(self) -> str:
        return f"{self.root}/auth"

    @property
    def authorize(self) -> str:
        return f"{self.auth}/authorize"

    @property
    def token(self) -> str:
        return f"{self.auth}/token"

    @property
    def introspect(self) -> str:
        return f"{self.auth}/introspect"

    @property
    def revoke(self) -> str:
        return f"{self.auth}/revoke"

    @property
    def jwks(self) -> str:
        return f"{self.auth}/jwks"

    @property
    def login(self) -> str:
        return f"{self.auth}/login"

    @property
    def logout(self) -> str:
        return f"{self.auth}/logout"

    @property
    def end_session(self) -> str:
        return f"{self.auth}/end-session"

    @property
    def auth_path(self) -> str:
        """The path of ``/auth`` under the public root (cookie path, safe redirect targets)."""
        return urlsplit(self.auth).path or "/auth"

    @property
    def secure(self) -> bool:
        return self.root.startswith("https://")


@dataclass(frozen=True)
class HttpRequest:
    """What the OAuth endpoints need of one HTTP request, read once."""

    method: str
    url: str
    path: str
    headers: Headers
    query: list[tuple[str, str]]
    form: list[tuple[str, str]]
    cookies: dict[str, str]
    client_ip: str | None
    urls: Urls

    def param(self, name: str) -> str | None:
        """A form field, else a query parameter (first value)."""
        for k, v in self.form:
            if k == name:
                return v
        for k, v in self.query:
            if k == name:
                return v
        return None


async def read_request(request: Request) -> HttpRequest:
    form: list[tuple[str, str]] = []
    if request.method == "POST":
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype == "application/x-www-form-urlencoded":
            body = await request.body()
            try:
                form = parse_qsl(
                    body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS
                )
            except (UnicodeDecodeError, ValueError):
                form = []
    state: Any = request.app.state
    urls = Urls.build(await base_url(request), state.prefix, state.auth.config.issuer)
    public = urls.root + request.url.path[len(request.scope.get("root_path", "")) :]
    if request.url.query:
        public += "?" + request.url.query
    return HttpRequest(
        method=request.method,
        url=public,
        path=request.url.path,
        headers=request.headers,
        query=parse_qsl(request.url.query, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS),
        form=form,
        cookies=dict(request.cookies),
        client_ip=request.client.host if request.client else None,
        urls=urls,
    )


class _Payload(OAuth2Payload):  # type: ignore[misc]
    def __init__(self, http: HttpRequest) -> None:
        pairs = http.query + http.form if http.method == "GET" else http.form or http.query
        self._datalist: defaultdict[str, list[str]] = defaultdict(list)
        for k, v in pairs:
            self._datalist[k].append(v)
        self._data = {k: v[0] for k, v in self._datalist.items()}

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        return self._datalist


class OAuthRequest(OAuth2Request):  # type: ignore[misc]
    """Authlib's request object for one of our HTTP requests, plus what the SMART grants
    carry between validation and issuance."""

    def __init__(self, http: HttpRequest) -> None:
        super().__init__(method=http.method, uri=http.url, headers=http.headers)
        self.http = http
        self.urls = http.urls
        self.payload = _Payload(http)
        self._args = {k: v for k, v in reversed(http.query)}
        self._form = {k: v for k, v in reversed(http.form)}
        #: the EHR launch resolved from the ``launch`` parameter
        self.launch_context: Any = None
        #: launch context the user agreed to (patient, encounter, banner...)
        self.smart_context: dict[str, Any] = {}
        #: when the user logged in (seconds since the epoch)
        self.auth_time: int | None = None

    @property
    def args(self) -> dict[str, str]:
        return self._args

    @property
    def form(self) -> dict[str, str]:
        return self._form
