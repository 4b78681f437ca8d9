"""Schedules and booking policies for the demo city (:mod:`ehr.demo`), so that its doctors can
be booked: one Schedule per doctor's PractitionerRole that names a HealthcareService.

* hospital departments: mornings Monday to Saturday and afternoons Monday to Friday, 15-minute
  slots; chief and associate-chief physicians hold expert clinics (专家号), the others general
  ones (普通号); paediatric departments see children up to 14, obstetrics and gynaecology women;
* community health centres: family-doctor clinics of 20 numbered slots per session, Monday to
  Friday;
* emergency departments take no appointments (no Schedule);
* every hospital releases slots 7 days ahead at 08:00 (community centres 3 days ahead).

Load them after the city (``store.update`` each, then :func:`appointments.slots.roll_window`).
"""

from __future__ import annotations

from datetime import time
from typing import Any

from ehr.codesystems import DEPARTMENT_SYSTEM

from .availability import Availability, Eligibility, Session, availability_extension
from .fhirdata import ref, ref_id
from .policy import BookingPolicy, policy_resource

__all__ = ["demo_policies", "demo_schedules"]

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri")
_EXPERT_TITLES = {"chief-physician", "associate-chief-physician"}
_PAEDIATRIC = {"07", "08", "09"}
_WOMEN = {"05", "05.01", "05.02", "06"}


def _dept(role: dict[str, Any]) -> str | None:
    for cc in role.get("specialty") or ():
        for c in cc.get("coding") or ():
            if c.get("system") == DEPARTMENT_SYSTEM:
                return str(c.get("code"))
    return None


def _title(role: dict[str, Any]) -> str | None:
    for cc in role.get("code") or ():
        for c in cc.get("coding") or ():
            if (
                str(c.get("system", "")).endswith("professional-title")
                or c.get("code") in _EXPERT_TITLES
            ):
                return str(c.get("code"))
    return None


def demo_schedules(city: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A Schedule (with availability rules) for every bookable doctor of ``city`` (the list of
    :func:`ehr.demo.generate_city`)."""
    services = {r["id"]: r for r in city if r["resourceType"] == "HealthcareService"}
    out = []
    for role in city:
        if role["resourceType"] != "PractitionerRole" or not role.get("healthcareService"):
            continue
        if not any(
            c.get("code") == "doctor"
            for cc in role.get("code") or ()
            for c in cc.get("coding") or ()
        ):
            continue
        hs_id = ref_id(role["healthcareService"][0], "HealthcareService")
        org = ref_id(role.get("organization"), "Organization")
        dept = _dept(role)
        if not hs_id or not org or dept in (None, "20"):
            continue
        hospital = org.startswith("org-h")
        expert = _title(role) in _EXPERT_TITLES
        if hospital:
            visit = "expert" if expert else "general"
            sessions = (
                Session(
                    "am",
                    (*WEEKDAYS, "sat"),
                    time(8),
                    time(11, 30),
                    slot_minutes=15,
                    visit_type=visit,
                ),
                Session("pm", WEEKDAYS, time(13, 30), time(17), slot_minutes=15, visit_type=visit),
            )
        else:
            sessions = (
                Session("am", WEEKDAYS, time(8), time(11, 30), slot_count=20, visit_type="general"),
                Session("pm", WEEKDAYS, time(14), time(17), slot_count=20, visit_type="general"),
            )
        eligibility = Eligibility()
        if dept in _PAEDIATRIC:
            eligibility = Eligibility(max_age=14)
        elif dept in _WOMEN:
            eligibility = Eligibility(gender="female")
        av = Availability(org, sessions, eligibility=eligibility)
        hs = services.get(hs_id, {})
        schedule: dict[str, Any] = {
            "resourceType": "Schedule",
            "id": f"sch-{role['id']}",
            "extension": [availability_extension(av)],
            "active": True,
        }
        for key in ("category", "type", "specialty"):
            if hs.get(key):
                schedule[
                    "serviceCategory"
                    if key == "category"
                    else "serviceType"
                    if key == "type"
                    else key
                ] = hs[key]
        actors = [ref("PractitionerRole", role["id"]), ref("HealthcareService", hs_id)]
        actors += [{"reference": loc["reference"]} for loc in role.get("location") or ()]
        schedule["actor"] = actors
        schedule["comment"] = (
            f"{hs.get('comment', hs.get('name', ''))} {(role.get('practitioner') or {}).get('display', '')}".strip()
        )
        out.append(schedule)
    return out


def demo_policies(city: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One booking policy (Basic) per hospital and community health centre of ``city``."""
    out = []
    for org in city:
        if org["resourceType"] != "Organization":
            continue
        hospital = org["id"].startswith("org-h")
        policy = BookingPolicy(release_days_ahead=7 if hospital else 3, release_time=time(8))
        out.append({**policy_resource(org["id"], policy), "id": f"booking-policy-{org['id']}"})
    return out
