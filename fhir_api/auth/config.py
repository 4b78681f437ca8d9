"""Settings of the authorization server, from environment variables (prefix ``EHR_AUTH_``).

==================================  ==================================================  =========
variable                            meaning                                             default
==================================  ==================================================  =========
EHR_AUTH_ISSUER                     our issuer URL (``iss``)                            {root}/auth
EHR_AUTH_ACCESS_TOKEN_TTL_S         access token lifetime                               3600
EHR_AUTH_ID_TOKEN_TTL_S             id token lifetime                                   3600
EHR_AUTH_CODE_TTL_S                 authorization code lifetime                         300
EHR_AUTH_OFFLINE_REFRESH_TTL_S      refresh token lifetime with ``offline_access``      90 days
EHR_AUTH_ONLINE_REFRESH_TTL_S       refresh token lifetime with ``online_access``       12 h
EHR_AUTH_SESSION_TTL_S              login session (cookie) lifetime                     8 h
EHR_AUTH_SIGNING_ALG                ES256 or RS256                                      ES256
EHR_AUTH_KEY_ROTATION_DAYS          rotate the signing key when older (0: by hand,      90
                                    ``ehr keys rotate``)
EHR_AUTH_KEY_SECRET                 encrypts private keys at rest (set in production)   (plain)
EHR_AUTH_MAX_FAILED_LOGINS          failures before an account is locked                5
EHR_AUTH_LOCKOUT_S                  how long a lockout lasts                            900
EHR_AUTH_MAX_IP_FAILURES            failures from one IP within the window              20
EHR_AUTH_IP_WINDOW_S                window of the per-IP count                          900
EHR_AUTH_ARGON2_TIME_COST           argon2id iterations for password hashes             3
EHR_AUTH_ARGON2_MEMORY_KIB          argon2id memory for password hashes                 65536
EHR_AUTH_SMART_STYLE_URL            ``smart_style_url`` in token responses              (none)
EHR_AUTH_EXTERNAL_ISSUER            also accept tokens of this OIDC issuer              (none)
EHR_AUTH_EXTERNAL_JWKS_URL          ... verified with this JWKS                         (none)
EHR_AUTH_EXTERNAL_AUDIENCE          ... whose ``aud`` must be this                      FHIR base
==================================  ==================================================  =========
"""

from __future__ import annotations

from argon2 import PasswordHasher
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import Engine

from ehr.accounts import AccountStore, LoginPolicy, Passwords

__all__ = ["AuthSettings", "account_store"]


class AuthSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EHR_AUTH_", extra="ignore")

    issuer: str = ""
    access_token_ttl_s: int = 3600
    id_token_ttl_s: int = 3600
    code_ttl_s: int = 300
    offline_refresh_ttl_s: int = 90 * 86_400
    online_refresh_ttl_s: int = 12 * 3600
    session_ttl_s: int = 8 * 3600
    signing_alg: str = "ES256"
    key_rotation_days: int = 90
    key_secret: str = ""
    max_failed_logins: int = 5
    lockout_s: int = 900
    max_ip_failures: int = 20
    ip_window_s: int = 900
    argon2_time_cost: int = 3
    argon2_memory_kib: int = 65_536
    smart_style_url: str = ""
    external_issuer: str = ""
    external_jwks_url: str = ""
    external_audience: str = ""
    #: leeway for exp/iat/nbf checks, seconds
    leeway_s: int = 30
    #: longest lifetime allowed for a client assertion (SMART: five minutes)
    max_assertion_lifetime_s: int = 300


def account_store(
    engine: Engine, config: AuthSettings, passwords: Passwords | None = None
) -> AccountStore:
    """The account store configured by ``config`` (login policy, keys)."""
    c = config
    if passwords is None:
        hasher = PasswordHasher(time_cost=c.argon2_time_cost, memory_cost=c.argon2_memory_kib)
        passwords = Passwords(hasher)
    return AccountStore(
        engine,
        passwords=passwords,
        login_policy=LoginPolicy(
            c.max_failed_logins, c.lockout_s, c.max_ip_failures, c.ip_window_s
        ),
        key_secret=c.key_secret,
        signing_alg=c.signing_alg,
        rotate_keys_after_s=c.key_rotation_days * 86_400,
        publish_retired_keys_s=max(c.access_token_ttl_s, c.id_token_ttl_s) + 3600,
    )
