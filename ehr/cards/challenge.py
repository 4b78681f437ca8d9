"""The ISO-DEP card challenge: the card signs the server's nonce and its own counter.

Command: ISO/IEC 7816-4 INTERNAL AUTHENTICATE (``INS 88``) to the health-card applet, with the
server's nonce as data. The card increments a monotonic 32-bit counter, signs
``nonce || counter (4 bytes, big-endian)`` with its P-256 key (ECDSA with SHA-256, FIPS 186-4)
and answers ``counter (4, BE) || signature``. The signature is raw ``r || s`` (64 bytes, as in
JOSE, RFC 7518 section 3.4); DER (as a Java Card ``ALG_ECDSA_SHA_256`` returns it) is accepted too.

The server checks the signature under the credential's ``cnf.jwk`` and that the counter is
strictly greater than the last one it accepted for the card (:class:`ehr.cards.stores.CounterStore`).
The nonce is single-use and bound to the terminal that fetched it. Relaying the challenge to a
genuine card elsewhere is *not* detected by any of this.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

__all__ = [
    "MAX_COUNTER",
    "NONCE_MAX",
    "NONCE_MIN",
    "card_public_key",
    "challenge_message",
    "verify_card_signature",
]

NONCE_MIN, NONCE_MAX = 16, 64
MAX_COUNTER = 0xFFFFFFFF
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def challenge_message(nonce: bytes, counter: int) -> bytes:
    """What the card signs: ``nonce || counter`` (4 bytes, big-endian)."""
    if not NONCE_MIN <= len(nonce) <= NONCE_MAX:
        raise ValueError(f"nonce must be {NONCE_MIN}..{NONCE_MAX} bytes")
    if not 0 <= counter <= MAX_COUNTER:
        raise ValueError("counter must fit in 4 bytes")
    return nonce + counter.to_bytes(4, "big")


def _b64url(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def card_public_key(jwk: Mapping[str, str]) -> ec.EllipticCurvePublicKey:
    """The P-256 public key of a (validated) ``cnf.jwk``; ValueError if not on the curve."""
    x, y = _b64url(jwk["x"]), _b64url(jwk["y"])
    if len(x) != 32 or len(y) != 32:
        raise ValueError("P-256 coordinates are 32 bytes")
    return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + x + y)


def _der_signature(signature: bytes) -> bytes | None:
    if len(signature) == 64:
        r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
        if not (0 < r < _P256_ORDER and 0 < s < _P256_ORDER):
            return None
        return encode_dss_signature(r, s)
    if 8 <= len(signature) <= 72 and signature[0] == 0x30:
        return signature
    return None


def verify_card_signature(
    card_jwk: Mapping[str, str], nonce: bytes, counter: int, signature: bytes
) -> bool:
    """True if ``signature`` is the card's ECDSA P-256/SHA-256 signature of the challenge."""
    der = _der_signature(signature)
    if der is None:
        return False
    try:
        key = card_public_key(card_jwk)
        key.verify(der, challenge_message(nonce, counter), ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError, KeyError):
        return False
    return True
