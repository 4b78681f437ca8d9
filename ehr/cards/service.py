"""Everything the card operations need, bound to one store: settings, keys, stores, audit sink.

    from ehr.cards.service import CardService
    cards = CardService.of(store)                 # from EHR_CARD_* settings, cached on the store
    issued = issue_card(store, "pat-1", kind="sun", uid="04a1b2c3d4e5f6", cards=cards)

The API builds one with the app's audit trail (``fhir_api.cards``); the command line and library
callers get :meth:`CardService.of`, whose audit records are written at once
(:func:`ehr.cards.audit.store_sink`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ehr.store import Store

from .audit import AuditSink, store_sink
from .config import CardSettings
from .db_stores import (
    CardRegistry,
    DbCounterStore,
    DbNonceStore,
    DbRevocationList,
    DbSunTagDirectory,
    TapTickets,
)
from .keys import IssuerKeyStore, SunKeyStore
from .sun import SunKeys

__all__ = ["CardService"]

_ATTR = "_ehr_card_service"


def _hex_key(value: str, name: str) -> bytes | None:
    if not value:
        return None
    try:
        raw = bytes.fromhex(value)
    except ValueError as exc:
        raise ValueError(f"{name} must be 32 hex digits") from exc
    if len(raw) != 16:
        raise ValueError(f"{name} must be 32 hex digits (an AES-128 key)")
    return raw


@dataclass(eq=False)
class CardService:
    store: Store
    settings: CardSettings
    audit: AuditSink
    #: HMAC key of the credential's pseudonymous person id (``sub``)
    pseudonym_key: bytes
    clock: Callable[[], float] = time.time
    issuer_keys: IssuerKeyStore = field(init=False)
    sun_key_store: SunKeyStore = field(init=False)
    registry: CardRegistry = field(init=False)
    nonces: DbNonceStore = field(init=False)
    counters: DbCounterStore = field(init=False)
    revocations: DbRevocationList = field(init=False)
    sun_directory: DbSunTagDirectory = field(init=False)
    taps: TapTickets = field(init=False)

    def __post_init__(self) -> None:
        s, engine = self.settings, self.store.engine
        secret = s.resolved_key_secret()
        self.issuer_keys = IssuerKeyStore(
            engine,
            max_card_lifetime=s.lifetime_s,
            secret=secret,
            rotate_after_s=s.key_rotation_days * 86_400,
        )
        self.sun_key_store = SunKeyStore(
            engine,
            secret=secret,
            meta_read_key=_hex_key(s.sun_meta_read_key, "EHR_CARD_SUN_META_READ_KEY"),
            file_read_master_key=_hex_key(s.sun_master_key, "EHR_CARD_SUN_MASTER_KEY"),
        )
        self.registry = CardRegistry(engine)
        self.nonces = DbNonceStore(engine, ttl=s.nonce_ttl_s, max_outstanding=s.max_nonces)
        self.counters = DbCounterStore(engine)
        self.revocations = DbRevocationList(engine)
        self.sun_directory = DbSunTagDirectory(engine)
        self.taps = TapTickets(engine, ttl=s.tap_ttl_s)

    @classmethod
    def create(
        cls,
        store: Store,
        settings: CardSettings | None = None,
        *,
        audit: AuditSink | None = None,
        pseudonym_key: bytes | None = None,
        clock: Callable[[], float] | None = None,
    ) -> CardService:
        """A service on ``store`` (settings: ``EHR_CARD_*``; audit: written at once)."""
        if pseudonym_key is None:
            from ehr.settings import get_settings

            pseudonym_key = get_settings().citizen_id_key.encode()
        return cls(
            store,
            settings or CardSettings(),
            audit or store_sink(store),
            pseudonym_key,
            clock or time.time,
        )

    @classmethod
    def of(cls, store: Store) -> CardService:
        """The store's default service (made once, from the environment)."""
        found: Any = store.__dict__.get(_ATTR)
        if isinstance(found, CardService):
            return found
        made = cls.create(store)
        store.__dict__[_ATTR] = made
        return made

    def attach(self) -> CardService:
        """Make this the store's default service (what :meth:`of` returns)."""
        self.store.__dict__[_ATTR] = self
        return self

    @property
    def issuer(self) -> str:
        return self.settings.issuer

    def now(self) -> float:
        return self.clock()

    def sun_keys(self) -> SunKeys:
        return self.sun_key_store.keys()
