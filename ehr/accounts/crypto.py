"""Random secrets, their stored hashes, and encryption of private keys at rest.

* Opaque credentials (authorization codes, refresh tokens, client secrets, launch ids) are 256-bit
  random URL-safe strings. Only their SHA-256 is stored; they are compared in constant time.
* Private signing keys are encrypted with AES-256-GCM under a key derived (HKDF-SHA256) from the
  configured key secret; without one they are stored in plain JSON (development only).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["decrypt", "encrypt", "equal", "new_secret", "secret_hash"]

_ENC_PREFIX = "aesgcm:"


def new_secret(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)


def secret_hash(value: str) -> str:
    """The stored form of an opaque credential (hex SHA-256)."""
    return hashlib.sha256(value.encode()).hexdigest()


def equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def _aead(secret: str) -> AESGCM:
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=b"ehr-accounts", info=b"signing-keys"
    ).derive(secret.encode())
    return AESGCM(key)


def encrypt(plaintext: str, secret: str) -> str:
    """``plaintext`` as stored: AES-GCM ciphertext with ``secret``, plain text without one."""
    if not secret:
        return plaintext
    nonce = os.urandom(12)
    ct = _aead(secret).encrypt(nonce, plaintext.encode(), b"ehr-signing-key")
    return _ENC_PREFIX + base64.urlsafe_b64encode(nonce + ct).decode()


def decrypt(stored: str, secret: str) -> str:
    if not stored.startswith(_ENC_PREFIX):
        return stored
    if not secret:
        raise RuntimeError("signing keys are encrypted: set EHR_AUTH_KEY_SECRET")
    raw = base64.urlsafe_b64decode(stored[len(_ENC_PREFIX) :])
    return _aead(secret).decrypt(raw[:12], raw[12:], b"ehr-signing-key").decode()
