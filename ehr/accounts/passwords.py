"""Password hashing with argon2id (argon2-cffi, RFC 9106 parameters by default).

Verification takes the same time whether or not the account exists: an unknown user name is
checked against a dummy hash made with the same parameters.
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

__all__ = ["Passwords"]


class Passwords:
    """Hash and verify passwords. ``hasher`` defaults to argon2-cffi's recommended parameters
    (tests pass a cheaper :class:`argon2.PasswordHasher`)."""

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self.hasher = hasher or PasswordHasher()
        self._dummy: str | None = None

    @property
    def dummy(self) -> str:
        if self._dummy is None:
            self._dummy = self.hasher.hash("not a password: timing equaliser")
        return self._dummy

    def hash(self, password: str) -> str:
        if not password:
            raise ValueError("empty password")
        return self.hasher.hash(password)

    def verify(self, stored: str | None, password: str) -> bool:
        """True if ``password`` matches ``stored``; with ``stored`` None a dummy hash is checked
        so that the answer takes as long."""
        try:
            return bool(self.hasher.verify(stored or self.dummy, password)) and stored is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored: str) -> bool:
        return bool(self.hasher.check_needs_rehash(stored))
