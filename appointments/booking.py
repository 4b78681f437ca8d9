"""``$hold``, ``$book``, cancel, reschedule and no-show
(Argonaut Scheduling IG http://fhir.org/guides/argonaut/scheduling/ ``$hold`` / ``$book``;
http://hl7.org/fhir/R4/appointment.html status workflow).

Each is one write transaction that changes one Appointment under :func:`acting_as` the caller;
the booking rules hook (:mod:`appointments.rules`) locks and marks the Slot and checks every
policy, so these functions stay short and a plain FHIR write gets the same result.

* ``hold``: a ``pending`` Appointment; its slot turns ``busy-tentative`` until the hold expires
  (``policy.hold_minutes``). An expired hold is released lazily (the next booker evicts it) and
  by :func:`release_expired_holds` (run it every minute: it frees the slot and promotes the
  waitlist).
* ``book``: confirms a hold (``appointment=``) or books a slot directly. With a client
  ``identifier`` a retried ``$book`` returns the first booking (conditional create).
* ``cancel``: ``cancelled``; the slot is freed and offered to the waitlist.
* ``reschedule``: moves the Appointment to another slot atomically.
* ``no_show``: staff mark a missed appointment ``noshow`` (counted by the blacklist rule).
"""

from __future__ import annotations

from typing import Any

from ehr.errors import BadRequest, Conflict, FhirError, Forbidden, NotFound
from ehr.store import WriteContext, WriteResult

from .actors import Actor, acting_as, require_may_act_for
from .codes import HOLD_EXT
from .fhirdata import Reader, ext, ref, sub_values
from .find import hold_expired
from .notify import notify
from .service import Appointments
from .shapes import also_notify, new_appointment, patient_of, slot_of

__all__ = ["book", "cancel", "hold", "no_show", "release_expired_holds", "reschedule"]

CANCEL_REASON = "http://terminology.hl7.org/CodeSystem/appointment-cancellation-reason"


def _locked(ctx: WriteContext, rid: str) -> tuple[dict[str, Any], int]:
    got = Reader.of(ctx).get_versioned("Appointment", rid, lock=True)
    if got is None:
        raise NotFound(f"Appointment/{rid} not found")
    return got


def _result(res: WriteResult) -> dict[str, Any]:
    return res.stored().resource()


def hold(svc: Appointments, actor: Actor | None, *, slot: str, patient: str) -> dict[str, Any]:
    """Hold ``Slot/slot`` for ``Patient/patient``: a ``pending`` Appointment."""
    with svc.store.write() as ctx, acting_as(actor):
        return _result(ctx.create(new_appointment(patient, slot, "pending", svc.now())))


def book(
    svc: Appointments,
    actor: Actor | None,
    *,
    slot: str | None = None,
    patient: str | None = None,
    appointment: str | None = None,
    identifier: dict[str, Any] | None = None,
    comment: str | None = None,
) -> dict[str, Any]:
    """Book ``Slot/slot`` for ``Patient/patient``, or confirm the held ``Appointment/appointment``.
    A slot already taken is a 409; so is any broken booking rule."""
    with svc.store.write() as ctx, acting_as(actor):
        if appointment:
            appt, version = _locked(ctx, appointment)
            if slot and slot_of(appt) not in (None, slot):
                raise BadRequest(f"Appointment/{appointment} holds another slot than Slot/{slot}")
            if patient and patient_of(appt) != patient:
                raise BadRequest(f"Appointment/{appointment} is for another patient")
            if appt.get("status") == "booked":
                return appt
            if appt.get("status") != "pending":
                raise Conflict(
                    f"Appointment/{appointment} is {appt.get('status')}, not a hold",
                    "business-rule",
                )
            appt["status"] = "booked"
            if comment:
                appt["comment"] = comment
            return _result(ctx.update("Appointment", appointment, appt, if_match=version))
        if not slot or not patient:
            raise BadRequest("$book needs a slot and a patient, or a held appointment")
        appt = new_appointment(
            patient, slot, "booked", svc.now(), identifier=identifier, comment=comment
        )
        if identifier:
            cond = f"identifier={identifier.get('system', '')}|{identifier['value']}"
            res = ctx.conditional_create(appt, cond)
            if res.outcome == "existing":
                mine = res.stored().resource()
                if slot_of(mine) != slot or patient_of(mine) != patient:
                    raise Conflict(f"Identifier {cond} already names another booking", "duplicate")
            return _result(res)
        return _result(ctx.create(appt))


def cancel(
    svc: Appointments, actor: Actor | None, appointment: str, *, reason: str | None = None
) -> dict[str, Any]:
    """Cancel ``Appointment/appointment`` (citizens: their own, before the cut-off). Staff
    cancellations notify the patient."""
    with svc.store.write() as ctx, acting_as(actor):
        appt, version = _locked(ctx, appointment)
        status = appt.get("status")
        if status == "cancelled":
            return appt
        pid = patient_of(appt)
        citizen = actor is None or actor.kind == "citizen"
        allowed = (
            ("proposed", "pending", "booked", "waitlist")
            if citizen
            else ("proposed", "pending", "booked", "waitlist", "arrived", "checked-in")
        )
        if status not in allowed:
            raise Conflict(
                f"Appointment/{appointment} is {status} and can no longer be cancelled",
                "business-rule",
            )
        if pid:
            require_may_act_for(Reader.of(ctx), actor, pid, svc.now().date())
        code = "pat" if citizen else "prov"
        appt["status"] = "cancelled"
        appt["cancelationReason"] = {
            "coding": [{"system": CANCEL_REASON, "code": code}],
            **({"text": reason} if reason else {}),
        }
        res = ctx.update("Appointment", appointment, appt, if_match=version, validate=False)
        done = _result(res)
        if not citizen and pid and status in ("pending", "booked"):
            notify(
                ctx,
                svc.sender,
                patient=pid,
                text=f"您 {done.get('start', '')} 的预约已被医院取消"
                + (f"：{reason}" if reason else "。"),
                category="appointment-cancelled",
                about=[f"Appointment/{appointment}"],
                also=also_notify(done),
                now=svc.now,
            )
        return done


def reschedule(
    svc: Appointments, actor: Actor | None, appointment: str, *, slot: str
) -> dict[str, Any]:
    """Move ``Appointment/appointment`` to ``Slot/slot``: the new slot is taken and the old one
    freed in one transaction, or nothing changes."""
    with svc.store.write() as ctx, acting_as(actor):
        appt, version = _locked(ctx, appointment)
        if appt.get("status") not in ("pending", "booked"):
            raise Conflict(
                f"Appointment/{appointment} is {appt.get('status')}: only a booking can be moved",
                "business-rule",
            )
        if slot_of(appt) == slot:
            return appt
        pid = patient_of(appt)
        if pid:
            require_may_act_for(Reader.of(ctx), actor, pid, svc.now().date())
        appt["slot"] = [ref("Slot", slot)]
        return _result(
            ctx.update("Appointment", appointment, appt, if_match=version, validate=False)
        )


def no_show(svc: Appointments, actor: Actor | None, appointment: str) -> dict[str, Any]:
    """Staff mark ``Appointment/appointment`` as missed (after it was due)."""
    if actor is None or not actor.is_staff:
        raise Forbidden("Only clinic staff mark a no-show")
    with svc.store.write() as ctx, acting_as(actor):
        appt, version = _locked(ctx, appointment)
        if appt.get("status") == "noshow":
            return appt
        if appt.get("status") != "booked":
            raise Conflict(
                f"Appointment/{appointment} is {appt.get('status')}, not booked", "business-rule"
            )
        appt["status"] = "noshow"
        return _result(
            ctx.update("Appointment", appointment, appt, if_match=version, validate=False)
        )


def release_expired_holds(svc: Appointments) -> list[str]:
    """Cancel the pending Appointments whose hold expired (freeing and re-offering their slots);
    returns their ids."""
    now = svc.now()
    with Reader.open(svc.store) as reader:
        held = [
            s
            for s in reader.find("Slot", [("status", "busy-tentative")], limit=10_000)
            if hold_expired(s, now)
        ]
    released = []
    for slot in held:
        h = ext(slot, HOLD_EXT)
        refs = sub_values(h, "appointment") if h else []
        rid = (
            refs[0].get("reference", "").split("/")[-1]
            if refs and isinstance(refs[0], dict)
            else None
        )
        if not rid:
            continue
        try:
            with svc.store.write() as ctx, acting_as(Actor.system()):
                appt, version = _locked(ctx, rid)
                if appt.get("status") != "pending":
                    continue
                appt["status"] = "cancelled"
                appt["cancelationReason"] = {
                    "coding": [{"system": CANCEL_REASON, "code": "other"}],
                    "text": "hold expired",
                }
                ctx.update("Appointment", rid, appt, if_match=version, validate=False)
            released.append(rid)
        except FhirError:  # taken or changed meanwhile: the next sweep looks again
            continue
    return released
