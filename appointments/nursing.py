"""Mobile nurse-station services: the ward worklist, identifying a patient by wristband or card,
recording vital signs, and medication administration with the double check.

Ward Wi-Fi is unreliable, so every write here is idempotent: the client generates an identifier
for each submission and the store's conditional create (``If-None-Exist: identifier=…``, which
the store serializes) turns a retry into the resource written the first time
(http://hl7.org/fhir/R4/http.html#ccreate). One submission is one transaction.

* Worklist: in-progress Encounters at a ward (or its beds, ``Location.partOf``), each with its
  due Tasks (http://hl7.org/fhir/R4/task.html: active status, ``executionPeriod.start`` within
  the horizon or unset), earliest first.
* Vital signs: Observations per :mod:`appointments.vitals`; implausible values come back as
  warnings, never as a refusal.
* Medication administration (http://hl7.org/fhir/R4/medicationadministration.html) against an
  active MedicationRequest, after the double check: the scanned wristband must identify the
  request's patient and the scanned drug code must be the requested medication. A high-alert
  drug (insulin, anticoagulants, concentrated electrolytes, opioids, cytotoxics, by ATC prefix)
  also needs a second nurse's signature (双人核对): a witness assertion
  (:class:`~ehr.accounts.tokens.WitnessAssertion`) the authorization server issued when the second
  nurse signed in with their own password on the first one's device (``POST /auth/witness``),
  verified by the HTTP layer, for ``administer:MedicationRequest/<id>``. The second nurse is then
  the administration's ``verifier`` performer; the assertion's ``jti`` is recorded as an
  identifier of the administration, so one signature serves one administration only (a retry of
  the same submission is the same administration). A bare ``verifier`` (a Practitioner named by
  the first nurse, with no signature) is refused for a high-alert drug; for other drugs it is
  recorded as given. The due Task for the request is completed with the administration as its
  output.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ehr.accounts.tokens import WitnessAssertion
from ehr.errors import BadRequest, Conflict, Forbidden, Issue, NotFound, Unprocessable
from ehr.store import WriteContext, WriteResult

from .actors import Actor, acting_as
from .checkin import identifier_condition
from .codes import CLIENT_WRITE_SYSTEM, WITNESS_SYSTEM
from .fhirdata import Reader, fmt_instant, parse_instant, ref, ref_id
from .service import Appointments
from .vitals import vital_observation

__all__ = [
    "HIGH_ALERT_ATC",
    "Administration",
    "Identified",
    "VitalsResult",
    "WorklistItem",
    "WITNESS_SYSTEM",
    "administer_medication",
    "administration_purpose",
    "client_identifier",
    "identify_patient",
    "record_vital_signs",
    "recorded_administration",
    "ward_worklist",
]

ACTIVE_TASK = "draft,requested,received,accepted,ready,in-progress"
PERFORM_FUNCTION = "http://terminology.hl7.org/CodeSystem/med-admin-perform-function"
ATC = "http://www.whocc.no/atc"
#: ATC prefixes of high-alert medications that need a second nurse's check
HIGH_ALERT_ATC = ("A10A", "B01A", "B05XA", "N02A", "L01", "H01BA", "C01CA")


def _staff(actor: Actor) -> None:
    if not actor.is_staff:
        raise Forbidden("Nurse-station services are for clinical staff")


def client_identifier(value: str, system: str | None = None) -> dict[str, Any]:
    """The identifier a client generated for one submission (a UUID, typically)."""
    if not value or len(value) > 200:
        raise BadRequest(
            "A client-generated identifier (1-200 characters) is required for idempotent writes"
        )
    return {"system": system or CLIENT_WRITE_SYSTEM, "value": value}


def _once(ctx: WriteContext, resource: dict[str, Any], identifier: dict[str, Any]) -> WriteResult:
    return ctx.conditional_create(
        resource, f"identifier={identifier['system']}|{identifier['value']}"
    )


# -- worklist ------------------------------------------------------------------------------------


@dataclass
class WorklistItem:
    encounter: dict[str, Any]
    patient: dict[str, Any] | None
    tasks: list[dict[str, Any]] = field(default_factory=list)

    @property
    def next_due(self) -> str:
        starts = [((t.get("executionPeriod") or {}).get("start") or "") for t in self.tasks]
        return min(starts) if starts else "9999"


def ward_worklist(
    svc: Appointments, actor: Actor, ward: str, *, horizon_hours: float = 2
) -> list[WorklistItem]:
    """The in-progress Encounters at ``Location/ward`` and its beds, with Tasks due within
    ``horizon_hours`` (overdue ones included), the most urgent patient first."""
    _staff(actor)
    now = svc.now()
    until = now + timedelta(hours=horizon_hours)
    with Reader.open(svc.store) as reader:
        beds = [
            f"Location/{b['id']}"
            for b in reader.find("Location", [("partof", f"Location/{ward}")], limit=500)
        ]
        encounters = reader.find(
            "Encounter",
            [("location", ",".join([f"Location/{ward}", *beds][:100])), ("status", "in-progress")],
            limit=500,
        )
        items = []
        for enc in encounters:
            pid = ref_id(enc.get("subject"), "Patient")
            tasks = [
                t
                for t in reader.find(
                    "Task",
                    [("encounter", f"Encounter/{enc['id']}"), ("status", ACTIVE_TASK)],
                    limit=500,
                )
                if _due(t, until)
            ]
            tasks.sort(key=lambda t: (t.get("executionPeriod") or {}).get("start") or "")
            items.append(WorklistItem(enc, reader.get("Patient", pid) if pid else None, tasks))
    items.sort(key=lambda i: (i.next_due, i.encounter["id"]))
    return items


def _due(task: dict[str, Any], until: datetime) -> bool:
    start = (task.get("executionPeriod") or {}).get("start")
    return start is None or parse_instant(start) <= until


# -- identification ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Identified:
    patient: dict[str, Any]
    encounter: dict[str, Any] | None  # the patient's in-progress Encounter, if any


def _identify(reader: Reader, svc: Appointments, identifier: str) -> Identified:
    cond = identifier_condition(svc, identifier)
    patients = reader.find("Patient", [("identifier", cond)], limit=2)
    encounter = None
    if not patients:  # a wristband may carry the admission's (Encounter) identifier
        encs = reader.find("Encounter", [("identifier", cond)], limit=2)
        if len(encs) == 1:
            encounter = encs[0]
            pid = ref_id(encounter.get("subject"), "Patient")
            p = reader.get("Patient", pid) if pid else None
            patients = [p] if p else []
    if not patients:
        raise NotFound("No patient has that wristband or card identifier")
    if len(patients) > 1:
        raise Conflict(
            "The identifier matches more than one patient: identify by another one",
            "multiple-matches",
        )
    patient = patients[0]
    if encounter is None:
        active = reader.find(
            "Encounter",
            [("subject", f"Patient/{patient['id']}"), ("status", "in-progress")],
            limit=5,
        )
        encounter = active[0] if active else None
    return Identified(patient, encounter)


def identify_patient(svc: Appointments, actor: Actor, identifier: str) -> Identified:
    """The patient (and their current Encounter) a scanned ``system|value`` identifies: a
    medical-record number on a wristband, a health card, an admission number, or a citizen ID
    presented in clear (matched through its keyed hash)."""
    _staff(actor)
    with Reader.open(svc.store) as reader:
        return _identify(reader, svc, identifier)


# -- vital signs ---------------------------------------------------------------------------------


@dataclass
class VitalsResult:
    observations: list[dict[str, Any]]
    warnings: list[Issue]
    repeated: bool  # every Observation already existed: a retried submission


def record_vital_signs(
    svc: Appointments,
    actor: Actor,
    *,
    patient: str,
    readings: dict[str, Any],
    client_id: str,
    encounter: str | None = None,
    effective: datetime | None = None,
    system: str | None = None,
) -> VitalsResult:
    """Record ``readings`` (``{"heart-rate": 72, "blood-pressure": [120, 80], …}``) taken at
    ``effective`` (default now) as one idempotent submission ``client_id``."""
    _staff(actor)
    if not readings:
        raise BadRequest("No readings to record")
    when = effective or svc.now()
    base = client_identifier(client_id, system)
    out: list[dict[str, Any]] = []
    warnings: list[Issue] = []
    outcomes = set()
    with svc.store.write() as ctx, acting_as(actor):
        reader = Reader.of(ctx)
        if reader.get("Patient", patient) is None:
            raise NotFound(f"Patient/{patient} not found")
        if encounter:
            enc = reader.get("Encounter", encounter)
            if enc is None or ref_id(enc.get("subject"), "Patient") != patient:
                raise Unprocessable(
                    f"Encounter/{encounter} is not an encounter of Patient/{patient}",
                    "business-rule",
                )
        for kind in sorted(readings):
            ident = {"system": base["system"], "value": f"{base['value']}/{kind}"}
            obs, issues = vital_observation(
                kind, readings[kind], patient=patient, encounter=encounter, effective=when,
                performer=actor.reference(), identifier=ident,
            )  # fmt: skip
            res = _once(ctx, obs, ident)
            outcomes.add(res.outcome)
            out.append(res.stored().resource())
            warnings += issues
    return VitalsResult(out, warnings, outcomes == {"existing"})


# -- medication administration ---------------------------------------------------------------------


@dataclass
class Administration:
    administration: dict[str, Any]
    repeated: bool
    task: str | None = None  # the Task completed by it


def _med_codes(reader: Reader, request: dict[str, Any]) -> tuple[set[str], set[str]]:
    """(codes as ``code`` and ``system|code``, ATC codes) of the requested medication."""
    concepts = []
    if request.get("medicationCodeableConcept"):
        concepts.append(request["medicationCodeableConcept"])
    idents: list[dict[str, Any]] = []
    mid = ref_id(request.get("medicationReference"), "Medication")
    if mid:
        med = reader.get("Medication", mid)
        if med:
            if med.get("code"):
                concepts.append(med["code"])
            idents = med.get("identifier") or []
    codes, atc = set(), set()
    for c in concepts:
        for cd in c.get("coding") or ():
            if cd.get("code"):
                codes |= {cd["code"], f"{cd.get('system', '')}|{cd['code']}"}
                if cd.get("system") == ATC:
                    atc.add(cd["code"])
    for i in idents:
        if i.get("value"):
            codes |= {i["value"], f"{i.get('system', '')}|{i['value']}"}
    return codes, atc


def administration_purpose(request: str) -> str:
    """The ``purpose`` a witness assertion must carry to sign the double check of giving
    ``MedicationRequest/request``."""
    return f"administer:MedicationRequest/{request}"


def _recorded(reader: Reader, ident: dict[str, Any]) -> dict[str, Any] | None:
    found = reader.find(
        "MedicationAdministration",
        [("identifier", f"{ident['system']}|{ident['value']}")],
        limit=1,
    )
    return found[0] if found else None


def recorded_administration(
    svc: Appointments, actor: Actor, client_id: str, system: str | None = None
) -> Administration | None:
    """The administration already recorded for submission ``client_id`` (a retry), if any."""
    _staff(actor)
    with Reader.open(svc.store) as reader:
        done = _recorded(reader, client_identifier(client_id, system))
    return Administration(done, True) if done is not None else None


def administer_medication(
    svc: Appointments,
    actor: Actor,
    *,
    request: str,
    scanned_patient: str,
    scanned_drug: str,
    client_id: str,
    witness: WitnessAssertion | None = None,
    verifier: str | None = None,
    dose: dict[str, Any] | None = None,
    effective: datetime | None = None,
    system: str | None = None,
) -> Administration:
    """Give the medication of ``MedicationRequest/request``: check that ``scanned_patient``
    (a wristband ``system|value``) is its patient and ``scanned_drug`` (a barcode ``code`` or
    ``system|code``) its drug, then record the MedicationAdministration once for ``client_id``.

    ``witness``: the second nurse's verified signature (required for a high-alert drug; its
    signature, expiry and issuer are the caller's to check, its purpose, witness and single use
    are checked here); ``verifier``: a second nurse named without a signature (other drugs)."""
    _staff(actor)
    if actor.practitioner is None:
        raise Forbidden("Medication is administered by a named practitioner")
    ident = client_identifier(client_id, system)
    now = effective or svc.now()
    with svc.store.write() as ctx, acting_as(actor):
        reader = Reader.of(ctx)
        done_before = _recorded(reader, ident)
        if done_before is not None:
            return Administration(done_before, True)
        mr = reader.get("MedicationRequest", request)
        if mr is None:
            raise NotFound(f"MedicationRequest/{request} not found")
        if mr.get("status") != "active":
            raise Conflict(
                f"MedicationRequest/{request} is {mr.get('status')}, not active", "business-rule"
            )
        pid = ref_id(mr.get("subject"), "Patient")
        who = _identify(reader, svc, scanned_patient)
        if who.patient.get("id") != pid:
            raise Conflict(
                "Double check failed: the wristband is not the patient of this medication order (wrong patient)",
                "business-rule",
            )
        codes, atc = _med_codes(reader, mr)
        if scanned_drug not in codes:
            raise Conflict(
                "Double check failed: the scanned drug is not the ordered medication (wrong drug)",
                "business-rule",
            )
        high_alert = any(a.startswith(HIGH_ALERT_ATC) for a in atc)
        second = _second_nurse(ctx, reader, actor, request, ident, witness, verifier, high_alert)
        performers = [
            {"function": _function("performer"), "actor": ref("Practitioner", actor.practitioner)}
        ]
        if second:
            performers.append(
                {"function": _function("verifier"), "actor": ref("Practitioner", second)}
            )
        admin: dict[str, Any] = {
            "resourceType": "MedicationAdministration",
            "identifier": [ident],
            "status": "completed",
        }
        if witness is not None:
            admin["identifier"].append({"system": WITNESS_SYSTEM, "value": witness.jti})
        for key in ("medicationCodeableConcept", "medicationReference"):
            if mr.get(key):
                admin[key] = mr[key]
        admin["subject"] = ref("Patient", str(pid))
        if mr.get("encounter"):
            admin["context"] = mr["encounter"]
        admin["effectiveDateTime"] = fmt_instant(now)
        admin["performer"] = performers
        admin["request"] = ref("MedicationRequest", request)
        dosage = dose or _dose_of(mr)
        if dosage:
            admin["dosage"] = dosage
        res = _once(ctx, admin, ident)
        done = res.stored().resource()
        task_id = None
        if res.created:
            task_id = _complete_task(ctx, reader, request, done["id"], now)
        return Administration(done, res.outcome == "existing", task_id)


def _second_nurse(
    ctx: WriteContext,
    reader: Reader,
    actor: Actor,
    request: str,
    ident: dict[str, Any],
    witness: WitnessAssertion | None,
    verifier: str | None,
    high_alert: bool,
) -> str | None:
    """The Practitioner id of the double check's second nurse (None: there is none), after
    the checks: a high-alert drug needs a witness assertion for this order, by someone other
    than the nurse giving it, not used for another administration."""
    if witness is None:
        if high_alert:
            raise Conflict(
                "High-alert medication: a second nurse must verify (双人核对) by signing with "
                "their own password: give verifierAssertion",
                "business-rule",
            )
        if verifier and reader.get("Practitioner", verifier) is None:
            raise Unprocessable(f"Verifier Practitioner/{verifier} not found", "not-found")
        return verifier
    if witness.purpose != administration_purpose(request):
        raise Conflict(
            "Double check failed: the second nurse's signature is for another order "
            "(witness purpose)",
            "business-rule",
        )
    if verifier and verifier != witness.practitioner:
        raise Unprocessable(
            "verifier names another Practitioner than the one who signed (verifierAssertion)",
            "invalid",
        )
    if witness.practitioner == actor.practitioner:
        raise Conflict(
            "Double check failed: the second nurse must be someone other than the nurse giving "
            "the medication (witness is the acting nurse)",
            "business-rule",
        )
    if reader.get("Practitioner", witness.practitioner) is None:
        raise Unprocessable(f"Verifier Practitioner/{witness.practitioner} not found", "not-found")
    condition = [("identifier", f"{WITNESS_SYSTEM}|{witness.jti}")]
    ctx.lock_condition("MedicationAdministration", condition)  # one administration per signature
    for used in reader.find("MedicationAdministration", condition, limit=2):
        if ident not in [
            {"system": i.get("system"), "value": i.get("value")}
            for i in used.get("identifier") or ()
        ]:
            raise Conflict(
                "Double check failed: the second nurse's signature was already used for another "
                "administration (witness reused); the second nurse must sign again",
                "business-rule",
            )
    return witness.practitioner


def _function(code: str) -> dict[str, Any]:
    return {"coding": [{"system": PERFORM_FUNCTION, "code": code}]}


def _dose_of(mr: dict[str, Any]) -> dict[str, Any] | None:
    for di in mr.get("dosageInstruction") or ():
        for dr in di.get("doseAndRate") or ():
            if dr.get("doseQuantity"):
                out: dict[str, Any] = {"dose": dr["doseQuantity"]}
                if di.get("route"):
                    out["route"] = di["route"]
                if di.get("text"):
                    out["text"] = di["text"]
                return out
    return None


def _complete_task(
    ctx: WriteContext, reader: Reader, request: str, admin_id: str, now: datetime
) -> str | None:
    tasks = reader.find(
        "Task", [("focus", f"MedicationRequest/{request}"), ("status", ACTIVE_TASK)], limit=50
    )
    if not tasks:
        return None
    tasks.sort(key=lambda t: (t.get("executionPeriod") or {}).get("start") or "")
    task = tasks[0]
    task["status"] = "completed"
    task["lastModified"] = fmt_instant(now)
    task["output"] = [
        {
            "type": {"text": "MedicationAdministration"},
            "valueReference": ref("MedicationAdministration", admin_id),
        }
    ]
    ctx.update("Task", task["id"], task, validate=False)
    return str(task["id"])
