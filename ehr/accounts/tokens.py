"""Access tokens: signed JWTs (RFC 7519, RFC 9068 style) that any API worker verifies with only
the issuer's public keys.

Claims we issue: ``iss`` (our issuer URL), ``aud`` (the FHIR base URL), ``sub`` (user id, or
client id for a backend service), ``client_id``, ``scope``, ``exp``, ``iat``, ``jti``, and when
known ``fhirUser`` (absolute URL), ``patient`` and ``encounter`` (launch context ids), ``role``,
``organization`` and ``practitioner_role`` (references) of the user, ``gid`` (the grant id, for
revocation).

:func:`verify_access_token` refuses, before looking at any claim:

* a header ``alg`` outside the accepted asymmetric algorithms (so ``none`` and ``HS256`` signed
  with our public key as an HMAC secret are refused: no algorithm confusion);
* a missing or unknown ``kid`` (no trying every key);
* a bad signature;

and then a wrong ``iss``, an ``aud`` that is not the FHIR base, and an expired token (``exp``,
``nbf`` and ``iat`` checked with a small leeway).

:class:`TokenVerifier` accepts tokens from several issuers (ours, and an external OpenID Connect
issuer configured by its issuer URL and JWKS URL); it picks the issuer's keys from the token's
``iss`` and verifies against that issuer only.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from joserfc import jws, jwt
from joserfc.errors import (
    BadSignatureError,
    ExpiredTokenError,
    InvalidClaimError,
    JoseError,
    MissingClaimError,
)
from joserfc.jwk import ECKey, KeySet, RSAKey

from .keys import SIGNING_ALGS
from .scopes import InvalidScope, ScopeSet, parse_scopes

__all__ = [
    "EXTERNAL_ALGS",
    "InvalidToken",
    "KeySource",
    "TokenInfo",
    "TokenVerifier",
    "TrustedIssuer",
    "WITNESS_TYP",
    "WitnessAssertion",
    "sign_jwt",
    "verify_access_token",
    "verify_id_token_hint",
    "verify_witness_assertion",
]

#: algorithms accepted from an external OpenID Connect issuer (asymmetric only)
EXTERNAL_ALGS = ("RS256", "RS384", "RS512", "PS256", "PS384", "ES256", "ES384")

KeySource = KeySet | Callable[[str | None], KeySet]
#: the JWS ``typ`` of a witness assertion (an access token is ``at+jwt``, RFC 9068)
WITNESS_TYP = "witness+jwt"


class InvalidToken(Exception):
    """The token is not acceptable; ``reason`` says why (for logs and ``WWW-Authenticate``)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class TokenInfo:
    """What a verified access token grants."""

    issuer: str
    subject: str
    client_id: str
    scope: ScopeSet
    expires_at: int
    issued_at: int | None
    jti: str | None
    audience: tuple[str, ...]
    patient: str | None = None
    encounter: str | None = None
    fhir_user: str | None = None
    role: str | None = None
    organization: str | None = None
    practitioner_role: str | None = None
    grant_id: str | None = None
    external: bool = False
    claims: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def scopes(self) -> str:
        return str(self.scope)

    def allows(self, context: str | None, rtype: str | None, interaction: str) -> bool:
        return self.scope.allows(context, rtype, interaction)


def sign_jwt(claims: Mapping[str, Any], alg: str, key: ECKey | RSAKey, typ: str = "JWT") -> str:
    """A compact JWS of ``claims`` with ``alg`` and the key's ``kid`` in the header."""
    header = {"alg": alg, "kid": key.kid, "typ": typ}
    return jwt.encode(header, dict(claims), key, algorithms=[alg])


def _b64json(part: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def unverified_claims(token: str) -> dict[str, Any]:
    """The payload of a compact JWS, NOT verified (only to pick which issuer to check with)."""
    try:
        parts = token.split(".")
        if len(parts) != 3:
            raise ValueError
        claims = _b64json(parts[1])
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidToken("malformed token") from exc
    if not isinstance(claims, dict):
        raise InvalidToken("malformed token")
    return claims


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def verify_access_token(
    token: str,
    keys: KeySource,
    *,
    issuer: str,
    audience: str | Sequence[str],
    algorithms: Sequence[str] = SIGNING_ALGS,
    leeway: int = 30,
    now: int | None = None,
    external: bool = False,
) -> TokenInfo:
    """Verify a bearer access token and return what it grants; :class:`InvalidToken` if not
    acceptable (see the module docstring for the checks and their order)."""
    header, claims = _signed(token, keys, algorithms)
    if header.get("typ") == WITNESS_TYP:
        raise InvalidToken("a witness assertion is not an access token")
    audiences = [audience] if isinstance(audience, str) else list(audience)
    _check_claims(
        claims, now, leeway, "token expired",
        iss={"essential": True, "value": issuer},
        aud={"essential": True, "values": audiences},
        exp={"essential": True},
        sub={"essential": True},
    )  # fmt: skip
    return _info(claims, external)


def _check_claims(
    claims: dict[str, Any], now: int | None, leeway: int, expired: str, **options: Any
) -> None:
    """Validate the registered claims against ``options`` (joserfc's claims options); an
    expired token raises :class:`InvalidToken` with ``expired``."""
    registry = jwt.JWTClaimsRegistry(
        now=now if now is not None else int(time.time()), leeway=leeway, **options
    )
    try:
        registry.validate(claims)
    except ExpiredTokenError as exc:
        raise InvalidToken(expired) from exc
    except (InvalidClaimError, MissingClaimError) as exc:
        raise InvalidToken(f"invalid claim: {exc.description or exc.error}") from exc


def verify_id_token_hint(token: str, keys: KeySource, *, issuer: str) -> tuple[str, list[str]]:
    """``(sub, audiences)`` of an id_token we issued, given back as ``id_token_hint`` (OpenID
    Connect RP-Initiated Logout 1.0, §2): the same header and signature checks as an access
    token, and ``iss``; an expired id_token is still a valid hint (the spec asks for that)."""
    claims = _signed(token, keys, SIGNING_ALGS)[1]
    sub, aud = claims.get("sub"), claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if claims.get("iss") != issuer or not isinstance(sub, str) or not sub:
        raise InvalidToken("not an id_token of this issuer")
    if not audiences or not all(isinstance(a, str) for a in audiences):
        raise InvalidToken("invalid claim: aud")
    return sub, audiences


def _signed(
    token: str, keys: KeySource, algorithms: Sequence[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(header, claims)`` of ``token`` once its header and signature are checked."""
    if not isinstance(token, str) or token.count(".") != 2 or len(token) > 16_384:
        raise InvalidToken("malformed token")
    try:
        header = jws.extract_compact(token.encode()).headers()
    except (JoseError, ValueError, UnicodeDecodeError) as exc:
        raise InvalidToken("malformed token") from exc
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in algorithms:
        raise InvalidToken(f"algorithm {alg!r} is not accepted")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise InvalidToken("the token names no key (kid)")
    try:
        keyset = keys(kid) if callable(keys) else keys
        key = keyset.get_by_kid(kid)
    except JoseError as exc:
        raise InvalidToken("unknown signing key") from exc
    except Exception as exc:  # a JWKS that cannot be fetched
        raise InvalidToken(f"signing keys unavailable: {exc}") from exc
    expected_type = "EC" if alg.startswith("ES") else "RSA"
    if key.key_type != expected_type:
        raise InvalidToken(f"key {kid} cannot verify {alg}")
    try:
        decoded = jwt.decode(token, key, algorithms=[alg])
    except BadSignatureError as exc:
        raise InvalidToken("bad signature") from exc
    except JoseError as exc:
        raise InvalidToken(f"invalid token: {exc.error}") from exc
    claims: dict[str, Any] = decoded.claims
    return dict(header), claims


def _info(claims: dict[str, Any], external: bool) -> TokenInfo:
    raw_scope = claims.get("scope", claims.get("scp", ""))
    if isinstance(raw_scope, list):
        raw_scope = " ".join(str(s) for s in raw_scope)
    try:
        scope = parse_scopes(raw_scope if isinstance(raw_scope, str) else "")
    except InvalidScope as exc:
        raise InvalidToken(f"invalid scope claim: {exc}") from exc
    aud = claims.get("aud")
    client_id = _str(claims.get("client_id")) or _str(claims.get("azp")) or ""
    if not client_id and not external:
        raise InvalidToken("invalid claim: client_id")
    iat = claims.get("iat")
    return TokenInfo(
        issuer=claims["iss"],
        subject=claims["sub"],
        client_id=client_id,
        scope=scope,
        expires_at=int(claims["exp"]),
        issued_at=int(iat) if isinstance(iat, int | float) else None,
        jti=_str(claims.get("jti")),
        audience=tuple([aud] if isinstance(aud, str) else aud or ()),
        patient=_str(claims.get("patient")),
        encounter=_str(claims.get("encounter")),
        fhir_user=_str(claims.get("fhirUser")),
        role=_str(claims.get("role")),
        organization=_str(claims.get("organization")),
        practitioner_role=_str(claims.get("practitioner_role")),
        grant_id=_str(claims.get("gid")),
        external=external,
        claims=claims,
    )


@dataclass(frozen=True)
class WitnessAssertion:
    """A verified witness assertion: who witnessed (user id, Practitioner id, role), what, and
    for whom (the requesting user and app)."""

    subject: str
    practitioner: str
    role: str
    purpose: str
    requested_by: str
    client_id: str | None
    jti: str
    issued_at: int
    expires_at: int


def _practitioner_id(fhir_user: Any, audience: str) -> str | None:
    """The id of ``Practitioner/x`` or ``{fhir base}/Practitioner/x``."""
    if not isinstance(fhir_user, str):
        return None
    rel = fhir_user[len(audience) + 1 :] if fhir_user.startswith(audience + "/") else fhir_user
    rtype, _, rid = rel.partition("/")
    return rid if rtype == "Practitioner" and rid and "/" not in rid else None


def verify_witness_assertion(
    token: str,
    keys: KeySource,
    *,
    issuer: str,
    audience: str,
    purpose: str,
    leeway: int = 30,
    now: int | None = None,
) -> WitnessAssertion:
    """Verify a witness assertion (see the module docstring) for ``purpose``: the header and
    signature checks of an access token, ``typ`` ``witness+jwt``, then ``iss``, ``aud``,
    ``exp`` (required), ``purpose``, a Practitioner ``fhirUser``, ``act.sub`` and ``jti``.
    :class:`InvalidToken` if not acceptable."""
    header, claims = _signed(token, keys, SIGNING_ALGS)
    if header.get("typ") != WITNESS_TYP:
        raise InvalidToken("not a witness assertion")
    _check_claims(
        claims, now, leeway, "witness assertion expired",
        iss={"essential": True, "value": issuer},
        aud={"essential": True, "values": [audience]},
        exp={"essential": True},
        iat={"essential": True},
        sub={"essential": True},
        jti={"essential": True},
    )  # fmt: skip
    if claims.get("purpose") != purpose:
        raise InvalidToken("the witness assertion is for another purpose")
    practitioner = _practitioner_id(claims.get("fhirUser"), audience)
    act = claims.get("act")
    requester = _str(act.get("sub")) if isinstance(act, dict) else None
    role, jti = _str(claims.get("role")), _str(claims.get("jti"))
    if practitioner is None or role is None or requester is None or jti is None:
        raise InvalidToken("invalid claim: the witness or the requester is missing")
    return WitnessAssertion(
        subject=claims["sub"],
        practitioner=practitioner,
        role=role,
        purpose=purpose,
        requested_by=requester,
        client_id=_str(act.get("client_id")) if isinstance(act, dict) else None,
        jti=jti,
        issued_at=int(claims["iat"]),
        expires_at=int(claims["exp"]),
    )


@dataclass(frozen=True)
class TrustedIssuer:
    """An issuer whose tokens we accept: its ``iss`` value and where its public keys come from
    (a KeySet, or a callable ``kid -> KeySet`` such as :meth:`JwksCache.keyset` bound to a
    URL or :meth:`SigningKeys.public_keyset`)."""

    issuer: str
    keys: KeySource
    algorithms: Sequence[str] = SIGNING_ALGS
    #: audience override (an external issuer may name the API differently)
    audience: str | None = None
    external: bool = False


class TokenVerifier:
    """Verify tokens of any trusted issuer (chosen by the token's ``iss``)."""

    def __init__(self, issuers: Sequence[TrustedIssuer], *, leeway: int = 30) -> None:
        self.issuers = {i.issuer: i for i in issuers}
        self.leeway = leeway

    def verify(self, token: str, audience: str) -> TokenInfo:
        iss = unverified_claims(token).get("iss")
        trusted = self.issuers.get(iss) if isinstance(iss, str) else None
        if trusted is None:
            raise InvalidToken("unknown issuer")
        return verify_access_token(
            token,
            trusted.keys,
            issuer=trusted.issuer,
            audience=trusted.audience or audience,
            algorithms=trusted.algorithms,
            leeway=self.leeway,
            external=trusted.external,
        )
