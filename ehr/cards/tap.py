"""One tap at a counter terminal, server side: nonce, verification, patient, audit, alert.

Design: /work/shared/CARD.md ("Flow at the counter"). The checks themselves are
:func:`ehr.cards.verify.verify_tap`; this module runs them on the database-backed stores
(:mod:`ehr.cards.db_stores`) and then:

1. resolves the card in the registry (a genuine credential for a cid the registry does not hold
   is an ``unknown-card``) and its Patient (following a merge's ``replaced-by`` link);
2. on acceptance, records a tap ticket (:class:`~ehr.cards.db_stores.TapTickets`): the terminal
   may check in that patient's appointments for a few minutes, and no one else's;
3. audits the tap, accepted or refused (:func:`ehr.cards.audit.tap_record`);
4. when a *revoked* card proved genuine, raises the alert: a Security Alert AuditEvent and a
   Communication (category ``alert``, priority ``urgent``, about the Patient, to
   ``EHR_CARD_ALERT_RECIPIENT``), one per card, terminal and day (a conditional create on its
   identifier, so a card tapped again and again does not flood the administrators; every tap
   still has its own AuditEvent).

The terminal is told the reason code only (:meth:`TapOutcome.for_terminal`).
"""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from ehr.codesystems import CANONICAL_BASE
from ehr.security.context import unguarded
from ehr.sitetime import local_day

from .answer import mask_name, resolve_patient
from .audit import Requester, alert_record, tap_record
from .db_stores import CardRecord
from .service import CardService
from .stores import nonce_check_for
from .verify import KIND_ISO_DEP, NOT_GENUINE, UNKNOWN_CARD, SunConfig, TapVerdict, verify_tap

__all__ = ["ALERT_SYSTEM", "TapOutcome", "issue_nonce", "process_tap", "raise_alert"]

#: identifier system of revoked-card alerts (one per card, terminal and day)
ALERT_SYSTEM = f"{CANONICAL_BASE}/sid/health-card-alert"
log = logging.getLogger("ehr.cards")
COMMUNICATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/communication-category"


@dataclass(frozen=True)
class TapOutcome:
    verdict: TapVerdict
    card: CardRecord | None = None
    patient_id: str | None = None
    display: str | None = None
    tap_id: str | None = None

    @property
    def accepted(self) -> bool:
        return self.verdict.accepted

    def for_terminal(self) -> dict[str, Any]:
        """The minimal answer: a refusal's reason code; an acceptance's patient and tap id."""
        out: dict[str, Any] = dict(self.verdict.for_terminal())
        if self.accepted:
            out["tap"] = self.tap_id
            out["patient"] = {"reference": f"Patient/{self.patient_id}", "display": self.display}
        return out


def issue_nonce(cards: CardService, terminal: str, now: float | None = None) -> tuple[bytes, float]:
    """A fresh nonce for ``terminal`` and when it expires (seconds since the epoch)."""
    t = cards.now() if now is None else now
    return cards.nonces.issue(terminal, t), t + cards.nonces.ttl


def _credential_kid(evidence: Any) -> str | None:
    """The ``kid`` a credential names (unverified: only to pick the keys to verify with)."""
    token = evidence.get("credential") if isinstance(evidence, dict) else None
    if not isinstance(token, str) or token.count(".") != 2 or len(token) > 4096:
        return None
    head = token.split(".", 1)[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except (ValueError, UnicodeDecodeError):
        return None
    kid = header.get("kid") if isinstance(header, dict) else None
    return kid if isinstance(kid, str) else None


class _Counters:
    """The counter store of one tap (records when the card was last used)."""

    def __init__(self, cards: CardService, now: float) -> None:
        self.cards, self.now = cards, now

    def advance(self, cid: str, counter: int) -> bool:
        return self.cards.counters.advance(cid, counter, self.now)


def _refuse(verdict: TapVerdict, reason: str, detail: str) -> TapVerdict:
    return replace(verdict, accepted=False, reason=reason, detail=detail, alert=False)


def process_tap(
    cards: CardService, evidence: Any, who: Requester, now: float | None = None
) -> TapOutcome:
    """Verify one tap's evidence for the terminal ``who.client_id`` (see the module doc)."""
    if not who.client_id:
        raise ValueError("a tap needs the terminal's client id")
    t = cards.now() if now is None else now
    verdict = verify_tap(
        evidence,
        issuer_keys=cards.issuer_keys.keyset(_credential_kid(evidence)),
        nonce_check=nonce_check_for(cards.nonces, who.client_id, t),
        counter_store=_Counters(cards, t),
        revocation_check=cards.revocations,
        now=t,
        issuer=cards.issuer,
        sun=SunConfig(cards.sun_keys(), cards.sun_directory),
    )
    card = cards.registry.get(verdict.cid) if verdict.cid else None
    if verdict.cid and card is None:
        verdict = _refuse(verdict, UNKNOWN_CARD, f"card {verdict.cid} is not in the registry")
    elif card is not None and verdict.accepted and card.kind != verdict.kind:
        verdict = _refuse(verdict, NOT_GENUINE, f"card {card.cid} is registered as {card.kind}")
    elif (
        card is not None
        and verdict.accepted
        and card.kind == KIND_ISO_DEP
        and verdict.sub != card.sub
    ):
        verdict = _refuse(verdict, NOT_GENUINE, f"credential sub differs from card {card.cid}'s")
    patient = resolve_patient(cards.store, card.patient_id) if card is not None else None
    patient_id = str(patient["id"]) if patient else (card.patient_id if card else None)
    if verdict.accepted and patient is None:
        verdict = _refuse(verdict, UNKNOWN_CARD, f"Patient/{patient_id} of the card is gone")
    outcome = TapOutcome(verdict, card, patient_id)
    if verdict.accepted:
        assert card is not None and patient_id is not None
        tap_id = cards.taps.issue(who.client_id, card.cid, patient_id, t)
        outcome = TapOutcome(verdict, card, patient_id, mask_name(patient), tap_id)
    cards.audit(tap_record(who, verdict, patient_id))
    if verdict.alert and card is not None:
        raise_alert(cards, who, card, patient_id, t)
    return outcome


def _alert_notice(
    cards: CardService, who: Requester, card: CardRecord, patient_id: str | None, t: float
) -> dict[str, Any]:
    when = datetime.fromtimestamp(t, UTC)
    stamp, day = when.strftime("%Y-%m-%dT%H:%M:%SZ"), local_day(when)
    terminal = who.client_id or "?"
    revoked = local_day(datetime.fromtimestamp(card.revoked, UTC)) if card.revoked else "?"
    text = (
        f"已挂失/注销的健康卡 {card.cid}（{revoked} 注销，原因：{card.revoke_reason or '未知'}）"
        f"于 {stamp} 在终端 {terminal} 被出示，已拒绝。\n"
        f"Revoked health card {card.cid} (revoked {revoked}, reason: "
        f"{card.revoke_reason or 'unknown'}) was presented at terminal {terminal} at {stamp} "
        "and refused."
    )
    notice: dict[str, Any] = {
        "resourceType": "Communication",
        "identifier": [{"system": ALERT_SYSTEM, "value": f"{card.cid}:{terminal}:{day}"}],
        "status": "completed",
        "category": [
            {"coding": [{"system": COMMUNICATION_CATEGORY, "code": "alert", "display": "Alert"}]}
        ],
        "priority": "urgent",
        "sent": stamp,
        "reasonCode": [{"text": "revoked health card presented"}],
        "payload": [{"contentString": text}],
    }
    if patient_id:
        notice["subject"] = {"reference": f"Patient/{patient_id}"}
    if cards.settings.alert_recipient:
        notice["recipient"] = [{"reference": cards.settings.alert_recipient}]
    return notice


def raise_alert(
    cards: CardService, who: Requester, card: CardRecord, patient_id: str | None, t: float
) -> None:
    """The alert of a revoked card presented: a Security Alert AuditEvent, and a Communication
    to the administrators (at most one per card, terminal and day)."""
    cards.audit(alert_record(who, card.cid, patient_id, card.revoke_reason))
    notice = _alert_notice(cards, who, card, patient_id, t)
    ident = notice["identifier"][0]
    try:
        with unguarded():
            cards.store.create(
                notice, if_none_exist=f"identifier={ident['system']}|{ident['value']}"
            )
    except Exception:  # the Security Alert AuditEvent is recorded; the terminal still gets
        log.exception("revoked-card notice for %s failed", card.cid)  # its refusal
