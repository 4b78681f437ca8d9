"""Remote JWKS documents fetched over HTTPS and cached: the keys of clients registered with a
``jwks_uri`` (SMART Backend Services) and of an external OpenID Connect issuer.

A document is cached for ``ttl_s``; a ``kid`` not in the cached copy triggers one re-fetch (at
most every ``min_refresh_s``), so a client can rotate its keys without re-registering.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

__all__ = ["JwksCache", "JwksError"]

MAX_BYTES = 256 * 1024


class JwksError(Exception):
    """The JWKS could not be fetched or parsed."""


class JwksCache:
    def __init__(
        self,
        *,
        ttl_s: float = 300.0,
        min_refresh_s: float = 10.0,
        timeout_s: float = 5.0,
        client: httpx.Client | None = None,
    ) -> None:
        self.ttl_s = ttl_s
        self.min_refresh_s = min_refresh_s
        self._client = client or httpx.Client(timeout=timeout_s, follow_redirects=False)
        self._lock = threading.Lock()
        self._docs: dict[str, tuple[float, dict[str, Any]]] = {}

    def _fetch(self, url: str) -> dict[str, Any]:
        try:
            resp = self._client.get(url, headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise JwksError(f"cannot fetch {url}: {exc}") from exc
        if resp.status_code != 200 or len(resp.content) > MAX_BYTES:
            raise JwksError(f"cannot fetch {url}: HTTP {resp.status_code}")
        try:
            doc = resp.json()
        except ValueError as exc:
            raise JwksError(f"{url} is not JSON") from exc
        if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
            raise JwksError(f"{url} is not a JWKS document")
        return doc

    def document(self, url: str, kid: str | None = None) -> dict[str, Any]:
        now = time.monotonic()
        with self._lock:
            cached = self._docs.get(url)
        known = cached is not None and (
            kid is None
            or any(k.get("kid") == kid for k in cached[1]["keys"] if isinstance(k, dict))
        )
        if cached is not None and now - cached[0] < self.ttl_s and known:
            return cached[1]
        if cached is not None and now - cached[0] < self.min_refresh_s:
            return cached[1]
        doc = self._fetch(url)
        with self._lock:
            self._docs[url] = (now, doc)
        return doc

    def keyset(self, url: str, kid: str | None = None) -> KeySet:
        try:
            return KeySet.import_key_set(self.document(url, kid))  # type: ignore[arg-type]
        except (ValueError, TypeError, KeyError, JoseError) as exc:
            raise JwksError(f"{url}: malformed keys") from exc
