"""Issue, revoke and reissue health cards.

Design: /work/shared/CARD.md ("Card life cycle"). Patient.identifier:
http://hl7.org/fhir/R4/datatypes.html#Identifier (``use`` official / old, ``period``); the card
namespace is :data:`ehr.identifiers.HEALTH_CARD_SYSTEM`, typed v2-0203 ``HC`` (Health Card
Number). Credential: :mod:`ehr.cards.credential` (JWS ES256 with ``cnf.jwk``).

**Issue** (:func:`issue_card`). A new card id (``cid``: 80 random bits in Crockford base32, 16
characters, and a check character, :func:`new_cid`) goes into the ``cards`` row *and* into the
Patient's identifiers in one transaction (the Patient row locked, ``If-Match`` its version). The
``cards`` primary key makes the cid unique across the exchange: a collision is an
IntegrityError and the whole transaction is retried with a new cid, never a search first.

* an ISO-DEP card: ``card_public_jwk`` is the key the card made on-chip; the credential to write
  into its NDEF file is signed with the active issuer key and binds it as ``cnf.jwk``. Its
  ``sub`` is a keyed pseudonym of the Patient (HMAC-SHA256), never the citizen ID, which is not
  on the card in any form;
* a SUN tag (NTAG 424 DNA): its ``uid`` (7 bytes) is registered; the tag must be personalised
  with the batch meta-read key and its diversified file-read key
  (:attr:`IssuedCard.sun_file_read_key`).

**Revoke** (:func:`revoke_card`): at once, in one transaction: the row becomes ``revoked`` and the
Patient's identifier of the card gets ``use = old`` and ``period.end``. A revoked card is refused
at every terminal from then on, and its use raises an alert (:mod:`ehr.cards.tap`).

**Reissue** (:func:`reissue_card`): a new card for the same person in place of an old one (which
is revoked now if it was not already), ``replaced_by`` pointing at the new cid.

Every issue and revocation writes an AuditEvent (:mod:`ehr.cards.audit`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import IntegrityError

from ehr.errors import BadRequest, Conflict, Gone, NotFound
from ehr.identifiers import HEALTH_CARD_SYSTEM, V2_0203
from ehr.model import loads
from ehr.security.context import unguarded
from ehr.store import Store, WriteContext

from .audit import Requester, card_record
from .credential import InvalidCredential, issue_credential
from .credential import card_public_jwk as card_public_jwk_of
from .db_stores import ACTIVE, CardRecord, CardRegistry
from .service import CardService
from .verify import KIND_ISO_DEP, KIND_SUN

__all__ = [
    "CID_LENGTH",
    "KINDS",
    "IssuedCard",
    "card_identifier",
    "is_valid_cid",
    "issue_card",
    "new_cid",
    "normalize_uid",
    "pseudonym",
    "reissue_card",
    "revoke_card",
]

KINDS = (KIND_ISO_DEP, KIND_SUN)
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U
CID_LENGTH = 17
_REASON = re.compile(r"^[a-z][a-z0-9-]{0,39}$")


def _luhn32(body: str) -> str:
    """Luhn mod N check character (N = 32) over the Crockford alphabet."""
    factor, total = 2, 0
    for ch in reversed(body):
        addend = factor * _ALPHABET.index(ch)
        total += addend // 32 + addend % 32
        factor = 1 if factor == 2 else 2
    return _ALPHABET[(32 - total % 32) % 32]


def new_cid() -> str:
    """A new card id: 16 random Crockford base32 characters (80 bits) and a check character."""
    body = "".join(_ALPHABET[b % 32] for b in secrets.token_bytes(16))
    return body + _luhn32(body)


def is_valid_cid(cid: object) -> bool:
    """True for a well-formed card id (alphabet, length, check character)."""
    return (
        isinstance(cid, str)
        and len(cid) == CID_LENGTH
        and all(c in _ALPHABET for c in cid)
        and _luhn32(cid[:-1]) == cid[-1]
    )


def normalize_uid(uid: str) -> str:
    """A SUN tag UID as stored: 7 bytes in lowercase hex (``04:A1:...`` or spaces accepted)."""
    text = re.sub(r"[\s:-]", "", uid or "")
    try:
        raw = bytes.fromhex(text)
    except ValueError as exc:
        raise BadRequest("uid must be the tag's 7-byte UID in hex") from exc
    if len(raw) != 7:
        raise BadRequest("uid must be the tag's 7-byte UID in hex")
    return raw.hex()


def pseudonym(key: bytes, patient_id: str) -> str:
    """The credential's ``sub``: a keyed pseudonym of the Patient (not reversible, not the ID)."""
    digest = hmac.new(key, b"health-card-sub:" + patient_id.encode(), hashlib.sha256).digest()
    return "pp-" + base64.b32encode(digest[:15]).decode().lower()


def _instant(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def card_identifier(cid: str, issued: float) -> dict[str, Any]:
    """The Patient.identifier of an active card."""
    return {
        "use": "official",
        "type": {
            "coding": [{"system": V2_0203, "code": "HC", "display": "Health Card Number"}],
            "text": "健康一卡通",
        },
        "system": HEALTH_CARD_SYSTEM,
        "value": cid,
        "period": {"start": _instant(issued)},
    }


@dataclass(frozen=True)
class IssuedCard:
    """A card just issued. ``credential``: the compact JWS for an ISO-DEP card's NDEF file.
    ``sun_file_read_key``: the tag's diversified K_SDMFileRead (SUN; for personalisation only:
    never log it)."""

    cid: str
    patient_id: str
    kind: str
    issued: float
    identifier: dict[str, Any]
    credential: str | None = None
    expires: float | None = None
    uid: str | None = None
    replaces: str | None = None
    sun_file_read_key: bytes | None = field(default=None, repr=False)

    def as_json(self) -> dict[str, Any]:
        """What the registration counter gets back (no SUN key)."""
        out: dict[str, Any] = {
            "cid": self.cid,
            "kind": self.kind,
            "patient": {"reference": f"Patient/{self.patient_id}"},
            "identifier": self.identifier,
            "issued": _instant(self.issued),
        }
        if self.credential is not None:
            out["credential"] = self.credential
        if self.expires is not None:
            out["expires"] = _instant(self.expires)
        if self.uid is not None:
            out["uid"] = self.uid
        if self.replaces is not None:
            out["replaces"] = self.replaces
        return out


def _locked_patient(ctx: WriteContext, patient_id: str) -> tuple[dict[str, Any], int]:
    cur = ctx.repo.current("Patient", patient_id, lock=True)
    if cur is None:
        raise NotFound(f"Patient/{patient_id} not found")
    if cur.deleted or cur.data is None:
        raise Gone(f"Patient/{patient_id} was deleted")
    return loads(cur.data), cur.version


def _retire_identifier(patient: dict[str, Any], cid: str, t: float) -> bool:
    changed = False
    for ident in patient.get("identifier") or ():
        mine = ident.get("system") == HEALTH_CARD_SYSTEM and ident.get("value") == cid
        if mine and ident.get("use") != "old":
            ident["use"] = "old"
            ident.setdefault("period", {})["end"] = _instant(t)
            changed = True
    return changed


def _check_reason(reason: str) -> str:
    if not isinstance(reason, str) or not _REASON.match(reason):
        raise BadRequest("reason must be a short code such as lost, stolen, damaged, replaced")
    return reason


def _revoke_in(
    ctx: WriteContext,
    card: CardRecord,
    t: float,
    reason: str,
    *,
    replaced_by: str | None,
    patient: dict[str, Any] | None = None,
) -> bool:
    """Revoke ``card`` (locked by the caller) and retire its identifier, in ``ctx``'s
    transaction. ``patient``: the card's Patient when the caller updates it itself. Returns
    False when the card was revoked already (then only ``replaced_by`` is filled in)."""
    if not card.active:
        if replaced_by and card.replaced_by is None:
            CardRegistry.set_replaced_by(ctx.conn, card.cid, replaced_by)
        return False
    CardRegistry.mark_revoked(ctx.conn, card.cid, t, reason, replaced_by)
    if patient is not None:
        _retire_identifier(patient, card.cid, t)
        return True
    cur = ctx.repo.current("Patient", card.patient_id, lock=True)
    if cur is not None and not cur.deleted and cur.data is not None:
        res = loads(cur.data)
        if _retire_identifier(res, card.cid, t):
            ctx.update("Patient", card.patient_id, res, if_match=cur.version, validate=False)
    return True


def issue_card(
    store: Store,
    patient_id: str,
    *,
    kind: str = KIND_ISO_DEP,
    card_public_jwk: dict[str, Any] | None = None,
    uid: str | None = None,
    replaces: str | None = None,
    reason: str = "replaced",
    cards: CardService | None = None,
    by: Requester | None = None,
    now: float | None = None,
    lifetime: int | None = None,
) -> IssuedCard:
    """Issue a card to ``Patient/patient_id`` (see the module docstring).

    ``replaces``: the cid of a card this one replaces (revoked now with ``reason`` unless it
    was already). ``lifetime``: credential lifetime in seconds (default: the settings).
    Raises BadRequest (bad input), NotFound / Gone (no such Patient), Conflict (the SUN tag is
    registered already, or ``replaces`` is another person's card)."""
    cards = cards or CardService.of(store)
    t = cards.now() if now is None else now
    if kind not in KINDS:
        raise BadRequest(f"kind must be one of {', '.join(KINDS)}")
    jwk: dict[str, str] | None = None
    uid_hex: str | None = None
    if kind == KIND_ISO_DEP:
        if card_public_jwk is None:
            raise BadRequest("an ISO-DEP card needs its public key (card_public_jwk)")
        try:
            jwk = card_public_jwk_of(card_public_jwk)
        except InvalidCredential as exc:
            raise BadRequest(f"card_public_jwk: {exc}") from exc
    else:
        if card_public_jwk is not None:
            raise BadRequest("a SUN tag has no key pair: give its uid only")
        uid_hex = normalize_uid(uid or "")
    if replaces is not None:
        _check_reason(reason)
    life = lifetime or cards.settings.lifetime_s
    sub = pseudonym(cards.pseudonym_key, patient_id)
    keyset = cards.issuer_keys.signing_keyset(t) if kind == KIND_ISO_DEP else None
    for _ in range(3):
        cid = new_cid()
        credential = None
        if keyset is not None and jwk is not None:
            try:
                credential = issue_credential(
                    keyset, iss=cards.issuer, cid=cid, sub=sub, card_key=jwk, now=t, lifetime=life
                )
            except ValueError as exc:
                raise BadRequest(str(exc)) from exc
        record = CardRecord(
            cid=cid,
            patient_id=patient_id,
            kind=kind,
            sub=sub,
            status=ACTIVE,
            issued=t,
            uid=uid_hex,
            card_jwk=jwk,
            expires=t + life if credential else None,
        )
        identifier = card_identifier(cid, t)
        try:
            with unguarded(), store.write() as ctx:
                patient, version = _locked_patient(ctx, patient_id)
                if replaces is not None:
                    old = cards.registry.get(replaces, ctx.conn, lock=True)
                    if old is None:
                        raise NotFound(f"No card {replaces}")
                    if old.patient_id != patient_id:
                        raise Conflict(f"Card {replaces} is not Patient/{patient_id}'s card")
                    _revoke_in(ctx, old, t, reason, replaced_by=cid, patient=patient)
                CardRegistry.insert(ctx.conn, record)
                patient.setdefault("identifier", []).append(identifier)
                ctx.update("Patient", patient_id, patient, if_match=version)
        except IntegrityError as exc:
            if uid_hex is not None and cards.registry.uid_taken(uid_hex):
                raise Conflict(f"The SUN tag {uid_hex} is registered as a card already") from exc
            continue  # a cid collision (80 random bits: in theory): retry with a new cid
        break
    else:
        raise Conflict("Could not allocate a card id; try again", "transient")
    detail = f"issued {kind} card {cid}" + (f" replacing {replaces} ({reason})" if replaces else "")
    cards.audit(card_record(by or Requester(), "$issue-card", patient_id, detail))
    file_key = cards.sun_keys().file_read_key(bytes.fromhex(uid_hex)) if uid_hex else None
    return IssuedCard(
        cid=cid,
        patient_id=patient_id,
        kind=kind,
        issued=t,
        identifier=identifier,
        credential=credential,
        expires=record.expires,
        uid=uid_hex,
        replaces=replaces,
        sun_file_read_key=file_key,
    )


def revoke_card(
    store: Store,
    cid: str,
    reason: str,
    *,
    cards: CardService | None = None,
    by: Requester | None = None,
    now: float | None = None,
) -> CardRecord:
    """Revoke card ``cid`` at once (lost, stolen, damaged ...). Revoking a revoked card changes
    nothing. Returns the card as it is now. NotFound for an unknown cid."""
    cards = cards or CardService.of(store)
    t = cards.now() if now is None else now
    _check_reason(reason)
    with unguarded(), store.write() as ctx:
        card = cards.registry.get(cid, ctx.conn, lock=True)
        if card is None:
            raise NotFound(f"No card {cid}")
        changed = _revoke_in(ctx, card, t, reason, replaced_by=None)
    if changed:
        detail = f"revoked {card.kind} card {cid} ({reason})"
        cards.audit(card_record(by or Requester(), "$revoke-card", card.patient_id, detail))
    now_card = cards.registry.get(cid)
    assert now_card is not None
    return now_card


def reissue_card(
    store: Store,
    cid: str,
    *,
    reason: str = "replaced",
    card_public_jwk: dict[str, Any] | None = None,
    uid: str | None = None,
    kind: str | None = None,
    cards: CardService | None = None,
    by: Requester | None = None,
    now: float | None = None,
) -> IssuedCard:
    """A new card for the holder of card ``cid``, which is revoked (``reason``) if it was not."""
    cards = cards or CardService.of(store)
    old = cards.registry.get(cid)
    if old is None:
        raise NotFound(f"No card {cid}")
    return issue_card(
        store,
        old.patient_id,
        kind=kind or old.kind,
        card_public_jwk=card_public_jwk,
        uid=uid,
        replaces=cid,
        reason=reason,
        cards=cards,
        by=by,
        now=now,
    )
