"""What a counter terminal is told about the person who tapped: a masked name and the day's
appointments, nothing more.

Appointment: http://hl7.org/fhir/R4/appointment.html (search by ``patient`` and ``date``,
Appointment.start). Names of the department (HealthcareService) and the practitioner
(PractitionerRole -> Practitioner, or Practitioner) are read from the store; a display already on
the reference wins.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from ehr.errors import FhirError
from ehr.model import loads
from ehr.store import Store

__all__ = ["VISIBLE_STATUSES", "appointments_between", "mask_name", "name_text", "resolve_patient"]

#: the appointment statuses a terminal lists (the day's bookings and those checked in already)
VISIBLE_STATUSES = ("pending", "booked", "arrived", "checked-in")


def name_text(resource: dict[str, Any] | None) -> str:
    """The first name of a Patient or Practitioner as one string (``text`` or family+given)."""
    names = (resource or {}).get("name") or [{}]
    first = names[0] if isinstance(names[0], dict) else {}
    text = first.get("text")
    if text:
        return str(text)
    family = str(first.get("family") or "")
    given = "".join(str(g) for g in first.get("given") or ())
    if family and given and (family + given).isascii():
        return f"{given} {family}"
    return family + given


def mask_name(patient: dict[str, Any] | None) -> str:
    """张小伟 -> 张*伟, 张伟 -> 张*, Wei Zhang -> W** Z****: what a counter screen shows."""
    full = name_text(patient).strip()
    if not full:
        return "*"
    if " " in full:
        return " ".join(w[0] + "*" * (len(w) - 1) for w in full.split())
    if len(full) <= 2:
        return full[0] + "*"
    return full[0] + "*" * (len(full) - 2) + full[-1]


def _read(store: Store, reference: str | None) -> dict[str, Any] | None:
    if not reference or reference.count("/") != 1:
        return None
    rtype, rid = reference.split("/")
    try:
        return store.read(rtype, rid).resource()
    except FhirError:
        return None


def resolve_patient(store: Store, patient_id: str, hops: int = 3) -> dict[str, Any] | None:
    """The Patient, following ``link`` ``replaced-by`` (a merged record) up to ``hops`` times;
    None when it does not exist or was deleted."""
    res = _read(store, f"Patient/{patient_id}")
    for _ in range(hops):
        if res is None or res.get("active", True):
            break
        nxt = next(
            (
                (link.get("other") or {}).get("reference")
                for link in res.get("link") or ()
                if link.get("type") == "replaced-by"
            ),
            None,
        )
        if not nxt:
            break
        res = _read(store, nxt) or res
    return res


def _actors(appt: dict[str, Any]) -> Iterable[dict[str, Any]]:
    for p in appt.get("participant") or ():
        actor = p.get("actor") if isinstance(p, dict) else None
        if isinstance(actor, dict):
            yield actor


def _department(store: Store, appt: dict[str, Any]) -> str:
    for actor in _actors(appt):
        ref = str(actor.get("reference") or "")
        if ref.startswith("HealthcareService/"):
            if actor.get("display"):
                return str(actor["display"])
            svc = _read(store, ref)
            if svc and svc.get("name"):
                return str(svc["name"])
    for st in appt.get("serviceType") or ():
        if st.get("text"):
            return str(st["text"])
        for c in st.get("coding") or ():
            if c.get("display") or c.get("code"):
                return str(c.get("display") or c.get("code"))
    return ""


def _practitioner(store: Store, appt: dict[str, Any]) -> str:
    for actor in _actors(appt):
        ref = str(actor.get("reference") or "")
        if not ref.startswith(("Practitioner/", "PractitionerRole/")):
            continue
        if actor.get("display"):
            return str(actor["display"])
        res = _read(store, ref)
        if res and ref.startswith("PractitionerRole/"):
            res = _read(store, (res.get("practitioner") or {}).get("reference"))
        if res:
            return name_text(res)
    return ""


def appointments_between(
    store: Store, patient_id: str, start: datetime, end: datetime
) -> list[dict[str, Any]]:
    """``[{id, time, department, practitioner, status}]`` of the Patient's appointments that
    start in ``[start, end)`` (aware datetimes), in a :data:`VISIBLE_STATUSES` status, by time."""
    page = store.search(
        "Appointment",
        [
            ("patient", f"Patient/{patient_id}"),
            ("date", f"ge{start.isoformat()}"),
            ("date", f"lt{end.isoformat()}"),
            ("status", ",".join(VISIBLE_STATUSES)),
            ("_sort", "date"),
            ("_count", "50"),
        ],
    )
    out = []
    for match in page.matches:
        appt = loads(match.data)
        out.append(
            {
                "id": appt["id"],
                "time": appt.get("start"),
                "department": _department(store, appt),
                "practitioner": _practitioner(store, appt),
                "status": appt.get("status"),
            }
        )
    return out
