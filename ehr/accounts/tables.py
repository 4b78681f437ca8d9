"""Tables of the authorization server (SMART App Launch 2 / OAuth 2.0), on the store's shared
metadata so Alembic (revision ``0003``) creates them with the rest of the schema.

* ``users``: people who log in. ``role`` is citizen | practitioner | nurse | admin;
  ``fhir_user`` the FHIR resource they are (``Patient/x``, ``Practitioner/y``);
  ``practitioner_role``/``organization`` where a clinician works. ``password_hash`` is an argon2id
  PHC string. ``failed_logins``/``locked_until`` rate-limit password guessing per account.
* ``oauth_clients``: registered apps. ``type`` is public | confidential-symmetric |
  confidential-asymmetric; ``secret_hash`` the SHA-256 of a random secret (symmetric);
  ``jwks`` (JSON text) or ``jwks_uri`` the public keys (asymmetric, ``private_key_jwt``).
  ``redirect_uris``/``launch_uris`` are JSON lists, ``scopes``/``grant_types`` space-separated.
* ``oauth_codes``: authorization codes, stored as SHA-256 hashes, single use (``used``), bound to
  client, user, redirect URI, PKCE S256 challenge and the launch context. ``grant_id`` names the
  grant: every token issued from the code carries it, so a replayed code revokes them all.
* ``refresh_tokens``: hashed; ``family_id`` is the grant id. Using one rotates it (``rotated``
  set, a new one issued in the family); presenting a rotated one again revokes the family.
* ``token_revocations``: revoked access-token ids (``jti:…``) and grants (``grant:…``), kept
  until the tokens concerned have expired.
* ``client_assertion_jtis``: ``jti`` of client assertion JWTs seen (replay refused) until expiry.
* ``signing_keys``: our JWKs (``use`` sig), newest active one signs; ``retired`` keys stay
  published until tokens they signed have expired. ``use`` secret rows hold symmetric secrets
  (cookie signing). ``private_jwk`` is AES-GCM encrypted when a key secret is configured.
* ``launch_contexts``: EHR launch: an opaque ``launch`` id -> patient / encounter context.
* ``login_throttle``: failed logins per client IP (and per unknown user name) in a time window.

Times are µs since the epoch, as everywhere in the store.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Index, Integer, String, Table, Text

from ehr.storage.tables import metadata

__all__ = [
    "client_assertion_jtis",
    "launch_contexts",
    "login_throttle",
    "oauth_clients",
    "oauth_codes",
    "refresh_tokens",
    "signing_keys",
    "token_revocations",
    "users",
]

users = Table(
    "users",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("username", String(150), nullable=False, unique=True),
    Column("password_hash", String(255), nullable=True),
    Column("role", String(16), nullable=False),
    Column("fhir_user", String(200), nullable=True),
    Column("practitioner_role", String(200), nullable=True),
    Column("organization", String(200), nullable=True),
    Column("display_name", String(200), nullable=True),
    Column("locale", String(16), nullable=True),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("failed_logins", Integer, nullable=False, default=0),
    Column("locked_until", BigInteger, nullable=True),
    Column("last_login", BigInteger, nullable=True),
    Column("created", BigInteger, nullable=False),
)

oauth_clients = Table(
    "oauth_clients",
    metadata,
    Column("client_id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("type", String(32), nullable=False),
    Column("secret_hash", String(64), nullable=True),
    Column("jwks", Text, nullable=True),
    Column("jwks_uri", String(1000), nullable=True),
    Column("redirect_uris", Text, nullable=False),
    Column("scopes", Text, nullable=False),
    Column("grant_types", Text, nullable=False),
    Column("launch_uris", Text, nullable=False),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("created", BigInteger, nullable=False),
)

oauth_codes = Table(
    "oauth_codes",
    metadata,
    Column("code_hash", String(64), primary_key=True),
    Column("client_id", String(64), nullable=False),
    Column("user_id", String(64), nullable=False),
    Column("scope", Text, nullable=False),
    Column("code_challenge", String(128), nullable=False),
    Column("code_challenge_method", String(8), nullable=False),
    Column("redirect_uri", String(1000), nullable=True),
    Column("context", Text, nullable=False),
    Column("nonce", String(255), nullable=True),
    Column("auth_time", BigInteger, nullable=False),
    Column("grant_id", String(64), nullable=False),
    Column("created", BigInteger, nullable=False),
    Column("expires", BigInteger, nullable=False),
    Column("used", Boolean, nullable=False, default=False),
)
Index("ix_oauth_codes_expires", oauth_codes.c.expires)

refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("family_id", String(64), nullable=False),
    Column("client_id", String(64), nullable=False),
    Column("user_id", String(64), nullable=True),
    Column("scope", Text, nullable=False),
    Column("context", Text, nullable=False),
    Column("created", BigInteger, nullable=False),
    Column("expires", BigInteger, nullable=False),
    Column("rotated", BigInteger, nullable=True),
    Column("revoked", Boolean, nullable=False, default=False),
)
Index("ix_refresh_tokens_family_id", refresh_tokens.c.family_id)

token_revocations = Table(
    "token_revocations",
    metadata,
    Column("key", String(100), primary_key=True),
    Column("reason", String(40), nullable=False),
    Column("created", BigInteger, nullable=False),
    Column("expires", BigInteger, nullable=False),
)

client_assertion_jtis = Table(
    "client_assertion_jtis",
    metadata,
    Column("client_id", String(64), primary_key=True),
    Column("jti", String(255), primary_key=True),
    Column("expires", BigInteger, nullable=False),
)
Index("ix_client_assertion_jtis_expires", client_assertion_jtis.c.expires)

signing_keys = Table(
    "signing_keys",
    metadata,
    Column("kid", String(64), primary_key=True),
    Column("use", String(8), nullable=False),
    Column("alg", String(16), nullable=False),
    Column("private_jwk", Text, nullable=False),
    Column("public_jwk", Text, nullable=True),
    Column("created", BigInteger, nullable=False),
    Column("retired", BigInteger, nullable=True),
)

launch_contexts = Table(
    "launch_contexts",
    metadata,
    Column("launch_id", String(64), primary_key=True),
    Column("patient", String(64), nullable=True),
    Column("encounter", String(64), nullable=True),
    Column("user_id", String(64), nullable=True),
    Column("client_id", String(64), nullable=True),
    Column("context", Text, nullable=False),
    Column("created", BigInteger, nullable=False),
    Column("expires", BigInteger, nullable=False),
)

login_throttle = Table(
    "login_throttle",
    metadata,
    Column("key", String(200), primary_key=True),
    Column("failures", Integer, nullable=False),
    Column("window_start", BigInteger, nullable=False),
    Column("locked_until", BigInteger, nullable=True),
)
