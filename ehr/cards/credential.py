"""The issuer-signed card credential: a compact JWS (ES256) stored in the card's NDEF file.

Specifications: JWS compact serialisation, RFC 7515 (https://www.rfc-editor.org/rfc/rfc7515);
ES256, RFC 7518 section 3.4; JWT claims, RFC 7519; proof-of-possession key ``cnf.jwk``,
RFC 7800 (https://www.rfc-editor.org/rfc/rfc7800); explicit typing, RFC 8725 section 3.11;
JWK thumbprints as ``kid``, RFC 7638. The shape follows SMART Health Cards
(https://spec.smarthealth.cards/#health-cards-are-encoded-as-compact-serialization-json-web-signatures-jws).

Header ``{"alg": "ES256", "typ": "healthcard+jwt", "kid": <thumbprint of the issuer key>}``;
claims::

    {"iss": "<issuer URL>", "cid": "<card serial>", "sub": "<pseudonymous person id>",
     "iat": <s>, "nbf": <s>, "exp": <s>, "cnf": {"jwk": <card P-256 public key>}}

``sub`` is never the citizen ID number. The credential proves who issued the data, not that the
card holding it is genuine: anyone can copy it. Genuineness is the card's signature under
``cnf.jwk`` (:mod:`ehr.cards.challenge`).

**Issuer keys rotate** (:class:`IssuerKeySet`): :meth:`IssuerKeySet.rotate` makes a new signing
key and retires the old one. A retired key stays in the set, and in the public JWKS, for
``max_card_lifetime`` after it was retired: no card it signed can outlive that, because
:func:`issue_credential` refuses lifetimes above the maximum. :meth:`IssuerKeySet.prune` drops
keys past that point.

Error tree (each maps to one refusal code in :mod:`ehr.cards.verify`)::

    CredentialError
    ├── MalformedCredential     not a JWS of ours at all          -> unknown-card
    ├── UnknownIssuerKey        kid / iss not in our key set      -> unknown-card
    ├── InvalidCredential       wrong alg/typ, bad signature,
    │                           bad claims or card key            -> not-genuine
    └── CredentialExpired       past exp, or before nbf           -> expired
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey

__all__ = [
    "ALGORITHM",
    "CREDENTIAL_TYP",
    "CardCredential",
    "CredentialError",
    "CredentialExpired",
    "InvalidCredential",
    "IssuerKey",
    "IssuerKeySet",
    "MalformedCredential",
    "UnknownIssuerKey",
    "card_public_jwk",
    "issue_credential",
    "verify_credential",
]

ALGORITHM = "ES256"
CREDENTIAL_TYP = "healthcard+jwt"
MAX_CREDENTIAL_CHARS = 4096
DEFAULT_LEEWAY = 60  # seconds of clock skew tolerated on exp / nbf


class CredentialError(Exception):
    """A credential that does not verify."""


class MalformedCredential(CredentialError):
    """Not a compact JWS, or not one of our credentials."""


class UnknownIssuerKey(CredentialError):
    """Signed by a key (or for an issuer) we do not know."""


class InvalidCredential(CredentialError):
    """Wrong algorithm or type, bad signature, or invalid claims."""


class CredentialExpired(CredentialError):
    """Outside its validity period."""


# --- issuer keys ---------------------------------------------------------------------------


@dataclass(frozen=True)
class IssuerKey:
    """One issuer signing key. ``retired`` is None while it is the active signing key."""

    key: ECKey
    created: int
    retired: int | None = None

    @property
    def kid(self) -> str:
        return self.key.thumbprint()

    def public_jwk(self) -> dict[str, Any]:
        jwk: dict[str, Any] = dict(self.key.as_dict(private=False))
        jwk.update(kid=self.kid, use="sig", alg=ALGORITHM)
        return jwk


class IssuerKeySet:
    """The issuer's signing keys: one active, older ones kept for verification."""

    def __init__(self, keys: Iterable[IssuerKey] = (), *, max_card_lifetime: int) -> None:
        if max_card_lifetime <= 0:
            raise ValueError("max_card_lifetime must be positive")
        self.max_card_lifetime = max_card_lifetime
        self._keys: dict[str, IssuerKey] = {}
        for k in keys:
            self._keys[k.kid] = k
        if sum(1 for k in self._keys.values() if k.retired is None) > 1:
            raise ValueError("at most one active issuer key")

    @classmethod
    def generate(cls, now: float, *, max_card_lifetime: int) -> IssuerKeySet:
        """A key set with one fresh active key."""
        ks = cls(max_card_lifetime=max_card_lifetime)
        ks.rotate(now)
        return ks

    def rotate(self, now: float) -> IssuerKey:
        """Make a new active key; the previous active key is retired at ``now``."""
        t = int(now)
        for kid, k in list(self._keys.items()):
            if k.retired is None:
                self._keys[kid] = IssuerKey(k.key, k.created, retired=t)
        new = IssuerKey(ECKey.generate_key("P-256", private=True), created=t)
        self._keys[new.kid] = new
        return new

    @property
    def active(self) -> IssuerKey:
        for k in self._keys.values():
            if k.retired is None:
                if not k.key.is_private:
                    raise LookupError("the active issuer key has no private part")
                return k
        raise LookupError("no active issuer key")

    def get(self, kid: str, now: float | None = None) -> IssuerKey | None:
        """The key with this kid, if kept (and, given ``now``, not past its retention)."""
        k = self._keys.get(kid)
        if k is None or (now is not None and not self._kept(k, now)):
            return None
        return k

    def _kept(self, k: IssuerKey, now: float) -> bool:
        return k.retired is None or now <= k.retired + self.max_card_lifetime

    def prune(self, now: float) -> list[str]:
        """Drop retired keys no unexpired card can still need; return their kids."""
        gone = [kid for kid, k in self._keys.items() if not self._kept(k, now)]
        for kid in gone:
            del self._keys[kid]
        return gone

    def kids(self) -> list[str]:
        return list(self._keys)

    def public_jwks(self, now: float | None = None) -> dict[str, Any]:
        """The JWKS to publish (public parts only), active key first."""
        keys = sorted(self._keys.values(), key=lambda k: (k.retired is not None, -k.created))
        return {
            "keys": [k.public_jwk() for k in keys if now is None or self._kept(k, now)],
        }

    def to_private_json(self) -> dict[str, Any]:
        """Everything needed to restore the set (private keys included: store it encrypted)."""
        return {
            "max_card_lifetime": self.max_card_lifetime,
            "keys": [
                {
                    "jwk": dict(k.key.as_dict(private=True)),
                    "created": k.created,
                    "retired": k.retired,
                }
                for k in self._keys.values()
            ],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> IssuerKeySet:
        """Restore from :meth:`to_private_json` (or a public-only copy, for verifiers)."""
        keys = [
            IssuerKey(ECKey.import_key(dict(e["jwk"])), int(e["created"]), e.get("retired"))
            for e in data["keys"]
        ]
        return cls(keys, max_card_lifetime=int(data["max_card_lifetime"]))


# --- card keys -----------------------------------------------------------------------------


def card_public_jwk(key: ec.EllipticCurvePublicKey | Mapping[str, Any]) -> dict[str, str]:
    """The canonical public JWK of a card's P-256 key; raises InvalidCredential otherwise."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise InvalidCredential("card key must be P-256")
        jwk = ECKey.import_key(key).as_dict(private=False)
        return {"kty": "EC", "crv": "P-256", "x": str(jwk["x"]), "y": str(jwk["y"])}
    if not isinstance(key, Mapping):
        raise InvalidCredential("card key must be a JWK object")
    if "d" in key:
        raise InvalidCredential("card key must not carry a private part")
    if key.get("kty") != "EC" or key.get("crv") != "P-256":
        raise InvalidCredential("card key must be an EC P-256 JWK")
    x, y = key.get("x"), key.get("y")
    if not (isinstance(x, str) and isinstance(y, str)):
        raise InvalidCredential("card key lacks x / y")
    try:
        ECKey.import_key({"kty": "EC", "crv": "P-256", "x": x, "y": y})
    except (JoseError, ValueError) as exc:
        raise InvalidCredential("card key is not a P-256 point") from exc
    return {"kty": "EC", "crv": "P-256", "x": x, "y": y}


# --- issue / verify ------------------------------------------------------------------------


@dataclass(frozen=True)
class CardCredential:
    """The verified claims of a card credential."""

    iss: str
    cid: str
    sub: str
    iat: int
    nbf: int
    exp: int
    card_jwk: dict[str, str]
    kid: str

    def check_validity(self, now: float, leeway: int = DEFAULT_LEEWAY) -> None:
        """Raise :class:`CredentialExpired` outside ``[nbf, exp]`` (with ``leeway``)."""
        if now > self.exp + leeway:
            raise CredentialExpired("credential expired")
        if now + leeway < self.nbf:
            raise CredentialExpired("credential not yet valid")


def issue_credential(
    keys: IssuerKeySet,
    *,
    iss: str,
    cid: str,
    sub: str,
    card_key: ec.EllipticCurvePublicKey | Mapping[str, Any],
    now: float,
    lifetime: int,
) -> str:
    """Sign a card credential with the active issuer key; return the compact JWS."""
    if not (iss and cid and sub):
        raise ValueError("iss, cid and sub are required")
    if not 0 < lifetime <= keys.max_card_lifetime:
        raise ValueError(f"lifetime must be 1..{keys.max_card_lifetime} seconds")
    signer = keys.active
    t = int(now)
    claims = {
        "iss": iss,
        "cid": cid,
        "sub": sub,
        "iat": t,
        "nbf": t,
        "exp": t + lifetime,
        "cnf": {"jwk": card_public_jwk(card_key)},
    }
    header = {"alg": ALGORITHM, "typ": CREDENTIAL_TYP, "kid": signer.kid}
    payload = json.dumps(claims, separators=(",", ":"), sort_keys=True).encode()
    return jws.serialize_compact(header, payload, signer.key, algorithms=[ALGORITHM])


def _int_claim(claims: Mapping[str, Any], name: str) -> int:
    v = claims.get(name)
    if not isinstance(v, int) or isinstance(v, bool):
        raise InvalidCredential(f"claim {name} must be an integer")
    return v


def _str_claim(claims: Mapping[str, Any], name: str) -> str:
    v = claims.get(name)
    if not isinstance(v, str) or not v or len(v) > 256:
        raise InvalidCredential(f"claim {name} must be a non-empty string")
    return v


def verify_credential(
    token: str,
    keys: IssuerKeySet,
    *,
    now: float,
    issuer: str | None = None,
    leeway: int = DEFAULT_LEEWAY,
    check_validity: bool = True,
) -> CardCredential:
    """Verify a card credential: ES256 only, issuer key by ``kid``, ``typ``, claims, validity.

    ``issuer``: if given, ``iss`` must equal it. ``check_validity=False`` leaves the
    ``nbf``/``exp`` check to the caller (:meth:`CardCredential.check_validity`). Raises a
    :class:`CredentialError` subclass.
    """
    if not isinstance(token, str) or len(token) > MAX_CREDENTIAL_CHARS or token.count(".") != 2:
        raise MalformedCredential("not a compact JWS")
    try:
        header = jws.extract_compact(token.encode("ascii")).headers()
    except (JoseError, UnicodeError, ValueError) as exc:
        raise MalformedCredential("not a compact JWS") from exc
    if header.get("alg") != ALGORITHM:
        raise InvalidCredential("algorithm must be ES256")
    if header.get("typ") != CREDENTIAL_TYP:
        raise InvalidCredential("not a health card credential (typ)")
    kid = header.get("kid")
    if not isinstance(kid, str):
        raise UnknownIssuerKey("no issuer key id")
    signer = keys.get(kid, now)
    if signer is None:
        raise UnknownIssuerKey("unknown issuer key")
    public = ECKey.import_key(signer.key.as_dict(private=False))
    try:
        verified = jws.deserialize_compact(token, public, algorithms=[ALGORITHM])
    except JoseError as exc:
        raise InvalidCredential("issuer signature does not verify") from exc
    try:
        claims = json.loads(verified.payload)
    except ValueError as exc:
        raise InvalidCredential("payload is not JSON") from exc
    if not isinstance(claims, dict):
        raise InvalidCredential("payload is not a JSON object")
    iss = _str_claim(claims, "iss")
    if issuer is not None and iss != issuer:
        raise UnknownIssuerKey("credential from another issuer")
    iat, exp = _int_claim(claims, "iat"), _int_claim(claims, "exp")
    nbf = _int_claim(claims, "nbf") if "nbf" in claims else iat
    cnf = claims.get("cnf")
    if not isinstance(cnf, dict) or "jwk" not in cnf:
        raise InvalidCredential("no card key (cnf.jwk)")
    credential = CardCredential(
        iss=iss,
        cid=_str_claim(claims, "cid"),
        sub=_str_claim(claims, "sub"),
        iat=iat,
        nbf=nbf,
        exp=exp,
        card_jwk=card_public_jwk(cnf["jwk"]),
        kid=kid,
    )
    if check_validity:
        credential.check_validity(now, leeway)
    return credential
