"""The shape of an Appointment as the services use it (http://hl7.org/fhir/R4/appointment.html):
its Patient participant, the one Slot it occupies, and who else hears about it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ehr.errors import Unprocessable

from .codes import BOOKING_EXT, OCCUPYING_STATUSES
from .fhirdata import ext, fmt_instant, ref, ref_id, sub_values

__all__ = ["also_notify", "new_appointment", "patient_of", "slot_of"]


def slot_of(appt: dict[str, Any] | None) -> str | None:
    """The Slot id an Appointment occupies (None when its status occupies nothing)."""
    if not appt or appt.get("status") not in OCCUPYING_STATUSES:
        return None
    slots = appt.get("slot") or []
    if len(slots) > 1:
        raise Unprocessable(
            "An Appointment may hold one Slot", "business-rule", expression=("Appointment.slot",)
        )
    return ref_id(slots[0], "Slot") if slots else None


def patient_of(appt: dict[str, Any]) -> str | None:
    for p in appt.get("participant") or ():
        pid = ref_id(p.get("actor"), "Patient")
        if pid:
            return pid
    return None


def also_notify(appt: dict[str, Any]) -> list[str]:
    """Who else hears about a booking: whoever booked it when that is not the patient."""
    e = ext(appt, BOOKING_EXT)
    by = sub_values(e, "bookedBy") if e else []
    pid = patient_of(appt)
    if by and isinstance(by[0], dict) and by[0].get("reference") not in (None, f"Patient/{pid}"):
        return [str(by[0]["reference"])]
    return []


def new_appointment(
    patient: str,
    slot: str,
    status: str,
    now: datetime,
    *,
    identifier: dict[str, Any] | None = None,
    comment: str | None = None,
) -> dict[str, Any]:
    """A booking request; the booking rules fill in start, end, participants and the rest."""
    appt: dict[str, Any] = {"resourceType": "Appointment"}
    if identifier:
        appt["identifier"] = [identifier]
    appt["status"] = status
    if comment:
        appt["comment"] = comment
    appt["slot"] = [ref("Slot", slot)]
    appt["created"] = fmt_instant(now)
    appt["participant"] = [
        {"actor": ref("Patient", patient), "required": "required", "status": "accepted"}
    ]
    return appt
