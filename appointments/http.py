"""Thin FastAPI adapters for the appointment services: ``router()`` gives the ``$operations``
that ``fhir_api`` mounts under its FHIR base (``/fhir``), before the generic interaction routes.

Bodies are FHIR ``Parameters`` (http://hl7.org/fhir/R4/parameters.html) as in the Argonaut
Scheduling IG; results are resources, Bundles or Parameters. Errors are raised as
:class:`~ehr.errors.FhirError` and rendered as OperationOutcome by ``fhir_api``.

========================================================  =====================================
route (under the FHIR base)                               service
========================================================  =====================================
GET|POST  /Appointment/$find                              :func:`~appointments.find.find_slots`
POST      /Appointment/$hold                              :func:`~appointments.booking.hold`
POST      /Appointment/$book                              :func:`~appointments.booking.book`
POST      /Appointment/$waitlist                          :func:`~appointments.waitlist.join_waitlist`
POST      /Appointment/$checkin                           check-in by card identifier
POST      /Appointment/{id}/$cancel                       :func:`~appointments.booking.cancel`
POST      /Appointment/{id}/$reschedule                   :func:`~appointments.booking.reschedule`
POST      /Appointment/{id}/$noshow                       :func:`~appointments.booking.no_show`
POST      /Appointment/{id}/$checkin                      :func:`~appointments.checkin.check_in`
POST      /Schedule/{id}/$generate-slots                  :func:`~appointments.slots.generate_slots`
POST      /Schedule/{id}/$cancel-session                  :func:`~appointments.sessions.cancel_session`
GET       /Schedule/{id}/$queue?date=&session=            :func:`~appointments.checkin.queue`
POST      /Schedule/{id}/$call-next                       :func:`~appointments.checkin.call_next`
POST      /Encounter/{id}/$finish                         :func:`~appointments.checkin.finish_visit`
GET       /Location/{id}/$ward-worklist                   :func:`~appointments.nursing.ward_worklist`
GET       /Patient/$identify?identifier=system|value      :func:`~appointments.nursing.identify_patient`
POST      /Patient/{id}/$record-vitals                    :func:`~appointments.nursing.record_vital_signs`
POST      /MedicationRequest/{id}/$administer             :func:`~appointments.nursing.administer_medication`
GET       /PractitionerRole/{id}/$clinic-list?date=       :func:`~appointments.workstation.clinic_list`
GET       /Patient/{id}/$trend?code=…&start=&end=         :func:`~appointments.workstation.results_over_time`
POST      /Encounter/{id}/$note                           :func:`~appointments.workstation.write_note`
POST      /Encounter/{id}/$orders                         :func:`~appointments.workstation.place_orders`
========================================================  =====================================

Mounting (in ``fhir_api``)::

    from appointments import install
    from appointments.http import router as appointments_router
    app.state.appointments = install(store)          # also registers the booking-rules hook
    include_before_interactions(app, appointments_router())

The acting user: ``router(resolve_actor=…)`` takes an async callable ``Request -> Actor | None``;
by default it reads ``request.state.actor`` (set by the SMART layer). No actor: 401.

The second nurse of a high-alert drug's double check (``$administer``'s ``verifierAssertion``,
a witness assertion from ``POST /auth/witness``): ``router(verify_witness=…)`` takes an async
callable ``(Request, assertion, purpose) -> WitnessAssertion`` raising
:class:`~ehr.accounts.InvalidToken`; by default the authorization server on
``request.app.state.auth`` verifies it (its ``witness_for``). A refused assertion is a 409
OperationOutcome; nothing is written.

(No ``from __future__ import annotations`` here: FastAPI must see the ``Annotated`` dependency
aliases that ``router()`` builds as objects, not as strings it would look up in the module.)
"""

from collections.abc import Awaitable, Callable
from datetime import date
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from ehr.accounts.tokens import InvalidToken, WitnessAssertion
from ehr.errors import BadRequest, Conflict, FhirError, Forbidden, Issue

from .actors import Actor
from .booking import book, cancel, hold, no_show, reschedule
from .checkin import (
    CheckIn,
    QueueEntry,
    QueueView,
    call_next,
    check_in,
    check_in_by_identifier,
    finish_visit,
    queue,
)
from .fhirdata import parse_instant, ref_id
from .find import FindRequest, find_slots, parse_day
from .nursing import (
    administer_medication,
    administration_purpose,
    identify_patient,
    record_vital_signs,
    recorded_administration,
    ward_worklist,
)
from .service import Appointments
from .sessions import cancel_session
from .slots import generate_slots
from .waitlist import join_waitlist
from .workstation import Order, clinic_list, place_orders, results_over_time, write_note

__all__ = ["ActorResolver", "WitnessVerifier", "router"]

ActorResolver = Callable[[Request], Awaitable[Actor | None]]
WitnessVerifier = Callable[[Request, str, str], Awaitable[WitnessAssertion]]
FHIR_JSON = "application/fhir+json; charset=utf-8"


async def _actor_from_state(request: Request) -> Actor | None:
    actor = getattr(request.state, "actor", None)
    return actor if isinstance(actor, Actor) else None


async def _witness_from_auth(request: Request, assertion: str, purpose: str) -> WitnessAssertion:
    verify = getattr(getattr(request.app.state, "auth", None), "witness_for", None)
    if verify is None:
        raise FhirError(
            501, "not-supported", "This server cannot verify a second nurse's signature"
        )
    found: WitnessAssertion = await verify(request, assertion, purpose)
    return found


def _respond(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=FHIR_JSON)


def _params(body: Any) -> dict[str, list[dict[str, Any]]]:
    """``Parameters.parameter`` by name."""
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise BadRequest("The body must be a FHIR Parameters resource", "structure")
    out: dict[str, list[dict[str, Any]]] = {}
    for p in body.get("parameter") or ():
        if isinstance(p, dict) and p.get("name"):
            out.setdefault(str(p["name"]), []).append(p)
    return out


def _value(p: dict[str, Any]) -> Any:
    for k, v in p.items():
        if k.startswith("value"):
            return v
    return p.get("resource")


def _get(params: dict[str, list[dict[str, Any]]], name: str, rtype: str | None = None) -> Any:
    """The single value of parameter ``name``; references give their id when ``rtype`` is set."""
    got = params.get(name)
    if not got:
        return None
    v = _value(got[0])
    if rtype is not None:
        if isinstance(v, dict):
            return ref_id(v, rtype)
        if isinstance(v, str):
            return ref_id(v, rtype) or v
    return v


def _need(value: Any, name: str) -> Any:
    if value in (None, ""):
        raise BadRequest(f"Parameter '{name}' is required")
    return value


def _day(value: Any, name: str) -> date | None:
    return parse_day(str(value), name) if value else None


def _parameters(*parts: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": [p for p in parts if p]}


def _checkin_parts(c: CheckIn) -> list[dict[str, Any]]:
    return [
        {"name": "appointment", "resource": c.appointment},
        {"name": "encounter", "resource": c.encounter},
        {"name": "queueNumber", "valueInteger": c.queue_number},
    ]


def _entry_parts(q: QueueEntry) -> list[dict[str, Any]]:
    return [
        {"name": "number", "valueInteger": q.number},
        {"name": "status", "valueCode": q.status},
        {"name": "display", "valueString": q.display},
        {"name": "encounter", "valueReference": {"reference": f"Encounter/{q.encounter}"}},
        {"name": "appointment", "valueReference": {"reference": f"Appointment/{q.appointment}"}},
        {"name": "patient", "valueReference": {"reference": f"Patient/{q.patient}"}},
    ]


def _queue_parts(v: QueueView) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for kind in ("waiting", "called", "done"):
        parts += [{"name": "entry", "part": _entry_parts(q)} for q in getattr(v, kind)]
    parts += [
        {"name": "notArrived", "valueReference": {"reference": f"Appointment/{a}"}}
        for a in v.not_arrived
    ]
    return parts


def _bundle(resources: list[dict[str, Any]], issues: list[Issue] | None = None, total: int | None = None,
            kind: str = "collection") -> dict[str, Any]:  # fmt: skip
    entries: list[dict[str, Any]] = [
        {"fullUrl": f"{r['resourceType']}/{r['id']}", "resource": r} for r in resources
    ]
    if issues:
        entries.append(
            {
                "resource": {
                    "resourceType": "OperationOutcome",
                    "issue": [i.to_fhir() for i in issues],
                }
            }
        )
    out: dict[str, Any] = {"resourceType": "Bundle", "type": kind}
    if total is not None:
        out["total"] = total
    out["entry"] = entries
    return out


async def _json(request: Request) -> Any:
    raw = await request.body()
    if not raw:
        return {"resourceType": "Parameters"}
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"Body is not valid JSON: {exc}", "structure") from exc


def router(
    *, resolve_actor: ActorResolver | None = None, verify_witness: WitnessVerifier | None = None
) -> APIRouter:
    """The appointment ``$operations``. The services come from ``request.app.state.appointments``
    (an :class:`~appointments.service.Appointments`)."""
    resolve = resolve_actor or _actor_from_state
    witness_of = verify_witness or _witness_from_auth
    r = APIRouter()

    async def services(request: Request) -> Appointments:
        svc = getattr(request.app.state, "appointments", None)
        if not isinstance(svc, Appointments):
            raise FhirError(
                500, "exception", "The appointment services are not installed on this server"
            )
        return svc

    async def acting(request: Request) -> Actor:
        actor = await resolve(request)
        if actor is None:
            raise FhirError(401, "login", "Sign in to use the appointment services")
        return actor

    Svc = Annotated[Appointments, Depends(services)]
    Who = Annotated[Actor, Depends(acting)]

    # -- booking ------------------------------------------------------------------------------
    @r.api_route("/Appointment/$find", methods=["GET", "POST"], name="appointment-find")
    async def find_op(request: Request, svc: Svc, who: Who) -> Response:
        q: dict[str, Any] = dict(request.query_params)
        if request.method == "POST":
            p = _params(await _json(request))
            q.update({k: _get(p, k) for k in p})
        count = int(q.get("_count") or 100)
        req = FindRequest(
            start=_day(q.get("start"), "start"),
            end=_day(q.get("end"), "end"),
            service=q.get("service"),
            specialty=q.get("specialty"),
            practitioner=q.get("practitioner"),
            location=q.get("location"),
            organization=q.get("organization"),
            visit_type=q.get("visit-type"),
            patient=_ref_text(q.get("patient")),
            count=max(1, min(count, 1000)),
        )
        found = await run_in_threadpool(find_slots, svc, req, who)
        return _respond(_bundle([f.slot for f in found], total=len(found), kind="searchset"))

    @r.post("/Appointment/$hold", name="appointment-hold")
    async def hold_op(request: Request, svc: Svc, who: Who) -> Response:
        p = _params(await _json(request))
        slot, patient = (
            _need(_get(p, "slot", "Slot"), "slot"),
            _need(_get(p, "patient", "Patient"), "patient"),
        )
        return _respond(
            await run_in_threadpool(lambda: hold(svc, who, slot=slot, patient=patient)), 201
        )

    @r.post("/Appointment/$book", name="appointment-book")
    async def book_op(request: Request, svc: Svc, who: Who) -> Response:
        p = _params(await _json(request))
        ident = _get(p, "identifier")
        if ident is not None and (not isinstance(ident, dict) or not ident.get("value")):
            raise BadRequest("identifier must be a valueIdentifier with a value")
        kwargs = {
            "slot": _get(p, "slot", "Slot"),
            "patient": _get(p, "patient", "Patient"),
            "appointment": _get(p, "appointment", "Appointment"),
            "identifier": ident,
            "comment": _get(p, "comment"),
        }
        done = await run_in_threadpool(lambda: book(svc, who, **kwargs))
        return _respond(done, 201 if done.get("meta", {}).get("versionId") == "1" else 200)

    @r.post("/Appointment/$waitlist", name="appointment-waitlist")
    async def waitlist_op(request: Request, svc: Svc, who: Who) -> Response:
        p = _params(await _json(request))
        patient = _need(_get(p, "patient", "Patient"), "patient")
        target = _need(_get(p, "target"), "target")
        target = target.get("reference") if isinstance(target, dict) else target
        start, end = _day(_get(p, "start"), "start"), _day(_get(p, "end"), "end")
        done = await run_in_threadpool(
            lambda: join_waitlist(svc, who, patient=patient, target=str(target), start=start, end=end,
                                  comment=_get(p, "comment"))
        )  # fmt: skip
        return _respond(done, 201)

    @r.post("/Appointment/$checkin", name="appointment-checkin-card")
    async def checkin_card_op(request: Request, svc: Svc, who: Who) -> Response:
        p = _params(await _json(request))
        ident = _need(_get(p, "identifier"), "identifier")
        if isinstance(ident, dict):
            ident = f"{ident.get('system', '')}|{ident.get('value', '')}"
        org = _get(p, "organization", "Organization")
        done = await run_in_threadpool(
            lambda: check_in_by_identifier(svc, who, str(ident), organization=org)
        )
        return _respond(
            _parameters(*({"name": "checkin", "part": _checkin_parts(c)} for c in done))
        )

    @r.post("/Appointment/{rid}/$cancel", name="appointment-cancel")
    async def cancel_op(request: Request, rid: str, svc: Svc, who: Who) -> Response:
        p = _params(await _json(request))
        return _respond(
            await run_in_threadpool(lambda: cancel(svc, who, rid, reason=_get(p, "reason")))
        )

    @r.post("/Appointment/{rid}/$reschedule", name="appointment-reschedule")
    async def reschedule_op(request: Request, rid: str, svc: Svc, who: Who) -> Response:
        p = _params(await _json(request))
        slot = _need(_get(p, "slot", "Slot"), "slot")
        return _respond(await run_in_threadpool(lambda: reschedule(svc, who, rid, slot=slot)))

    @r.post("/Appointment/{rid}/$noshow", name="appointment-noshow")
    async def noshow_op(rid: str, svc: Svc, who: Who) -> Response:
        return _respond(await run_in_threadpool(lambda: no_show(svc, who, rid)))

    @r.post("/Appointment/{rid}/$checkin", name="appointment-checkin")
    async def checkin_op(request: Request, rid: str, svc: Svc, who: Who) -> Response:
        p = _params(await _json(request))
        channel = str(_get(p, "channel") or "counter")
        done = await run_in_threadpool(lambda: check_in(svc, who, rid, channel=channel))
        return _respond(_parameters(*_checkin_parts(done)))

    # -- schedules and queues -------------------------------------------------------------------
    @r.post("/Schedule/{rid}/$generate-slots", name="schedule-generate-slots")
    async def generate_op(request: Request, rid: str, svc: Svc, who: Who) -> Response:
        _staff(who)
        p = _params(await _json(request))
        first = _day(_get(p, "start"), "start") or svc.now().date()
        days = int(_get(p, "days") or 1)
        rep = await run_in_threadpool(lambda: generate_slots(svc, rid, first, days))
        return _respond(_parameters(
            {"name": "created", "valueInteger": rep.created},
            {"name": "existing", "valueInteger": rep.existing},
            *({"name": "withdrawn", "valueReference": {"reference": f"Slot/{s}"}} for s in rep.withdrawn),
            *({"name": "orphaned", "valueReference": {"reference": f"Slot/{s}"}} for s in rep.orphaned),
        ))  # fmt: skip

    @r.post("/Schedule/{rid}/$cancel-session", name="schedule-cancel-session")
    async def cancel_session_op(request: Request, rid: str, svc: Svc, who: Who) -> Response:
        p = _params(await _json(request))
        day = _need(_day(_get(p, "date"), "date"), "date")
        session = str(_need(_get(p, "session"), "session"))
        reason = str(_get(p, "reason") or "医生停诊")
        res = await run_in_threadpool(
            lambda: cancel_session(svc, who, rid, day, session, reason=reason)
        )
        parts: list[dict[str, Any]] = []
        for a in res.cancelled:
            sub = [{"name": "cancelled", "valueReference": {"reference": f"Appointment/{a}"}}]
            if res.offers.get(a):
                sub.append(
                    {
                        "name": "offer",
                        "valueReference": {"reference": f"Appointment/{res.offers[a]}"},
                    }
                )
            parts.append({"name": "booking", "part": sub})
        parts.append({"name": "withdrawnSlots", "valueInteger": len(res.withdrawn_slots)})
        return _respond(_parameters(*parts))

    @r.get("/Schedule/{rid}/$queue", name="schedule-queue")
    async def queue_op(rid: str, svc: Svc, who: Who, date: str, session: str) -> Response:
        _staff(who)
        day = _need(_day(date, "date"), "date")
        view = await run_in_threadpool(lambda: queue(svc, rid, day, session))
        return _respond(_parameters(*_queue_parts(view)))

    @r.post("/Schedule/{rid}/$call-next", name="schedule-call-next")
    async def call_next_op(request: Request, rid: str, svc: Svc, who: Who) -> Response:
        p = _params(await _json(request))
        day = _need(_day(_get(p, "date"), "date"), "date")
        session = str(_need(_get(p, "session"), "session"))
        called = await run_in_threadpool(lambda: call_next(svc, who, rid, day, session))
        return _respond(_parameters(*(_entry_parts(called) if called else [])))

    @r.post("/Encounter/{rid}/$finish", name="encounter-finish")
    async def finish_op(rid: str, svc: Svc, who: Who) -> Response:
        return _respond(await run_in_threadpool(lambda: finish_visit(svc, who, rid)))

    # -- nurse station ----------------------------------------------------------------------------
    @r.get("/Location/{rid}/$ward-worklist", name="location-ward-worklist")
    async def worklist_op(rid: str, svc: Svc, who: Who, horizon: float = 2) -> Response:
        items = await run_in_threadpool(lambda: ward_worklist(svc, who, rid, horizon_hours=horizon))
        resources: list[dict[str, Any]] = []
        for i in items:
            resources.append(i.encounter)
            if i.patient:
                resources.append(i.patient)
            resources += i.tasks
        return _respond(_bundle(resources))

    @r.get("/Patient/$identify", name="patient-identify")
    async def identify_op(svc: Svc, who: Who, identifier: str) -> Response:
        got = await run_in_threadpool(lambda: identify_patient(svc, who, identifier))
        return _respond(_bundle([got.patient, *([got.encounter] if got.encounter else [])]))

    @r.post("/Patient/{rid}/$record-vitals", name="patient-record-vitals")
    async def vitals_op(request: Request, rid: str, svc: Svc, who: Who) -> Response:
        p = _params(await _json(request))
        readings: dict[str, Any] = {}
        for rd in p.get("reading", []):
            parts = {q.get("name"): q for q in rd.get("part") or ()}
            kind = _value(parts.get("kind") or {})
            values = [_value(q) for q in rd.get("part") or () if q.get("name") == "value"]
            if not kind or not values:
                raise BadRequest(
                    "Each reading needs a kind and a value (two values for blood-pressure)"
                )
            readings[str(kind)] = values if len(values) > 1 else values[0]
        client_id = str(_need(_get(p, "clientId"), "clientId"))
        effective = _get(p, "effective")
        done = await run_in_threadpool(lambda: record_vital_signs(
            svc, who, patient=rid, readings=readings, client_id=client_id,
            encounter=_get(p, "encounter", "Encounter"), effective=parse_instant(effective) if effective else None,
        ))  # fmt: skip
        return _respond(_bundle(done.observations, done.warnings), 200 if done.repeated else 201)

    @r.post("/MedicationRequest/{rid}/$administer", name="medicationrequest-administer")
    async def administer_op(request: Request, rid: str, svc: Svc, who: Who) -> Response:
        p = _params(await _json(request))
        effective = _get(p, "effective")
        client_id = str(_need(_get(p, "clientId"), "clientId"))
        assertion = _get(p, "verifierAssertion")
        witness = None
        if assertion is not None:
            # a retry of a recorded submission is answered as recorded, even once the second
            # nurse's signature (minutes long) has expired
            prior = await run_in_threadpool(lambda: recorded_administration(svc, who, client_id))
            if prior is not None:
                return _respond(prior.administration, 200)
            witness = await _witness(request, assertion, rid)
        done = await run_in_threadpool(lambda: administer_medication(
            svc, who, request=rid,
            scanned_patient=str(_need(_get(p, "patientIdentifier"), "patientIdentifier")),
            scanned_drug=str(_need(_get(p, "drugCode"), "drugCode")),
            client_id=client_id, witness=witness,
            verifier=_get(p, "verifier", "Practitioner"),
            effective=parse_instant(effective) if effective else None,
        ))  # fmt: skip
        return _respond(done.administration, 200 if done.repeated else 201)

    async def _witness(request: Request, assertion: Any, rid: str) -> WitnessAssertion:
        if not isinstance(assertion, str) or not assertion:
            raise BadRequest("verifierAssertion must be a valueString (the witness token)")
        try:
            return await witness_of(request, assertion, administration_purpose(rid))
        except InvalidToken as exc:
            raise Conflict(
                "Double check failed: the second nurse's signature (verifierAssertion) is not "
                f"valid ({exc.reason}); the second nurse must sign again",
                "business-rule",
            ) from exc

    # -- doctor workstation -----------------------------------------------------------------------
    @r.get("/PractitionerRole/{rid}/$clinic-list", name="practitionerrole-clinic-list")
    async def clinic_list_op(rid: str, svc: Svc, who: Who, date: str | None = None) -> Response:
        day = _day(date, "date")
        sessions = await run_in_threadpool(lambda: clinic_list(svc, who, day, role=rid))
        return _respond(_parameters(*(
            {"name": "session", "part": [
                {"name": "schedule", "valueReference": {"reference": f"Schedule/{c.schedule}"}},
                {"name": "code", "valueCode": c.session},
                {"name": "start", "valueTime": c.start},
                {"name": "end", "valueTime": c.end},
                *_queue_parts(c.queue),
            ]}
            for c in sessions
        )))  # fmt: skip

    @r.get("/Patient/{rid}/$trend", name="patient-trend")
    async def trend_op(rid: str, svc: Svc, who: Who, code: str, start: str | None = None,
                       end: str | None = None) -> Response:  # fmt: skip
        codes = [c for c in code.split(",") if c]
        lo = parse_instant(start) if start else None
        hi = parse_instant(end) if end else None
        series = await run_in_threadpool(
            lambda: results_over_time(svc, who, rid, codes, start=lo, end=hi)
        )
        return _respond(_parameters(*(
            {"name": "series", "part": [
                {"name": "code", "valueCode": s.code},
                {"name": "display", "valueString": s.display},
                {"name": "unit", "valueString": s.unit},
                *({"name": "point", "part": [{"name": "time", "valueDateTime": t},
                                             {"name": "value", "valueDecimal": v}]} for t, v in s.points),
            ]}
            for s in series
        )))  # fmt: skip

    @r.post("/Encounter/{rid}/$note", name="encounter-note")
    async def note_op(request: Request, rid: str, svc: Svc, who: Who) -> Response:
        p = _params(await _json(request))
        text = str(_need(_get(p, "text"), "text"))
        client_id = str(_need(_get(p, "clientId"), "clientId"))
        title = str(_get(p, "title") or "门诊病历")
        final = _get(p, "final") is not False
        doc = await run_in_threadpool(
            lambda: write_note(svc, who, rid, text, client_id=client_id, title=title, final=final)
        )
        return _respond(doc)

    @r.post("/Encounter/{rid}/$orders", name="encounter-orders")
    async def orders_op(request: Request, rid: str, svc: Svc, who: Who) -> Response:
        p = _params(await _json(request))
        orders = []
        for o in p.get("order", []):
            parts = {q.get("name"): _value(q) for q in o.get("part") or ()}
            due = parts.get("firstDue")
            orders.append(Order(
                kind=str(_need(parts.get("kind"), "order.kind")),
                code=str(_need(parts.get("code"), "order.code")),
                display=str(parts.get("display") or parts.get("code")),
                dose=parts.get("dose") if isinstance(parts.get("dose"), dict) else None,
                route=parts.get("route"),
                instructions=parts.get("instructions"),
                first_due=parse_instant(due) if due else None,
            ))  # fmt: skip
        client_id = str(_need(_get(p, "clientId"), "clientId"))
        made = await run_in_threadpool(
            lambda: place_orders(svc, who, rid, orders, client_id=client_id)
        )
        return _respond(_bundle(made))

    return r


def _staff(actor: Actor) -> None:
    if not actor.is_staff:
        raise Forbidden("Only clinic staff may do this")


def _ref_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, dict):
        return ref_id(value, "Patient")
    return str(value)
