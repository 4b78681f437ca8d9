"""The card registry and the tap-check stores, backed by the database.

Design: /work/shared/CARD.md ("Flow at the counter", "Card life cycle"). Tables:
:mod:`ehr.cards.tables`. Each store implements its Protocol in :mod:`ehr.cards.stores` with one
atomic statement, so concurrent API workers (and processes) agree:

* :class:`DbNonceStore` (NonceStore): ``issue`` inserts the nonce's SHA-256 bound to the
  terminal (the OAuth client id) with its expiry, dropping expired nonces and a terminal's oldest
  beyond ``max_outstanding``; ``consume`` is ``DELETE ... WHERE hash = :h AND client_id = :t AND
  expires >= :now``: exactly one of two concurrent taps with one nonce deletes the row. Another
  terminal's attempt deletes nothing (the nonce stays its owner's).
* :class:`DbCounterStore` (CounterStore): ``UPDATE cards SET last_counter = :c WHERE cid = :cid
  AND (last_counter IS NULL OR last_counter < :c)``: PostgreSQL re-checks the condition on the
  row it waited for, SQLite has one writer, so a counter value is accepted once.
* :class:`DbRevocationList` (RevocationCheck) and :class:`DbSunTagDirectory` (SunTagDirectory):
  reads of ``cards``.
* :class:`TapTickets`: accepted taps, so a terminal checks in only the patient it just read.
* :class:`CardRegistry`: the ``cards`` rows (:class:`CardRecord`); inserts and revocations run
  on the caller's connection, inside the transaction that also writes the Patient.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.engine import Connection

from ehr.storage.db import WRITE

from .stores import DEFAULT_NONCE_TTL, NONCE_BYTES
from .tables import card_nonces, card_taps, cards

__all__ = [
    "ACTIVE",
    "REVOKED",
    "CardRecord",
    "CardRegistry",
    "DbCounterStore",
    "DbNonceStore",
    "DbRevocationList",
    "DbSunTagDirectory",
    "TapTicket",
    "TapTickets",
]

US = 1_000_000
ACTIVE, REVOKED = "active", "revoked"


def _us(t: float) -> int:
    return int(t * US)


def _sha256(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


@contextmanager
def _write(engine: Engine) -> Iterator[Connection]:
    with engine.connect().execution_options(**WRITE) as conn, conn.begin():
        yield conn


class DbNonceStore:
    """:class:`ehr.cards.stores.NonceStore` on ``card_nonces``."""

    def __init__(
        self, engine: Engine, *, ttl: float = DEFAULT_NONCE_TTL, max_outstanding: int = 32
    ) -> None:
        if ttl <= 0 or max_outstanding < 1:
            raise ValueError("ttl and max_outstanding must be positive")
        self.engine = engine
        self.ttl = ttl
        self.max_outstanding = max_outstanding

    def issue(self, terminal: str, now: float) -> bytes:
        nonce = secrets.token_bytes(NONCE_BYTES)
        with _write(self.engine) as conn:
            conn.execute(delete(card_nonces).where(card_nonces.c.expires < _us(now)))
            surplus = list(
                conn.execute(
                    select(card_nonces.c.nonce_hash)
                    .where(card_nonces.c.client_id == terminal)
                    .order_by(card_nonces.c.created.desc(), card_nonces.c.nonce_hash)
                    .offset(self.max_outstanding - 1)
                ).scalars()
            )
            if surplus:
                conn.execute(delete(card_nonces).where(card_nonces.c.nonce_hash.in_(surplus)))
            conn.execute(
                insert(card_nonces).values(
                    nonce_hash=_sha256(nonce),
                    client_id=terminal,
                    created=_us(now),
                    expires=_us(now + self.ttl),
                )
            )
        return nonce

    def consume(self, nonce: bytes, terminal: str, now: float) -> bool:
        with _write(self.engine) as conn:
            done = conn.execute(
                delete(card_nonces).where(
                    card_nonces.c.nonce_hash == _sha256(nonce),
                    card_nonces.c.client_id == terminal,
                    card_nonces.c.expires >= _us(now),
                )
            )
        return done.rowcount == 1

    def outstanding(self, terminal: str) -> int:
        with self.engine.connect() as conn:
            return len(
                conn.execute(
                    select(card_nonces.c.nonce_hash).where(card_nonces.c.client_id == terminal)
                ).all()
            )


class DbCounterStore:
    """:class:`ehr.cards.stores.CounterStore` on ``cards.last_counter`` (unknown card: False)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def advance(self, cid: str, counter: int, now: float | None = None) -> bool:
        values: dict[str, Any] = {"last_counter": counter}
        if now is not None:
            values["last_tap"] = _us(now)
        with _write(self.engine) as conn:
            done = conn.execute(
                update(cards)
                .where(
                    cards.c.cid == cid,
                    cards.c.last_counter.is_(None) | (cards.c.last_counter < counter),
                )
                .values(**values)
            )
        return done.rowcount == 1

    def last(self, cid: str) -> int | None:
        with self.engine.connect() as conn:
            value = conn.execute(select(cards.c.last_counter).where(cards.c.cid == cid)).scalar()
        return None if value is None else int(value)


class DbRevocationList:
    """:class:`ehr.cards.stores.RevocationCheck`: True for a card of ``cards`` that is revoked."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def __call__(self, cid: str) -> bool:
        with self.engine.connect() as conn:
            status = conn.execute(select(cards.c.status).where(cards.c.cid == cid)).scalar()
        return status == REVOKED


class DbSunTagDirectory:
    """:class:`ehr.cards.stores.SunTagDirectory`: the cid a SUN tag's UID was issued as (revoked
    cards included, so that their use raises the alert)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def __call__(self, uid: bytes) -> str | None:
        with self.engine.connect() as conn:
            cid = conn.execute(
                select(cards.c.cid).where(cards.c.uid == bytes(uid).hex(), cards.c.kind == "sun")
            ).scalar()
        return None if cid is None else str(cid)


@dataclass(frozen=True)
class TapTicket:
    client_id: str
    cid: str
    patient_id: str
    expires: float


class TapTickets:
    """Accepted taps: an opaque id (returned to the terminal) -> card and patient, for ``ttl``
    seconds, usable only by the terminal that made the tap."""

    def __init__(self, engine: Engine, *, ttl: float = 600.0) -> None:
        self.engine = engine
        self.ttl = ttl

    def issue(self, client_id: str, cid: str, patient_id: str, now: float) -> str:
        tap_id = secrets.token_urlsafe(24)
        with _write(self.engine) as conn:
            conn.execute(delete(card_taps).where(card_taps.c.expires < _us(now)))
            conn.execute(
                insert(card_taps).values(
                    tap_hash=_sha256(tap_id.encode()),
                    client_id=client_id,
                    cid=cid,
                    patient_id=patient_id,
                    created=_us(now),
                    expires=_us(now + self.ttl),
                )
            )
        return tap_id

    def get(self, tap_id: str, client_id: str, now: float) -> TapTicket | None:
        if not isinstance(tap_id, str) or not 16 <= len(tap_id) <= 64:
            return None
        with self.engine.connect() as conn:
            row = conn.execute(
                select(card_taps).where(
                    card_taps.c.tap_hash == _sha256(tap_id.encode()),
                    card_taps.c.client_id == client_id,
                    card_taps.c.expires >= _us(now),
                )
            ).first()
        if row is None:
            return None
        return TapTicket(row.client_id, row.cid, row.patient_id, row.expires / US)


@dataclass(frozen=True)
class CardRecord:
    """One row of the card registry (times in seconds since the epoch)."""

    cid: str
    patient_id: str
    kind: str
    sub: str
    status: str
    issued: float
    uid: str | None = None
    card_jwk: dict[str, str] | None = None
    expires: float | None = None
    revoked: float | None = None
    revoke_reason: str | None = None
    replaced_by: str | None = None
    last_counter: int | None = None
    last_tap: float | None = None

    @property
    def active(self) -> bool:
        return self.status == ACTIVE

    def as_json(self) -> dict[str, Any]:
        """A JSON summary (no key material beyond the card's public key)."""
        out: dict[str, Any] = {
            "cid": self.cid,
            "patient": f"Patient/{self.patient_id}",
            "kind": self.kind,
            "status": self.status,
            "issued": self.issued,
        }
        for name in ("uid", "expires", "revoked", "revoke_reason", "replaced_by", "last_tap"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out


def _record(row: Any) -> CardRecord:
    def s(v: int | None) -> float | None:
        return None if v is None else v / US

    return CardRecord(
        cid=row.cid,
        patient_id=row.patient_id,
        kind=row.kind,
        sub=row.sub,
        status=row.status,
        issued=row.issued / US,
        uid=row.uid,
        card_jwk=json.loads(row.card_jwk) if row.card_jwk else None,
        expires=s(row.expires),
        revoked=s(row.revoked),
        revoke_reason=row.revoke_reason,
        replaced_by=row.replaced_by,
        last_counter=row.last_counter,
        last_tap=s(row.last_tap),
    )


class CardRegistry:
    """The ``cards`` table. Reads open their own connection unless given one; writes take the
    caller's connection (they belong to the transaction that also writes the Patient)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def get(
        self, cid: str, conn: Connection | None = None, *, lock: bool = False
    ) -> CardRecord | None:
        stmt = select(cards).where(cards.c.cid == cid)
        if lock:
            stmt = stmt.with_for_update()
        if conn is not None:
            row = conn.execute(stmt).first()
        else:
            with self.engine.connect() as c:
                row = c.execute(stmt).first()
        return None if row is None else _record(row)

    def of_patient(self, patient_id: str) -> list[CardRecord]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(cards).where(cards.c.patient_id == patient_id).order_by(cards.c.issued)
            ).all()
        return [_record(r) for r in rows]

    def all(self, *, status: str | None = None, limit: int = 1000) -> list[CardRecord]:
        stmt = select(cards).order_by(cards.c.issued.desc()).limit(limit)
        if status:
            stmt = stmt.where(cards.c.status == status)
        with self.engine.connect() as conn:
            return [_record(r) for r in conn.execute(stmt).all()]

    @staticmethod
    def insert(conn: Connection, record: CardRecord) -> None:
        """Insert a new card (IntegrityError when its cid or UID is taken)."""
        conn.execute(
            insert(cards).values(
                cid=record.cid,
                patient_id=record.patient_id,
                kind=record.kind,
                sub=record.sub,
                uid=record.uid,
                card_jwk=json.dumps(record.card_jwk, sort_keys=True) if record.card_jwk else None,
                status=record.status,
                issued=_us(record.issued),
                expires=None if record.expires is None else _us(record.expires),
                revoked=None,
                revoke_reason=None,
                replaced_by=None,
                last_counter=None,
                last_tap=None,
            )
        )

    @staticmethod
    def mark_revoked(
        conn: Connection, cid: str, now: float, reason: str, replaced_by: str | None = None
    ) -> bool:
        """Revoke an active card; False if it was not active."""
        done = conn.execute(
            update(cards)
            .where(cards.c.cid == cid, cards.c.status == ACTIVE)
            .values(status=REVOKED, revoked=_us(now), revoke_reason=reason, replaced_by=replaced_by)
        )
        return done.rowcount == 1

    @staticmethod
    def set_replaced_by(conn: Connection, cid: str, replaced_by: str) -> None:
        conn.execute(update(cards).where(cards.c.cid == cid).values(replaced_by=replaced_by))

    def uid_taken(self, uid: str) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(select(cards.c.cid).where(cards.c.uid == uid)).first() is not None
