"""The resident health one-card, server side: credentials, card challenges, SUN tags, tap checks.

Design: ``shared/CARD.md`` beside the project. The checks are pure library code (no HTTP, no
database) behind Protocols (:mod:`ehr.cards.stores`); the database-backed registry, stores and
keys are in ``tables``, ``db_stores``, ``keys``, ``issuing``, ``tap`` and ``service``.

- :mod:`ehr.cards.credential`: issuer-signed card credential (JWS ES256) and rotating issuer keys.
- :mod:`ehr.cards.challenge`: the ISO-DEP card's signed challenge (nonce || counter).
- :mod:`ehr.cards.sun`: NTAG 424 DNA SUN messages (NXP AN12196) and per-tag keys (AN10922).
- :mod:`ehr.cards.verify`: :func:`verify_tap`, the one check a tap goes through.
"""

from ehr.cards.challenge import challenge_message, verify_card_signature
from ehr.cards.credential import (
    CardCredential,
    CredentialError,
    CredentialExpired,
    InvalidCredential,
    IssuerKey,
    IssuerKeySet,
    MalformedCredential,
    UnknownIssuerKey,
    card_public_jwk,
    issue_credential,
    verify_credential,
)
from ehr.cards.stores import (
    CounterStore,
    InMemoryCounterStore,
    InMemoryNonceStore,
    InMemoryRevocationList,
    InMemorySunTagDirectory,
    NonceCheck,
    NonceStore,
    RevocationCheck,
    SunTagDirectory,
    nonce_check_for,
)
from ehr.cards.sun import SunKeys, SunLayout
from ehr.cards.verify import REASONS, SunConfig, TapVerdict, verify_tap

__all__ = [
    "REASONS",
    "CardCredential",
    "CounterStore",
    "CredentialError",
    "CredentialExpired",
    "InMemoryCounterStore",
    "InMemoryNonceStore",
    "InMemoryRevocationList",
    "InMemorySunTagDirectory",
    "InvalidCredential",
    "IssuerKey",
    "IssuerKeySet",
    "MalformedCredential",
    "NonceCheck",
    "NonceStore",
    "RevocationCheck",
    "SunConfig",
    "SunKeys",
    "SunLayout",
    "SunTagDirectory",
    "TapVerdict",
    "UnknownIssuerKey",
    "card_public_jwk",
    "challenge_message",
    "issue_credential",
    "nonce_check_for",
    "verify_card_signature",
    "verify_credential",
    "verify_tap",
]
