"""A doctor cancels a clinic session (停诊): every booking of it is cancelled and each patient is
told, with an alternative held for them.

One transaction: the session's Slots are locked in id order and withdrawn (``busy-unavailable``);
their Appointments become ``cancelled`` (reason ``prov``); the closure is added to the Schedule's
availability rules so that slot generation does not reopen the session; then for each patient
the earliest open slot of the same doctor, else of the same department, is held for them
(a ``pending`` Appointment expiring after ``policy.offer_hold_hours``, confirmed with ``$book``),
and a Communication tells them both (http://hl7.org/fhir/R4/communication.html).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from ehr.errors import FhirError, Forbidden, NotFound
from ehr.store import WriteContext

from .actors import Actor, acting_as
from .availability import Closure, availability_of, set_availability
from .booking import CANCEL_REASON
from .codes import HOLD_EXT, SESSION_NAMES, SLOT_SESSION_EXT
from .fhirdata import Reader, ext_value, fmt_instant, local_day_bounds
from .find import FindRequest, FreeSlot, find_in
from .notify import notify
from .rules import SlotContext
from .service import Appointments
from .shapes import also_notify, new_appointment, patient_of

__all__ = ["SessionCancellation", "cancel_session"]


@dataclass
class SessionCancellation:
    withdrawn_slots: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)  # Appointment ids
    offers: dict[str, str | None] = field(default_factory=dict)  # cancelled id -> held id
    notifications: list[str] = field(default_factory=list)  # Communication ids


def _alternative(
    svc: Appointments,
    ctx: WriteContext,
    reader: Reader,
    schedule: dict[str, Any],
    pid: str,
    exclude: set[str],
) -> tuple[FreeSlot, dict[str, Any]] | None:
    actors = [a.get("reference", "") for a in schedule.get("actor") or ()]
    doctor = next((a for a in actors if a.startswith(("PractitionerRole/", "Practitioner/"))), None)
    dept = next((a for a in actors if a.startswith("HealthcareService/")), None)
    today = svc.now().date()
    asks = []
    if doctor:
        asks.append(FindRequest(practitioner=doctor, patient=pid, start=today, count=5))
    if dept:
        asks.append(FindRequest(service=dept, patient=pid, start=today, count=5))
    for req in asks:
        for free in find_in(svc, reader, req, None, exclude=exclude):
            sc = svc.rules.load_slot(reader, free.rid, lock=False)
            if sc is None:
                continue
            expires = min(svc.now() + timedelta(hours=sc.policy.offer_hold_hours), free.start)
            appt = new_appointment(pid, free.rid, "pending", svc.now())
            appt["extension"] = [
                {
                    "url": HOLD_EXT,
                    "extension": [{"url": "expires", "valueInstant": fmt_instant(expires)}],
                }
            ]
            try:
                with ctx.conn.begin_nested(), acting_as(Actor.system()):
                    held = ctx.create(appt).stored().resource()
            except FhirError:
                continue
            return free, held
    return None


def cancel_session(
    svc: Appointments,
    actor: Actor,
    schedule_id: str,
    day: date,
    session: str,
    *,
    reason: str = "医生停诊",
) -> SessionCancellation:
    """Cancel session ``session`` (am | pm | eve) of ``Schedule/schedule_id`` on ``day``."""
    if not actor.is_staff:
        raise Forbidden("Only clinic staff cancel a clinic session")
    out = SessionCancellation()
    with svc.store.write() as ctx, acting_as(actor):
        reader = Reader.of(ctx)
        got = reader.get_versioned("Schedule", schedule_id, lock=True)
        if got is None:
            raise NotFound(f"Schedule/{schedule_id} not found")
        schedule, version = got
        lo, hi = local_day_bounds(day)
        slots = sorted(
            s["id"]
            for s in reader.find(
                "Slot",
                [
                    ("schedule", f"Schedule/{schedule_id}"),
                    ("start", f"ge{fmt_instant(lo)}"),
                    ("start", f"lt{fmt_instant(hi)}"),
                ],
                limit=10_000,
            )
            if ext_value(s, SLOT_SESSION_EXT) == session
        )
        cancelled: list[dict[str, Any]] = []
        rules = svc.rules
        with rules.withdrawing(ctx, set(slots)):
            for sid in slots:
                sc = rules.load_slot(reader, sid, lock=True)
                assert sc is not None
                appts = reader.find(
                    "Appointment",
                    [("slot", f"Slot/{sid}"), ("status", "pending,booked,arrived,checked-in")],
                    limit=10,
                )
                for a in appts:
                    a["status"] = "cancelled"
                    a["cancelationReason"] = {
                        "coding": [{"system": CANCEL_REASON, "code": "prov"}],
                        "text": reason,
                    }
                    ctx.update("Appointment", a["id"], a, validate=False)
                    cancelled.append(a)
                if not appts and sc.slot.get("status") != "busy-unavailable":
                    _withdraw(rules, ctx, sc)
                out.withdrawn_slots.append(sid)
        av = availability_of(schedule)
        if av is not None and not any(c.closes(day, session) for c in av.closures):
            av = type(av)(
                av.organization,
                av.sessions,
                (*av.closures, Closure(day, session, reason)),
                av.extra_days,
                av.eligibility,
            )
            ctx.update(
                "Schedule",
                schedule_id,
                set_availability(schedule, av),
                validate=False,
                if_match=version,
            )
        exclude = set(slots)
        label = f"{day.isoformat()} {SESSION_NAMES.get(session, session)}"
        for a in cancelled:
            pid = patient_of(a)
            if pid is None:
                continue
            alt = _alternative(svc, ctx, reader, schedule, pid, exclude)
            text = f"【停诊通知】{label} 的门诊停诊（{reason}），您的预约已取消。"
            about = [f"Appointment/{a['id']}"]
            if alt is not None:
                free, held = alt
                exclude.add(free.rid)
                text += (
                    f"已为您保留 {free.slot.get('comment', '')}（{free.slot['start']}）的号源，"
                    "请尽快确认预约，逾期自动释放。"
                )
                about += [f"Appointment/{held['id']}", f"Slot/{free.rid}"]
                out.offers[a["id"]] = held["id"]
            else:
                text += "如需就诊请重新预约。"
                out.offers[a["id"]] = None
            out.notifications.append(
                notify(
                    ctx,
                    svc.sender,
                    patient=pid,
                    text=text,
                    category="session-cancelled",
                    about=about,
                    also=also_notify(a),
                    now=svc.now,
                )
            )
            out.cancelled.append(a["id"])
    return out


def _withdraw(rules: Any, ctx: WriteContext, sc: SlotContext) -> None:
    sc.slot["status"] = "busy-unavailable"
    rules.write_slot(ctx, sc)
