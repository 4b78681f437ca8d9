"""Check-in, the queue of a clinic session, and calling the next patient.

Check-in (at a counter, which the NFC card terminal calls; at a kiosk; or by phone) moves the
Appointment to ``arrived`` (http://hl7.org/fhir/R4/appointment.html), creates its Encounter
(``status = arrived``, ``class = AMB``, http://hl7.org/fhir/R4/encounter.html) and gives a queue
number from a gap-free counter: the ``sequence_counters`` row of the session is incremented in
the check-in transaction (``INSERT … ON CONFLICT DO UPDATE … RETURNING``, which row-locks it on
PostgreSQL), so numbers are 1, 2, 3 … in arrival order with no gaps even when a check-in fails
and rolls back. Checking in twice returns the first check-in.

The queue of a session lists its Encounters by queue number: ``waiting`` (arrived), ``called``
(in-progress), ``done`` (finished), and the booked patients who have not arrived. A doctor's
``call_next`` takes the lowest waiting number; concurrent calls on one session serialize on a
lock, so two doctors never call the same patient.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import text

from ehr.errors import BadRequest, Conflict, Forbidden, NotFound
from ehr.identifiers import CITIZEN_ID_HASH_SYSTEM, CLEAR_CITIZEN_ID_SYSTEMS, hash_citizen_id
from ehr.store import WriteContext

from .actors import Actor, acting_as, require_may_act_for
from .codes import BOOKING_EXT, CHECKIN_CHANNEL_EXT, QUEUE_NUMBER_EXT, SLOT_SESSION_EXT
from .fhirdata import (
    CST,
    Reader,
    ext,
    ext_value,
    fmt_instant,
    local_day_bounds,
    parse_instant,
    ref,
    ref_id,
    set_ext,
    sub_values,
)
from .service import Appointments
from .shapes import patient_of, slot_of

__all__ = [
    "CheckIn",
    "QueueEntry",
    "QueueView",
    "call_next",
    "check_in",
    "check_in_by_identifier",
    "finish_visit",
    "identifier_condition",
    "masked_name",
    "next_number",
    "queue",
    "queue_in",
]

V3_ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"


@dataclass(frozen=True)
class CheckIn:
    appointment: dict[str, Any]
    encounter: dict[str, Any]
    queue_number: int
    repeated: bool = False


@dataclass(frozen=True)
class QueueEntry:
    number: int
    encounter: str
    appointment: str
    patient: str
    display: str  # masked name for the waiting-room screen
    status: str  # waiting | called | done


@dataclass
class QueueView:
    schedule: str
    day: date
    session: str
    waiting: list[QueueEntry] = field(default_factory=list)
    called: list[QueueEntry] = field(default_factory=list)
    done: list[QueueEntry] = field(default_factory=list)
    not_arrived: list[str] = field(default_factory=list)  # Appointment ids, by slot number

    @property
    def next(self) -> QueueEntry | None:
        return self.waiting[0] if self.waiting else None


def next_number(ctx: WriteContext, name: str) -> int:
    """The next value of counter ``name`` (1 first), inside the caller's transaction."""
    row = ctx.conn.execute(
        text(
            "INSERT INTO sequence_counters (name, value) VALUES (:n, 1) "
            "ON CONFLICT (name) DO UPDATE SET value = sequence_counters.value + 1 RETURNING value"
        ),
        {"n": name},
    ).scalar_one()
    return int(row)


def masked_name(patient: dict[str, Any]) -> str:
    """王小明 -> 王*明, 王明 -> 王*: the form a public queue screen shows."""
    names = patient.get("name") or [{}]
    full = names[0].get("text") or (names[0].get("family", "") + "".join(names[0].get("given", [])))
    if len(full) <= 1:
        return full or "*"
    if len(full) == 2:
        return full[0] + "*"
    return full[0] + "*" * (len(full) - 2) + full[-1]


def identifier_condition(svc: Appointments, identifier: str) -> str:
    """``system|value`` as the store indexes it: a clear citizen ID (or national health card
    number) becomes its keyed hash (see :mod:`ehr.identifiers`)."""
    system, sep, value = identifier.partition("|")
    if not sep or not value:
        raise BadRequest(f"Identifier {identifier!r} must be system|value")
    if system in CLEAR_CITIZEN_ID_SYSTEMS:
        return f"{CITIZEN_ID_HASH_SYSTEM}|{hash_citizen_id(value, svc.citizen_id_key)}"
    return identifier


def _queue_key(schedule: str, day: date, session: str) -> str:
    return f"queue:{schedule}:{day.isoformat()}:{session}"


def check_in(
    svc: Appointments, actor: Actor | None, appointment: str, *, channel: str = "counter"
) -> CheckIn:
    """Check in ``Appointment/appointment`` on its day: ``arrived``, an Encounter, a number."""
    now = svc.now()
    with svc.store.write() as ctx, acting_as(actor):
        reader = Reader.of(ctx)
        got = reader.get_versioned("Appointment", appointment, lock=True)
        if got is None:
            raise NotFound(f"Appointment/{appointment} not found")
        appt, version = got
        pid = patient_of(appt)
        if pid is None:
            raise Conflict(f"Appointment/{appointment} has no patient", "business-rule")
        require_may_act_for(reader, actor, pid, now.date())
        if appt.get("status") in ("arrived", "checked-in", "fulfilled"):
            enc = reader.find("Encounter", [("appointment", f"Appointment/{appointment}")], limit=1)
            if enc:
                return CheckIn(
                    appt, enc[0], int(ext_value(enc[0], QUEUE_NUMBER_EXT) or 0), repeated=True
                )
        if appt.get("status") != "booked":
            raise Conflict(
                f"Appointment/{appointment} is {appt.get('status')}: only a booking can check in",
                "business-rule",
            )
        slot_id = slot_of(appt)
        sc = svc.rules.load_slot(reader, slot_id, lock=False) if slot_id else None
        start = parse_instant(appt["start"]) if appt.get("start") else None
        if start is None or start.astimezone(CST).date() != now.astimezone(CST).date():
            raise Conflict(
                f"Appointment/{appointment} is not today: check in on the day", "business-rule"
            )
        session = str(ext_value(sc.slot, SLOT_SESSION_EXT)) if sc else "day"
        closes = parse_instant(appt["end"]) if appt.get("end") else start
        if (
            sc is not None
            and sc.availability is not None
            and (s := sc.availability.session(session))
        ):
            closes = datetime.combine(start.astimezone(CST).date(), s.end, CST)
        if now >= closes:
            raise Conflict(
                f"The clinic session of Appointment/{appointment} is over: it closed at {fmt_instant(closes)}",
                "business-rule",
            )
        schedule = ref_id(sc.slot.get("schedule"), "Schedule") if sc else "none"
        number = next_number(ctx, _queue_key(str(schedule), start.astimezone(CST).date(), session))
        patient = reader.get("Patient", pid) or {}
        encounter = _encounter(appt, pid, masked_name(patient), number, now, channel)
        created = ctx.create(encounter, validate=True).stored().resource()
        appt["status"] = "arrived"
        set_ext(appt, QUEUE_NUMBER_EXT, {"valueInteger": number})
        done = ctx.update("Appointment", appointment, appt, if_match=version, validate=False)
        return CheckIn(done.stored().resource(), created, number)


def _encounter(
    appt: dict[str, Any], pid: str, display: str, number: int, now: datetime, channel: str
) -> dict[str, Any]:
    enc: dict[str, Any] = {
        "resourceType": "Encounter",
        "extension": [{"url": QUEUE_NUMBER_EXT, "valueInteger": number}],
        "status": "arrived",
        "statusHistory": [{"status": "arrived", "period": {"start": fmt_instant(now)}}],
        "class": {"system": V3_ACT, "code": "AMB", "display": "ambulatory"},
    }
    if appt.get("serviceType"):
        enc["serviceType"] = appt["serviceType"][0]
    enc["subject"] = ref("Patient", pid, display)
    participants, locations = [], []
    for p in appt.get("participant") or ():
        r = (p.get("actor") or {}).get("reference", "")
        if r.startswith(("Practitioner/", "PractitionerRole/")):
            participants.append({"individual": {"reference": r}})
        elif r.startswith("Location/"):
            locations.append({"location": {"reference": r}, "status": "active"})
    if participants:
        enc["participant"] = participants
    enc["appointment"] = [ref("Appointment", str(appt["id"]))]
    enc["period"] = {"start": fmt_instant(now)}
    if locations:
        enc["location"] = locations
    facts = ext(appt, BOOKING_EXT)
    org = sub_values(facts, "organization") if facts else []
    if org:
        enc["serviceProvider"] = org[0]
    enc["extension"].append({"url": CHECKIN_CHANNEL_EXT, "valueCode": channel})
    return enc


def check_in_by_identifier(
    svc: Appointments, actor: Actor | None, identifier: str, *, organization: str | None = None
) -> list[CheckIn]:
    """Check in today's bookings of the patient a card identifies (``system|value``), at one
    hospital when ``organization`` is given: what the counter's NFC terminal calls."""
    now = svc.now()
    lo, hi = local_day_bounds(now.date())
    with Reader.open(svc.store) as reader:
        patients = reader.find(
            "Patient", [("identifier", identifier_condition(svc, identifier))], limit=2
        )
        if not patients:
            raise NotFound(f"No patient has identifier {identifier.partition('|')[0]}|…")
        if len(patients) > 1:
            raise Conflict("The identifier matches more than one patient", "multiple-matches")
        appts = reader.find(
            "Appointment",
            [("patient", f"Patient/{patients[0]['id']}"), ("status", "booked"),
             ("date", f"ge{fmt_instant(lo)}"), ("date", f"lt{fmt_instant(hi)}")],
            limit=50,
        )  # fmt: skip
    if organization:
        appts = [
            a for a in appts if _org_of(a) == (ref_id(organization, "Organization") or organization)
        ]
    if not appts:
        raise NotFound("No booking to check in today")
    return [
        check_in(svc, actor, a["id"], channel="card")
        for a in sorted(appts, key=lambda a: a.get("start", ""))
    ]


def _org_of(appt: dict[str, Any]) -> str | None:
    facts = ext(appt, BOOKING_EXT)
    org = sub_values(facts, "organization") if facts else []
    return ref_id(org[0], "Organization") if org else None


def _chunks(items: list[str], n: int = 100) -> list[list[str]]:
    return [items[i : i + n] for i in range(0, len(items), n)]


def queue_in(reader: Reader, schedule: str, day: date, session: str) -> QueueView:
    lo, hi = local_day_bounds(day)
    slots = [
        s
        for s in reader.find(
            "Slot",
            [
                ("schedule", f"Schedule/{schedule}"),
                ("start", f"ge{fmt_instant(lo)}"),
                ("start", f"lt{fmt_instant(hi)}"),
            ],
            limit=10_000,
        )
        if ext_value(s, SLOT_SESSION_EXT) == session
    ]
    view = QueueView(schedule, day, session)
    if not slots:
        return view
    appts: list[dict[str, Any]] = []
    for chunk in _chunks([f"Slot/{s['id']}" for s in slots]):
        appts += reader.find(
            "Appointment",
            [("slot", ",".join(chunk)), ("status", "booked,arrived,checked-in,fulfilled")],
            limit=10_000,
        )
    order = {s["id"]: s.get("start", "") for s in slots}
    encounters: dict[str, dict[str, Any]] = {}
    for chunk in _chunks([f"Appointment/{a['id']}" for a in appts]):
        for e in reader.find("Encounter", [("appointment", ",".join(chunk))], limit=10_000):
            for r in e.get("appointment") or ():
                encounters[ref_id(r, "Appointment") or ""] = e
    kinds = {"arrived": "waiting", "in-progress": "called", "finished": "done"}
    for a in sorted(appts, key=lambda a: order.get(slot_of(a) or "", "")):
        enc = encounters.get(a["id"])
        if enc is None:
            if a.get("status") == "booked":
                view.not_arrived.append(a["id"])
            continue
        e = enc
        kind = kinds.get(e.get("status", ""))
        if kind is None:
            continue
        entry = QueueEntry(
            int(ext_value(e, QUEUE_NUMBER_EXT) or 0),
            e["id"],
            a["id"],
            ref_id(e.get("subject"), "Patient") or "",
            (e.get("subject") or {}).get("display", ""),
            kind,
        )
        getattr(view, kind).append(entry)
    for lst in (view.waiting, view.called, view.done):
        lst.sort(key=lambda q: q.number)
    return view


def queue(svc: Appointments, schedule: str, day: date, session: str) -> QueueView:
    """The queue of session ``session`` of ``Schedule/schedule`` on ``day``."""
    with Reader.open(svc.store) as reader:
        return queue_in(reader, schedule, day, session)


def call_next(
    svc: Appointments, actor: Actor, schedule: str, day: date, session: str
) -> QueueEntry | None:
    """The doctor calls the lowest waiting number: its Encounter becomes ``in-progress``."""
    if not actor.is_staff:
        raise Forbidden("Only clinic staff call patients")
    now = svc.now()
    with svc.store.write() as ctx, acting_as(actor):
        ctx.lock_condition("Encounter", [("queue", _queue_key(schedule, day, session))])
        view = queue_in(Reader.of(ctx), schedule, day, session)
        nxt = view.next
        if nxt is None:
            return None
        got = Reader.of(ctx).get_versioned("Encounter", nxt.encounter, lock=True)
        assert got is not None
        enc, version = got
        if enc.get("status") != "arrived":  # pragma: no cover - the lock makes this unreachable
            raise Conflict("That patient was called meanwhile; call again", "transient")
        _set_status(enc, "in-progress", now)
        who = actor.reference()
        if who and who.get("reference") not in {
            (p.get("individual") or {}).get("reference") for p in enc.get("participant") or ()
        }:
            enc.setdefault("participant", []).append({"individual": who})
        ctx.update("Encounter", nxt.encounter, enc, if_match=version, validate=False)
        return QueueEntry(
            nxt.number, nxt.encounter, nxt.appointment, nxt.patient, nxt.display, "called"
        )


def _set_status(enc: dict[str, Any], status: str, now: datetime) -> None:
    history = enc.setdefault("statusHistory", [])
    if history and "end" not in history[-1]["period"]:
        history[-1]["period"]["end"] = fmt_instant(now)
    history.append({"status": status, "period": {"start": fmt_instant(now)}})
    enc["status"] = status


def finish_visit(svc: Appointments, actor: Actor, encounter: str) -> dict[str, Any]:
    """End the visit: Encounter ``finished``, its Appointment ``fulfilled``."""
    if not actor.is_staff:
        raise Forbidden("Only clinic staff finish a visit")
    now = svc.now()
    with svc.store.write() as ctx, acting_as(actor):
        reader = Reader.of(ctx)
        got = reader.get_versioned("Encounter", encounter, lock=True)
        if got is None:
            raise NotFound(f"Encounter/{encounter} not found")
        enc, version = got
        if enc.get("status") == "finished":
            return enc
        _set_status(enc, "finished", now)
        enc.setdefault("period", {})["end"] = fmt_instant(now)
        done = (
            ctx.update("Encounter", encounter, enc, if_match=version, validate=False)
            .stored()
            .resource()
        )
        for r in enc.get("appointment") or ():
            aid = ref_id(r, "Appointment")
            got_a = reader.get_versioned("Appointment", aid, lock=True) if aid else None
            if got_a and got_a[0].get("status") in ("arrived", "checked-in", "booked"):
                a, v = got_a
                a["status"] = "fulfilled"
                ctx.update("Appointment", str(aid), a, if_match=v, validate=False)
        return done
