"""``Appointment/$find``: free slots by service, specialty, practitioner, location, hospital,
date range and visit type (Argonaut Scheduling IG ``$find``,
http://fhir.org/guides/argonaut/scheduling/; IHE ITI Scheduling).

Two steps:

1. the candidate Schedules (few: one per doctor or clinic) by a strict search on Schedule
   (``actor``, ``specialty``, ``active``), then filtered by hospital and by the patient's
   eligibility (age, gender) from their availability rules;
2. the free Slots of each Schedule in the window. The window is the asked range cut to
   [now, end of the last released day] of the hospital's policy, so a citizen never sees a slot
   that is not open yet; staff see every future slot.

The index-friendly query: the Slots of a Schedule with availability rules carry the ids the
generator gives them, ``{schedule}-{YYYYMMDD}-{session}-{NN}``, so the Slots of one Schedule in
a date range are one range scan of the ``(rtype, rid)`` unique index of ``resources``, in day
order, read page by page and stopped at the end of the day on which enough free slots were
found: the cost follows the answer, not the size of the table, and no query planner can get it
wrong. (A join of the ``schedule`` reference index with the ``start`` date index and the
``status`` token index is at the mercy of the planner: without statistics SQLite drives it from
the date index over every slot and took seconds.) Slots added by hand to such a Schedule are
found only if they follow the naming; the Slots of a Schedule without rules are found by an
ordinary search.

A ``busy-tentative`` slot whose hold has expired counts as free (holds are released lazily;
:func:`appointments.booking.release_expired_holds` sweeps them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection

from ehr.errors import BadRequest, NotFound
from ehr.model import loads

from .actors import Actor, require_may_act_for
from .availability import Availability
from .codes import HOLD_EXT, SLOT_NUMBER_EXT, SLOT_SESSION_EXT
from .fhirdata import (
    CST,
    Reader,
    ext,
    ext_value,
    fmt_instant,
    local_day_bounds,
    parse_instant,
    ref_id,
    sub_values,
)
from .service import Appointments

__all__ = ["FindRequest", "FreeSlot", "find_in", "find_slots", "hold_expired", "parse_day"]


@dataclass(frozen=True)
class FindRequest:
    """``start``/``end`` are days (inclusive); references may be ``Type/id`` or a bare id
    (``practitioner`` then means a Practitioner; a PractitionerRole works as ``PractitionerRole/x``)."""

    start: date | None = None
    end: date | None = None
    service: str | None = None
    specialty: str | None = None
    practitioner: str | None = None
    location: str | None = None
    organization: str | None = None
    visit_type: str | None = None
    patient: str | None = None
    count: int = 100


@dataclass(frozen=True)
class FreeSlot:
    slot: dict[str, Any]
    schedule: dict[str, Any]
    organization: str | None

    @property
    def rid(self) -> str:
        return str(self.slot["id"])

    @property
    def start(self) -> datetime:
        return parse_instant(self.slot["start"])

    @property
    def number(self) -> int | None:
        v = ext_value(self.slot, SLOT_NUMBER_EXT)
        return int(v) if v is not None else None

    @property
    def session(self) -> str | None:
        v = ext_value(self.slot, SLOT_SESSION_EXT)
        return str(v) if v is not None else None


def hold_expired(slot: dict[str, Any], now: datetime) -> bool:
    """A ``busy-tentative`` slot whose hold is over."""
    h = ext(slot, HOLD_EXT)
    if slot.get("status") != "busy-tentative" or h is None:
        return False
    expires = sub_values(h, "expires")
    return bool(expires) and parse_instant(expires[0]) <= now


def _typed(value: str, default: str) -> str:
    return value if "/" in value else f"{default}/{value}"


def _schedules(
    svc: Appointments, reader: Reader, req: FindRequest
) -> list[tuple[dict[str, Any], Availability | None]]:
    """The active Schedules that match ``req`` (from the :class:`Directory` cache)."""
    wanted: list[set[str]] = []  # each set: one of these actors must be on the Schedule
    if req.service:
        wanted.append({_typed(req.service, "HealthcareService")})
    if req.location:
        wanted.append({_typed(req.location, "Location")})
    if req.practitioner:
        who = _typed(req.practitioner, "Practitioner")
        alts = {who}
        if who.startswith("Practitioner/"):
            alts |= {
                f"PractitionerRole/{r}"
                for r in svc.directory.roles_of(reader, who.split("/", 1)[1])
            }
        wanted.append(alts)
    org_id = (
        (ref_id(req.organization, "Organization") or req.organization) if req.organization else None
    )
    out = []
    for e in svc.directory.schedules(reader):
        if any(not (w & e.actors) for w in wanted):
            continue
        if req.specialty and req.specialty not in e.specialties:
            continue
        if org_id is not None and (e.availability is None or e.availability.organization != org_id):
            continue
        out.append((e.schedule, e.availability))
    return out


_OPEN = (b'"status":"free"', b'"status":"busy-tentative"')
_START = b'"start":"'
_FIRST_PAGE = text(
    "SELECT rid, data FROM resources WHERE rtype = 'Slot' AND rid >= :lo AND rid < :hi "
    "AND NOT deleted ORDER BY rid LIMIT :n"
)
_NEXT_PAGE = text(
    "SELECT rid, data FROM resources WHERE rtype = 'Slot' AND rid > :lo AND rid < :hi "
    "AND NOT deleted ORDER BY rid LIMIT :n"
)


class _SlotIds:
    """The generated Slots of one Schedule from ``first`` to ``last`` in id order (day by day):
    range scans of the ``(rtype, rid)`` unique index, in pages that double (32, 64, … 512) so a
    short answer reads little and a long one takes few round trips."""

    def __init__(self, conn: Connection, schedule_id: str, first: date, last: date) -> None:
        self.conn = conn
        self.prefix = len(schedule_id) + 1
        self.after: str | None = None
        self.start_key = f"{schedule_id}-{first:%Y%m%d}"
        self.stop_key = f"{schedule_id}-{last + timedelta(days=1):%Y%m%d}"
        self.page = 32
        self.rows: list[Any] = []
        self.pos = 0
        self.done = False

    def _fetch(self) -> None:
        stmt, lo = (
            (_NEXT_PAGE, self.after) if self.after is not None else (_FIRST_PAGE, self.start_key)
        )
        self.rows = list(
            self.conn.execute(stmt, {"lo": lo, "hi": self.stop_key, "n": self.page}).all()
        )
        self.pos = 0
        self.done = len(self.rows) < self.page
        if self.rows:
            self.after = self.rows[-1][0]
        self.page = min(self.page * 2, 512)

    def day(self) -> str | None:
        """``YYYYMMDD`` of the next row (None at the end)."""
        if self.pos >= len(self.rows):
            if self.done:
                return None
            self._fetch()
            if not self.rows:
                return None
        rid: str = self.rows[self.pos][0]
        return rid[self.prefix : self.prefix + 8]

    def take_day(self, day: str) -> list[tuple[str, bytes]]:
        out = []
        while self.day() == day:
            out.append(self.rows[self.pos])
            self.pos += 1
        return out


def _start_key(data: bytes) -> str | None:
    """The slot's ``start`` as a CST instant string, read from the stored bytes (no parse)."""
    i = data.find(_START)
    if i < 0:
        return None
    j = data.find(b'"', i + len(_START))
    value = data[i + len(_START) : j].decode()
    return value if value.endswith("+08:00") else fmt_instant(parse_instant(value))


def _generated(
    conn: Connection,
    schedules: list[dict[str, Any]],
    first: date,
    last: date,
    lo: datetime,
    hi: datetime,
    ok: Callable[[dict[str, Any]], bool],
    need: int,
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(slot, schedule) of the earliest ``need`` free slots of Schedules with rules between
    ``lo`` and ``hi``: the Schedules are read day by day together; a day's candidates (status
    and start read from the stored bytes) are ordered by start and only those taken are parsed."""
    cursors = [(_SlotIds(conn, sc["id"], first, last), sc) for sc in schedules]
    lo_s, hi_s = fmt_instant(lo), fmt_instant(hi)
    out: list[tuple[dict[str, Any], dict[str, Any]]] = []
    while len(out) < need:
        days = [d for c, _ in cursors if (d := c.day()) is not None]
        if not days:
            break
        day = min(days)
        candidates: list[tuple[str, str, bytes, dict[str, Any]]] = []
        for cur, sched in cursors:
            for rid, data in cur.take_day(day):
                if not any(marker in data for marker in _OPEN):
                    continue
                start = _start_key(data)
                if start is not None and lo_s < start < hi_s:
                    candidates.append((start, rid, data, sched))
        candidates.sort(key=lambda c: (c[0], c[1]))
        for _start, _rid, data, sched in candidates:
            slot = loads(data)
            if (slot.get("schedule") or {}).get("reference") != f"Schedule/{sched['id']}" or not ok(
                slot
            ):
                continue
            out.append((slot, sched))
            if len(out) >= need:
                break
    return out


def _searched(
    reader: Reader,
    schedule_id: str,
    lo: datetime,
    hi: datetime,
    ok: Callable[[dict[str, Any]], bool],
    need: int,
) -> list[dict[str, Any]]:
    """Free slots of a Schedule without rules (Slots made by hand): a search."""
    found = reader.find(
        "Slot",
        [
            ("schedule", f"Schedule/{schedule_id}"),
            ("status", "free,busy-tentative"),
            ("start", f"gt{fmt_instant(lo)}"),
            ("start", f"lt{fmt_instant(hi)}"),
        ],
        limit=10_000,
    )
    found = [s for s in found if ok(s) and lo < parse_instant(s["start"]) < hi]
    found.sort(key=lambda s: (s["start"], s["id"]))
    return found[:need]


def _visit_type_ok(slot: dict[str, Any], code: str | None) -> bool:
    if not code:
        return True
    codings = (slot.get("appointmentType") or {}).get("coding") or ()
    return any(c.get("code") == code for c in codings)


def find_in(
    svc: Appointments,
    reader: Reader,
    req: FindRequest,
    actor: Actor | None,
    *,
    exclude: set[str] | None = None,
) -> list[FreeSlot]:
    """:func:`find_slots` on an open reader (a write transaction may look for alternatives)."""
    if req.count <= 0:
        return []
    now = svc.now()
    patient = None
    if req.patient:
        pid = ref_id(req.patient, "Patient") or req.patient
        require_may_act_for(reader, actor, pid, now.date())
        patient = reader.get("Patient", pid)
        if patient is None:
            raise NotFound(f"Patient/{pid} not found")
    if req.start and req.end and req.end < req.start:
        raise BadRequest("$find: end is before start")
    staff = actor is not None and actor.is_staff
    by_org: dict[str | None, list[tuple[dict[str, Any], Availability | None]]] = {}
    for s, av in _schedules(svc, reader, req):
        if patient is not None and av is not None and av.eligibility.refusal(patient, now.date()):
            continue
        by_org.setdefault(av.organization if av else None, []).append((s, av))
    found: list[FreeSlot] = []
    for org, group in by_org.items():
        policy = svc.directory.policy(reader, org)
        lo_dt = now
        if req.start:
            lo_dt = max(lo_dt, local_day_bounds(req.start)[0])
        last_day = req.end or (now.date() + timedelta(days=366))
        if not staff:
            last_day = min(last_day, policy.released_until(now))
        hi_dt = local_day_bounds(last_day)[1]
        if hi_dt <= lo_dt:
            continue
        want = req.count + len(exclude or ())
        lo = max(lo_dt, now)

        def ok(slot: dict[str, Any]) -> bool:
            if exclude and slot.get("id") in exclude:
                return False
            status = slot.get("status")
            if status != "free" and not (status == "busy-tentative" and hold_expired(slot, now)):
                return False
            return _visit_type_ok(slot, req.visit_type)

        first = lo.astimezone(CST).date()
        ruled = [sched for sched, av in group if av is not None]
        for slot, sched in _generated(reader.conn, ruled, first, last_day, lo, hi_dt, ok, want):
            found.append(FreeSlot(slot, sched, org))
        for sched, av in group:
            if av is None:
                found += [
                    FreeSlot(slot, sched, org)
                    for slot in _searched(reader, sched["id"], lo, hi_dt, ok, want)
                ]
    if len(by_org) > 1 or any(av is None for group in by_org.values() for _, av in group):
        found.sort(key=lambda f: (f.start, f.rid))
    return found[: req.count]


def find_slots(svc: Appointments, req: FindRequest, actor: Actor | None) -> list[FreeSlot]:
    """Free, bookable slots for ``req`` as ``actor`` sees them, earliest first."""
    with Reader.open(svc.store) as reader:
        return find_in(svc, reader, req, actor)


def parse_day(value: str | None, what: str) -> date | None:
    """A ``$find`` date parameter (``2025-07-21`` or an instant) as a CST day."""
    if not value:
        return None
    try:
        if len(value) == 10:
            return date.fromisoformat(value)
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(CST).date()
    except ValueError as exc:
        raise BadRequest(f"$find: {what} {value!r} is not a date") from exc
