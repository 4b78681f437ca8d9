"""Slot generation from a Schedule's availability rules for a rolling window
(http://hl7.org/fhir/R4/slot.html).

Slot ids are deterministic, ``{schedule}-{YYYYMMDD}-{session}-{NN}``, so generating a day twice
creates nothing new and a retried job is harmless. Generation never touches a Slot that exists:
its status belongs to the bookings. A Slot that the rules no longer produce (a new holiday or
leave, a changed session) is withdrawn (``busy-unavailable``) when it is free; when it is booked
it is reported as orphaned so that the clinic cancels it through
:func:`appointments.sessions.cancel_session` (which tells the patient).

:func:`roll_window` keeps every active Schedule generated from today to one day past the last
released day of its hospital's policy, so Slots exist before they open.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import false, select

from ehr.errors import NotFound, Unprocessable
from ehr.storage.tables import resources
from ehr.store import WriteContext

from .availability import Availability, Session, availability_of
from .codes import SESSION_NAMES, SLOT_NUMBER_EXT, SLOT_SESSION_EXT, V2_0276, VISIT_TYPE_SYSTEM
from .fhirdata import Reader, fmt_instant, local_day_bounds, ref
from .policy import BookingPolicy, load_policy
from .service import Appointments

__all__ = [
    "SlotReport",
    "build_slot",
    "generate_slots",
    "roll_window",
    "slot_id",
    "visit_type_concept",
]

VISIT_TYPES = {
    "general": "普通号",
    "expert": "专家号",
    "special-needs": "特需号",
    "follow-up": "复诊号",
}


@dataclass
class SlotReport:
    created: int = 0
    existing: int = 0
    withdrawn: list[str] = field(default_factory=list)
    orphaned: list[str] = field(default_factory=list)


def slot_id(schedule_id: str, day: date, session: str, number: int) -> str:
    rid = f"{schedule_id}-{day:%Y%m%d}-{session}-{number:02d}"
    if len(rid) > 64:
        raise Unprocessable(
            f"Schedule id {schedule_id!r} is too long to name its slots (max 46 characters)"
        )
    return rid


def visit_type_concept(code: str) -> dict[str, Any]:
    v2 = "FOLLOWUP" if code == "follow-up" else "ROUTINE"
    display = VISIT_TYPES.get(code, code)
    return {
        "coding": [
            {"system": V2_0276, "code": v2},
            {"system": VISIT_TYPE_SYSTEM, "code": code, "display": display},
        ],
        "text": display,
    }


def build_slot(
    schedule: dict[str, Any],
    session: Session,
    day: date,
    number: int,
    start: datetime,
    end: datetime,
) -> dict[str, Any]:
    slot: dict[str, Any] = {
        "resourceType": "Slot",
        "extension": [
            {"url": SLOT_NUMBER_EXT, "valueInteger": number},
            {"url": SLOT_SESSION_EXT, "valueCode": session.code},
        ],
    }
    for key in ("serviceCategory", "serviceType", "specialty"):
        if schedule.get(key):
            slot[key] = schedule[key]
    if session.visit_type:
        slot["appointmentType"] = visit_type_concept(session.visit_type)
    slot["schedule"] = ref("Schedule", schedule["id"])
    slot["status"] = "free"
    slot["start"] = fmt_instant(start)
    slot["end"] = fmt_instant(end)
    slot["comment"] = (
        f"{day.isoformat()} {SESSION_NAMES.get(session.code, session.code)} 第{number}号"
    )
    return slot


def _wanted(
    schedule: dict[str, Any], av: Availability, policy: BookingPolicy, first: date, days: int
) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for i in range(days):
        day = first + timedelta(days=i)
        for s in av.sessions_on(day, policy.closures, policy.extra_days):
            for n, start, end in s.times(day):
                out[slot_id(schedule["id"], day, s.code, n)] = build_slot(
                    schedule, s, day, n, start, end
                )
    return out


def _generate(ctx: WriteContext, schedule_id: str, first: date, days: int) -> SlotReport:
    reader = Reader.of(ctx)
    schedule = reader.get("Schedule", schedule_id)
    if schedule is None:
        raise NotFound(f"Schedule/{schedule_id} not found")
    av = availability_of(schedule)
    if av is None:
        raise Unprocessable(
            f"Schedule/{schedule_id} has no availability rules to generate slots from"
        )
    policy = load_policy(reader, av.organization)
    wanted = _wanted(schedule, av, policy, first, days)
    report = SlotReport()
    lo, _ = local_day_bounds(first)
    _, hi = local_day_bounds(first + timedelta(days=days - 1))
    present = reader.find(
        "Slot",
        [
            ("schedule", f"Schedule/{schedule_id}"),
            ("start", f"ge{fmt_instant(lo)}"),
            ("start", f"lt{fmt_instant(hi)}"),
        ],
        limit=100_000,
    )
    have = {s["id"] for s in present}
    # ids in the window that the search does not see (a Slot moved by hand) still exist
    missing = [rid for rid in wanted if rid not in have]
    if missing:
        rows = ctx.conn.execute(
            select(resources.c.rid).where(
                resources.c.rtype == "Slot",
                resources.c.rid.in_(missing),
                resources.c.deleted == false(),
            )
        ).scalars()
        have |= set(rows)
    for rid, slot in wanted.items():
        if rid in have:
            report.existing += 1
        else:
            ctx.insert_with_id("Slot", rid, slot)
            report.created += 1
    for s in present:
        if s["id"] in wanted or s.get("status") == "busy-unavailable":
            continue
        if s.get("status") == "free":
            s["status"] = "busy-unavailable"
            s["comment"] = (s.get("comment", "") + " (停诊)").strip()
            ctx.update("Slot", s["id"], s, validate=False)
            report.withdrawn.append(s["id"])
        else:
            report.orphaned.append(s["id"])
    return report


def generate_slots(svc: Appointments, schedule_id: str, first: date, days: int) -> SlotReport:
    """Make the Slots of ``Schedule/schedule_id`` for ``days`` days from ``first`` (one
    transaction)."""
    if days <= 0:
        return SlotReport()
    with svc.store.write() as ctx:
        return _generate(ctx, schedule_id, first, days)


def roll_window(svc: Appointments, *, extra_days: int = 1) -> dict[str, SlotReport]:
    """Generate every active Schedule with rules from today to ``extra_days`` past the last
    released day of its hospital (run it daily, after the release hour)."""
    now = svc.now()
    today = now.date()
    with Reader.open(svc.store) as reader:
        schedules = [
            (s["id"], av)
            for s in reader.find("Schedule", [("active", "true")], limit=100_000)
            if (av := availability_of(s)) is not None
        ]
        horizon = {
            org: load_policy(reader, org).released_until(now)
            for org in {av.organization for _, av in schedules}
        }
    out = {}
    for sid, av in schedules:
        days = (horizon[av.organization] - today).days + 1 + extra_days
        out[sid] = generate_slots(svc, sid, today, days)
    return out
