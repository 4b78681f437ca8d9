"""Recurring availability rules of a Schedule (http://hl7.org/fhir/R4/schedule.html).

R4 Schedule says *when* a resource may be booked only through its Slots. The rules that make
those Slots ride on the Schedule in one complex extension, :data:`~appointments.codes.AVAILABILITY_EXT`
(chosen over a PlanDefinition: the rules belong to exactly one Schedule, are read with it on
every slot generation, and need no workflow semantics)::

    {"url": AVAILABILITY_EXT, "extension": [
      {"url": "organization", "valueReference": {"reference": "Organization/org-h1"}},
      {"url": "session", "extension": [                     # one per clinic session (门诊时段)
        {"url": "code", "valueCode": "am"},                   # am | pm | eve
        {"url": "dayOfWeek", "valueCode": "mon"}, …           # repeats (days-of-week codes)
        {"url": "start", "valueTime": "08:00:00"},
        {"url": "end", "valueTime": "11:30:00"},
        {"url": "slotMinutes", "valuePositiveInt": 15}        # consecutive slots of 15 min
        # or {"url": "slotCount", "valuePositiveInt": 20}     # 20 numbered slots (号) share it
        {"url": "visitType", "valueCode": "expert"},          # optional: general | expert | …
        {"url": "location", "valueReference": {...}}]},       # optional: the consulting room
      {"url": "closed", "extension": [                      # holiday, leave (停诊)
        {"url": "date", "valueDate": "2025-10-01"},
        {"url": "session", "valueCode": "am"},                # optional: only that session
        {"url": "reason", "valueString": "国庆节"}]},
      {"url": "extraDay", "extension": [                    # 调休: a working weekend day
        {"url": "date", "valueDate": "2025-09-28"}, {"url": "asDayOfWeek", "valueCode": "mon"}]},
      {"url": "eligibility", "extension": [                 # who may book (all optional)
        {"url": "minAge", "valueInteger": 0}, {"url": "maxAge", "valueInteger": 14},
        {"url": "gender", "valueCode": "female"}]}]}

Hospital-wide holidays and working weekend days live in the hospital's booking policy
(:mod:`appointments.policy`) and apply to every Schedule of the hospital.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from ehr.errors import Unprocessable

from .codes import AVAILABILITY_EXT
from .fhirdata import CST, ext, ref, ref_id, set_ext, sub_ext, sub_values

__all__ = [
    "WEEKDAYS",
    "Availability",
    "Closure",
    "Eligibility",
    "ExtraDay",
    "Session",
    "availability_extension",
    "availability_of",
    "calendar_from_extension",
    "calendar_to_extension",
    "set_availability",
]

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _bad(msg: str) -> Unprocessable:
    return Unprocessable(
        f"Schedule availability: {msg}", "value", expression=("Schedule.extension",)
    )


@dataclass(frozen=True)
class Closure:
    """A closed day (``session`` None) or one closed session of a day."""

    day: date
    session: str | None = None
    reason: str = ""

    def closes(self, day: date, session: str) -> bool:
        return self.day == day and self.session in (None, session)


@dataclass(frozen=True)
class ExtraDay:
    """调休: ``day`` (usually a weekend day) runs the sessions of ``as_weekday``."""

    day: date
    as_weekday: str


@dataclass(frozen=True)
class Eligibility:
    min_age: int | None = None
    max_age: int | None = None
    gender: str | None = None

    def refusal(self, patient: dict[str, Any], on: date) -> str | None:
        """Why ``patient`` may not book (None: eligible)."""
        if self.gender and patient.get("gender") != self.gender:
            return f"this clinic sees {self.gender} patients only"
        if self.min_age is None and self.max_age is None:
            return None
        born = patient.get("birthDate")
        if not born:
            return "the patient's birth date is unknown and this clinic has an age limit"
        b = (
            date.fromisoformat(str(born)[:10])
            if len(str(born)) >= 10
            else date(int(str(born)[:4]), 1, 1)
        )
        age = on.year - b.year - ((on.month, on.day) < (b.month, b.day))
        if self.min_age is not None and age < self.min_age:
            return f"this clinic sees patients aged {self.min_age} or older"
        if self.max_age is not None and age > self.max_age:
            return f"this clinic sees patients aged up to {self.max_age}"
        return None


@dataclass(frozen=True)
class Session:
    """One recurring clinic session. Exactly one of ``slot_minutes`` (consecutive slots) and
    ``slot_count`` (that many numbered slots sharing the session) is set."""

    code: str
    days: tuple[str, ...]
    start: time
    end: time
    slot_minutes: int | None = None
    slot_count: int | None = None
    visit_type: str | None = None
    location: str | None = None

    def __post_init__(self) -> None:
        if (self.slot_minutes is None) == (self.slot_count is None):
            raise _bad(f"session {self.code!r} needs exactly one of slotMinutes and slotCount")
        if not self.start < self.end:
            raise _bad(f"session {self.code!r} ends before it starts")
        if not self.days or any(d not in WEEKDAYS for d in self.days):
            raise _bad(f"session {self.code!r} has no or unknown days of week: {self.days}")
        if (self.slot_minutes or 1) <= 0 or (self.slot_count or 1) <= 0:
            raise _bad(f"session {self.code!r}: slot length and count must be positive")

    def times(self, day: date) -> list[tuple[int, datetime, datetime]]:
        """(number, start, end) of each slot of this session on ``day``, numbered from 1."""
        begin = datetime.combine(day, self.start, CST)
        finish = datetime.combine(day, self.end, CST)
        out = []
        if self.slot_minutes is not None:
            step = timedelta(minutes=self.slot_minutes)
            t, n = begin, 1
            while t + step <= finish:
                out.append((n, t, t + step))
                t, n = t + step, n + 1
        else:
            assert self.slot_count is not None
            span = (finish - begin) / self.slot_count
            for i in range(self.slot_count):
                s = begin + span * i
                out.append((i + 1, s.replace(microsecond=0), (s + span).replace(microsecond=0)))
        return out


@dataclass(frozen=True)
class Availability:
    """The rules of one Schedule."""

    organization: str
    sessions: tuple[Session, ...]
    closures: tuple[Closure, ...] = ()
    extra_days: tuple[ExtraDay, ...] = ()
    eligibility: Eligibility = field(default_factory=Eligibility)

    def sessions_on(
        self, day: date, closures: tuple[Closure, ...] = (), extra_days: tuple[ExtraDay, ...] = ()
    ) -> list[Session]:
        """The sessions held on ``day``, given also the hospital's calendar."""
        weekday = WEEKDAYS[day.weekday()]
        for x in (*self.extra_days, *extra_days):
            if x.day == day:
                weekday = x.as_weekday
        shut = (*self.closures, *closures)
        return [
            s
            for s in self.sessions
            if weekday in s.days and not any(c.closes(day, s.code) for c in shut)
        ]

    def session(self, code: str) -> Session | None:
        return next((s for s in self.sessions if s.code == code), None)


# ------------------------------------------------------------------------------------- codec


def _time(v: Any, what: str) -> time:
    try:
        return time.fromisoformat(str(v))
    except ValueError as exc:
        raise _bad(f"{what} {v!r} is not a time") from exc


def _date(v: Any, what: str) -> date:
    try:
        return date.fromisoformat(str(v))
    except ValueError as exc:
        raise _bad(f"{what} {v!r} is not a date") from exc


def _one(e: dict[str, Any], url: str) -> Any:
    vals = sub_values(e, url)
    return vals[0] if vals else None


def calendar_from_extension(e: dict[str, Any]) -> tuple[tuple[Closure, ...], tuple[ExtraDay, ...]]:
    """The ``closed`` and ``extraDay`` entries of a complex extension."""
    closures = []
    for c in sub_ext(e, "closed"):
        day = _one(c, "date")
        if day is None:
            raise _bad("a closed entry needs a date")
        closures.append(
            Closure(_date(day, "closed date"), _one(c, "session"), _one(c, "reason") or "")
        )
    extras = []
    for x in sub_ext(e, "extraDay"):
        day, wd = _one(x, "date"), _one(x, "asDayOfWeek")
        if day is None or wd not in WEEKDAYS:
            raise _bad("an extraDay entry needs a date and asDayOfWeek")
        extras.append(ExtraDay(_date(day, "extraDay date"), wd))
    return tuple(closures), tuple(extras)


def calendar_to_extension(
    closures: tuple[Closure, ...], extra_days: tuple[ExtraDay, ...]
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for c in closures:
        parts: list[dict[str, Any]] = [{"url": "date", "valueDate": c.day.isoformat()}]
        if c.session:
            parts.append({"url": "session", "valueCode": c.session})
        if c.reason:
            parts.append({"url": "reason", "valueString": c.reason})
        out.append({"url": "closed", "extension": parts})
    for x in extra_days:
        out.append(
            {
                "url": "extraDay",
                "extension": [
                    {"url": "date", "valueDate": x.day.isoformat()},
                    {"url": "asDayOfWeek", "valueCode": x.as_weekday},
                ],
            }
        )
    return out


def _session_from(e: dict[str, Any]) -> Session:
    code = _one(e, "code")
    if not code:
        raise _bad("a session needs a code (am | pm | eve)")
    start, end = _one(e, "start"), _one(e, "end")
    if start is None or end is None:
        raise _bad(f"session {code!r} needs a start and an end")
    minutes, count = _one(e, "slotMinutes"), _one(e, "slotCount")
    loc = _one(e, "location")
    return Session(
        code=str(code),
        days=tuple(str(d) for d in sub_values(e, "dayOfWeek")),
        start=_time(start, "start"),
        end=_time(end, "end"),
        slot_minutes=int(minutes) if minutes is not None else None,
        slot_count=int(count) if count is not None else None,
        visit_type=_one(e, "visitType"),
        location=ref_id(loc, "Location") if loc else None,
    )


def _session_to(s: Session) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"url": "code", "valueCode": s.code}]
    parts += [{"url": "dayOfWeek", "valueCode": d} for d in s.days]
    parts.append({"url": "start", "valueTime": s.start.isoformat()})
    parts.append({"url": "end", "valueTime": s.end.isoformat()})
    if s.slot_minutes is not None:
        parts.append({"url": "slotMinutes", "valuePositiveInt": s.slot_minutes})
    if s.slot_count is not None:
        parts.append({"url": "slotCount", "valuePositiveInt": s.slot_count})
    if s.visit_type:
        parts.append({"url": "visitType", "valueCode": s.visit_type})
    if s.location:
        parts.append({"url": "location", "valueReference": ref("Location", s.location)})
    return {"url": "session", "extension": parts}


def availability_extension(av: Availability) -> dict[str, Any]:
    """The Schedule extension that carries ``av``."""
    parts: list[dict[str, Any]] = [
        {"url": "organization", "valueReference": ref("Organization", av.organization)}
    ]
    parts += [_session_to(s) for s in av.sessions]
    parts += calendar_to_extension(av.closures, av.extra_days)
    el = av.eligibility
    if el != Eligibility():
        sub: list[dict[str, Any]] = []
        if el.min_age is not None:
            sub.append({"url": "minAge", "valueInteger": el.min_age})
        if el.max_age is not None:
            sub.append({"url": "maxAge", "valueInteger": el.max_age})
        if el.gender:
            sub.append({"url": "gender", "valueCode": el.gender})
        parts.append({"url": "eligibility", "extension": sub})
    return {"url": AVAILABILITY_EXT, "extension": parts}


def availability_of(schedule: dict[str, Any]) -> Availability | None:
    """The rules a Schedule carries (None: a plain Schedule, whose Slots are made by hand).
    Malformed rules are a 422."""
    e = ext(schedule, AVAILABILITY_EXT)
    if e is None:
        return None
    org = ref_id(_one(e, "organization"), "Organization")
    if org is None:
        raise _bad("organization (a Reference to Organization) is required")
    sessions = tuple(_session_from(s) for s in sub_ext(e, "session"))
    codes = [s.code for s in sessions]
    if len(set(codes)) != len(codes):
        raise _bad(f"session codes must be unique, got {codes}")
    closures, extras = calendar_from_extension(e)
    el = sub_ext(e, "eligibility")
    elig = Eligibility()
    if el:
        mn, mx = _one(el[0], "minAge"), _one(el[0], "maxAge")
        elig = Eligibility(
            int(mn) if mn is not None else None,
            int(mx) if mx is not None else None,
            _one(el[0], "gender"),
        )
    return Availability(org, sessions, closures, extras, elig)


def set_availability(schedule: dict[str, Any], av: Availability) -> dict[str, Any]:
    """``schedule`` (changed in place and returned) with its rules replaced by ``av``."""
    set_ext(schedule, AVAILABILITY_EXT, availability_extension(av))
    return schedule
