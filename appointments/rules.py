"""The booking rules, enforced on every write as a store :class:`~ehr.store.WriteHook`.

The services (``$hold``, ``$book``, cancel, reschedule, …) only write Appointments; this hook
does the rest, so a plain ``POST Appointment`` / ``PUT Slot`` through the FHIR API obeys exactly
the same rules (http://hl7.org/fhir/R4/appointment.html, http://hl7.org/fhir/R4/slot.html).

An Appointment *occupies* its Slot in the statuses of
:data:`~appointments.codes.OCCUPYING_STATUSES`. On each Appointment write the hook compares the
slot occupied before and after:

* **acquire** (a new slot, or ``pending`` -> ``booked``): lock the patient (PostgreSQL
  advisory lock on ``Appointment?patient=…``, so one patient's bookings serialize and the limits
  hold), lock the Slot row (``SELECT … FOR UPDATE``; SQLite's single writer already serializes),
  then check the slot (free, or held by this appointment, or held by an expired hold, which is
  evicted), time (not started; for citizens and anonymous writes: inside the release window),
  the patient (exists, active, real name, eligibility), the booker (a citizen must be the patient
  or act for them), the no-show blacklist and the limits; finally stamp the Appointment (start,
  end, participants, booking extension) and mark the Slot ``busy`` (``busy-tentative`` with a
  hold extension for ``pending``). The second of two concurrent bookings of one slot waits for
  the first's lock, then sees ``busy``: 409.
* **release** (cancelled, entered-in-error, deleted, or moved to another slot): for citizens and
  anonymous writes a booked appointment may be left only before the cancellation cut-off; the
  slot becomes ``free`` (``busy-unavailable`` when its session is being cancelled) and goes to the
  first matching waitlisted patient.

A reschedule acquires the new slot before it releases the old one, in the one transaction:
either both happen or neither.

Slot writes from outside (not by this hook) may not change a slot that is occupied, nor make a
slot ``busy`` without an Appointment. Schedule and booking-policy writes are refused (422) when
their rules do not parse.

Who is acting comes from :func:`appointments.actors.current_actor`: citizens get every rule;
``None`` (a plain anonymous write) every rule but the booker check; clinicians are exempt from
the release window, the cancellation cut-off and the blacklist; the system (waitlist promotion,
alternative offers) from the release window and cut-off.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

from ehr.errors import Conflict, Unprocessable
from ehr.identifiers import CITIZEN_ID_HASH_SYSTEM
from ehr.store import PendingWrite, WriteContext

from .actors import Actor, current_actor, require_may_act_for
from .availability import Availability, availability_of
from .codes import (
    ACTIVE_STATUSES,
    BOOKING_EXT,
    BOOKING_POLICY_EXT,
    HOLD_EXT,
    OCCUPYING_STATUSES,
    SLOT_NUMBER_EXT,
    SLOT_SESSION_EXT,
)
from .fhirdata import (
    CST,
    Reader,
    ext,
    ext_value,
    fmt_instant,
    parse_instant,
    ref,
    ref_id,
    set_ext,
    sub_values,
)
from .policy import BookingPolicy, policy_from_resource
from .shapes import patient_of, slot_of

if TYPE_CHECKING:
    from .service import Appointments

__all__ = ["BookingRules", "SlotContext"]


@dataclass
class SlotContext:
    """A slot with what the rules need about it."""

    slot: dict[str, Any]
    version: int
    schedule: dict[str, Any] | None
    availability: Availability | None
    policy: BookingPolicy

    @property
    def rid(self) -> str:
        return str(self.slot["id"])

    @property
    def start(self) -> datetime:
        return parse_instant(self.slot["start"])

    @property
    def end(self) -> datetime:
        return parse_instant(self.slot["end"])

    @property
    def organization(self) -> str | None:
        return self.availability.organization if self.availability else None

    @property
    def department(self) -> str | None:
        for a in (self.schedule or {}).get("actor") or ():
            hs = ref_id(a, "HealthcareService")
            if hs:
                return hs
        return None


@dataclass
class _TxState:
    internal: set[str] = field(default_factory=set)  # Slot ids the hook itself is writing
    acquiring: set[str] = field(default_factory=set)  # Slot ids being acquired (evictions)
    withdrawn: set[str] = field(default_factory=set)  # Slot ids of a session being cancelled
    promote: bool = True


def _booking_facts(appt: dict[str, Any]) -> dict[str, Any]:
    e = ext(appt, BOOKING_EXT)
    if e is None:
        return {}
    out = {}
    for key in ("organization", "department"):
        v = sub_values(e, key)
        if v:
            out[key] = ref_id(v[0])
    return out


class BookingRules:
    """The WriteHook. One instance per :class:`~appointments.service.Appointments`."""

    def __init__(self, svc: Appointments) -> None:
        self.svc = svc
        self._state: WeakKeyDictionary[WriteContext, _TxState] = WeakKeyDictionary()

    # -- per-transaction state -----------------------------------------------------------------
    def state(self, ctx: WriteContext) -> _TxState:
        st = self._state.get(ctx)
        if st is None:
            st = self._state[ctx] = _TxState()
        return st

    @contextmanager
    def withdrawing(self, ctx: WriteContext, slot_ids: set[str]) -> Iterator[None]:
        """While active, releasing these slots makes them ``busy-unavailable`` (a cancelled
        session) and promotes nobody."""
        st = self.state(ctx)
        st.withdrawn |= slot_ids
        try:
            yield
        finally:
            st.withdrawn -= slot_ids

    def write_slot(self, ctx: WriteContext, sc: SlotContext) -> None:
        """Write a slot as the rules (no outside-write checks)."""
        st = self.state(ctx)
        st.internal.add(sc.rid)
        try:
            res = ctx.update("Slot", sc.rid, sc.slot, validate=False, if_match=sc.version)
            sc.version = res.version
        finally:
            st.internal.discard(sc.rid)

    def load_slot(self, reader: Reader, slot_id: str, *, lock: bool) -> SlotContext | None:
        got = reader.get_versioned("Slot", slot_id, lock=lock)
        if got is None:
            return None
        slot, version = got
        sched_id = ref_id(slot.get("schedule"), "Schedule")
        schedule = reader.get("Schedule", sched_id) if sched_id else None
        av = availability_of(schedule) if schedule else None
        policy = self.svc.directory.policy(reader, av.organization if av else None)
        return SlotContext(slot, version, schedule, av, policy)

    # -- the hook ------------------------------------------------------------------------------
    def before_write(self, ctx: WriteContext, write: PendingWrite) -> None:
        if write.rtype == "Appointment":
            self._appointment(ctx, write)
        elif write.rtype == "Slot":
            self._slot(ctx, write)
        elif write.rtype == "Schedule" and write.resource is not None:
            availability_of(write.resource)
        elif (
            write.rtype == "Basic"
            and write.resource is not None
            and ext(write.resource, BOOKING_POLICY_EXT)
        ):
            policy_from_resource(write.resource)

    # -- Slot ----------------------------------------------------------------------------------
    def _slot(self, ctx: WriteContext, write: PendingWrite) -> None:
        if write.rid in self.state(ctx).internal:
            return
        new, old = write.resource, write.previous
        if (
            new is not None
            and new.get("status") in ("busy", "busy-tentative")
            and (old is None or old.get("status") != new.get("status"))
        ):
            raise Conflict(
                f"Slot/{write.rid}: a slot becomes {new.get('status')} only by booking an Appointment "
                "on it (use busy-unavailable to block it)",
                "business-rule",
            )
        if old is None or old.get("status") not in ("busy", "busy-tentative"):
            return
        if new is None:
            raise Conflict(
                f"Slot/{write.rid} is booked: cancel its Appointment before deleting it",
                "business-rule",
            )
        for key in ("status", "start", "end", "schedule"):
            if new.get(key) != old.get(key):
                raise Conflict(
                    f"Slot/{write.rid} is booked: its {key} cannot change; cancel or move the Appointment",
                    "business-rule",
                )
        for url in (HOLD_EXT,):
            set_ext(new, url, ext(old, url))

    # -- Appointment ---------------------------------------------------------------------------
    def _appointment(self, ctx: WriteContext, write: PendingWrite) -> None:
        new, old = write.resource, write.previous
        actor = current_actor()
        now = self.svc.now()
        reader = Reader.of(ctx)
        if new is not None and new.get("status") == "waitlist":
            pid = patient_of(new)
            if pid is None:
                raise Unprocessable(
                    "A waitlist Appointment needs a Patient participant", "required"
                )
            require_may_act_for(reader, actor, pid, now.date())
        new_slot, old_slot = slot_of(new), slot_of(old)
        if new_slot is not None:
            assert new is not None
            again = old_slot == new_slot
            confirming = (
                again
                and old is not None
                and old.get("status") == "pending"
                and new.get("status") != "pending"
            )
            if not again or confirming:
                self._acquire(ctx, reader, write.rid, new, old, new_slot, actor, now)
            else:
                self._keep(reader, new, old, new_slot, now)
        if old_slot is not None and old_slot != new_slot:
            assert old is not None
            self._release(ctx, reader, old, new, old_slot, actor, now)

    def _keep(
        self,
        reader: Reader,
        new: dict[str, Any],
        old: dict[str, Any] | None,
        slot_id: str,
        now: datetime,
    ) -> None:
        """The same slot stays occupied: the slot-derived fields stay as they were."""
        assert old is not None
        for key in ("start", "end", "minutesDuration"):
            if key in old:
                new[key] = old[key]
        for url in (BOOKING_EXT, HOLD_EXT):
            set_ext(new, url, ext(old, url))
        if new.get("status") == "noshow" and old.get("status") != "noshow":
            start = parse_instant(old["start"]) if old.get("start") else None
            if start is not None and now < start:
                raise Conflict(
                    "An appointment can be marked no-show only after it was due", "business-rule"
                )

    # -- acquire -------------------------------------------------------------------------------
    def _acquire(
        self,
        ctx: WriteContext,
        reader: Reader,
        rid: str,
        appt: dict[str, Any],
        previous: dict[str, Any] | None,
        slot_id: str,
        actor: Actor | None,
        now: datetime,
    ) -> None:
        pid = patient_of(appt)
        if pid is None:
            raise Unprocessable(
                "An Appointment that books a Slot needs a Patient participant",
                "required",
                expression=("Appointment.participant",),
            )
        ctx.lock_condition("Appointment", [("patient", f"Patient/{pid}")])
        sc = self.load_slot(reader, slot_id, lock=True)
        if sc is None:
            raise Unprocessable(
                f"Slot/{slot_id} does not exist", "not-found", expression=("Appointment.slot",)
            )
        st = self.state(ctx)
        st.acquiring.add(slot_id)
        try:
            self._check_slot(ctx, reader, sc, rid, actor, now)
            self._check_patient(reader, sc, pid, actor, now)
            self._check_history(reader, sc, rid, pid, actor, now)
            self._stamp(rid, appt, previous, sc, actor, now)
            hold = ext(appt, HOLD_EXT)
            sc.slot["status"] = "busy-tentative" if appt["status"] == "pending" else "busy"
            set_ext(sc.slot, HOLD_EXT, hold if appt["status"] == "pending" else None)
            self.write_slot(ctx, sc)
        finally:
            st.acquiring.discard(slot_id)

    def _check_slot(
        self,
        ctx: WriteContext,
        reader: Reader,
        sc: SlotContext,
        rid: str,
        actor: Actor | None,
        now: datetime,
    ) -> None:
        status = sc.slot.get("status")
        name = f"Slot/{sc.rid}"
        if status == "busy-tentative":
            hold = ext(sc.slot, HOLD_EXT)
            holder = (
                ref_id(sub_values(hold, "appointment")[0], "Appointment")
                if hold and sub_values(hold, "appointment")
                else None
            )
            expires = sub_values(hold, "expires") if hold else []
            if holder != rid:
                if expires and parse_instant(expires[0]) > now:
                    raise Conflict(
                        f"{name} is held for another patient until {expires[0]}", "conflict"
                    )
                if holder:
                    self._evict(ctx, reader, holder)
        elif status == "busy":
            raise Conflict(f"{name} is already booked", "conflict")
        elif status != "free":
            raise Conflict(f"{name} is not available for booking ({status})", "business-rule")
        citizen_rules = actor is None or actor.kind == "citizen"
        if citizen_rules:
            if now >= sc.start:
                raise Conflict(
                    f"{name} started at {sc.slot['start']}: too late to book it", "business-rule"
                )
            day = sc.start.astimezone(CST).date()
            if day > sc.policy.released_until(now):
                opens = fmt_instant(sc.policy.release_instant(day))
                raise Conflict(
                    f"{name} is not open for booking yet: it opens at {opens}", "business-rule"
                )
        elif now >= sc.end:
            raise Conflict(f"{name} is over", "business-rule")

    def _evict(self, ctx: WriteContext, reader: Reader, holder: str) -> None:
        """Cancel the pending Appointment of an expired hold (its slot is being taken)."""
        got = reader.get_versioned("Appointment", holder, lock=True)
        if got is None:
            return
        held, version = got
        if held.get("status") != "pending":
            return
        held["status"] = "cancelled"
        held["cancelationReason"] = {"text": "hold expired"}
        ctx.update("Appointment", holder, held, validate=False, if_match=version)

    def _check_patient(
        self, reader: Reader, sc: SlotContext, pid: str, actor: Actor | None, now: datetime
    ) -> dict[str, Any]:
        patient = reader.get("Patient", pid)
        if patient is None:
            raise Unprocessable(f"Patient/{pid} does not exist", "not-found")
        if (
            patient.get("active") is False
            or patient.get("deceasedBoolean")
            or patient.get("deceasedDateTime")
        ):
            raise Conflict(f"Patient/{pid} is not an active, living patient", "business-rule")
        if sc.policy.real_name and not any(
            i.get("system") == CITIZEN_ID_HASH_SYSTEM and i.get("value")
            for i in patient.get("identifier") or ()
        ):
            raise Conflict(
                f"Real-name booking: Patient/{pid} has no verified citizen ID", "business-rule"
            )
        require_may_act_for(reader, actor, pid, now.date())
        if sc.availability is not None:
            why = sc.availability.eligibility.refusal(patient, sc.start.astimezone(CST).date())
            if why:
                raise Conflict(f"Patient/{pid} cannot book Slot/{sc.rid}: {why}", "business-rule")
        return patient

    def _check_history(
        self,
        reader: Reader,
        sc: SlotContext,
        rid: str,
        pid: str,
        actor: Actor | None,
        now: datetime,
    ) -> None:
        statuses = ",".join(sorted(OCCUPYING_STATUSES))
        others = [
            a
            for a in reader.find(
                "Appointment", [("patient", f"Patient/{pid}"), ("status", statuses)], limit=2000
            )
            if a.get("id") != rid
        ]
        org, policy = sc.organization, sc.policy
        here = [a for a in others if _booking_facts(a).get("organization") == org]
        if actor is None or actor.kind != "clinician":
            window = now - timedelta(days=policy.no_show_window_days)
            noshows = sorted(
                parse_instant(a["start"])
                for a in here
                if a.get("status") == "noshow"
                and a.get("start")
                and parse_instant(a["start"]) >= window
            )
            if policy.no_show_limit > 0 and len(noshows) >= policy.no_show_limit:
                until = noshows[-1] + timedelta(days=policy.blacklist_days)
                if now < until:
                    raise Conflict(
                        f"Patient/{pid} missed {len(noshows)} appointments within {policy.no_show_window_days} "
                        f"days and cannot book at this hospital until {fmt_instant(until)}",
                        "business-rule",
                    )
        active = [
            a
            for a in here
            if a.get("status") in ("pending", "booked")
            and a.get("end")
            and parse_instant(a["end"]) > now
        ]
        if len(active) >= policy.max_active_bookings:
            raise Conflict(
                f"Patient/{pid} already has {len(active)} active bookings at this hospital "
                f"(at most {policy.max_active_bookings})",
                "business-rule",
            )
        day = sc.start.astimezone(CST).date()
        dept = sc.department
        same_day = [
            a
            for a in here
            if a.get("status") in ACTIVE_STATUSES | {"fulfilled"}
            and _booking_facts(a).get("department") == dept
            and a.get("start")
            and parse_instant(a["start"]).astimezone(CST).date() == day
        ]
        if len(same_day) >= policy.max_per_department_per_day:
            raise Conflict(
                f"Patient/{pid} already has {len(same_day)} booking(s) in this department on {day} "
                f"(at most {policy.max_per_department_per_day})",
                "business-rule",
            )

    def _stamp(
        self,
        rid: str,
        appt: dict[str, Any],
        previous: dict[str, Any] | None,
        sc: SlotContext,
        actor: Actor | None,
        now: datetime,
    ) -> None:
        slot = sc.slot
        appt["start"], appt["end"] = slot["start"], slot["end"]
        appt["minutesDuration"] = max(1, int((sc.end - sc.start).total_seconds() // 60))
        for key in ("serviceCategory", "serviceType", "specialty", "appointmentType"):
            if slot.get(key) and not appt.get(key):
                appt[key] = slot[key]
        appt.setdefault("created", fmt_instant(now))
        participants = list(appt.get("participant") or [])
        have = {(p.get("actor") or {}).get("reference") for p in participants}
        actors = list((sc.schedule or {}).get("actor") or [])
        session = (
            sc.availability.session(str(ext_value(slot, SLOT_SESSION_EXT)))
            if sc.availability
            else None
        )
        if session is not None and session.location:
            actors.append(ref("Location", session.location))
        for a in actors:
            if a.get("reference") not in have:
                participants.append(
                    {
                        "actor": {"reference": a["reference"]},
                        "required": "required",
                        "status": "accepted",
                    }
                )
                have.add(a.get("reference"))
        for p in participants:
            if ref_id(p.get("actor"), "Patient"):
                p["status"] = "accepted"
        appt["participant"] = participants
        facts: list[dict[str, Any]] = []
        if sc.organization:
            facts.append(
                {"url": "organization", "valueReference": ref("Organization", sc.organization)}
            )
        if sc.department:
            facts.append(
                {"url": "department", "valueReference": ref("HealthcareService", sc.department)}
            )
        booked_by = None
        old_facts = ext(previous, BOOKING_EXT) if previous else None
        if old_facts and sub_values(old_facts, "bookedBy"):
            booked_by = sub_values(old_facts, "bookedBy")[0]
        elif actor is not None and actor.reference() is not None:
            booked_by = actor.reference()
        if booked_by:
            facts.append({"url": "bookedBy", "valueReference": booked_by})
        number = ext_value(slot, SLOT_NUMBER_EXT)
        if number is not None:
            facts.append({"url": "slotNumber", "valueInteger": number})
        session_code = ext_value(slot, SLOT_SESSION_EXT)
        if session_code:
            facts.append({"url": "session", "valueCode": session_code})
        # until when a citizen may cancel or move it online, by the policy of the booking (the
        # policy in force decides: see _release); the apps tell the patient
        deadline = fmt_instant(sc.policy.cancel_deadline(sc.start))
        facts.append({"url": "cancelBefore", "valueInstant": deadline})
        set_ext(appt, BOOKING_EXT, {"extension": facts} if facts else None)
        if appt["status"] == "pending":
            expires = now + timedelta(minutes=sc.policy.hold_minutes)
            asked = ext(appt, HOLD_EXT)
            if actor is not None and actor.is_staff and asked and sub_values(asked, "expires"):
                expires = min(parse_instant(sub_values(asked, "expires")[0]), sc.start)
            set_ext(
                appt,
                HOLD_EXT,
                {
                    "extension": [
                        {"url": "appointment", "valueReference": ref("Appointment", rid)},
                        {
                            "url": "patient",
                            "valueReference": ref("Patient", patient_of(appt) or ""),
                        },
                        {"url": "expires", "valueInstant": fmt_instant(expires)},
                    ]
                },
            )
        else:
            set_ext(appt, HOLD_EXT, None)

    # -- release -------------------------------------------------------------------------------
    def _release(
        self,
        ctx: WriteContext,
        reader: Reader,
        old: dict[str, Any],
        new: dict[str, Any] | None,
        slot_id: str,
        actor: Actor | None,
        now: datetime,
    ) -> None:
        st = self.state(ctx)
        if slot_id in st.acquiring:
            return  # an expired hold evicted by whoever is taking the slot
        sc = self.load_slot(reader, slot_id, lock=True)
        if sc is None:
            return
        citizen_rules = actor is None or actor.kind == "citizen"
        if citizen_rules and old.get("status") == "booked":
            deadline = sc.policy.cancel_deadline(sc.start)
            if now > deadline:
                raise Conflict(
                    f"Appointment/{old.get('id')} can no longer be cancelled or moved: the cut-off was "
                    f"{fmt_instant(deadline)}",
                    "business-rule",
                )
        withdrawn = slot_id in st.withdrawn
        sc.slot["status"] = "busy-unavailable" if withdrawn else "free"
        set_ext(sc.slot, HOLD_EXT, None)
        self.write_slot(ctx, sc)
        if withdrawn or not sc.policy.waitlist or not st.promote or sc.start <= now:
            return
        if sc.start.astimezone(CST).date() > sc.policy.released_until(now):
            return
        from .waitlist import promote

        promote(self.svc, ctx, sc)
