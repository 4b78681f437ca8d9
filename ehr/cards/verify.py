"""Verify the evidence of one tap at a counter terminal; answer with a card id or a refusal.

Design: /work/shared/CARD.md ("Two card kinds", "Flow at the counter"). Crypto:
:mod:`ehr.cards.credential` (RFC 7515 JWS), :mod:`ehr.cards.challenge` (ECDSA challenge),
:mod:`ehr.cards.sun` (NXP AN12196 SUN).

Evidence (JSON, as ``card_reader.transport.collect_evidence`` sends it)::

    {"kind": "iso-dep", "uid": "<hex>", "nonce": "<base64url>", "credential": "<compact JWS>",
     "counter": <int>, "signature": "<base64url r||s>" | null}
    {"kind": "sun", "uid": "<hex>", "nonce": "<base64url>", "url": "<SUN URL from the NDEF>"}

The ``uid`` from anticollision is recorded but proves nothing (an emulator picks any UID).

Checks, in order (the first failure decides)::

    shape of the evidence ............................. bad-request
    nonce: issued to this terminal, unexpired, unused . replay        (consumed even if later
                                                                       checks fail)
    iso-dep: credential parses, kid/iss known ......... unknown-card
             issuer signature, alg, typ, claims ....... not-genuine
             card signature over nonce||counter ....... not-genuine   (a clone that copied the
                                                                       NDEF stops here)
    sun:     URL has our parameters ................... unknown-card
             PICC data decrypts to our tag format ..... not-genuine
             UID issued as a card ..................... unknown-card
             SDMMAC under the tag's diversified key ... not-genuine
    card revoked ...................................... revoked       (alert = True)
    iso-dep: credential outside nbf..exp .............. expired
    counter strictly greater than the last accepted ... replay        (only now recorded)

Revocation and expiry are judged only for a card that proved itself genuine, so ``revoked`` (and
its alert) means the lost card itself was presented. The terminal gets only the reason code
(:meth:`TapVerdict.for_terminal`); :attr:`TapVerdict.detail` names the failing check for the
audit log and must not be sent to the terminal.

Not detected: a relay of the terminal's radio to a genuine card elsewhere (both kinds); a SUN
URL skimmed from a tag and never used by its owner (accepted once, at its first use: SUN tags
cannot sign the nonce, so for them the nonce only binds the request to a terminal).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from ehr.cards.challenge import NONCE_MAX, NONCE_MIN, verify_card_signature
from ehr.cards.credential import (
    CardCredential,
    CredentialExpired,
    InvalidCredential,
    IssuerKeySet,
    MalformedCredential,
    UnknownIssuerKey,
    verify_credential,
)
from ehr.cards.stores import CounterStore, NonceCheck, RevocationCheck, SunTagDirectory
from ehr.cards.sun import SunError, SunKeys, SunLayout, parse_sun_url, read_uid_counter
from ehr.cards.sun import verify_sun_message as _sun_mac_ok

__all__ = [
    "BAD_REQUEST",
    "EXPIRED",
    "KIND_ISO_DEP",
    "KIND_SUN",
    "NOT_GENUINE",
    "REASONS",
    "REPLAY",
    "REVOKED",
    "UNKNOWN_CARD",
    "SunConfig",
    "TapVerdict",
    "verify_tap",
]

UNKNOWN_CARD: Final = "unknown-card"
REVOKED: Final = "revoked"
EXPIRED: Final = "expired"
REPLAY: Final = "replay"
NOT_GENUINE: Final = "not-genuine"
BAD_REQUEST: Final = "bad-request"
REASONS: Final = (UNKNOWN_CARD, REVOKED, EXPIRED, REPLAY, NOT_GENUINE, BAD_REQUEST)

KIND_ISO_DEP: Final = "iso-dep"
KIND_SUN: Final = "sun"
MAX_UID_BYTES = 10
MAX_SIGNATURE_BYTES = 72


@dataclass(frozen=True)
class SunConfig:
    """What the server needs to check SUN tags."""

    keys: SunKeys
    directory: SunTagDirectory
    layout: SunLayout = SunLayout()


@dataclass(frozen=True)
class TapVerdict:
    """The outcome of one tap.

    ``cid`` is set when accepted, and also on ``revoked`` / ``expired`` / ``replay`` (the card
    proved itself; the audit and the alert need to know which). ``sub`` is the credential's
    pseudonymous person id (ISO-DEP cards only). ``detail`` is for the audit log only.
    """

    accepted: bool
    reason: str | None = None
    kind: str | None = None
    cid: str | None = None
    sub: str | None = None
    alert: bool = False
    detail: str = ""

    def for_terminal(self) -> dict[str, str]:
        """The only part of the verdict a terminal may see."""
        if self.accepted:
            return {"result": "accepted"}
        return {"result": "refused", "reason": self.reason or BAD_REQUEST}


def _refuse(reason: str, detail: str, kind: str | None = None, **kw: Any) -> TapVerdict:
    return TapVerdict(accepted=False, reason=reason, kind=kind, detail=detail, **kw)


class _BadEvidence(ValueError):
    pass


def _b64url(value: Any, what: str, lo: int, hi: int) -> bytes:
    if not isinstance(value, str) or len(value) > 4 * hi:
        raise _BadEvidence(f"{what} must be a base64url string")
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError) as exc:
        raise _BadEvidence(f"{what} must be base64url") from exc
    if not lo <= len(raw) <= hi:
        raise _BadEvidence(f"{what} must be {lo}..{hi} bytes")
    return raw


def _common(evidence: Mapping[str, Any]) -> tuple[str, bytes]:
    kind = evidence.get("kind")
    if kind not in (KIND_ISO_DEP, KIND_SUN):
        raise _BadEvidence("kind must be 'iso-dep' or 'sun'")
    uid = evidence.get("uid", "")
    if not isinstance(uid, str) or len(uid) > 2 * MAX_UID_BYTES:
        raise _BadEvidence("uid must be a hex string")
    try:
        bytes.fromhex(uid)
    except ValueError as exc:
        raise _BadEvidence("uid must be a hex string") from exc
    return kind, _b64url(evidence.get("nonce"), "nonce", NONCE_MIN, NONCE_MAX)


def verify_tap(
    evidence: Mapping[str, Any],
    *,
    issuer_keys: IssuerKeySet,
    nonce_check: NonceCheck,
    counter_store: CounterStore,
    revocation_check: RevocationCheck,
    now: float,
    issuer: str | None = None,
    sun: SunConfig | None = None,
) -> TapVerdict:
    """Check one tap's evidence (see the module docstring for the order of checks).

    ``issuer``: the expected ``iss`` of credentials (None: any, as long as the key is ours).
    ``sun``: SUN keys and tag directory; without it every SUN tag is an ``unknown-card``.
    """
    if not isinstance(evidence, Mapping):
        return _refuse(BAD_REQUEST, "evidence is not a JSON object")
    try:
        kind, nonce = _common(evidence)
        if kind == KIND_ISO_DEP:
            parsed: tuple[Any, ...] = _iso_dep_fields(evidence)
        else:
            url = evidence.get("url")
            if not isinstance(url, str) or not url:
                raise _BadEvidence("url must be a string")
            parsed = (url,)
    except _BadEvidence as exc:
        return _refuse(BAD_REQUEST, str(exc))

    if not nonce_check(nonce):
        return _refuse(REPLAY, "nonce unknown, used, expired or another terminal's", kind)

    if kind == KIND_ISO_DEP:
        return _verify_iso_dep(
            nonce,
            *parsed,
            issuer_keys=issuer_keys,
            issuer=issuer,
            now=now,
            counter_store=counter_store,
            revocation_check=revocation_check,
        )
    return _verify_sun(
        parsed[0], sun=sun, counter_store=counter_store, revocation_check=revocation_check
    )


def _iso_dep_fields(evidence: Mapping[str, Any]) -> tuple[str, int, bytes | None]:
    credential = evidence.get("credential")
    if not isinstance(credential, str) or not credential:
        raise _BadEvidence("credential must be a string")
    counter = evidence.get("counter")
    signature = evidence.get("signature")
    if signature is None:  # the card has no applet: it can only be a copy of the NDEF
        return credential, -1, None
    if not isinstance(counter, int) or isinstance(counter, bool) or not 0 <= counter <= 0xFFFFFFFF:
        raise _BadEvidence("counter must be a 32-bit unsigned integer")
    return credential, counter, _b64url(signature, "signature", 1, MAX_SIGNATURE_BYTES)


def _finish(
    kind: str,
    cid: str,
    counter: int,
    *,
    counter_store: CounterStore,
    revocation_check: RevocationCheck,
    credential: CardCredential | None = None,
    now: float = 0.0,
) -> TapVerdict:
    sub = credential.sub if credential else None
    if revocation_check(cid):
        return _refuse(REVOKED, "card revoked", kind, cid=cid, sub=sub, alert=True)
    if credential is not None:
        try:
            credential.check_validity(now)
        except CredentialExpired as exc:
            return _refuse(EXPIRED, str(exc), kind, cid=cid, sub=sub)
    if not counter_store.advance(cid, counter):
        return _refuse(
            REPLAY, f"counter {counter} not above the last accepted", kind, cid=cid, sub=sub
        )
    return TapVerdict(accepted=True, kind=kind, cid=cid, sub=sub, detail=f"counter {counter}")


def _verify_iso_dep(
    nonce: bytes,
    token: str,
    counter: int,
    signature: bytes | None,
    *,
    issuer_keys: IssuerKeySet,
    issuer: str | None,
    now: float,
    counter_store: CounterStore,
    revocation_check: RevocationCheck,
) -> TapVerdict:
    kind = KIND_ISO_DEP
    try:
        cred = verify_credential(token, issuer_keys, now=now, issuer=issuer, check_validity=False)
    except (MalformedCredential, UnknownIssuerKey) as exc:
        return _refuse(UNKNOWN_CARD, f"credential: {exc}", kind)
    except InvalidCredential as exc:
        return _refuse(NOT_GENUINE, f"credential: {exc}", kind)
    if signature is None:
        return _refuse(NOT_GENUINE, "no card signature (no applet)", kind, cid=None)
    if not verify_card_signature(cred.card_jwk, nonce, counter, signature):
        return _refuse(NOT_GENUINE, "card signature does not verify under cnf", kind)
    return _finish(
        kind,
        cred.cid,
        counter,
        counter_store=counter_store,
        revocation_check=revocation_check,
        credential=cred,
        now=now,
    )


def _verify_sun(
    url: str,
    *,
    sun: SunConfig | None,
    counter_store: CounterStore,
    revocation_check: RevocationCheck,
) -> TapVerdict:
    kind = KIND_SUN
    if sun is None:
        return _refuse(UNKNOWN_CARD, "SUN tags not configured", kind)
    try:
        message = parse_sun_url(url, sun.layout)
    except SunError as exc:
        return _refuse(UNKNOWN_CARD, f"SUN URL: {exc}", kind)
    try:
        uid, counter = read_uid_counter(message, sun.keys)
    except SunError as exc:
        return _refuse(NOT_GENUINE, f"PICC data: {exc}", kind)
    cid = sun.directory(uid)
    if cid is None:
        return _refuse(UNKNOWN_CARD, f"SUN tag {uid.hex()} not issued", kind)
    if not _sun_mac_ok(message, sun.keys.file_read_key(uid), uid, counter):
        return _refuse(NOT_GENUINE, "SDMMAC does not verify", kind)
    return _finish(
        kind, cid, counter, counter_store=counter_store, revocation_check=revocation_check
    )
