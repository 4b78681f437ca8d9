"""The issuer-signed card credential (JWS ES256) and the rotating issuer key set."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jws
from joserfc.jwk import ECKey, OctKey

from ehr.cards import (
    CredentialExpired,
    InvalidCredential,
    IssuerKeySet,
    MalformedCredential,
    UnknownIssuerKey,
    card_public_jwk,
    issue_credential,
    verify_credential,
)

NOW = 1_800_000_000
DAY = 86400
YEAR = 365 * DAY
ISS = "https://ehr.example/cards"


def _b64(obj: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")


def _json(part: str) -> dict[str, Any]:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))  # type: ignore[no-any-return]


def _parts(token: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    h, p, s = token.split(".")
    return _json(h), _json(p), s


@pytest.fixture
def keys() -> IssuerKeySet:
    return IssuerKeySet.generate(NOW, max_card_lifetime=5 * YEAR)


@pytest.fixture
def card_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _issue(keys: IssuerKeySet, ck: ec.EllipticCurvePrivateKey, **kw: object) -> str:
    args: dict[str, Any] = dict(
        iss=ISS, cid="HC-0001", sub="pp-7f3a", card_key=ck.public_key(), now=NOW, lifetime=2 * YEAR
    )
    args.update(kw)
    return issue_credential(keys, **args)


def test_issue_and_verify(keys: IssuerKeySet, card_key: ec.EllipticCurvePrivateKey) -> None:
    token = _issue(keys, card_key)
    header, claims, _ = _parts(token)
    assert header == {"alg": "ES256", "typ": "healthcard+jwt", "kid": keys.active.kid}
    assert set(claims) == {"iss", "cid", "sub", "iat", "nbf", "exp", "cnf"}
    assert "d" not in claims["cnf"]["jwk"]

    cred = verify_credential(token, keys, now=NOW + DAY, issuer=ISS)
    assert (cred.iss, cred.cid, cred.sub) == (ISS, "HC-0001", "pp-7f3a")
    assert (cred.iat, cred.exp) == (NOW, NOW + 2 * YEAR)
    assert cred.card_jwk == card_public_jwk(card_key.public_key())
    assert cred.kid == keys.active.kid


def test_expiry_and_not_before(keys: IssuerKeySet, card_key: ec.EllipticCurvePrivateKey) -> None:
    token = _issue(keys, card_key, lifetime=DAY)
    verify_credential(token, keys, now=NOW + DAY + 30)  # within the 60 s leeway
    with pytest.raises(CredentialExpired):
        verify_credential(token, keys, now=NOW + DAY + 61)
    with pytest.raises(CredentialExpired):
        verify_credential(token, keys, now=NOW - 3600)  # before nbf
    expired = verify_credential(token, keys, now=NOW + 2 * DAY, check_validity=False)
    assert expired.cid == "HC-0001"  # the caller can still audit which card it was


def test_lifetime_is_capped_by_the_key_set(
    keys: IssuerKeySet, card_key: ec.EllipticCurvePrivateKey
) -> None:
    with pytest.raises(ValueError):
        _issue(keys, card_key, lifetime=6 * YEAR)


def test_wrong_issuer_key(keys: IssuerKeySet, card_key: ec.EllipticCurvePrivateKey) -> None:
    other = IssuerKeySet.generate(NOW, max_card_lifetime=5 * YEAR)
    with pytest.raises(UnknownIssuerKey):  # a kid we never had
        verify_credential(_issue(other, card_key), keys, now=NOW)

    # a forger reuses our kid but signs with their own key
    header, claims, _ = _parts(_issue(keys, card_key))
    forged = jws.serialize_compact(header, json.dumps(claims).encode(), other.active.key)
    with pytest.raises(InvalidCredential):
        verify_credential(forged, keys, now=NOW)


def test_tampered_claims_fail_the_signature(
    keys: IssuerKeySet, card_key: ec.EllipticCurvePrivateKey
) -> None:
    h, p, s = _issue(keys, card_key).split(".")
    claims = _parts(_issue(keys, card_key))[1]
    claims["cid"] = "HC-9999"
    with pytest.raises(InvalidCredential):
        verify_credential(f"{h}.{_b64(claims)}.{s}", keys, now=NOW)


def test_other_issuer_refused(keys: IssuerKeySet, card_key: ec.EllipticCurvePrivateKey) -> None:
    token = _issue(keys, card_key, iss="https://elsewhere.example")
    with pytest.raises(UnknownIssuerKey):
        verify_credential(token, keys, now=NOW, issuer=ISS)


def test_alg_none_refused(keys: IssuerKeySet, card_key: ec.EllipticCurvePrivateKey) -> None:
    _, claims, _ = _parts(_issue(keys, card_key))
    for header in (
        {"alg": "none", "typ": "healthcard+jwt", "kid": keys.active.kid},
        {"alg": "None", "typ": "healthcard+jwt", "kid": keys.active.kid},
    ):
        with pytest.raises(InvalidCredential):
            verify_credential(f"{_b64(header)}.{_b64(claims)}.", keys, now=NOW)


def test_hs256_with_the_public_key_as_secret_refused(
    keys: IssuerKeySet, card_key: ec.EllipticCurvePrivateKey
) -> None:
    header, claims, _ = _parts(_issue(keys, card_key))
    header["alg"] = "HS256"
    secret = OctKey.import_key(json.dumps(keys.active.public_jwk()).encode())
    token = jws.serialize_compact(header, json.dumps(claims).encode(), secret, algorithms=["HS256"])
    with pytest.raises(InvalidCredential):
        verify_credential(token, keys, now=NOW)


def test_wrong_typ_refused(keys: IssuerKeySet, card_key: ec.EllipticCurvePrivateKey) -> None:
    header, claims, _ = _parts(_issue(keys, card_key))
    header["typ"] = "JWT"
    token = jws.serialize_compact(header, json.dumps(claims).encode(), keys.active.key)
    with pytest.raises(InvalidCredential):
        verify_credential(token, keys, now=NOW)


@pytest.mark.parametrize("token", ["", "abc", "a.b", "a.b.c", "x" * 5000, "é.é.é"])
def test_garbage_is_malformed(keys: IssuerKeySet, token: str) -> None:
    with pytest.raises(MalformedCredential):
        verify_credential(token, keys, now=NOW)


def test_card_key_must_be_public_p256(
    keys: IssuerKeySet, card_key: ec.EllipticCurvePrivateKey
) -> None:
    with pytest.raises(InvalidCredential):
        _issue(keys, card_key, card_key=ECKey.import_key(card_key).as_dict(private=True))
    with pytest.raises(InvalidCredential):
        _issue(keys, card_key, card_key=ec.generate_private_key(ec.SECP384R1()).public_key())
    jwk = card_public_jwk(card_key.public_key())
    with pytest.raises(InvalidCredential):  # a point off the curve
        _issue(keys, card_key, card_key={**jwk, "y": jwk["x"]})


def test_rotation_keeps_old_keys_until_their_cards_expire(
    card_key: ec.EllipticCurvePrivateKey,
) -> None:
    keys = IssuerKeySet.generate(NOW, max_card_lifetime=2 * YEAR)
    old_kid = keys.active.kid
    old_card = _issue(keys, card_key, lifetime=2 * YEAR)

    new = keys.rotate(NOW + 30 * DAY)
    assert keys.active.kid == new.kid != old_kid
    new_card = _issue(keys, card_key, now=NOW + 30 * DAY, lifetime=DAY)
    assert _parts(new_card)[0]["kid"] == new.kid

    # both verify; the JWKS publishes both, public parts only, active first
    verify_credential(old_card, keys, now=NOW + 31 * DAY)
    verify_credential(new_card, keys, now=NOW + 30 * DAY + 60)
    jwks = keys.public_jwks(now=NOW + 31 * DAY)
    assert [k["kid"] for k in jwks["keys"]] == [new.kid, old_kid]
    assert all("d" not in k and k["alg"] == "ES256" and k["use"] == "sig" for k in jwks["keys"])

    # a verifier holding only public keys (plus their retention data) agrees
    stored = keys.to_private_json()
    for entry in stored["keys"]:
        del entry["jwk"]["d"]
    public_only = IssuerKeySet.from_json(stored)
    verify_credential(old_card, public_only, now=NOW + 31 * DAY)

    # the old key is kept while a card it signed may live: retired + max lifetime
    kept_until = NOW + 30 * DAY + 2 * YEAR
    assert keys.prune(kept_until) == []
    assert keys.prune(kept_until + 1) == [old_kid]
    assert [k["kid"] for k in keys.public_jwks()["keys"]] == [new.kid]
    with pytest.raises(UnknownIssuerKey):
        verify_credential(old_card, keys, now=kept_until + 1)


def test_private_json_round_trip(keys: IssuerKeySet, card_key: ec.EllipticCurvePrivateKey) -> None:
    keys.rotate(NOW + 1)
    restored = IssuerKeySet.from_json(json.loads(json.dumps(keys.to_private_json())))
    assert restored.kids() == keys.kids()
    assert restored.active.kid == keys.active.kid
    verify_credential(_issue(restored, card_key), keys, now=NOW)
