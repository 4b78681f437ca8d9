"""Tables of the health one-card, on the store's shared metadata (Alembic revision ``0008``).

Design: /work/shared/CARD.md ("Card life cycle", "Flow at the counter").

* ``cards``: the card registry, one row per card ever issued. ``cid`` (the card serial, also the
  Patient.identifier value in :data:`ehr.identifiers.HEALTH_CARD_SYSTEM`) is the primary key: its
  uniqueness across the exchange is the database's, not a search-then-insert. ``kind`` is
  ``iso-dep`` (``card_jwk``: the card's public key, bound in its credential as ``cnf.jwk``) or
  ``sun`` (``uid``: the NTAG 424 DNA UID in hex, unique: one tag is one card). ``status`` is
  ``active`` or ``revoked`` (``revoked``: when, ``revoke_reason``: lost | stolen | replaced |
  damaged | ..., ``replaced_by``: the cid of the card issued in its place). ``sub`` is the
  credential's pseudonymous person id. ``last_counter`` is the highest card counter accepted
  (the ISO-DEP challenge counter or the SUN read counter); it only grows
  (``UPDATE ... WHERE last_counter < :c``). Times are µs since the epoch, as in the store.
* ``card_nonces``: outstanding tap nonces, by SHA-256 of the nonce, bound to the OAuth client
  (terminal) that fetched them; a tap deletes its nonce (single use).
* ``card_taps``: accepted taps, by SHA-256 of the opaque tap id returned to the terminal: the
  terminal proves with it that the patient it checks in is the one whose card it just read.
* ``card_keys``: the issuer's keys, kept apart from the OAuth signing keys. ``use`` is
  ``issuer`` (an ES256 key; ``secret`` its private JWK, ``public_jwk`` its public JWK) or
  ``sun`` (the SUN tag batch keys, JSON of hex strings). ``secret`` is AES-GCM encrypted when a
  key secret is configured (:mod:`ehr.accounts.crypto`). ``active`` is TRUE for the one key of a
  ``use`` that signs now and NULL once retired: the unique (``use``, ``active``) constraint lets
  the database refuse a second active key (two processes making the first key at once).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Index,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from ehr.storage.tables import metadata

__all__ = ["card_keys", "card_nonces", "card_taps", "cards"]

cards = Table(
    "cards",
    metadata,
    Column("cid", String(32), primary_key=True),
    Column("patient_id", String(64), nullable=False),
    Column("kind", String(8), nullable=False),
    Column("sub", String(64), nullable=False),
    Column("uid", String(20), nullable=True, unique=True),
    Column("card_jwk", Text, nullable=True),
    Column("status", String(8), nullable=False),
    Column("issued", BigInteger, nullable=False),
    Column("expires", BigInteger, nullable=True),
    Column("revoked", BigInteger, nullable=True),
    Column("revoke_reason", String(40), nullable=True),
    Column("replaced_by", String(32), nullable=True),
    Column("last_counter", BigInteger, nullable=True),
    Column("last_tap", BigInteger, nullable=True),
    CheckConstraint("kind IN ('iso-dep', 'sun')", name="kind"),
    CheckConstraint("status IN ('active', 'revoked')", name="status"),
)
Index("ix_cards_patient_id", cards.c.patient_id)

card_nonces = Table(
    "card_nonces",
    metadata,
    Column("nonce_hash", String(64), primary_key=True),
    Column("client_id", String(64), nullable=False),
    Column("created", BigInteger, nullable=False),
    Column("expires", BigInteger, nullable=False),
)
Index("ix_card_nonces_expires", card_nonces.c.expires)
Index("ix_card_nonces_client_id", card_nonces.c.client_id)

card_taps = Table(
    "card_taps",
    metadata,
    Column("tap_hash", String(64), primary_key=True),
    Column("client_id", String(64), nullable=False),
    Column("cid", String(32), nullable=False),
    Column("patient_id", String(64), nullable=False),
    Column("created", BigInteger, nullable=False),
    Column("expires", BigInteger, nullable=False),
)
Index("ix_card_taps_expires", card_taps.c.expires)

card_keys = Table(
    "card_keys",
    metadata,
    Column("kid", String(64), primary_key=True),
    Column("use", String(8), nullable=False),
    Column("secret", Text, nullable=False),
    Column("public_jwk", Text, nullable=True),
    Column("created", BigInteger, nullable=False),
    Column("retired", BigInteger, nullable=True),
    Column("active", Boolean, nullable=True),
    UniqueConstraint("use", "active", name="uq_card_keys_use_active"),
)
