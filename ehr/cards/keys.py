"""The card issuer's keys in the database: ES256 issuer keys (rotating) and the SUN tag keys.

Specs: JWKS, RFC 7517 section 5 (https://www.rfc-editor.org/rfc/rfc7517#section-5); key ids are
RFC 7638 thumbprints (:class:`ehr.cards.credential.IssuerKey`). SUN keys: NXP AN12196 / AN10922
(:mod:`ehr.cards.sun`).

These keys are not the authorization server's token signing keys (:mod:`ehr.accounts.keys`):
cards live for years and are verified offline by anyone holding the public JWKS, tokens for an
hour. The pattern is the same: rows in ``card_keys`` (:mod:`ehr.cards.tables`), private parts
encrypted at rest with :mod:`ehr.accounts.crypto`, one active key per use (the database's
unique constraint), a per-process cache re-read when a credential names a ``kid`` it does not
know (at most once a second), so a rotation made by one process is seen by all.

* :class:`IssuerKeyStore`: :meth:`~IssuerKeyStore.keyset` is the :class:`IssuerKeySet` to sign
  and verify with (made on first use; rotated by itself when older than ``rotate_after_s``);
  :meth:`~IssuerKeyStore.rotate` retires the active key, which stays (and stays published) for
  ``max_card_lifetime`` after it was retired; :meth:`~IssuerKeyStore.prune` drops keys past that.
* :class:`SunKeyStore`: the batch keys of the SUN tags (configured, or generated once).
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from joserfc.jwk import ECKey
from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from ehr.accounts.crypto import decrypt, encrypt
from ehr.storage.db import WRITE

from .credential import IssuerKey, IssuerKeySet
from .sun import SunKeys
from .tables import card_keys

__all__ = ["IssuerKeyInfo", "IssuerKeyStore", "SunKeyStore"]

US = 1_000_000
ISSUER, SUN = "issuer", "sun"
_ANY = object()


@contextmanager
def _write(engine: Engine) -> Iterator[Connection]:
    with engine.connect().execution_options(**WRITE) as conn, conn.begin():
        yield conn


@dataclass(frozen=True)
class IssuerKeyInfo:
    kid: str
    created: int  # s
    retired: int | None  # s


class IssuerKeyStore:
    def __init__(
        self,
        engine: Engine,
        *,
        max_card_lifetime: int,
        secret: str = "",
        rotate_after_s: int = 0,
        cache_s: float = 30.0,
    ) -> None:
        self.engine = engine
        self.max_card_lifetime = max_card_lifetime
        self.secret = secret
        self.rotate_after_s = rotate_after_s
        self.cache_s = cache_s
        self._lock = threading.Lock()
        self._cached: tuple[float, IssuerKeySet] | None = None
        self._last_miss = 0.0

    # -- reading -----------------------------------------------------------------------------
    def _load(self) -> IssuerKeySet:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(
                    card_keys.c.kid, card_keys.c.secret, card_keys.c.created, card_keys.c.retired
                )
                .where(card_keys.c.use == ISSUER)
                .order_by(card_keys.c.created)
            ).all()
        keys = [
            IssuerKey(
                ECKey.import_key(json.loads(decrypt(r.secret, self.secret))),
                int(r.created // US),
                None if r.retired is None else int(r.retired // US),
            )
            for r in rows
        ]
        return IssuerKeySet(keys, max_card_lifetime=self.max_card_lifetime)

    def keyset(self, kid: str | None = None) -> IssuerKeySet:
        """The issuer keys, to verify with (cached ``cache_s``). A ``kid`` not among them makes
        one re-read, at most once a second (a rotation made by another process)."""
        now = time.monotonic()
        with self._lock:
            cached = self._cached
        fresh = cached is not None and now - cached[0] < self.cache_s
        if cached is not None and fresh and (kid is None or kid in cached[1].kids()):
            return cached[1]
        if cached is not None and fresh:  # an unknown kid: re-read at most once a second
            with self._lock:
                due = now - self._last_miss > 1.0
                if due:
                    self._last_miss = now
            if not due:
                return cached[1]
        ks = self._load()
        with self._lock:
            self._cached = (now, ks)
        return ks

    def signing_keyset(self, now: float | None = None) -> IssuerKeySet:
        """The keys with an active signing key: made on first use, rotated when too old."""
        t = time.time() if now is None else now
        ks = self.keyset()
        try:
            active: IssuerKey | None = ks.active
        except LookupError:
            active = None
        stale = active is not None and (
            self.rotate_after_s > 0 and t - active.created > self.rotate_after_s
        )
        if active is None or stale:
            self._rotate(t, None if active is None else active.kid)
            ks = self.keyset()
        return ks

    def listing(self) -> list[IssuerKeyInfo]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(card_keys.c.kid, card_keys.c.created, card_keys.c.retired)
                .where(card_keys.c.use == ISSUER)
                .order_by(card_keys.c.created)
            ).all()
        return [
            IssuerKeyInfo(r.kid, r.created // US, None if r.retired is None else r.retired // US)
            for r in rows
        ]

    def public_jwks(self, now: float | None = None) -> dict[str, Any]:
        """The JWKS to publish: the active key and the retired ones still kept."""
        return self.keyset().public_jwks(time.time() if now is None else now)

    # -- writing -----------------------------------------------------------------------------
    def rotate(self, now: float | None = None) -> str:
        """Make a new active issuer key and retire the previous one; returns the new kid."""
        return self._rotate(time.time() if now is None else now, _ANY)

    def _rotate(self, t: float, expected: object) -> str:
        """Rotate if the active kid is ``expected`` (:data:`_ANY`: whatever it is; None: there
        is none yet), else return the active kid: several processes finding the key missing or
        stale at once make one key, not one each."""
        for _ in range(3):
            key = ECKey.generate_key("P-256", private=True)
            kid = key.thumbprint()
            try:
                with _write(self.engine) as conn:
                    current = conn.execute(
                        select(card_keys.c.kid)
                        .where(card_keys.c.use == ISSUER, card_keys.c.active.is_(True))
                        .with_for_update()
                    ).scalar()
                    if expected is not _ANY and current != expected and current is not None:
                        self._cached = None
                        return str(current)
                    if current is not None:
                        conn.execute(
                            update(card_keys)
                            .where(card_keys.c.kid == current)
                            .values(active=None, retired=int(t * US))
                        )
                    conn.execute(
                        insert(card_keys).values(
                            kid=kid,
                            use=ISSUER,
                            secret=encrypt(
                                json.dumps(dict(key.as_dict(private=True))), self.secret
                            ),
                            public_jwk=json.dumps(IssuerKey(key, int(t)).public_jwk()),
                            created=int(t * US),
                            retired=None,
                            active=True,
                        )
                    )
            except IntegrityError:  # another process made an active key at the same moment
                self._cached = None
                if expected is not _ANY:
                    active = self._active_kid()
                    if active is not None:
                        return active
                continue
            self._cached = None
            return kid
        raise RuntimeError("could not make an issuer key")

    def _active_kid(self) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(
                select(card_keys.c.kid).where(
                    card_keys.c.use == ISSUER, card_keys.c.active.is_(True)
                )
            ).scalar()

    def prune(self, now: float | None = None) -> list[str]:
        """Delete retired keys that no unexpired card can still need; returns their kids."""
        t = time.time() if now is None else now
        cutoff = int((t - self.max_card_lifetime) * US)
        with _write(self.engine) as conn:
            gone = list(
                conn.execute(
                    select(card_keys.c.kid).where(
                        card_keys.c.use == ISSUER,
                        card_keys.c.retired.is_not(None),
                        card_keys.c.retired < cutoff,
                    )
                ).scalars()
            )
            if gone:
                conn.execute(delete(card_keys).where(card_keys.c.kid.in_(gone)))
        self._cached = None
        return gone


class SunKeyStore:
    """The SUN batch keys: from the settings when given, else generated once and kept."""

    def __init__(
        self,
        engine: Engine,
        *,
        secret: str = "",
        meta_read_key: bytes | None = None,
        file_read_master_key: bytes | None = None,
    ) -> None:
        self.engine = engine
        self.secret = secret
        if (meta_read_key is None) != (file_read_master_key is None):
            raise ValueError("give both SUN keys or neither")
        self._keys: SunKeys | None = (
            SunKeys(meta_read_key, file_read_master_key)
            if meta_read_key is not None and file_read_master_key is not None
            else None
        )
        self._lock = threading.Lock()

    def keys(self) -> SunKeys:
        with self._lock:
            if self._keys is None:
                self._keys = self._load_or_make()
            return self._keys

    def _read(self) -> SunKeys | None:
        with self.engine.connect() as conn:
            stored = conn.execute(
                select(card_keys.c.secret).where(
                    card_keys.c.use == SUN, card_keys.c.active.is_(True)
                )
            ).scalar()
        if stored is None:
            return None
        data = json.loads(decrypt(stored, self.secret))
        return SunKeys(bytes.fromhex(data["meta_read_key"]), bytes.fromhex(data["master_key"]))

    def _load_or_make(self) -> SunKeys:
        found = self._read()
        if found is not None:
            return found
        data = {"meta_read_key": os.urandom(16).hex(), "master_key": os.urandom(16).hex()}
        try:
            with _write(self.engine) as conn:
                conn.execute(
                    insert(card_keys).values(
                        kid=f"sun-{secrets.token_hex(8)}",
                        use=SUN,
                        secret=encrypt(json.dumps(data), self.secret),
                        public_jwk=None,
                        created=int(time.time() * US),
                        retired=None,
                        active=True,
                    )
                )
        except IntegrityError:
            pass  # made by another process just now
        found = self._read()
        assert found is not None
        return found
