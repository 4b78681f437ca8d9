"""The login session and CSRF protection of the authorization server's HTML pages.

* Session: a cookie holding ``{uid, at, exp}`` signed with HMAC-SHA256 under a secret shared by
  all workers (:meth:`ehr.accounts.SigningKeys.shared_secret`); ``HttpOnly``, ``SameSite=Lax``,
  ``Secure`` on https, scoped to ``/auth``. The user is re-read on every use, so disabling an
  account ends its sessions.
* CSRF (OWASP "Signed Double-Submit Cookie"): a random cookie, and in each form a token that is
  the HMAC of that cookie and the form's purpose (bound to the user for the consent form). A
  cross-site page can neither read the cookie nor compute the token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

from starlette.responses import Response

from ehr.accounts.crypto import new_secret

from .adapter import HttpRequest

__all__ = ["CSRF_COOKIE", "LANG_COOKIE", "SESSION_COOKIE", "Signer"]

SESSION_COOKIE = "ehr_auth_session"
CSRF_COOKIE = "ehr_auth_csrf"
LANG_COOKIE = "ehr_auth_lang"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    def __init__(self, secret: bytes) -> None:
        self.secret = secret

    def _mac(self, data: str) -> str:
        return _b64(hmac.new(self.secret, data.encode(), hashlib.sha256).digest())

    def sign(self, payload: dict[str, Any], ttl_s: int) -> str:
        data = _b64(json.dumps({**payload, "exp": int(time.time()) + ttl_s}).encode())
        return f"{data}.{self._mac(data)}"

    def unsign(self, value: str | None) -> dict[str, Any] | None:
        if not value or value.count(".") != 1:
            return None
        data, mac = value.split(".")
        if not hmac.compare_digest(mac, self._mac(data)):
            return None
        try:
            payload = json.loads(_unb64(data))
        except ValueError:
            return None
        if not isinstance(payload, dict) or not payload.get("exp", 0) > time.time():
            return None
        return payload

    # -- CSRF ----------------------------------------------------------------------------------
    def csrf_token(self, cookie: str, purpose: str) -> str:
        return self._mac(f"csrf|{cookie}|{purpose}")

    def check_csrf(self, http: HttpRequest, purpose: str) -> bool:
        cookie = http.cookies.get(CSRF_COOKIE)
        sent = http.param("csrf")
        if not cookie or not sent:
            return False
        return hmac.compare_digest(sent, self.csrf_token(cookie, purpose))


def csrf_cookie(http: HttpRequest) -> tuple[str, bool]:
    """The request's CSRF cookie value, or a new one (and True: it must be set)."""
    value = http.cookies.get(CSRF_COOKIE)
    if value and 20 <= len(value) <= 100:
        return value, False
    return new_secret(24), True


def set_cookie(
    response: Response, http: HttpRequest, name: str, value: str, max_age: int | None
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=http.urls.auth_path,
        secure=http.urls.secure,
        httponly=True,
        samesite="lax",
    )


def clear_cookie(response: Response, http: HttpRequest, name: str) -> None:
    response.delete_cookie(
        name, path=http.urls.auth_path, secure=http.urls.secure, httponly=True, samesite="lax"
    )
