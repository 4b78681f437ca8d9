"""The state a tap check needs: nonces, card counters, revocations, SUN tag directory.

Card flow: /work/shared/CARD.md ("Flow at the counter", "Card life cycle").

Each store is a Protocol so that the server backs it with the database (one row per nonce /
card, updated atomically: ``UPDATE ... SET last = :c WHERE cid = :cid AND last < :c`` for the
counter, ``DELETE ... RETURNING`` for a nonce). The in-memory versions here are for tests and a
single-process demo; they are thread-safe.

- :class:`NonceStore`: a nonce is random (32 bytes), bound to the terminal that fetched it,
  short-lived (default 120 s) and single-use. :class:`NonceCheck` is one terminal's view of
  it, as :func:`ehr.cards.verify.verify_tap` consumes it.
- :class:`CounterStore`: ``advance(cid, counter)`` accepts only a counter strictly greater
  than the last accepted one, and records it, atomically.
- :class:`RevocationCheck`: called with a ``cid``, True when the card was revoked (lost, replaced).
- :class:`SunTagDirectory`: the card id (``cid``) a SUN tag's UID was issued as, or None.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field
from typing import Protocol

__all__ = [
    "CounterStore",
    "InMemoryCounterStore",
    "InMemoryNonceStore",
    "InMemoryRevocationList",
    "InMemorySunTagDirectory",
    "NonceCheck",
    "NonceStore",
    "RevocationCheck",
    "SunTagDirectory",
    "nonce_check_for",
]

NONCE_BYTES = 32
DEFAULT_NONCE_TTL = 120.0


class NonceCheck(Protocol):
    def __call__(self, nonce: bytes) -> bool:
        """Consume ``nonce``: True if it was issued to this terminal, unexpired and unused."""
        ...


class NonceStore(Protocol):
    def issue(self, terminal: str, now: float) -> bytes: ...

    def consume(self, nonce: bytes, terminal: str, now: float) -> bool: ...


class CounterStore(Protocol):
    def advance(self, cid: str, counter: int) -> bool:
        """Record ``counter`` for ``cid`` iff it is strictly greater than the last one."""
        ...


class RevocationCheck(Protocol):
    def __call__(self, cid: str) -> bool:
        """True if the card ``cid`` is revoked."""
        ...


class SunTagDirectory(Protocol):
    def __call__(self, uid: bytes) -> str | None:
        """The ``cid`` the SUN tag with this UID was issued as, or None."""
        ...


def nonce_check_for(store: NonceStore, terminal: str, now: float) -> NonceCheck:
    """The :class:`NonceCheck` of one terminal at one moment."""

    def check(nonce: bytes) -> bool:
        return store.consume(nonce, terminal, now)

    return check


@dataclass
class InMemoryNonceStore:
    ttl: float = DEFAULT_NONCE_TTL
    _issued: dict[bytes, tuple[str, float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def issue(self, terminal: str, now: float) -> bytes:
        nonce = secrets.token_bytes(NONCE_BYTES)
        with self._lock:
            for n in [n for n, (_, exp) in self._issued.items() if exp < now]:
                del self._issued[n]
            self._issued[nonce] = (terminal, now + self.ttl)
        return nonce

    def consume(self, nonce: bytes, terminal: str, now: float) -> bool:
        with self._lock:
            entry = self._issued.get(nonce)
            if entry is None or entry[0] != terminal:
                return False  # unknown, used, or another terminal's (which keeps it)
            del self._issued[nonce]
        return now <= entry[1]


@dataclass
class InMemoryCounterStore:
    _last: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def advance(self, cid: str, counter: int) -> bool:
        with self._lock:
            if counter <= self._last.get(cid, -1):
                return False
            self._last[cid] = counter
            return True

    def last(self, cid: str) -> int | None:
        return self._last.get(cid)


@dataclass
class InMemoryRevocationList:
    revoked: set[str] = field(default_factory=set)

    def revoke(self, cid: str) -> None:
        self.revoked.add(cid)

    def __call__(self, cid: str) -> bool:
        return cid in self.revoked


@dataclass
class InMemorySunTagDirectory:
    tags: dict[bytes, str] = field(default_factory=dict)

    def register(self, uid: bytes, cid: str) -> None:
        self.tags[bytes(uid)] = cid

    def __call__(self, uid: bytes) -> str | None:
        return self.tags.get(bytes(uid))
