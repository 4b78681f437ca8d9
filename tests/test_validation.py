"""ehr.validation: what the store refuses before it writes, and with which status, code and place."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from ehr.definitions import load_table
from ehr.definitions.generate import DEFAULT_SOURCE
from ehr.errors import BadRequest, FhirError, Unprocessable
from ehr.validation import check_id, validate_resource

EXAMPLES = DEFAULT_SOURCE / "examples"
EXAMPLE_FILES = sorted(EXAMPLES.glob("*.json")) if EXAMPLES.is_dir() else []
needs_source = pytest.mark.skipif(
    not DEFAULT_SOURCE.is_dir(), reason=f"FHIR definitions not found at {DEFAULT_SOURCE}"
)


def _example(name: str) -> dict[str, Any]:
    if not (EXAMPLES / name).is_file():
        pytest.skip(f"{EXAMPLES / name} not found")
    data: dict[str, Any] = json.loads((EXAMPLES / name).read_text(encoding="utf-8"))
    return data


def _fail(resource: Any, **kw: Any) -> FhirError:
    with pytest.raises(FhirError) as info:
        validate_resource(resource, **kw)
    return info.value


def _issues(err: FhirError) -> set[tuple[str, str]]:
    """(code, expression) of every issue."""
    return {(i.code, e) for i in err.issues for e in i.expression}


def _unprocessable(resource: Any, code: str, expression: str) -> FhirError:
    err = _fail(resource)
    assert isinstance(err, Unprocessable)
    assert err.status == 422
    assert (code, expression) in _issues(err), err.outcome()
    return err


# --- the official R4 examples -------------------------------------------------------------------


@pytest.mark.skipif(not EXAMPLE_FILES, reason=f"no examples in {EXAMPLES}")
@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_official_examples_pass(path: Path) -> None:
    resource = json.loads(path.read_text(encoding="utf-8"))
    validate_resource(resource)
    validate_resource(resource, expected_type=resource["resourceType"], expected_id=resource["id"])


def test_validation_does_not_change_the_resource() -> None:
    patient = _example("Patient-example.json")
    before = copy.deepcopy(patient)
    validate_resource(patient)
    assert patient == before


# --- cheap checks: 400 ------------------------------------------------------------------------


@pytest.mark.parametrize("body", [[], "Patient", 3, None])
def test_not_an_object_is_400(body: Any) -> None:
    err = _fail(body)
    assert isinstance(err, BadRequest) and err.status == 400


def test_missing_resource_type_is_400() -> None:
    err = _fail({"id": "a"})
    assert err.status == 400 and err.code == "invalid"


def test_unknown_resource_type_is_400() -> None:
    err = _fail({"resourceType": "Banana"})
    assert err.status == 400 and err.code == "invalid"
    assert err.issues[0].expression == ("resourceType",)


def test_type_other_than_the_url_is_400() -> None:
    err = _fail({"resourceType": "Patient"}, expected_type="Observation")
    assert err.status == 400 and err.code == "invalid"
    assert err.issues[0].expression == ("resourceType",)


@pytest.mark.parametrize("rid", ["a b", "a/b", "", "x" * 65, "é", 42])
def test_bad_body_id_is_400(rid: Any) -> None:
    err = _fail({"resourceType": "Patient", "id": rid})
    assert err.status == 400 and err.code == "value"
    assert err.issues[0].expression == ("Patient.id",)


def test_update_needs_the_url_id_in_the_body() -> None:
    missing = _fail({"resourceType": "Patient"}, expected_type="Patient", expected_id="p1")
    other = _fail(
        {"resourceType": "Patient", "id": "p2"}, expected_type="Patient", expected_id="p1"
    )
    for err in (missing, other):
        assert err.status == 400 and err.issues[0].expression == ("Patient.id",)
    validate_resource({"resourceType": "Patient", "id": "p1"}, expected_id="p1")


def test_check_id() -> None:
    check_id("A-z.09")
    check_id("x" * 64)
    for bad in ("x" * 65, "a b", "a/b", "", "ä"):
        with pytest.raises(BadRequest) as info:
            check_id(bad)
        assert info.value.status == 400 and info.value.code == "value"


# --- required bindings: 422 code-invalid ------------------------------------------------------


def test_banana_gender() -> None:
    err = _unprocessable(
        {"resourceType": "Patient", "gender": "banana"}, "code-invalid", "Patient.gender"
    )
    assert err.code == "code-invalid"
    assert err.issues[0].expression == ("Patient.gender",)
    assert "administrative-gender" in err.issues[0].diagnostics


def test_every_gender_code_passes() -> None:
    for code in ("male", "female", "other", "unknown"):
        validate_resource({"resourceType": "Patient", "gender": code})


def test_binding_in_a_data_type() -> None:
    patient = {"resourceType": "Patient", "identifier": [{"value": "1"}, {"use": "nickname"}]}
    _unprocessable(patient, "code-invalid", "Patient.identifier[1].use")
    for resource, expression in [
        (
            {"resourceType": "Patient", "telecom": [{"system": "pigeon"}]},
            "Patient.telecom[0].system",
        ),
        ({"resourceType": "Patient", "address": [{"use": "moon"}]}, "Patient.address[0].use"),
        (
            {"resourceType": "Patient", "text": {"status": "pretty", "div": "<div>x</div>"}},
            "Patient.text.status",
        ),
        (
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": "x"},
                "valueQuantity": {"value": 1, "comparator": "~"},
            },
            "Observation.valueQuantity.comparator",
        ),
    ]:
        _unprocessable(resource, "code-invalid", expression)


def test_binding_in_a_nested_backbone_element() -> None:
    patient = {"resourceType": "Patient", "contact": [{"name": {"family": "X"}, "gender": "m"}]}
    _unprocessable(patient, "code-invalid", "Patient.contact[0].gender")


def test_binding_inside_an_extension_value() -> None:
    patient = {
        "resourceType": "Patient",
        "extension": [{"url": "http://example.org/x", "valueIdentifier": {"use": "bogus"}}],
    }
    _unprocessable(patient, "code-invalid", "Patient.extension[0].valueIdentifier.use")


def test_binding_in_contained_and_bundled_resources() -> None:
    patient = {"resourceType": "Patient", "contained": [{"resourceType": "Patient", "gender": "x"}]}
    _unprocessable(patient, "code-invalid", "Patient.contained[0].gender")
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": {"resourceType": "Patient", "gender": "x"}}],
    }
    _unprocessable(bundle, "code-invalid", "Bundle.entry[0].resource.gender")


def test_binding_on_a_codeable_concept() -> None:
    condition: dict[str, Any] = {
        "resourceType": "Condition",
        "subject": {"reference": "Patient/p1"},
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": "active",
                }
            ]
        },
    }
    validate_resource(condition)
    condition["clinicalStatus"]["coding"][0]["code"] = "sleeping"
    _unprocessable(condition, "code-invalid", "Condition.clinicalStatus")
    condition["clinicalStatus"] = {"text": "active"}
    _unprocessable(condition, "code-invalid", "Condition.clinicalStatus")


# --- structure: 422 ---------------------------------------------------------------------------


def test_unknown_element() -> None:
    err = _unprocessable(
        {"resourceType": "Patient", "favouriteColour": "blue"},
        "structure",
        "Patient.favouriteColour",
    )
    assert "favouriteColour" in err.issues[0].diagnostics


def test_single_element_given_as_a_list() -> None:
    _unprocessable({"resourceType": "Patient", "gender": ["male"]}, "structure", "Patient.gender")


def test_list_element_given_as_an_object() -> None:
    _unprocessable(
        {"resourceType": "Patient", "name": {"family": "X"}}, "structure", "Patient.name"
    )


def test_wrong_primitive_type_deep_in_a_list() -> None:
    _unprocessable(
        {"resourceType": "Patient", "name": [{"given": ["a", 5]}]},
        "value",
        "Patient.name[0].given[1]",
    )


def test_missing_required_element() -> None:
    observation = _example("Observation-example.json")
    del observation["status"]
    _unprocessable(observation, "required", "Observation.status")


def test_two_choices_of_one_element() -> None:
    patient = {"resourceType": "Patient", "deceasedBoolean": True, "deceasedDateTime": "2020"}
    assert _fail(patient).status == 422


@pytest.mark.parametrize(
    ("element", "value", "kind"),
    [
        ("active", "true", "boolean"),
        ("active", 1, "boolean"),
        ("multipleBirthInteger", "2", "integer"),
    ],
)
def test_json_primitive_kinds(element: str, value: Any, kind: str) -> None:
    err = _unprocessable({"resourceType": "Patient", element: value}, "value", f"Patient.{element}")
    assert kind in err.issues[0].diagnostics


def test_decimal_as_string() -> None:
    observation = _example("Observation-f001.json")
    observation["valueQuantity"]["value"] = "6.3"
    _unprocessable(observation, "value", "Observation.valueQuantity.value")


def test_null_and_empty() -> None:
    _unprocessable({"resourceType": "Patient", "birthDate": None}, "structure", "Patient.birthDate")
    _unprocessable({"resourceType": "Patient", "name": []}, "structure", "Patient.name")
    _unprocessable({"resourceType": "Patient", "name": [{}]}, "structure", "Patient.name[0]")
    _unprocessable(
        {"resourceType": "Patient", "name": [{"given": ["a", None]}]},
        "structure",
        "Patient.name[0].given[1]",
    )


def test_empty_meta_is_left_to_the_server() -> None:
    validate_resource({"resourceType": "Patient", "meta": {}})
    _unprocessable(
        {"resourceType": "Patient", "meta": {"tag": [{}]}}, "structure", "Patient.meta.tag[0]"
    )


def test_null_in_a_primitive_array_beside_its_extension_twin() -> None:
    validate_resource(
        {
            "resourceType": "Patient",
            "name": [
                {
                    "given": ["Jim", None],
                    "_given": [
                        None,
                        {"extension": [{"url": "http://example.org/x", "valueString": "y"}]},
                    ],
                }
            ],
        }
    )


def test_nested_resource_of_unknown_type() -> None:
    patient = {"resourceType": "Patient", "contained": [{"resourceType": "Banana"}]}
    err = _unprocessable(patient, "structure", "Patient.contained[0]")
    assert all(i.expression for i in err.issues)


def test_all_problems_are_reported_together() -> None:
    patient = {"resourceType": "Patient", "gender": "banana", "birthDate": "2020-02-30", "foo": 1}
    err = _fail(patient)
    assert {
        ("code-invalid", "Patient.gender"),
        ("value", "Patient.birthDate"),
        ("structure", "Patient.foo"),
    } <= _issues(err)
    outcome = err.outcome()
    assert outcome["resourceType"] == "OperationOutcome" and len(outcome["issue"]) == 3


# --- dates, dateTimes, instants ---------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["2020-02-30", "2019-02-29", "2020-13-01", "2020-00", "20200101", "2020-01-01T10:00:00Z"],
)
def test_bad_date(value: str) -> None:
    _unprocessable({"resourceType": "Patient", "birthDate": value}, "value", "Patient.birthDate")


@pytest.mark.parametrize("value", ["2020", "2020-02", "2020-02-29"])
def test_good_date(value: str) -> None:
    validate_resource({"resourceType": "Patient", "birthDate": value})


@pytest.mark.parametrize(
    "value",
    [
        "2020-02-30T10:00:00Z",
        "2020-13",
        "2020-01-01T10:00:00",
        "2020-01-01T10:00Z",
        "2020-01-01T24:00:00Z",
        "2020-01-01T10:00:00+15:00",
    ],
)
def test_bad_date_time(value: str) -> None:
    _unprocessable(
        {"resourceType": "Patient", "deceasedDateTime": value}, "value", "Patient.deceasedDateTime"
    )


@pytest.mark.parametrize(
    "value", ["2020", "2020-02-29", "2020-01-01T10:00:00Z", "2020-01-01T10:00:00.123-05:00"]
)
def test_good_date_time(value: str) -> None:
    validate_resource({"resourceType": "Patient", "deceasedDateTime": value})


@pytest.mark.parametrize(
    "value", ["2020-01-01T10:00:00", "2020-01-01T10:00Z", "2020-01-01", "2021-02-29T10:00:00Z"]
)
def test_bad_instant(value: str) -> None:
    observation = _example("Observation-f001.json")
    observation["issued"] = value
    _unprocessable(observation, "value", "Observation.issued")
    _unprocessable(
        {"resourceType": "Patient", "meta": {"lastUpdated": value}},
        "value",
        "Patient.meta.lastUpdated",
    )


def test_date_inside_a_data_type() -> None:
    encounter = _example("Encounter-example.json")
    encounter["period"] = {"start": "2020-02-30T10:00:00Z"}
    _unprocessable(encounter, "value", "Encounter.period.start")


# --- the generated table ----------------------------------------------------------------------


def test_table_expands_value_sets() -> None:
    table = load_table("required_bindings.json")
    gender = table["valuesets"]["http://hl7.org/fhir/ValueSet/administrative-gender"]
    assert gender == {
        "http://hl7.org/fhir/administrative-gender": ["female", "male", "other", "unknown"]
    }
    timing = table["valuesets"]["http://hl7.org/fhir/ValueSet/event-timing"]
    assert (
        "HS" in timing["http://terminology.hl7.org/CodeSystem/v3-TimingEvent"]
    )  # explicit concepts
    assert "MORN.early" in timing["http://hl7.org/fhir/event-timing"]  # nested concepts
    assert "http://hl7.org/fhir/ValueSet/mimetypes" in table["skipped"]
    assert table["nodes"]["Identifier"]["b"]["use"] == "http://hl7.org/fhir/ValueSet/identifier-use"


@needs_source
def test_committed_table_is_what_the_generator_makes(tmp_path: Path) -> None:
    from ehr.definitions import DATA, gen_bindings

    gen_bindings.generate(DEFAULT_SOURCE, tmp_path)
    made = json.loads((tmp_path / "required_bindings.json").read_text(encoding="utf-8"))
    assert made == json.loads((DATA / "required_bindings.json").read_text(encoding="utf-8"))
