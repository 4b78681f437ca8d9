"""Doctor workstation services: today's clinic list, results over time for trend charts, and
writing an Encounter note and orders.

* Clinic list: the sessions a PractitionerRole holds on a day (from its Schedules' rules and the
  hospital calendar) with their queues (:mod:`appointments.checkin`).
* Results over time: the patient's Observations of some codes (LOINC by default) as series of
  (time, value), oldest first; a blood-pressure panel gives one series per component.
* Note: a DocumentReference (http://hl7.org/fhir/R4/documentreference.html, LOINC 11506-3
  Progress note) on the Encounter with the text as a UTF-8 attachment; saved by a conditional
  update on the client's identifier, so saving again replaces the note (one new version) and a
  retried save changes nothing.
* Orders: ServiceRequest (lab, imaging, procedure) and MedicationRequest resources
  (http://hl7.org/fhir/R4/servicerequest.html, medicationrequest.html) created once per client
  identifier; a medication order on an inpatient Encounter also creates the nurses' Task
  (``fulfill``, focus = the order, due at ``first_due``) for the ward worklist.

The patient summary view belongs to the record-summary (bundles) work and is not repeated here.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from ehr.errors import BadRequest, Forbidden, NotFound

from .actors import Actor, acting_as
from .availability import availability_of
from .checkin import QueueView, queue_in
from .fhirdata import Reader, fmt_instant, parse_instant, ref, ref_id
from .nursing import client_identifier
from .policy import load_policy
from .service import Appointments
from .vitals import LOINC

__all__ = [
    "ClinicSession",
    "Order",
    "Series",
    "clinic_list",
    "place_orders",
    "results_over_time",
    "write_note",
]


def _clinician(actor: Actor) -> None:
    if actor.kind != "clinician" or not actor.practitioner:
        raise Forbidden("Workstation services are for clinicians")


@dataclass
class ClinicSession:
    schedule: str
    session: str
    start: str
    end: str
    queue: QueueView


def clinic_list(
    svc: Appointments, actor: Actor, day: date | None = None, *, role: str | None = None
) -> list[ClinicSession]:
    """The clinic sessions of ``PractitionerRole/role`` (default: the actor's) on ``day``
    (default today), in time order, each with its queue."""
    _clinician(actor)
    role = role or actor.role
    if not role:
        raise BadRequest("Which PractitionerRole's clinic? (the actor has none)")
    day = day or svc.now().date()
    out = []
    with Reader.open(svc.store) as reader:
        for sched in reader.find(
            "Schedule", [("actor", f"PractitionerRole/{role}"), ("active", "true")], limit=100
        ):
            av = availability_of(sched)
            if av is None:
                continue
            policy = load_policy(reader, av.organization)
            for s in av.sessions_on(day, policy.closures, policy.extra_days):
                out.append(
                    ClinicSession(sched["id"], s.code, s.start.isoformat(), s.end.isoformat(),
                                  queue_in(reader, sched["id"], day, s.code))
                )  # fmt: skip
    out.sort(key=lambda c: (c.start, c.schedule))
    return out


@dataclass
class Series:
    code: str
    display: str
    unit: str
    points: list[tuple[str, float]] = field(default_factory=list)


def _code_param(code: str) -> str:
    return code if "|" in code else f"{LOINC}|{code}"


def results_over_time(
    svc: Appointments,
    actor: Actor,
    patient: str,
    codes: list[str],
    *,
    start: datetime | None = None,
    end: datetime | None = None,
) -> list[Series]:
    """Series of the patient's numeric results for ``codes`` (bare codes are LOINC), oldest
    first, one per code (and per component of a panel)."""
    _clinician(actor)
    if not codes:
        raise BadRequest("Which results? Give one or more codes")
    params = [("subject", f"Patient/{patient}"), ("code", ",".join(_code_param(c) for c in codes))]
    if start:
        params.append(("date", f"ge{fmt_instant(start)}"))
    if end:
        params.append(("date", f"le{fmt_instant(end)}"))
    with Reader.open(svc.store) as reader:
        observations = reader.find("Observation", params, limit=5000)
    series: dict[str, Series] = {}

    def add(concept: dict[str, Any], qty: dict[str, Any] | None, when: str) -> None:
        if not qty or not isinstance(qty.get("value"), int | float):
            return
        coding = (concept.get("coding") or [{}])[0]
        key = coding.get("code", "?")
        s = series.get(key)
        if s is None:
            s = series[key] = Series(
                key,
                coding.get("display") or concept.get("text") or key,
                qty.get("code") or qty.get("unit") or "",
            )
        s.points.append((when, float(qty["value"])))

    for o in observations:
        if o.get("status") in ("entered-in-error", "cancelled"):
            continue
        when = (
            o.get("effectiveDateTime")
            or (o.get("effectivePeriod") or {}).get("start")
            or o.get("issued")
        )
        if not when:
            continue
        add(o.get("code") or {}, o.get("valueQuantity"), when)
        for comp in o.get("component") or ():
            add(comp.get("code") or {}, comp.get("valueQuantity"), when)
    for s in series.values():
        s.points.sort(key=lambda p: parse_instant(p[0]))
    return sorted(series.values(), key=lambda s: s.code)


def _encounter(reader: Reader, encounter: str) -> dict[str, Any]:
    enc = reader.get("Encounter", encounter)
    if enc is None:
        raise NotFound(f"Encounter/{encounter} not found")
    return enc


def write_note(
    svc: Appointments,
    actor: Actor,
    encounter: str,
    text: str,
    *,
    client_id: str,
    title: str = "门诊病历",
    final: bool = True,
) -> dict[str, Any]:
    """Save the doctor's note on ``Encounter/encounter`` (create, or replace the note saved
    before under ``client_id``)."""
    _clinician(actor)
    if not text.strip():
        raise BadRequest("The note is empty")
    ident = client_identifier(client_id)
    with svc.store.write() as ctx, acting_as(actor):
        enc = _encounter(Reader.of(ctx), encounter)
        pid = ref_id(enc.get("subject"), "Patient")
        doc: dict[str, Any] = {
            "resourceType": "DocumentReference",
            "identifier": [ident],
            "status": "current",
            "docStatus": "final" if final else "preliminary",
            "type": {
                "coding": [{"system": LOINC, "code": "11506-3", "display": "Progress note"}],
                "text": title,
            },
            "subject": ref("Patient", str(pid)),
            "date": fmt_instant(svc.now()),
            "author": [actor.reference() or ref("Practitioner", str(actor.practitioner))],
            "description": title,
            "content": [
                {
                    "attachment": {
                        "contentType": "text/plain; charset=utf-8",
                        "language": "zh-CN",
                        "data": base64.b64encode(text.encode("utf-8")).decode("ascii"),
                        "title": title,
                    }
                }
            ],
            "context": {"encounter": [ref("Encounter", encounter)]},
        }
        if enc.get("period"):
            doc["context"]["period"] = enc["period"]
        query = f"identifier={ident['system']}|{ident['value']}"
        ctx.lock_condition(
            "DocumentReference", [("identifier", f"{ident['system']}|{ident['value']}")]
        )
        prev = Reader.of(ctx).find(
            "DocumentReference", [("identifier", f"{ident['system']}|{ident['value']}")], limit=2
        )
        if prev:
            old = {k: v for k, v in prev[0].items() if k not in ("meta", "id", "date")}
            new = {k: v for k, v in doc.items() if k != "date"}
            if old == new:
                return prev[0]
        return ctx.conditional_update("DocumentReference", query, doc).stored().resource()


@dataclass(frozen=True)
class Order:
    """One order. ``kind``: lab | imaging | procedure (a ServiceRequest) or medication (a
    MedicationRequest). ``code`` is ``system|code`` (or a bare LOINC code for lab);
    ``dose`` / ``route`` / ``frequency_text`` describe a medication."""

    kind: str
    code: str
    display: str
    dose: dict[str, Any] | None = None
    route: str | None = None
    instructions: str | None = None
    first_due: datetime | None = None


_CATEGORY = {
    "lab": ("http://snomed.info/sct", "108252007", "Laboratory procedure"),
    "imaging": ("http://snomed.info/sct", "363679005", "Imaging"),
    "procedure": ("http://snomed.info/sct", "387713003", "Surgical procedure"),
}


def _concept(code: str, display: str, default_system: str) -> dict[str, Any]:
    system, sep, value = code.partition("|")
    if not sep:
        system, value = default_system, code
    return {"coding": [{"system": system, "code": value, "display": display}], "text": display}


def place_orders(
    svc: Appointments, actor: Actor, encounter: str, orders: list[Order], *, client_id: str
) -> list[dict[str, Any]]:
    """Create ``orders`` for the patient of ``Encounter/encounter``, all in one transaction and
    each at most once (identifier ``client_id/i``)."""
    _clinician(actor)
    if not orders:
        raise BadRequest("No orders")
    base = client_identifier(client_id)
    now = svc.now()
    out = []
    with svc.store.write() as ctx, acting_as(actor):
        reader = Reader.of(ctx)
        enc = _encounter(reader, encounter)
        pid = str(ref_id(enc.get("subject"), "Patient"))
        inpatient = (enc.get("class") or {}).get("code") in ("IMP", "ACUTE", "NONAC")
        requester = actor.reference() or ref("Practitioner", str(actor.practitioner))
        for i, o in enumerate(orders, 1):
            ident = {"system": base["system"], "value": f"{base['value']}/{i}"}
            cond = f"identifier={ident['system']}|{ident['value']}"
            if o.kind == "medication":
                res = _medication_request(o, ident, pid, encounter, requester, now)
            elif o.kind in _CATEGORY:
                system, code, display = _CATEGORY[o.kind]
                res = {
                    "resourceType": "ServiceRequest",
                    "identifier": [ident],
                    "status": "active",
                    "intent": "order",
                    "category": [
                        {"coding": [{"system": system, "code": code, "display": display}]}
                    ],
                    "code": _concept(
                        o.code, o.display, LOINC if o.kind == "lab" else "http://snomed.info/sct"
                    ),
                    "subject": ref("Patient", pid),
                    "encounter": ref("Encounter", encounter),
                    "authoredOn": fmt_instant(now),
                    "requester": requester,
                }
                if o.instructions:
                    res["patientInstruction"] = o.instructions
            else:
                raise BadRequest(
                    f"Unknown order kind {o.kind!r}: lab, imaging, procedure or medication"
                )
            made = ctx.conditional_create(res, cond)
            stored = made.stored().resource()
            out.append(stored)
            if made.created and o.kind == "medication" and inpatient:
                task = {
                    "resourceType": "Task",
                    "identifier": [{"system": ident["system"], "value": f"{ident['value']}/task"}],
                    "status": "requested",
                    "intent": "order",
                    "code": {
                        "coding": [
                            {
                                "system": "http://hl7.org/fhir/CodeSystem/task-code",
                                "code": "fulfill",
                            }
                        ]
                    },
                    "description": f"给药：{o.display}",
                    "focus": ref("MedicationRequest", stored["id"]),
                    "for": ref("Patient", pid),
                    "encounter": ref("Encounter", encounter),
                    "executionPeriod": {"start": fmt_instant(o.first_due or now)},
                    "authoredOn": fmt_instant(now),
                    "requester": requester,
                }
                ctx.create(task)
    return out


def _medication_request(
    o: Order,
    ident: dict[str, Any],
    pid: str,
    encounter: str,
    requester: dict[str, Any],
    now: datetime,
) -> dict[str, Any]:
    dosage: dict[str, Any] = {}
    if o.instructions:
        dosage["text"] = o.instructions
    if o.route:
        dosage["route"] = _concept(o.route, o.route, "http://snomed.info/sct")
    if o.dose:
        dosage["doseAndRate"] = [{"doseQuantity": o.dose}]
    res: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "identifier": [ident],
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": _concept(o.code, o.display, "http://www.whocc.no/atc"),
        "subject": ref("Patient", pid),
        "encounter": ref("Encounter", encounter),
        "authoredOn": fmt_instant(now),
        "requester": requester,
    }
    if dosage:
        res["dosageInstruction"] = [dosage]
    return res
