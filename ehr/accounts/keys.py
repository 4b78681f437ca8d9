"""Our signing keys (JWKs) and their rotation; symmetric secrets for cookies.

* The newest active key signs access and id tokens (ES256 on P-256 by default, or RS256 on
  RSA-2048). ``kid`` is the key's RFC 7638 thumbprint. Changing the configured algorithm
  rotates to a key of the new kind.
* :meth:`SigningKeys.rotate` adds a key and retires the others. A retired key stays in the JWKS
  for ``publish_retired_s`` (at least the longest token lifetime), so tokens it signed keep
  verifying until they expire. With ``rotate_after_s`` the signing key rotates itself when it
  gets that old (the next token issued triggers it).
* Every process caches the keys for ``cache_s`` and re-reads them when a token names a
  ``kid`` it does not know (at most once a second), so a rotation in one worker is seen by all.
* Private keys are encrypted at rest when a key secret is configured (:mod:`.crypto`).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from joserfc.jwk import ECKey, KeySet, RSAKey
from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from ._db import US, now_us, read_tx, write_tx
from .crypto import decrypt, encrypt, new_secret
from .tables import signing_keys

__all__ = ["SIGNING_ALGS", "KeyInfo", "SigningKeys"]

#: algorithms we sign with (and the only ones our tokens are accepted with)
SIGNING_ALGS = ("ES256", "RS256")

SigningKey = ECKey | RSAKey


@dataclass(frozen=True)
class KeyInfo:
    kid: str
    alg: str
    created: int
    retired: int | None


def _generate(alg: str) -> SigningKey:
    if alg == "ES256":
        key: SigningKey = ECKey.generate_key("P-256", private=True)
    elif alg == "RS256":
        key = RSAKey.generate_key(2048, private=True)
    else:
        raise ValueError(f"signing algorithm must be one of {', '.join(SIGNING_ALGS)}")
    key.ensure_kid()
    return key


class SigningKeys:
    def __init__(
        self,
        engine: Engine,
        *,
        secret: str = "",
        alg: str = "ES256",
        rotate_after_s: int = 0,
        publish_retired_s: int = 2 * 86_400,
        cache_s: float = 30.0,
    ) -> None:
        if alg not in SIGNING_ALGS:
            raise ValueError(f"signing algorithm must be one of {', '.join(SIGNING_ALGS)}")
        self.engine = engine
        self.secret = secret
        self.alg = alg
        self.rotate_after_s = rotate_after_s
        self.publish_retired_s = publish_retired_s
        self.cache_s = cache_s
        self._lock = threading.Lock()
        self._signing: tuple[float, str, SigningKey] | None = None
        self._public: tuple[float, dict[str, Any]] | None = None
        self._last_miss = 0.0
        self._secrets: dict[str, bytes] = {}

    # -- signing -----------------------------------------------------------------------------
    def signing_key(self) -> tuple[str, SigningKey]:
        """(alg, private key with ``kid``) of the key that signs now; made on first use."""
        with self._lock:
            cached = self._signing
            if cached and time.monotonic() - cached[0] < self.cache_s:
                return cached[1], cached[2]
        row = self._newest_active()
        stale = row is not None and (
            row.alg != self.alg  # the configured algorithm changed
            or (self.rotate_after_s > 0 and now_us() - row.created > self.rotate_after_s * US)
        )
        if row is None or stale:
            self.rotate()
            row = self._newest_active()
            assert row is not None
        key = self._load_private(row.private_jwk)
        with self._lock:
            self._signing = (time.monotonic(), row.alg, key)
        return row.alg, key

    def _newest_active(self) -> Any:
        with read_tx(self.engine) as conn:
            return conn.execute(
                select(signing_keys)
                .where(signing_keys.c.use == "sig", signing_keys.c.retired.is_(None))
                .order_by(signing_keys.c.created.desc())
                .limit(1)
            ).first()

    def _load_private(self, stored: str) -> SigningKey:
        data = json.loads(decrypt(stored, self.secret))
        return ECKey.import_key(data) if data["kty"] == "EC" else RSAKey.import_key(data)

    def rotate(self, alg: str | None = None) -> str:
        """Make a new signing key and retire the others; returns the new ``kid``."""
        key = _generate(alg or self.alg)
        now = now_us()
        public = key.as_dict(private=False)
        public.update(use="sig", alg=alg or self.alg)
        with write_tx(self.engine) as conn:
            conn.execute(
                update(signing_keys)
                .where(signing_keys.c.use == "sig", signing_keys.c.retired.is_(None))
                .values(retired=now)
            )
            conn.execute(
                insert(signing_keys).values(
                    kid=key.kid,
                    use="sig",
                    alg=alg or self.alg,
                    private_jwk=encrypt(json.dumps(key.as_dict(private=True)), self.secret),
                    public_jwk=json.dumps(public),
                    created=now,
                    retired=None,
                )
            )
        with self._lock:
            self._signing = None
            self._public = None
        return str(key.kid)

    def list(self) -> Sequence[KeyInfo]:
        with read_tx(self.engine) as conn:
            rows = conn.execute(
                select(signing_keys)
                .where(signing_keys.c.use == "sig")
                .order_by(signing_keys.c.created)
            ).all()
        return [KeyInfo(r.kid, r.alg, r.created, r.retired) for r in rows]

    # -- publishing and verifying ------------------------------------------------------------
    def jwks(self) -> dict[str, Any]:
        """The public JWKS: the active keys and those retired less than
        ``publish_retired_s`` ago."""
        return {"keys": list(self._published().values())}

    def _published(self, refresh: bool = False) -> dict[str, Any]:
        with self._lock:
            cached = self._public
            if cached and not refresh and time.monotonic() - cached[0] < self.cache_s:
                return cached[1]
        cutoff = now_us() - self.publish_retired_s * US
        with read_tx(self.engine) as conn:
            rows = conn.execute(
                select(signing_keys.c.kid, signing_keys.c.public_jwk)
                .where(
                    signing_keys.c.use == "sig",
                    (signing_keys.c.retired.is_(None)) | (signing_keys.c.retired > cutoff),
                )
                .order_by(signing_keys.c.created.desc())
            ).all()
        keys = {r.kid: json.loads(r.public_jwk) for r in rows}
        with self._lock:
            self._public = (time.monotonic(), keys)
        return keys

    def keys_cached(self) -> bool:
        """True when the published keys are in memory (verifying needs no database)."""
        cached = self._public
        return cached is not None and time.monotonic() - cached[0] < self.cache_s

    def public_keyset(self, kid: str | None = None) -> KeySet:
        """The published keys; re-read when ``kid`` is not among them (rate-limited)."""
        keys = self._published()
        if kid is not None and kid not in keys:
            with self._lock:
                due = time.monotonic() - self._last_miss > 1.0
                if due:
                    self._last_miss = time.monotonic()
            if due:
                keys = self._published(refresh=True)
        return KeySet.import_key_set({"keys": list(keys.values())})

    # -- symmetric secrets -------------------------------------------------------------------
    def shared_secret(self, name: str) -> bytes:
        """A 256-bit secret shared by every worker (made on first use), e.g. for cookies."""
        if name in self._secrets:
            return self._secrets[name]
        kid = f"secret:{name}"[:64]
        with read_tx(self.engine) as conn:
            row = conn.execute(select(signing_keys).where(signing_keys.c.kid == kid)).first()
        if row is None:
            try:
                with write_tx(self.engine) as conn:
                    conn.execute(
                        insert(signing_keys).values(
                            kid=kid,
                            use="secret",
                            alg="HS256",
                            private_jwk=encrypt(new_secret(32), self.secret),
                            public_jwk=None,
                            created=now_us(),
                            retired=None,
                        )
                    )
            except IntegrityError:
                pass
            with read_tx(self.engine) as conn:
                row = conn.execute(select(signing_keys).where(signing_keys.c.kid == kid)).one()
        value = decrypt(row.private_jwk, self.secret).encode()
        self._secrets[name] = value
        return value
