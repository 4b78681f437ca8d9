"""HTTP routes of the health one-card (under the FHIR base; JSON in and out).

Design: /work/shared/CARD.md. The work is in :mod:`ehr.cards` (verification, registry, issuing,
audit) and :func:`appointments.check_in`; these routes check the token, translate, and answer.

==============================================  ========================  ====================
route                                           scope                     answer
==============================================  ========================  ====================
POST ``/$card-nonce``                           ``system/health-card.tap``  ``{nonce, expires}``
POST ``/$card-tap`` (the evidence)              ``system/health-card.tap``  accepted / refused
POST ``/Appointment/{id}/$card-checkin``        ``system/health-card.tap``  queue number
  ``{"tap": <tap id>}``
POST ``/Patient/{id}/$issue-card``              ``system/health-card.issue``  201 the card
  ``{kind, card_public_jwk | uid, replaces?,    (or an admin user's token with
  reason?}``                                    ``user/Patient.u``)
POST ``/Patient/{id}/$revoke-card``             as ``$issue-card``        the card
  ``{cid, reason}``
GET ``{root}/.well-known/health-card-jwks.json``  (public)                the issuer JWKS
==============================================  ========================  ====================

Tokens: SMART Backend Services (client credentials, ``private_key_jwt``) for terminals; the
scope names are operation scopes of this server (see ``ehr.accounts.scopes``). No token: 401; a
token without the scope: 403 OperationOutcome (audited).

``$card-tap`` answers HTTP 200 whatever the verdict (the operation ran)::

    {"result": "accepted", "tap": "<tap id>",
     "patient": {"reference": "Patient/p1", "display": "张*伟"},
     "appointments": [{"id", "time", "department", "practitioner", "status"}]}
    {"result": "refused", "reason": "unknown-card|not-genuine|revoked|expired|replay|bad-request"}

``$card-checkin`` checks in an appointment of the patient of an accepted tap of *this* terminal
(the tap id, valid ``EHR_CARD_TAP_TTL_S``): ``appointments.check_in`` moves it to ``arrived`` and
gives a queue number. Two terminals checking in the same appointment at once check it in once:
both get 200 and the same queue number, the later one with ``"repeated": true``. An appointment
of another patient, or a tap id that is unknown, expired or another terminal's: 403. Not today,
or not a booking: 409 (from the appointment service).
"""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from appointments import Actor, Appointments, check_in
from appointments.fhirdata import local_day_bounds
from appointments.shapes import patient_of
from ehr.accounts import TokenInfo
from ehr.cards.answer import appointments_between
from ehr.cards.audit import Requester, checkin_record, refusal_record
from ehr.cards.issuing import issue_card, revoke_card
from ehr.cards.service import CardService
from ehr.cards.tap import issue_nonce, process_tap
from ehr.errors import BadRequest, FhirError, Forbidden, NotFound

from ..auth import token_info, unauthorized
from ..limits import in_thread

__all__ = ["ISSUE_SCOPE", "JWKS_PATH", "MAX_EVIDENCE_BYTES", "TAP_SCOPE", "jwks_router", "router"]

#: a counter terminal: fetch nonces, send taps, check in the patient it read
TAP_SCOPE = "system/health-card.tap"
#: the registration counter: issue and revoke cards
ISSUE_SCOPE = "system/health-card.issue"
JWKS_PATH = "/.well-known/health-card-jwks.json"
MAX_EVIDENCE_BYTES = 16 * 1024
JSON_TYPE = "application/json"


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=JSON_TYPE)


def _cards(request: Request) -> CardService:
    cards: CardService = request.app.state.cards
    return cards


def _appointments(request: Request) -> Appointments:
    """The app's appointment services; else services of our own on the store (made once; the
    booking-rules hook is the appointments mount's business, not installed here)."""
    state = request.app.state
    svc = getattr(state, "appointments", None) or getattr(state, "card_appointments", None)
    if svc is None:
        svc = state.card_appointments = Appointments(state.store)
    return svc  # type: ignore[no-any-return]


def _requester(request: Request, info: TokenInfo) -> Requester:
    user = info.fhir_user
    if user and "/" in user:  # absolute fhirUser URL -> relative reference
        user = "/".join(user.rstrip("/").split("/")[-2:])
    return Requester(
        client_id=info.client_id or None,
        subject=info.subject,
        user=user,
        token_id=info.jti,
        ip=request.client.host if request.client else None,
        method=request.method,
        path=request.url.path,
    )


async def _authorized(request: Request, operation: str, *, issue: bool = False) -> Requester:
    """The requester, once its token carries the operation's scope (401 / 403 otherwise)."""
    info = await token_info(request, check_revoked=True)
    if info is None:
        raise unauthorized("This operation needs a terminal's access token", None)
    who = _requester(request, info)
    if issue:
        ok = ISSUE_SCOPE in info.scope or (
            info.role == "admin" and info.scope.allows("user", "Patient", "u")
        )
        wanted = f"{ISSUE_SCOPE} (or an administrator's user/Patient.u)"
    else:
        ok = TAP_SCOPE in info.scope and bool(info.client_id)
        wanted = TAP_SCOPE
    if not ok:
        cards = _cards(request)
        cards.audit(refusal_record(who, operation, 403, f"token lacks scope {wanted}"))
        raise Forbidden(f"This operation needs the scope {wanted}", "forbidden")
    if not getattr(request.app.state, "card_audit_accepting", lambda: True)():
        raise FhirError(503, "transient", "The audit trail is not keeping up; try again shortly")
    return who


async def _body(request: Request, limit: int = MAX_EVIDENCE_BYTES) -> dict[str, Any]:
    raw = await request.body()
    if len(raw) > limit:
        raise BadRequest(f"The body exceeds {limit} bytes", "too-costly")
    try:
        body = orjson.loads(raw) if raw.strip() else {}
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"The body is not JSON: {exc}", "structure") from exc
    if not isinstance(body, dict):
        raise BadRequest("The body must be a JSON object", "structure")
    return body


def _instant(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def router() -> APIRouter:
    r = APIRouter()

    @r.post("/$card-nonce", name="card-nonce")
    async def card_nonce(request: Request) -> Response:
        who = await _authorized(request, "$card-nonce")
        cards = _cards(request)
        assert who.client_id is not None
        nonce, expires = await in_thread(issue_nonce, cards, who.client_id)
        return _json(
            {
                "nonce": base64.urlsafe_b64encode(nonce).rstrip(b"=").decode("ascii"),
                "expires": _instant(expires),
                "expires_in": int(expires - cards.now()),
            }
        )

    @r.post("/$card-tap", name="card-tap")
    async def card_tap(request: Request) -> Response:
        who = await _authorized(request, "$card-tap")
        evidence = await _body(request)
        cards = _cards(request)
        outcome = await in_thread(process_tap, cards, evidence, who)
        answer = outcome.for_terminal()
        if outcome.accepted and outcome.patient_id:
            lo, hi = local_day_bounds(_appointments(request).now().date())
            answer["appointments"] = await in_thread(
                appointments_between, cards.store, outcome.patient_id, lo, hi
            )
        return _json(answer)

    @r.post("/Appointment/{rid}/$card-checkin", name="card-checkin")
    async def card_checkin(request: Request, rid: str) -> Response:
        who = await _authorized(request, "$card-checkin")
        body = await _body(request)
        cards = _cards(request)
        assert who.client_id is not None
        ticket = await in_thread(
            cards.taps.get, str(body.get("tap") or ""), who.client_id, cards.now()
        )
        if ticket is None:
            cards.audit(
                refusal_record(who, "$card-checkin", 403, f"Appointment/{rid}: no valid tap")
            )
            raise Forbidden("Tap the card again: no valid tap of this terminal", "forbidden")
        svc = _appointments(request)

        def run() -> dict[str, Any]:
            try:
                appt = cards.store.read("Appointment", rid).resource()
            except FhirError as exc:
                raise NotFound(f"Appointment/{rid} not found") from exc
            if patient_of(appt) != ticket.patient_id:
                cards.audit(
                    checkin_record(who, rid, ticket.patient_id, 403, "not the tapped patient")
                )
                raise Forbidden("This appointment is not the tapped patient's", "forbidden")
            try:
                done = check_in(svc, Actor.system(), rid, channel="card")
            except FhirError as exc:
                cards.audit(
                    checkin_record(who, rid, ticket.patient_id, exc.status, exc.diagnostics)
                )
                raise
            detail = f"queue number {done.queue_number}" + (" (repeated)" if done.repeated else "")
            cards.audit(checkin_record(who, rid, ticket.patient_id, 200, detail))
            return {
                "result": "checked-in",
                "appointment": {"id": rid, "status": done.appointment.get("status")},
                "encounter": done.encounter.get("id"),
                "queue_number": done.queue_number,
                "repeated": done.repeated,
            }

        return _json(await in_thread(run))

    @r.post("/Patient/{rid}/$issue-card", name="issue-card")
    async def issue_card_op(request: Request, rid: str) -> Response:
        who = await _authorized(request, "$issue-card", issue=True)
        body = await _body(request)
        cards = _cards(request)
        issued = await in_thread(
            lambda: issue_card(
                cards.store,
                rid,
                kind=str(body.get("kind") or "iso-dep"),
                card_public_jwk=body.get("card_public_jwk"),
                uid=body.get("uid"),
                replaces=body.get("replaces"),
                reason=str(body.get("reason") or "replaced"),
                cards=cards,
                by=who,
            )
        )
        return _json(issued.as_json(), 201)

    @r.post("/Patient/{rid}/$revoke-card", name="revoke-card")
    async def revoke_card_op(request: Request, rid: str) -> Response:
        who = await _authorized(request, "$revoke-card", issue=True)
        body = await _body(request)
        cards = _cards(request)
        cid = str(body.get("cid") or "")
        card = await in_thread(cards.registry.get, cid) if cid else None
        if card is None or card.patient_id != rid:
            raise NotFound(f"Patient/{rid} has no card {cid or '(none given)'}")
        done = await in_thread(
            revoke_card, cards.store, cid, str(body.get("reason") or "lost"), cards=cards, by=who
        )
        return _json(done.as_json())

    return r


def jwks_router() -> APIRouter:
    """The public issuer JWKS, at the server root (not under the FHIR base)."""
    r = APIRouter()

    @r.get(JWKS_PATH, name="health-card-jwks", include_in_schema=False)
    async def jwks(request: Request) -> Response:
        cards = _cards(request)
        doc = await in_thread(cards.issuer_keys.public_jwks, time.time())
        return Response(
            orjson.dumps(doc),
            media_type="application/jwk-set+json",
            headers={"Cache-Control": "public, max-age=300"},
        )

    return r
