"""The terminal's HTTP client of the API: an OAuth backend client and the card operations.

Specs: SMART Backend Services (https://hl7.org/fhir/smart-app-launch/backend-services.html):
client credentials grant (RFC 6749 section 4.4) with ``private_key_jwt`` client authentication
(RFC 7523 section 2.2; the assertion is a JWT signed with the terminal's private key, ``iss`` =
``sub`` = client id, ``aud`` = the token endpoint, a unique ``jti``, at most five minutes of
life). The token endpoint comes from ``{api}/.well-known/smart-configuration``. The card
operations are those of ``fhir_api.cards`` (JSON): ``$card-nonce``, ``$card-tap``,
``Appointment/{id}/$card-checkin``.

This module knows nothing of the server's code: it speaks HTTP only.

Error tree (what the terminal does with it)::

    ApiError                  a message for the counter clerk
    ├── ApiUnavailable        network down, timeout, 5xx: retry with a back-off
    ├── ApiRefused            401 / 403: the terminal is not (or no longer) authorized
    └── ApiRejected           another 4xx (not today's booking, unknown appointment, ...)
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

__all__ = [
    "ApiError",
    "ApiRefused",
    "ApiRejected",
    "ApiUnavailable",
    "Nonce",
    "TerminalClient",
    "load_key",
    "new_key",
]

Key = ECKey | RSAKey
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
TAP_SCOPE = "system/health-card.tap"
ASSERTION_LIFETIME = 240  # seconds (SMART: at most 300)


class ApiError(Exception):
    """The API could not do what the terminal asked; ``str()`` is for the counter clerk."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ApiUnavailable(ApiError):
    """Network down, timeout, or a server error: try again later."""


class ApiRefused(ApiError):
    """The terminal is not authorized (unknown client, wrong key, missing scope)."""


class ApiRejected(ApiError):
    """The request was understood and refused (4xx other than 401 / 403)."""


@dataclass(frozen=True)
class Nonce:
    value: bytes
    #: time.monotonic() after which the terminal fetches a new one
    refresh_at: float


def load_key(path: str | Path) -> tuple[Key, str]:
    """The terminal's private key (a JWK JSON file or a PEM file) and its JWS algorithm
    (ES256 for P-256, ES384 for P-384, RS384 for RSA)."""
    raw = Path(path).read_bytes()
    key: Key
    text = raw.decode("utf-8", "replace").strip()
    if text.startswith("{"):
        data = json.loads(text)
        key = ECKey.import_key(data) if data.get("kty") == "EC" else RSAKey.import_key(data)
    elif "EC PRIVATE KEY" in text or "BEGIN PRIVATE KEY" in text and _is_ec_pem(raw):
        key = ECKey.import_key(raw)
    else:
        key = RSAKey.import_key(raw)
    if not key.is_private:
        raise ValueError(f"{path} holds no private key")
    key.ensure_kid()
    if isinstance(key, ECKey):
        alg = {"P-256": "ES256", "P-384": "ES384"}.get(str(key.curve_name))
        if alg is None:
            raise ValueError("the terminal key must be EC P-256 / P-384 or RSA")
    else:
        alg = "RS384"
    return key, alg


def _is_ec_pem(raw: bytes) -> bool:
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        return isinstance(load_pem_private_key(raw, None), ec.EllipticCurvePrivateKey)
    except (ValueError, TypeError):
        return False


def new_key(path: str | Path) -> dict[str, Any]:
    """Make a P-256 key pair for a terminal: the private JWK is written to ``path`` (mode 600);
    returns the public JWKS to register (``ehr clients add ... --jwks FILE``)."""
    key = ECKey.generate_key("P-256", private=True)
    key.ensure_kid()
    target = Path(path)
    target.write_text(json.dumps(dict(key.as_dict(private=True)), indent=2))
    target.chmod(0o600)
    public = dict(key.as_dict(private=False))
    public.update(alg="ES256", use="sig")
    return {"keys": [public]}


def _diagnostics(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:200]
    if isinstance(body, dict):
        if body.get("resourceType") == "OperationOutcome":
            issues = body.get("issue") or [{}]
            return str(issues[0].get("diagnostics") or issues[0].get("code") or "")
        if body.get("error"):
            return f"{body['error']}: {body.get('error_description', '')}".strip()
    return resp.text[:200]


class TerminalClient:
    """The API as a counter terminal sees it. Not thread-safe: one per terminal thread."""

    def __init__(
        self,
        api: str,
        client_id: str,
        key: Key,
        alg: str,
        *,
        token_url: str | None = None,
        scope: str = TAP_SCOPE,
        timeout: float = 10.0,
        http: httpx.Client | None = None,
    ) -> None:
        self.api = api.rstrip("/")
        self.client_id = client_id
        self.key = key
        self.alg = alg
        self.scope = scope
        self._token_url = token_url
        self._http = http or httpx.Client(timeout=timeout, follow_redirects=False)
        self._token: str | None = None
        self._token_until = 0.0

    @classmethod
    def from_key_file(
        cls, api: str, client_id: str, key_file: str | Path, **kw: Any
    ) -> TerminalClient:
        key, alg = load_key(key_file)
        return cls(api, client_id, key, alg, **kw)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> TerminalClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport ---------------------------------------------------------------------------
    def _send(self, method: str, url: str, **kw: Any) -> httpx.Response:
        try:
            resp = self._http.request(method, url, **kw)
        except httpx.TimeoutException as exc:
            raise ApiUnavailable("服务器无响应 / The server does not answer") from exc
        except httpx.TransportError as exc:
            raise ApiUnavailable("网络中断 / The network is down") from exc
        if resp.status_code >= 500:
            raise ApiUnavailable(
                f"服务器暂时不可用 / The server is unavailable ({resp.status_code})",
                resp.status_code,
            )
        return resp

    # -- OAuth ---------------------------------------------------------------------------------
    def token_url(self) -> str:
        if self._token_url is None:
            resp = self._send("GET", f"{self.api}/.well-known/smart-configuration")
            if resp.status_code != 200:
                raise ApiRejected(f"No SMART configuration at {self.api}", resp.status_code)
            try:
                self._token_url = str(resp.json()["token_endpoint"])
            except (ValueError, KeyError, TypeError) as exc:
                raise ApiRejected(f"No token endpoint in {self.api}'s SMART configuration") from exc
        return self._token_url

    def _assertion(self, audience: str) -> str:
        now = int(time.time())
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": audience,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME,
            "jti": uuid.uuid4().hex,
        }
        header = {"alg": self.alg, "kid": self.key.kid, "typ": "JWT"}
        return jwt.encode(header, claims, self.key, algorithms=[self.alg])

    def token(self) -> str:
        """An access token (cached until a minute before it expires)."""
        if self._token is not None and time.monotonic() < self._token_until:
            return self._token
        url = self.token_url()
        resp = self._send(
            "POST",
            url,
            data={
                "grant_type": "client_credentials",
                "scope": self.scope,
                "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": self._assertion(url),
            },
            headers={"Accept": "application/json"},
        )
        if resp.status_code != 200:
            raise ApiRefused(
                f"终端未获授权 / This terminal is not authorized: {_diagnostics(resp)}",
                resp.status_code,
            )
        body = resp.json()
        self._token = str(body["access_token"])
        self._token_until = time.monotonic() + max(0, int(body.get("expires_in", 300)) - 60)
        return self._token

    # -- the card operations -------------------------------------------------------------------
    def _post(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        for attempt in range(2):
            headers = {"Authorization": f"Bearer {self.token()}", "Accept": "application/json"}
            resp = self._send("POST", f"{self.api}{path}", json=body or {}, headers=headers)
            if resp.status_code == 401 and attempt == 0:
                self._token = None  # expired or revoked meanwhile: one new token, once
                continue
            break
        if resp.status_code in (401, 403):
            raise ApiRefused(
                f"终端未获授权 / This terminal is not authorized: {_diagnostics(resp)}",
                resp.status_code,
            )
        if resp.status_code >= 400:
            raise ApiRejected(_diagnostics(resp), resp.status_code)
        try:
            answer = resp.json()
        except ValueError as exc:
            raise ApiUnavailable("服务器应答有误 / The server's answer is malformed") from exc
        if not isinstance(answer, dict):
            raise ApiUnavailable("服务器应答有误 / The server's answer is malformed")
        return answer

    def nonce(self) -> Nonce:
        """A fresh single-use nonce for the next tap."""
        answer = self._post("/$card-nonce")
        raw = str(answer.get("nonce", ""))
        value = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
        ttl = float(answer.get("expires_in", 60))
        return Nonce(value, time.monotonic() + max(1.0, ttl - 10.0))

    def tap(self, evidence: dict[str, Any]) -> dict[str, Any]:
        """Send a tap's evidence; the server's verdict (``result`` accepted / refused)."""
        return self._post("/$card-tap", evidence)

    def check_in(self, appointment_id: str, tap_id: str) -> dict[str, Any]:
        """Check in an appointment of the patient of an accepted tap (its ``tap`` id)."""
        return self._post(f"/Appointment/{appointment_id}/$card-checkin", {"tap": tap_id})
