"""$validate (ehr.operations.validate) and the invariants it evaluates (ehr.invariants)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from ehr.definitions import load_table
from ehr.definitions.generate import DEFAULT_SOURCE
from ehr.errors import BadRequest, Conflict, FhirError, NotFound
from ehr.invariants import _check, check_resource, constraints_of, unsupported_constraints
from ehr.operations.validate import (
    VITAL_SIGNS,
    parse_validate_parameters,
    validate_operation,
)
from ehr.store import PendingWrite, Store, WriteContext
from ehr.validation import validate_resource

EXAMPLES = DEFAULT_SOURCE / "examples"
EXAMPLE_FILES = sorted(EXAMPLES.glob("*.json")) if EXAMPLES.is_dir() else []
needs_source = pytest.mark.skipif(
    not DEFAULT_SOURCE.is_dir(), reason=f"FHIR definitions not found at {DEFAULT_SOURCE}"
)

PAT = {"reference": "Patient/p1"}
LOINC_WEIGHT = {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]}
UCUM = "http://unitsofmeasure.org"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VER = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
ALLERGY_CLINICAL = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
ALLERGY_VER = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"


def _cc(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


def _obs(**extra: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final", "code": LOINC_WEIGHT, **extra}


def _condition(**extra: Any) -> dict[str, Any]:
    return {"resourceType": "Condition", "subject": PAT, **extra}


def _allergy(**extra: Any) -> dict[str, Any]:
    return {"resourceType": "AllergyIntolerance", "patient": PAT, **extra}


def _appointment(**extra: Any) -> dict[str, Any]:
    base = {
        "resourceType": "Appointment",
        "status": "booked",
        "start": "2024-05-01T09:00:00+08:00",
        "end": "2024-05-01T09:15:00+08:00",
        "participant": [{"actor": PAT, "status": "accepted"}],
    }
    return {**base, **extra}


def _outcome(resource: Any, rtype: str | None = None, **kw: Any) -> dict[str, Any]:
    rt = rtype or resource["resourceType"]
    return validate_operation(None, rt, resource, **kw)


def _keyed(outcome: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """The issues of an outcome about constraint ``key``."""
    return [i for i in outcome["issue"] if i["diagnostics"].startswith(key + ":")]


def _errors(outcome: dict[str, Any]) -> list[dict[str, Any]]:
    return [i for i in outcome["issue"] if i["severity"] in ("error", "fatal")]


def _where(outcome: dict[str, Any]) -> set[tuple[str, str]]:
    """(code, expression) of every issue."""
    return {(i["code"], e) for i in outcome["issue"] for e in i.get("expression", [])}


def _all_ok(outcome: dict[str, Any]) -> bool:
    return outcome["issue"] == [
        {"severity": "information", "code": "informational", "diagnostics": "All OK"}
    ]


# --- each invariant: violated -> its key at its place; satisfied -> nothing ---------------------

# (key, location, violating resource, satisfying resource)
CASES: list[tuple[str, str, dict[str, Any], dict[str, Any]]] = [
    (
        "pat-1",
        "Patient.contact[1]",
        {"resourceType": "Patient", "contact": [{"name": {"family": "Li"}}, {"gender": "male"}]},
        {"resourceType": "Patient", "contact": [{"name": {"family": "Li"}}, {"telecom": [{"system": "phone", "value": "1"}]}]},
    ),
    (
        "obs-6",
        "Observation",
        _obs(valueQuantity={"value": 70}, dataAbsentReason={"text": "not asked"}),
        _obs(dataAbsentReason={"text": "not asked"}),
    ),
    (
        "obs-7",
        "Observation",
        _obs(valueQuantity={"value": 70}, component=[{"code": LOINC_WEIGHT, "valueQuantity": {"value": 70}}]),
        _obs(valueQuantity={"value": 70}, component=[{"code": _cc("http://loinc.org", "8302-2"), "valueQuantity": {"value": 1}}]),
    ),
    (
        "obs-3",
        "Observation.referenceRange[0]",
        _obs(referenceRange=[{"text": "normal"}, {"type": {"text": "x"}}][::-1]),
        _obs(referenceRange=[{"text": "normal"}]),
    ),
    (
        "per-1",
        "Encounter.period",
        {"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"}, "period": {"start": "2024-05-02", "end": "2024-05-01"}},
        {"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"}, "period": {"start": "2024-05-01", "end": "2024-05-02"}},
    ),
    (
        "per-1",
        "Patient.name[0].period",
        {"resourceType": "Patient", "name": [{"family": "Li", "period": {"start": "2020-01-01T10:00:00Z", "end": "2019-01-01T10:00:00Z"}}]},
        # different precisions cannot be compared: the constraint does not fail
        {"resourceType": "Patient", "name": [{"family": "Li", "period": {"start": "2020", "end": "2020-01-01T10:00:00Z"}}]},
    ),
    (
        "qty-3",
        "Observation.valueQuantity",
        _obs(valueQuantity={"value": 70, "code": "kg"}),
        _obs(valueQuantity={"value": 70, "code": "kg", "system": UCUM}),
    ),
    (
        "sqty-1",
        "Observation.referenceRange[0].low",
        _obs(referenceRange=[{"low": {"value": 3, "comparator": "<"}}]),
        _obs(referenceRange=[{"low": {"value": 3}}]),
    ),
    (
        "rng-2",
        "Observation.valueRange",
        _obs(valueRange={"low": {"value": 5, "unit": "kg"}, "high": {"value": 3, "unit": "kg"}}),
        _obs(valueRange={"low": {"value": 3, "unit": "kg"}, "high": {"value": 5, "unit": "kg"}}),
    ),
    (
        "ref-1",
        "Observation.subject",
        _obs(subject={"reference": "#p1"}),
        _obs(subject={"reference": "#p1"}, contained=[{"resourceType": "Patient", "id": "p1"}]),
    ),
    (
        "dom-3",
        "Observation",
        _obs(subject=PAT, contained=[{"resourceType": "Patient", "id": "p1"}]),
        _obs(subject={"reference": "#p1"}, contained=[{"resourceType": "Patient", "id": "p1"}]),
    ),
    (
        "dom-4",
        "Observation",
        _obs(subject={"reference": "#p1"}, contained=[{"resourceType": "Patient", "id": "p1", "meta": {"versionId": "2"}}]),
        _obs(subject={"reference": "#p1"}, contained=[{"resourceType": "Patient", "id": "p1", "meta": {"tag": [{"code": "x"}]}}]),
    ),
    (
        "pat-1",  # inside a contained resource
        "Observation.contained[0].contact[0]",
        _obs(subject={"reference": "#p1"}, contained=[{"resourceType": "Patient", "id": "p1", "contact": [{"gender": "male"}]}]),
        _obs(subject={"reference": "#p1"}, contained=[{"resourceType": "Patient", "id": "p1", "contact": [{"name": {"text": "Li"}}]}]),
    ),
    (
        "ext-1",
        "Patient.extension[0]",
        {"resourceType": "Patient", "extension": [{"url": "http://x.org/a", "valueString": "a", "extension": [{"url": "b", "valueString": "b"}]}]},
        {"resourceType": "Patient", "extension": [{"url": "http://x.org/a", "extension": [{"url": "b", "valueString": "b"}]}]},
    ),
    (
        "ext-1",  # the extension of a primitive
        "Patient.birthDate.extension[0]",
        {"resourceType": "Patient", "birthDate": "1970-01-01", "_birthDate": {"extension": [{"url": "http://x.org/t"}]}},
        {"resourceType": "Patient", "birthDate": "1970-01-01", "_birthDate": {"extension": [{"url": "http://x.org/t", "valueTime": "10:00:00"}]}},
    ),
    (
        "cpt-2",
        "Patient.telecom[0]",
        {"resourceType": "Patient", "telecom": [{"value": "13800000000"}]},
        {"resourceType": "Patient", "telecom": [{"system": "phone", "value": "13800000000"}]},
    ),
    (
        "con-3",
        "Condition",
        _condition(category=[_cc("http://terminology.hl7.org/CodeSystem/condition-category", "problem-list-item")]),
        _condition(category=[_cc("http://terminology.hl7.org/CodeSystem/condition-category", "problem-list-item")], clinicalStatus=_cc(CLINICAL, "active")),
    ),
    (
        "con-4",
        "Condition",
        _condition(clinicalStatus=_cc(CLINICAL, "active"), abatementDateTime="2024-01-01"),
        _condition(clinicalStatus=_cc(CLINICAL, "resolved"), abatementDateTime="2024-01-01"),
    ),
    (
        "con-5",
        "Condition",
        _condition(clinicalStatus=_cc(CLINICAL, "active"), verificationStatus=_cc(CONDITION_VER, "entered-in-error")),
        _condition(verificationStatus=_cc(CONDITION_VER, "entered-in-error")),
    ),
    (
        "con-1",
        "Condition.stage[0]",
        _condition(clinicalStatus=_cc(CLINICAL, "active"), stage=[{"type": {"text": "clinical"}}]),
        _condition(clinicalStatus=_cc(CLINICAL, "active"), stage=[{"summary": {"text": "II"}}]),
    ),
    (
        "age-1",
        "Condition.onsetAge",
        _condition(clinicalStatus=_cc(CLINICAL, "active"), onsetAge={"value": 30, "unit": "a", "system": UCUM}),
        _condition(clinicalStatus=_cc(CLINICAL, "active"), onsetAge={"value": 30, "unit": "a", "system": UCUM, "code": "a"}),
    ),
    (
        "ait-1",
        "AllergyIntolerance",
        _allergy(verificationStatus=_cc(ALLERGY_VER, "confirmed")),
        _allergy(verificationStatus=_cc(ALLERGY_VER, "entered-in-error")),
    ),
    (
        "ait-2",
        "AllergyIntolerance",
        _allergy(clinicalStatus=_cc(ALLERGY_CLINICAL, "active"), verificationStatus=_cc(ALLERGY_VER, "entered-in-error")),
        _allergy(clinicalStatus=_cc(ALLERGY_CLINICAL, "active"), verificationStatus=_cc(ALLERGY_VER, "confirmed")),
    ),
    (
        "app-1",
        "Appointment.participant[1]",
        _appointment(participant=[{"actor": PAT, "status": "accepted"}, {"status": "needs-action"}]),
        _appointment(participant=[{"actor": PAT, "status": "accepted"}, {"type": [{"text": "translator"}], "status": "needs-action"}]),
    ),
    (
        "app-2",
        "Appointment",
        {k: v for k, v in _appointment(status="proposed").items() if k != "end"},
        {k: v for k, v in _appointment(status="proposed").items() if k not in ("start", "end")},
    ),
    (
        "app-3",
        "Appointment",
        {k: v for k, v in _appointment().items() if k not in ("start", "end")},
        _appointment(),
    ),
    (
        "app-4",
        "Appointment",
        _appointment(cancelationReason={"text": "ill"}),
        _appointment(status="cancelled", cancelationReason={"text": "ill"}),
    ),
    (
        "org-1",
        "Organization",
        {"resourceType": "Organization", "active": True},
        {"resourceType": "Organization", "active": True, "identifier": [{"value": "1"}]},
    ),
    (
        "org-3",
        "Organization.telecom[0]",
        {"resourceType": "Organization", "name": "H", "telecom": [{"system": "phone", "value": "1", "use": "home"}]},
        {"resourceType": "Organization", "name": "H", "telecom": [{"system": "phone", "value": "1", "use": "work"}]},
    ),
    (
        "imm-1",
        "Immunization.education[0]",
        {"resourceType": "Immunization", "status": "completed", "vaccineCode": {"text": "BCG"}, "patient": PAT, "occurrenceDateTime": "2024-01-01", "education": [{"publicationDate": "2020-01-01"}]},
        {"resourceType": "Immunization", "status": "completed", "vaccineCode": {"text": "BCG"}, "patient": PAT, "occurrenceDateTime": "2024-01-01", "education": [{"documentType": "VIS"}]},
    ),
    (
        "tim-1",
        "MedicationRequest.dosageInstruction[0].timing.repeat",
        {"resourceType": "MedicationRequest", "status": "active", "intent": "order", "medicationCodeableConcept": {"text": "x"}, "subject": PAT, "dosageInstruction": [{"timing": {"repeat": {"duration": 10}}}]},
        {"resourceType": "MedicationRequest", "status": "active", "intent": "order", "medicationCodeableConcept": {"text": "x"}, "subject": PAT, "dosageInstruction": [{"timing": {"repeat": {"duration": 10, "durationUnit": "min"}}}]},
    ),
    (
        "bdl-3",
        "Bundle",
        {"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": {"resourceType": "Patient"}}]},
        {"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}}]},
    ),
    (
        "bdl-1",
        "Bundle",
        {"resourceType": "Bundle", "type": "collection", "total": 1},
        {"resourceType": "Bundle", "type": "searchset", "total": 1},
    ),
    (
        "bdl-7",
        "Bundle",
        {"resourceType": "Bundle", "type": "collection", "entry": [{"fullUrl": "urn:uuid:1", "resource": {"resourceType": "Patient"}}] * 2},
        {"resourceType": "Bundle", "type": "collection", "entry": [{"fullUrl": f"urn:uuid:{i}", "resource": {"resourceType": "Patient"}} for i in (1, 2)]},
    ),
    (
        "pat-1",  # inside a bundled resource
        "Bundle.entry[0].resource.contact[0]",
        {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {"resourceType": "Patient", "contact": [{"gender": "male"}]}}]},
        {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {"resourceType": "Patient", "contact": [{"name": {"text": "Li"}}]}}]},
    ),
]  # fmt: skip

CASE_IDS = [f"{key}@{where}" for key, where, _, _ in CASES]


@pytest.mark.parametrize(("key", "where", "bad", "good"), CASES, ids=CASE_IDS)
def test_violated_invariant_is_reported_at_its_place(
    key: str, where: str, bad: dict[str, Any], good: dict[str, Any]
) -> None:
    outcome = _outcome(bad)
    found = _keyed(outcome, key)
    assert found, outcome
    assert all(i["code"] == "invariant" for i in found)
    assert [where] in [i["expression"] for i in found], found
    severity = {c.key: c.severity for c in _every_constraint()}[key]
    assert {i["severity"] for i in found} == {severity}


@pytest.mark.parametrize(("key", "where", "bad", "good"), CASES, ids=CASE_IDS)
def test_satisfied_invariant_is_silent(
    key: str, where: str, bad: dict[str, Any], good: dict[str, Any]
) -> None:
    outcome = _outcome(good)
    assert not _errors(outcome), outcome
    assert not _keyed(outcome, key)


@pytest.mark.parametrize(("key", "where", "bad", "good"), CASES, ids=CASE_IDS)
def test_direct_evaluation_agrees_with_fhirpathpy(
    key: str, where: str, bad: dict[str, Any], good: dict[str, Any]
) -> None:
    for resource in (bad, good):
        _agree(resource)


def _agree(resource: dict[str, Any]) -> None:
    """The direct evaluation answers as fhirpathpy does, where fhirpathpy can answer (it
    cannot compare Quantities: rng-2)."""
    fast = _check(resource, True, True, direct=True)
    slow = _check(resource, True, True, direct=False)
    assert not [i for i in fast if i.code == "processing"], fast
    failed = {(i.diagnostics.split(":")[0], i.expression) for i in slow if i.code == "processing"}
    assert {k for k, _ in failed} <= {"rng-2"}, slow
    assert [i for i in fast if (i.diagnostics.split(":")[0], i.expression) not in failed] == [
        i for i in slow if i.code != "processing"
    ]


def _every_constraint() -> list[Any]:
    from ehr.invariants import _model

    return [r.constraint for r in _model().rules]


def test_constraints_sit_on_their_types() -> None:
    assert "per-1" in {c.key for c in constraints_of("Period")}
    assert {"qty-3", "sqty-1"} <= {c.key for c in constraints_of("SimpleQuantity")}
    assert {"qty-3", "age-1"} <= {c.key for c in constraints_of("Age")}
    keys = {c.key for c in constraints_of("Patient")}
    assert {"dom-2", "dom-3", "dom-4", "dom-5"} <= keys
    assert "pat-1" not in keys and "dom-6" not in keys  # pat-1 is on Patient.contact
    assert [c.key for c in constraints_of("Patient.contact")] == ["pat-1"]


def test_only_constraints_fhirpathpy_cannot_evaluate_are_skipped() -> None:
    skipped = {c.key: why for c, why in unsupported_constraints()}
    assert set(skipped) == {"ctm-1"}
    assert "resolve()" in skipped["ctm-1"]


def test_skipped_by_policy_are_not_in_the_table() -> None:
    table = load_table("invariants.json")
    keys = {c["key"] for c in table["constraints"]}
    assert set(table["skipped"]) == {"ele-1", "dom-6", "txt-1", "txt-2"}
    assert not keys & set(table["skipped"])
    assert len(keys) > 200


def test_invariants_are_not_part_of_the_write_path() -> None:
    """create/update validate structure and bindings only; $validate adds the invariants."""
    patient = {"resourceType": "Patient", "contact": [{"gender": "male"}]}
    validate_resource(patient)  # no error: pat-1 is not checked on writes
    assert _keyed(_outcome(patient), "pat-1")


def test_evaluation_from_several_threads() -> None:
    from concurrent.futures import ThreadPoolExecutor

    resources = [r for _, _, bad, good in CASES for r in (bad, good)]
    expected = [_check(r, True, True, direct=False) for r in resources]
    with ThreadPoolExecutor(4) as pool:
        runs = list(
            pool.map(lambda _: [_check(r, True, True, direct=False) for r in resources], range(4))
        )
    assert all(run == expected for run in runs)


# --- cardinality --------------------------------------------------------------------------------


def test_every_missing_required_element_is_listed() -> None:
    # fhir.resources alone reports "code" and stops before "status"
    outcome = _outcome({"resourceType": "Observation"})
    assert {("required", "Observation.status"), ("required", "Observation.code")} <= _where(outcome)


def test_missing_required_elements_in_backbone_and_choice() -> None:
    request = {
        "resourceType": "MedicationRequest",
        "status": "active",
        "intent": "order",
        "subject": PAT,
    }
    assert ("required", "MedicationRequest.medication[x]") in _where(_outcome(request))
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [{"request": {"url": "x"}}]}
    assert ("required", "Bundle.entry[0].request.method") in _where(_check_only(bundle))


def test_two_types_of_one_choice() -> None:
    obs = _obs(status=None, valueString="70", valueQuantity={"value": 70})
    del obs["status"]
    where = _where(_outcome(obs))
    assert ("structure", "Observation.valueQuantity") in where
    assert ("required", "Observation.status") in where


def test_required_element_given_only_as_extension_counts() -> None:
    obs = _obs()
    del obs["status"]
    obs["_status"] = {"extension": [{"url": "http://x.org/e", "valueString": "?"}]}
    assert ("required", "Observation.status") not in _where(_check_only(obs))


def _check_only(resource: dict[str, Any]) -> dict[str, Any]:
    return {"issue": [i.to_fhir() for i in check_resource(resource)]}


# --- validate_operation -------------------------------------------------------------------------


def test_several_problems_are_all_listed() -> None:
    patient = {
        "resourceType": "Patient",
        "gender": "banana",
        "birthDate": "1970-13-01",
        "contact": [{"gender": "male"}],
        "telecom": [{"value": "1"}],
        "link": [{"type": "seealso"}],
        "name": [{"family": "Li", "period": {"start": "2020-01-02", "end": "2020-01-01"}}],
    }
    outcome = _outcome(patient)
    where = _where(outcome)
    assert ("code-invalid", "Patient.gender") in where
    assert ("value", "Patient.birthDate") in where
    assert ("required", "Patient.link[0].other") in where
    assert ("invariant", "Patient.contact[0]") in where
    assert ("invariant", "Patient.telecom[0]") in where
    assert ("invariant", "Patient.name[0].period") in where
    assert len(_errors(outcome)) == len(outcome["issue"]) == 6
    for issue in outcome["issue"]:
        assert issue["diagnostics"] and issue["expression"]


def test_no_issue_reported_twice() -> None:
    outcome = _outcome({"resourceType": "Slot", "schedule": {"reference": "Schedule/1"}})
    locations = [e for i in outcome["issue"] for e in i["expression"]]
    assert sorted(locations) == ["Slot.end", "Slot.start", "Slot.status"]


def test_wrong_type_and_bad_id_are_issues_with_the_rest() -> None:
    outcome = _outcome({"resourceType": "Patient", "id": "a b", "gender": "banana"}, "Observation")
    where = _where(outcome)
    assert ("invalid", "resourceType") in where
    assert ("value", "Patient.id") in where
    assert ("code-invalid", "Patient.gender") in where


def test_not_a_resource_is_an_issue() -> None:
    assert _where(_outcome({"name": "x"}, "Patient")) == {("required", "resourceType")}
    assert _errors(_outcome([1], "Patient"))


def test_unknown_type_mode_or_missing_resource_are_request_errors() -> None:
    with pytest.raises(NotFound):
        validate_operation(None, "Banana", {"resourceType": "Banana"})
    with pytest.raises(BadRequest):
        validate_operation(None, "Patient", {"resourceType": "Patient"}, mode="merge")
    with pytest.raises(BadRequest):
        validate_operation(None, "Patient", None)
    with pytest.raises(BadRequest):
        validate_operation(None, "Patient", {"resourceType": "Patient"}, mode="update")


def test_valid_resource_is_all_ok() -> None:
    assert _all_ok(_outcome({"resourceType": "Patient", "name": [{"family": "Li"}]}))


def test_validating_does_not_change_the_resource() -> None:
    resource = CASES[0][2]
    before = copy.deepcopy(resource)
    _outcome(resource, profile=VITAL_SIGNS)
    assert resource == before


@needs_source
@pytest.mark.skipif(not EXAMPLE_FILES, reason=f"no examples in {EXAMPLES}")
@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_official_examples_have_no_errors(path: Path) -> None:
    resource = json.loads(path.read_text(encoding="utf-8"))
    rtype = resource["resourceType"]
    outcome = validate_operation(None, rtype, resource)
    assert _all_ok(outcome), outcome
    core = f"http://hl7.org/fhir/StructureDefinition/{rtype}"
    assert _all_ok(validate_operation(None, rtype, resource, profile=core + "|4.0.1"))
    assert _check(resource, True, True, direct=False) == []


def test_demo_records_validate_and_both_evaluations_agree() -> None:
    from ehr.demo import generate_city

    for resource in generate_city(7, 8):
        assert not _errors(_outcome(resource)), resource
        _agree(resource)


# --- profiles -----------------------------------------------------------------------------------


def _vital(**extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            _cc("http://terminology.hl7.org/CodeSystem/observation-category", "vital-signs")
        ],
        "code": LOINC_WEIGHT,
        "subject": PAT,
        "effectiveDateTime": "2024-05-01T09:00:00+08:00",
        "valueQuantity": {"value": 70, "unit": "kg", "system": UCUM, "code": "kg"},
        **extra,
    }


def test_vital_signs_profile_accepts_a_body_weight() -> None:
    assert _all_ok(_outcome(_vital(), profile=VITAL_SIGNS))
    assert _all_ok(_outcome(_vital(), profile=VITAL_SIGNS + "|4.0.1"))


@needs_source
def test_vital_signs_profile_on_the_official_examples() -> None:
    weight = json.loads((EXAMPLES / "Observation-example.json").read_text(encoding="utf-8"))
    assert _all_ok(_outcome(weight, profile=VITAL_SIGNS))
    glucose = json.loads((EXAMPLES / "Observation-f001.json").read_text(encoding="utf-8"))
    assert _where(_outcome(glucose, profile=VITAL_SIGNS)) == {("required", "Observation.category")}


def test_vital_signs_profile_lists_what_is_missing() -> None:
    obs = _obs(
        code={"text": "weight"}, valueQuantity={"value": 70, "unit": "kg", "system": "urn:x"}
    )
    where = _where(_outcome(obs, profile=VITAL_SIGNS))
    assert {
        ("required", "Observation.category"),
        ("required", "Observation.code"),
        ("required", "Observation.subject"),
        ("required", "Observation.effective[x]"),
        ("required", "Observation.valueQuantity.code"),
        ("value", "Observation.valueQuantity.system"),
    } <= where
    # without the profile, the same Observation is a valid Observation
    assert _all_ok(_outcome(obs))


def test_vital_signs_rules_vs_1_vs_2_vs_3_and_subject() -> None:
    obs = _vital(effectiveDateTime="2024-05", subject={"reference": "Group/1"})
    del obs["valueQuantity"]
    obs["component"] = [{"code": LOINC_WEIGHT}]
    outcome = _outcome(obs, profile=VITAL_SIGNS)
    diagnostics = " ".join(i["diagnostics"] for i in outcome["issue"])
    assert "vs-1" in diagnostics and "vs-3" in diagnostics and "vs-2" not in diagnostics
    assert ("value", "Observation.subject") in _where(outcome)
    del obs["component"]
    assert "vs-2" in " ".join(i["diagnostics"] for i in _outcome(obs, profile=VITAL_SIGNS)["issue"])


def test_vital_signs_profile_is_for_observations() -> None:
    outcome = _outcome({"resourceType": "Patient"}, profile=VITAL_SIGNS)
    assert _where(outcome) == {("invalid", "resourceType")}


def test_core_profile_of_another_type() -> None:
    outcome = _outcome(
        {"resourceType": "Patient"}, profile="http://hl7.org/fhir/StructureDefinition/Observation"
    )
    assert [i["code"] for i in outcome["issue"]] == ["invalid"]


def test_other_profiles_are_not_supported() -> None:
    outcome = _outcome(
        {"resourceType": "Patient"},
        profile="http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient",
    )
    assert [(i["severity"], i["code"]) for i in outcome["issue"]] == [("error", "not-supported")]
    assert "not supported" in outcome["issue"][0]["diagnostics"]


# --- parameters ---------------------------------------------------------------------------------


def test_body_is_the_resource_itself() -> None:
    patient = {"resourceType": "Patient"}
    assert parse_validate_parameters(patient) == (patient, None, None)


def test_body_is_parameters() -> None:
    patient = {"resourceType": "Patient"}
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "resource", "resource": patient},
            {"name": "mode", "valueCode": "create"},
            {"name": "profile", "valueUri": VITAL_SIGNS},
        ],
    }
    assert parse_validate_parameters(body) == (patient, "create", VITAL_SIGNS)
    only_mode = {
        "resourceType": "Parameters",
        "parameter": [{"name": "mode", "valueCode": "delete"}],
    }
    assert parse_validate_parameters(only_mode) == (None, "delete", None)


def test_a_parameters_resource_to_validate() -> None:
    body = {"resourceType": "Parameters", "parameter": [{"name": "x", "valueString": "y"}]}
    assert parse_validate_parameters(body) == (body, None, None)


@pytest.mark.parametrize(
    "parts",
    [
        [{"name": "mode", "valueCode": "create"}, {"name": "mode", "valueCode": "update"}],
        [{"name": "resource"}],
        [{"name": "mode", "valueCode": "create", "valueString": "update"}],
        [{"name": "profile", "valueUri": 3}],
    ],
)
def test_bad_parameters_are_400(parts: list[dict[str, Any]]) -> None:
    with pytest.raises(BadRequest):
        parse_validate_parameters({"resourceType": "Parameters", "parameter": parts})


def test_body_not_an_object_is_400() -> None:
    with pytest.raises(BadRequest):
        parse_validate_parameters([{"resourceType": "Patient"}])


# --- modes, on both databases -------------------------------------------------------------------


def _count(store: Store, rtype: str) -> int:
    return len(store.search(rtype, [("_count", "100")]).matches)


def test_mode_create_tries_the_write_and_keeps_nothing(store: Store) -> None:
    patient = {"resourceType": "Patient", "id": "ignored", "name": [{"family": "Li"}]}
    assert _all_ok(validate_operation(store, "Patient", patient, mode="create"))
    assert _count(store, "Patient") == 0


class _RefuseMen:
    """A write hook with a business rule, to show that mode=create asks the hooks."""

    def before_write(self, ctx: WriteContext, write: PendingWrite) -> None:
        if write.resource is not None and write.resource.get("gender") == "male":
            raise Conflict("no men here", "business-rule")


def test_mode_create_reports_what_a_write_hook_refuses(store: Store) -> None:
    store.hooks.append(_RefuseMen())
    outcome = validate_operation(
        store, "Patient", {"resourceType": "Patient", "gender": "male"}, mode="create"
    )
    assert [(i["code"], i["diagnostics"]) for i in outcome["issue"]] == [
        ("business-rule", "no men here")
    ]
    assert _all_ok(validate_operation(store, "Patient", {"resourceType": "Patient"}, mode="create"))
    assert _count(store, "Patient") == 0


def test_mode_update_needs_the_id_of_the_url(store: Store) -> None:
    created = store.create({"resourceType": "Patient", "name": [{"family": "Li"}]})
    rid = created.rid
    mismatch = validate_operation(
        store, "Patient", {"resourceType": "Patient", "id": "other"}, rid=rid, mode="update"
    )
    assert _where(mismatch) == {("invalid", "Patient.id")}
    missing = validate_operation(
        store, "Patient", {"resourceType": "Patient"}, rid=rid, mode="update"
    )
    assert _where(missing) == {("required", "Patient.id")}
    good = {"resourceType": "Patient", "id": rid, "gender": "female"}
    assert _all_ok(validate_operation(store, "Patient", good, rid=rid, mode="update"))
    current = store.read("Patient", rid)
    assert current.version == 1 and "gender" not in current.resource()


def test_mode_update_lists_content_errors_too(store: Store) -> None:
    rid = store.create({"resourceType": "Patient"}).rid
    outcome = validate_operation(
        store,
        "Patient",
        {"resourceType": "Patient", "id": "x", "contact": [{}, {"gender": "male"}]},
        rid=rid,
        mode="update",
    )
    where = _where(outcome)
    assert ("invalid", "Patient.id") in where and ("invariant", "Patient.contact[1]") in where


def test_mode_delete(store: Store) -> None:
    unknown = validate_operation(store, "Patient", None, rid="nobody", mode="delete")
    assert [(i["severity"], i["code"]) for i in unknown["issue"]] == [("error", "not-found")]
    rid = store.create({"resourceType": "Patient"}).rid
    assert _all_ok(validate_operation(store, "Patient", None, rid=rid, mode="delete"))
    assert store.exists("Patient", rid)  # the trial delete was rolled back
    store.delete("Patient", rid)
    gone = validate_operation(store, "Patient", None, rid=rid, mode="delete")
    assert [(i["severity"], i["code"]) for i in gone["issue"]] == [("information", "deleted")]


def test_mode_delete_reports_what_a_write_hook_refuses(store: Store) -> None:
    class KeepAll:
        def before_write(self, ctx: WriteContext, write: PendingWrite) -> None:
            if write.kind == "delete":
                raise Conflict(f"{write.rtype}/{write.rid} is kept", "business-rule")

    rid = store.create({"resourceType": "Patient"}).rid
    store.hooks.append(KeepAll())
    outcome = validate_operation(store, "Patient", None, rid=rid, mode="delete")
    assert [i["code"] for i in outcome["issue"]] == ["business-rule"]
    assert store.exists("Patient", rid)


def test_mode_profile_validates_the_stored_resource(store: Store) -> None:
    rid = store.create(_obs(subject=PAT)).rid
    outcome = validate_operation(
        store, "Observation", None, rid=rid, mode="profile", profile=VITAL_SIGNS
    )
    assert ("required", "Observation.category") in _where(outcome)
    with pytest.raises(BadRequest):
        validate_operation(store, "Observation", None, rid=rid, mode="profile")
    with pytest.raises(FhirError):
        validate_operation(
            store, "Observation", None, rid="nobody", mode="profile", profile=VITAL_SIGNS
        )


# --- the generated table ------------------------------------------------------------------------


@needs_source
def test_committed_table_is_what_the_generator_makes(tmp_path: Path) -> None:
    from ehr.definitions import DATA, gen_invariants

    gen_invariants.generate(DEFAULT_SOURCE, tmp_path)
    made = json.loads((tmp_path / "invariants.json").read_text(encoding="utf-8"))
    assert made == json.loads((DATA / "invariants.json").read_text(encoding="utf-8"))
