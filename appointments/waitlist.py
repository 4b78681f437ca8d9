"""The waitlist (候补): Appointments with ``status = waitlist``
(http://hl7.org/fhir/R4/valueset-appointmentstatus.html).

A waitlist entry names the patient, what they wait for (a PractitionerRole, Practitioner or
HealthcareService participant: a doctor or a whole department) and optionally the periods that
suit them (``requestedPeriod``). When a slot is freed (cancellation, expired hold, reschedule)
the booking rules call :func:`promote` in the same transaction: the earliest entry (by
``created``) whose participants include one of the slot's Schedule actors and whose periods
cover the slot becomes a booking of that slot, checked by the same rules as any booking (an
entry that fails them, e.g. a patient at their limit, is skipped), and the patient is notified.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Any

from ehr.errors import BadRequest, FhirError
from ehr.store import WriteContext

from .actors import Actor, acting_as
from .fhirdata import Reader, fmt_instant, local_day_bounds, parse_instant, ref
from .notify import notify
from .shapes import also_notify, patient_of

if TYPE_CHECKING:
    from .rules import SlotContext
    from .service import Appointments

__all__ = ["join_waitlist", "promote"]


def join_waitlist(
    svc: Appointments,
    actor: Actor | None,
    *,
    patient: str,
    target: str,
    start: date | None = None,
    end: date | None = None,
    comment: str | None = None,
) -> dict[str, Any]:
    """Put ``Patient/patient`` on the waitlist for ``target`` (``PractitionerRole/x``,
    ``Practitioner/x`` or ``HealthcareService/x``), for the days ``start``..``end``."""
    if (
        target.split("/")[0] not in ("PractitionerRole", "Practitioner", "HealthcareService")
        or "/" not in target
    ):
        raise BadRequest(
            "A waitlist target is a PractitionerRole, Practitioner or HealthcareService reference"
        )
    now = svc.now()
    appt: dict[str, Any] = {
        "resourceType": "Appointment",
        "status": "waitlist",
        "created": fmt_instant(now),
        "participant": [
            {"actor": ref("Patient", patient), "required": "required", "status": "needs-action"},
            {"actor": {"reference": target}, "required": "required", "status": "needs-action"},
        ],
    }
    if start or end:
        period: dict[str, Any] = {}
        if start:
            period["start"] = fmt_instant(local_day_bounds(start)[0])
        if end:
            period["end"] = fmt_instant(local_day_bounds(end)[1])
        appt["requestedPeriod"] = [period]
    if comment:
        appt["comment"] = comment
    with svc.store.write() as ctx, acting_as(actor):
        res = ctx.create(appt)
    return res.stored().resource()


def _fits(entry: dict[str, Any], sc: SlotContext) -> bool:
    periods = entry.get("requestedPeriod") or []
    if not periods:
        return True
    start = sc.start
    for p in periods:
        lo = parse_instant(p["start"]) if p.get("start") else None
        hi = parse_instant(p["end"]) if p.get("end") else None
        if (lo is None or lo <= start) and (hi is None or start < hi):
            return True
    return False


def promote(svc: Appointments, ctx: WriteContext, sc: SlotContext) -> str | None:
    """Give the freed slot ``sc`` to the first fitting waitlist entry; returns its id."""
    actors = [a["reference"] for a in (sc.schedule or {}).get("actor") or () if a.get("reference")]
    if not actors:
        return None
    reader = Reader.of(ctx)
    entries = reader.find(
        "Appointment", [("status", "waitlist"), ("actor", ",".join(actors))], limit=500
    )
    entries.sort(key=lambda e: (e.get("created") or "", e.get("id") or ""))
    for entry in entries:
        if not _fits(entry, sc):
            continue
        booked = {k: v for k, v in entry.items() if k != "meta"}
        booked["status"] = "booked"
        booked["slot"] = [ref("Slot", sc.rid)]
        try:
            with ctx.conn.begin_nested(), acting_as(Actor.system()):
                res = ctx.update("Appointment", entry["id"], booked, validate=False)
        except FhirError:
            continue
        done = res.stored().resource()
        notify(
            ctx,
            svc.sender,
            patient=str(patient_of(done)),
            text=f"候补成功：已为您预约 {sc.slot.get('comment', '')}（{sc.slot['start']}），请按时就诊；如不需要请及时取消。",
            category="waitlist-booked",
            about=[f"Appointment/{entry['id']}", f"Slot/{sc.rid}"],
            also=also_notify(done),
            now=svc.now,
        )
        return str(entry["id"])
    return None
