"""What the authorization server remembers between requests: authorization codes, refresh
tokens, revocations, client-assertion ids.

* Authorization codes (https://www.rfc-editor.org/rfc/rfc6749#section-4.1.2) are single use.
  :meth:`Codes.consume` marks a code used atomically; a second use reports the grant so the
  caller can revoke every token issued from it (RFC 6749 section 10.5).
* Refresh tokens rotate (https://www.rfc-editor.org/rfc/rfc9700#section-4.14.2): each use
  marks the token ``rotated`` and issues a new one in the same family. A rotated token presented
  again means it was copied: the whole family is revoked, and the grant with it.
* Revocations list access-token ids and grant ids until the tokens concerned expire. Access
  tokens are JWTs verified without a database; :meth:`Revocations.is_revoked` is the one
  indexed lookup a worker adds when it wants revocation to take effect before expiry (the
  introspection endpoint always does it).
* Client assertion ``jti`` values are remembered until the assertion expires (RFC 7523
  section 3, item 7): a replayed assertion is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from ._db import US, dump_json, load_json, now_us, read_tx, write_tx
from .crypto import new_secret, secret_hash
from .tables import client_assertion_jtis, oauth_codes, refresh_tokens, token_revocations

__all__ = [
    "AssertionIds",
    "AuthorizationCode",
    "Codes",
    "RefreshToken",
    "RefreshTokens",
    "Revocations",
]


@dataclass(frozen=True)
class AuthorizationCode:
    client_id: str
    user_id: str
    scope: str
    code_challenge: str
    code_challenge_method: str
    redirect_uri: str | None
    context: dict[str, Any]
    nonce: str | None
    auth_time: int  # seconds since the epoch
    grant_id: str
    expires: int  # µs


@dataclass(frozen=True)
class Consumed:
    """The result of presenting a code: ``code`` when valid; ``reused_grant`` when it had been
    used already (the grant to revoke)."""

    code: AuthorizationCode | None
    reused_grant: str | None = None


class Codes:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def issue(
        self,
        *,
        client_id: str,
        user_id: str,
        scope: str,
        code_challenge: str,
        code_challenge_method: str,
        redirect_uri: str | None,
        context: dict[str, Any],
        nonce: str | None,
        auth_time: int,
        ttl_s: int,
        grant_id: str | None = None,
        code: str | None = None,
    ) -> str:
        """Store a new code (``code``, or a fresh random one) and return it."""
        code = code or new_secret(32)
        now = now_us()
        with write_tx(self.engine) as conn:
            conn.execute(
                insert(oauth_codes).values(
                    code_hash=secret_hash(code),
                    client_id=client_id,
                    user_id=user_id,
                    scope=scope,
                    code_challenge=code_challenge,
                    code_challenge_method=code_challenge_method,
                    redirect_uri=redirect_uri,
                    context=dump_json(context),
                    nonce=nonce,
                    auth_time=auth_time,
                    grant_id=grant_id or new_secret(16),
                    created=now,
                    expires=now + ttl_s * US,
                    used=False,
                )
            )
        return code

    def consume(self, code: str, client_id: str) -> Consumed:
        """Mark ``code`` (issued to ``client_id``) used and return it; None if unknown,
        expired or another client's; ``reused_grant`` if it was used before."""
        h = secret_hash(code)
        now = now_us()
        with write_tx(self.engine) as conn:
            row = conn.execute(select(oauth_codes).where(oauth_codes.c.code_hash == h)).first()
            if row is None or row.client_id != client_id:
                return Consumed(None)
            if row.used:
                return Consumed(None, row.grant_id)
            if row.expires <= now:
                return Consumed(None)
            res = conn.execute(
                update(oauth_codes)
                .where(oauth_codes.c.code_hash == h, oauth_codes.c.used.is_(False))
                .values(used=True)
            )
            if res.rowcount != 1:
                return Consumed(None, row.grant_id)
        return Consumed(
            AuthorizationCode(
                client_id=row.client_id,
                user_id=row.user_id,
                scope=row.scope,
                code_challenge=row.code_challenge,
                code_challenge_method=row.code_challenge_method,
                redirect_uri=row.redirect_uri,
                context=load_json(row.context, {}),
                nonce=row.nonce,
                auth_time=row.auth_time,
                grant_id=row.grant_id,
                expires=row.expires,
            )
        )


@dataclass(frozen=True)
class RefreshToken:
    token_hash: str
    family_id: str
    client_id: str
    user_id: str | None
    scope: str
    context: dict[str, Any]
    expires: int  # µs
    rotated: int | None
    revoked: bool

    @property
    def active(self) -> bool:
        return not self.revoked and self.rotated is None and self.expires > now_us()


class RefreshTokens:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def issue(
        self,
        *,
        family_id: str,
        client_id: str,
        user_id: str | None,
        scope: str,
        context: dict[str, Any],
        ttl_s: int,
    ) -> str:
        token = new_secret(32)
        now = now_us()
        with write_tx(self.engine) as conn:
            conn.execute(
                insert(refresh_tokens).values(
                    token_hash=secret_hash(token),
                    family_id=family_id,
                    client_id=client_id,
                    user_id=user_id,
                    scope=scope,
                    context=dump_json(context),
                    created=now,
                    expires=now + ttl_s * US,
                    rotated=None,
                    revoked=False,
                )
            )
        return token

    def find(self, token: str) -> RefreshToken | None:
        with read_tx(self.engine) as conn:
            row = conn.execute(
                select(refresh_tokens).where(refresh_tokens.c.token_hash == secret_hash(token))
            ).first()
        if row is None:
            return None
        return RefreshToken(
            token_hash=row.token_hash,
            family_id=row.family_id,
            client_id=row.client_id,
            user_id=row.user_id,
            scope=row.scope,
            context=load_json(row.context, {}),
            expires=row.expires,
            rotated=row.rotated,
            revoked=bool(row.revoked),
        )

    def rotate(self, token_hash: str) -> bool:
        """Mark an active token rotated; False if it was not active (a concurrent or replayed
        use: the caller treats it as theft)."""
        now = now_us()
        t = refresh_tokens
        with write_tx(self.engine) as conn:
            res = conn.execute(
                update(t)
                .where(
                    t.c.token_hash == token_hash,
                    t.c.rotated.is_(None),
                    t.c.revoked.is_(False),
                    t.c.expires > now,
                )
                .values(rotated=now)
            )
        return res.rowcount == 1

    def revoke_family(self, family_id: str) -> int:
        with write_tx(self.engine) as conn:
            res = conn.execute(
                update(refresh_tokens)
                .where(refresh_tokens.c.family_id == family_id)
                .values(revoked=True)
            )
        return int(res.rowcount)


class Revocations:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _add(self, key: str, reason: str, until_us: int) -> None:
        with write_tx(self.engine) as conn:
            try:
                with conn.begin_nested():
                    conn.execute(
                        insert(token_revocations).values(
                            key=key, reason=reason, created=now_us(), expires=until_us
                        )
                    )
            except IntegrityError:
                t = token_revocations
                conn.execute(
                    update(t).where(t.c.key == key, t.c.expires < until_us).values(expires=until_us)
                )

    def revoke_grant(self, grant_id: str, until_us: int, reason: str) -> None:
        """Revoke every access token of a grant (and its refresh tokens: call
        :meth:`RefreshTokens.revoke_family` too)."""
        self._add(f"grant:{grant_id}", reason, until_us)

    def revoke_token(self, jti: str, until_us: int, reason: str) -> None:
        self._add(f"jti:{jti}", reason, until_us)

    def is_revoked(self, jti: str | None, grant_id: str | None = None) -> bool:
        keys = [
            k
            for k in (f"jti:{jti}" if jti else None, f"grant:{grant_id}" if grant_id else None)
            if k
        ]
        if not keys:
            return False
        with read_tx(self.engine) as conn:
            row = conn.execute(
                select(token_revocations.c.key).where(token_revocations.c.key.in_(keys)).limit(1)
            ).first()
        return row is not None

    def purge(self) -> int:
        """Delete what can no longer matter: expired revocations, codes, assertion ids and
        refresh tokens."""
        now = now_us()
        n = 0
        with write_tx(self.engine) as conn:
            for stmt in (
                delete(token_revocations).where(token_revocations.c.expires < now),
                delete(oauth_codes).where(oauth_codes.c.expires < now - 86_400 * US),
                delete(client_assertion_jtis).where(client_assertion_jtis.c.expires < now),
                delete(refresh_tokens).where(refresh_tokens.c.expires < now),
            ):
                n += int(conn.execute(stmt).rowcount)
        return n


class AssertionIds:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def first_use(self, client_id: str, jti: str, expires_s: int) -> bool:
        """Record ``jti`` of ``client_id``; False if it was seen before (a replay)."""
        try:
            with write_tx(self.engine) as conn:
                conn.execute(
                    insert(client_assertion_jtis).values(
                        client_id=client_id, jti=jti[:255], expires=expires_s * US
                    )
                )
        except IntegrityError:
            return False
        return True
