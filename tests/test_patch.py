"""The two patch formats of the FHIR patch interaction (ehr.patch): JSON Patch (RFC 6902) and
FHIRPath Patch (http://hl7.org/fhir/R4/fhirpatch.html). Pure: no database."""

from __future__ import annotations

import copy
from typing import Any

import pytest

import ehr.patch
from ehr.errors import BadRequest, FhirError, Unprocessable
from ehr.patch import apply_fhirpath_patch, apply_json_patch


def patient() -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": "pat1",
        "meta": {"versionId": "3"},
        "identifier": [
            {"system": "urn:oid:1.2.36.146.595.217.0.1", "value": "12345"},
            {"system": "http://example.org/mrn", "value": "MRN-9"},
        ],
        "active": True,
        "name": [
            {"use": "official", "family": "Chalmers", "given": ["Peter", "James", "Jim"]},
            {"use": "usual", "given": ["Jim"]},
        ],
        "telecom": [
            {"system": "phone", "value": "(03) 5555 6473", "use": "work"},
            {"system": "email", "value": "peter@example.org"},
        ],
        "gender": "male",
        "birthDate": "1974-12-25",
        "_birthDate": {
            "id": "birth",
            "extension": [
                {
                    "url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
                    "valueDateTime": "1974-12-25T14:35:45-05:00",
                }
            ],
        },
        "deceasedBoolean": False,
        "extension": [{"url": "http://example.org/favourite-colour", "valueString": "green"}],
    }


def op(kind: str, path: str, **parts: Any) -> dict[str, Any]:
    """One FHIRPath Patch operation parameter; ``value=("Date", "1930-01-01")`` for value[x],
    ``value=[...]`` for nested parts, ints for index/source/destination, str for name."""
    out: list[dict[str, Any]] = [
        {"name": "type", "valueCode": kind},
        {"name": "path", "valueString": path},
    ]
    for name, v in parts.items():
        if name == "value" and isinstance(v, tuple):
            out.append({"name": "value", f"value{v[0]}": v[1]})
        elif name == "value" and isinstance(v, list):
            out.append({"name": "value", "part": v})
        elif isinstance(v, int):
            out.append({"name": name, "valueInteger": v})
        else:
            out.append({"name": name, "valueString": v})
    return {"name": "operation", "part": out}


def params(*ops: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": list(ops)}


def test_public_surface() -> None:
    assert sorted(ehr.patch.__all__) == ["apply_fhirpath_patch", "apply_json_patch"]


# --- JSON Patch (RFC 6902) -----------------------------------------------------------------


def test_json_add_member_and_array_positions() -> None:
    out = apply_json_patch(
        patient(),
        [
            {"op": "add", "path": "/maritalStatus", "value": {"text": "married"}},
            {"op": "add", "path": "/name/0/given/0", "value": "Pete"},
            {"op": "add", "path": "/name/0/given/-", "value": "Last"},
            {"op": "add", "path": "/telecom/2", "value": {"system": "fax", "value": "1"}},
        ],
    )
    assert out["maritalStatus"] == {"text": "married"}
    assert out["name"][0]["given"] == ["Pete", "Peter", "James", "Jim", "Last"]
    assert [t["system"] for t in out["telecom"]] == ["phone", "email", "fax"]


def test_json_add_replaces_an_existing_member() -> None:
    out = apply_json_patch(patient(), [{"op": "add", "path": "/gender", "value": "other"}])
    assert out["gender"] == "other"


def test_json_remove_member_and_array_item() -> None:
    out = apply_json_patch(
        patient(),
        [{"op": "remove", "path": "/birthDate"}, {"op": "remove", "path": "/telecom/0"}],
    )
    assert "birthDate" not in out
    assert out["telecom"] == [{"system": "email", "value": "peter@example.org"}]


def test_json_replace() -> None:
    out = apply_json_patch(
        patient(),
        [
            {"op": "replace", "path": "/birthDate", "value": "1930-01-01"},
            {"op": "replace", "path": "/name/1/given/0", "value": "Jimmy"},
            {"op": "replace", "path": "/active", "value": None},
        ],
    )
    assert out["birthDate"] == "1930-01-01"
    assert out["name"][1]["given"] == ["Jimmy"]
    assert out["active"] is None


def test_json_move_and_copy() -> None:
    out = apply_json_patch(
        patient(),
        [
            {"op": "move", "from": "/name/0/given/2", "path": "/name/0/given/0"},
            {"op": "copy", "from": "/telecom/1", "path": "/telecom/-"},
            {"op": "move", "from": "/gender", "path": "/extension/0/valueCode"},
        ],
    )
    assert out["name"][0]["given"] == ["Jim", "Peter", "James"]
    assert out["telecom"][2] == out["telecom"][1]
    out["telecom"][2]["value"] = "changed"  # a copy, not the same object
    assert out["telecom"][1]["value"] == "peter@example.org"
    assert "gender" not in out and out["extension"][0]["valueCode"] == "male"


def test_json_test_passes_and_fails() -> None:
    ok = [
        {"op": "test", "path": "/name/0/family", "value": "Chalmers"},
        {"op": "test", "path": "/meta", "value": {"versionId": "3"}},
        {"op": "replace", "path": "/gender", "value": "female"},
    ]
    assert apply_json_patch(patient(), ok)["gender"] == "female"
    with pytest.raises(Unprocessable) as exc:
        apply_json_patch(patient(), [{"op": "test", "path": "/gender", "value": "female"}])
    assert exc.value.status == 422 and exc.value.code == "processing"
    assert "operation 0" in exc.value.diagnostics


def test_json_test_is_type_strict() -> None:
    res = {"resourceType": "Basic", "id": "b", "n": 1, "flag": True, "x": 1.0}
    apply_json_patch(res, [{"op": "test", "path": "/x", "value": 1}])  # 1.0 == 1 as numbers
    for path, value in (("/flag", 1), ("/n", True), ("/n", "1")):
        with pytest.raises(Unprocessable):
            apply_json_patch(res, [{"op": "test", "path": path, "value": value}])


def test_json_pointer_escaping() -> None:
    res = {"resourceType": "Basic", "id": "b", "a/b": {"m~n": 1}}
    out = apply_json_patch(
        res,
        [
            {"op": "test", "path": "/a~1b/m~0n", "value": 1},
            {"op": "replace", "path": "/a~1b/m~0n", "value": 2},
            {"op": "add", "path": "/~01", "value": "tilde-one"},
        ],
    )
    assert out["a/b"] == {"m~n": 2}
    assert out["~1"] == "tilde-one"  # "~01" is "~1", not "/"


@pytest.mark.parametrize(
    "document",
    [
        {"op": "add", "path": "/gender", "value": "x"},  # not a list
        "add",
        [["add"]],
        [{"op": "frobnicate", "path": "/gender"}],
        [{"path": "/gender", "value": "x"}],
        [{"op": "add", "value": "x"}],
        [{"op": "replace", "path": "/gender"}],
        [{"op": "test", "path": "/gender"}],
        [{"op": "move", "path": "/gender"}],
        [{"op": "copy", "path": "/gender"}],
        [{"op": "remove", "path": "gender"}],  # no leading slash
        [{"op": "remove", "path": "/a~2b"}],  # bad escape
        [{"op": "remove", "path": 7}],
    ],
)
def test_json_malformed_documents_are_400(document: Any) -> None:
    with pytest.raises(BadRequest) as exc:
        apply_json_patch(patient(), document)
    assert exc.value.status == 400 and exc.value.code in ("invalid", "structure")


@pytest.mark.parametrize(
    ("operation", "fragment"),
    [
        ({"op": "remove", "path": "/maritalStatus"}, "does not exist"),
        ({"op": "replace", "path": "/maritalStatus", "value": {}}, "does not exist"),
        ({"op": "add", "path": "/maritalStatus/text", "value": "x"}, "does not exist"),
        ({"op": "remove", "path": "/telecom/2"}, "out of range"),
        ({"op": "add", "path": "/telecom/3", "value": {}}, "out of range"),
        ({"op": "remove", "path": "/telecom/-"}, "not an array index"),
        ({"op": "remove", "path": "/telecom/01"}, "not an array index"),
        ({"op": "replace", "path": "/gender/x", "value": 1}, "does not exist"),
        ({"op": "move", "from": "/name/0", "path": "/name/0/given/0"}, "own children"),
        ({"op": "copy", "from": "/nothing", "path": "/x"}, "does not exist"),
        ({"op": "test", "path": "/nothing", "value": 1}, "does not exist"),
        ({"op": "remove", "path": ""}, "whole document"),
    ],
)
def test_json_inapplicable_operations_are_422(operation: dict[str, Any], fragment: str) -> None:
    document = [{"op": "test", "path": "/id", "value": "pat1"}, operation]
    with pytest.raises(Unprocessable) as exc:
        apply_json_patch(patient(), document)
    assert exc.value.status == 422 and exc.value.code == "processing"
    assert "operation 1" in exc.value.diagnostics and fragment in exc.value.diagnostics


@pytest.mark.parametrize(
    "operation",
    [
        {"op": "replace", "path": "/id", "value": "other"},
        {"op": "remove", "path": "/id"},
        {"op": "add", "path": "/resourceType", "value": "Person"},
        {"op": "move", "from": "/id", "path": "/text"},
        {"op": "copy", "from": "/gender", "path": "/id"},
        {"op": "replace", "path": "", "value": {"resourceType": "Patient", "id": "other"}},
    ],
)
def test_json_id_and_resource_type_cannot_change(operation: dict[str, Any]) -> None:
    with pytest.raises(Unprocessable) as exc:
        apply_json_patch(patient(), [operation])
    assert "may not change" in exc.value.diagnostics


def test_json_replace_root_keeping_identity_is_allowed() -> None:
    new = {"resourceType": "Patient", "id": "pat1", "gender": "female"}
    assert apply_json_patch(patient(), [{"op": "replace", "path": "", "value": new}]) == new


def test_json_empty_patch_returns_an_equal_copy() -> None:
    original = patient()
    out = apply_json_patch(original, [])
    assert out == original and out is not original


def test_json_input_and_patch_document_are_not_modified() -> None:
    original = patient()
    snapshot = copy.deepcopy(original)
    value = {"system": "fax", "value": "1"}
    out = apply_json_patch(
        original,
        [
            {"op": "add", "path": "/telecom/-", "value": value},
            {"op": "remove", "path": "/name/0/given/1"},
            {"op": "replace", "path": "/meta/versionId", "value": "4"},
        ],
    )
    assert original == snapshot
    out["telecom"][-1]["value"] = "2"
    out["identifier"][0]["value"] = "changed"
    assert value == {"system": "fax", "value": "1"} and original == snapshot
    with pytest.raises(Unprocessable):  # a failing patch leaves the input alone too
        apply_json_patch(
            original,
            [{"op": "remove", "path": "/gender"}, {"op": "remove", "path": "/gender"}],
        )
    assert original == snapshot


# --- FHIRPath Patch: the examples of the specification -------------------------------------


def test_fhirpath_add_birth_date_spec_example() -> None:
    res = patient()
    del res["birthDate"], res["_birthDate"]
    out = apply_fhirpath_patch(
        res, params(op("add", "Patient", name="birthDate", value=("Date", "1930-01-01")))
    )
    assert out["birthDate"] == "1930-01-01"


def test_fhirpath_add_contact_from_parts_spec_example() -> None:
    value = [{"name": "name", "valueHumanName": {"text": "a name"}}]
    out = apply_fhirpath_patch(patient(), params(op("add", "Patient", name="contact", value=value)))
    assert out["contact"] == [{"name": {"text": "a name"}}]


def test_fhirpath_complex_value_from_parts_follows_cardinality() -> None:
    value = [
        {
            "name": "relationship",
            "valueCodeableConcept": {"coding": [{"system": "http://x", "code": "N"}]},
        },
        {"name": "name", "valueHumanName": {"family": "Chalmers", "given": ["Bénédicte"]}},
        {"name": "telecom", "valueContactPoint": {"system": "phone", "value": "123"}},
        {"name": "telecom", "valueContactPoint": {"system": "email", "value": "b@x.org"}},
        {"name": "gender", "valueCode": "female"},
        {
            "name": "period",
            "part": [{"name": "start", "valueDateTime": "2012"}],
        },
    ]
    out = apply_fhirpath_patch(patient(), params(op("add", "Patient", name="contact", value=value)))
    assert out["contact"] == [
        {
            "relationship": [{"coding": [{"system": "http://x", "code": "N"}]}],
            "name": {"family": "Chalmers", "given": ["Bénédicte"]},
            "telecom": [
                {"system": "phone", "value": "123"},
                {"system": "email", "value": "b@x.org"},
            ],
            "gender": "female",
            "period": {"start": "2012"},
        }
    ]


def test_fhirpath_extension_built_from_parts_uses_value_x_key() -> None:
    value = [
        {"name": "url", "valueUri": "http://example.org/nickname"},
        {"name": "value", "valueString": "Pete"},
    ]
    out = apply_fhirpath_patch(
        patient(), params(op("add", "Patient", name="extension", value=value))
    )
    assert out["extension"][-1] == {"url": "http://example.org/nickname", "valueString": "Pete"}


def test_fhirpath_insert_identifier_at_index() -> None:
    new = {"system": "http://example.org/new", "value": "N-1"}
    out = apply_fhirpath_patch(
        patient(), params(op("insert", "Patient.identifier", index=1, value=("Identifier", new)))
    )
    assert [i["value"] for i in out["identifier"]] == ["12345", "N-1", "MRN-9"]
    out2 = apply_fhirpath_patch(
        patient(), params(op("insert", "Patient.identifier", index=2, value=("Identifier", new)))
    )
    assert out2["identifier"][-1] == new


def test_fhirpath_insert_into_an_absent_list() -> None:
    res = patient()
    del res["identifier"]
    new = {"system": "s", "value": "v"}
    out = apply_fhirpath_patch(
        res, params(op("insert", "Patient.identifier", index=0, value=("Identifier", new)))
    )
    assert out["identifier"] == [new]


def test_fhirpath_delete_telecom_by_where() -> None:
    out = apply_fhirpath_patch(
        patient(), params(op("delete", "Patient.telecom.where(system='email')"))
    )
    assert out["telecom"] == [{"system": "phone", "value": "(03) 5555 6473", "use": "work"}]


def test_fhirpath_delete_that_matches_nothing_changes_nothing() -> None:
    out = apply_fhirpath_patch(patient(), params(op("delete", "Patient.telecom.where(use='home')")))
    assert out == patient()


def test_fhirpath_delete_removes_emptied_lists_and_primitive_extensions() -> None:
    res = patient()
    res["name"] = [{"given": ["Solo"]}]
    out = apply_fhirpath_patch(
        res, params(op("delete", "Patient.name.given"), op("delete", "Patient.birthDate"))
    )
    assert "name" not in out  # given emptied -> name {} -> name [] -> gone
    assert "birthDate" not in out and "_birthDate" not in out


def test_fhirpath_replace_given_name_and_birth_date() -> None:
    out = apply_fhirpath_patch(
        patient(),
        params(
            op("replace", "Patient.name[0].given[0]", value=("String", "Pete")),
            op("replace", "Patient.name.where(use='usual').given", value=("String", "Jimmy")),
            op("replace", "Patient.birthDate", value=("Date", "1930-01-01")),
            op("replace", "Patient.active", value=("Boolean", False)),
        ),
    )
    assert out["name"][0]["given"] == ["Pete", "James", "Jim"]
    assert out["name"][1]["given"] == ["Jimmy"]
    assert out["birthDate"] == "1930-01-01" and "_birthDate" not in out
    assert out["active"] is False


def test_fhirpath_replace_value_in_identifier_and_extension() -> None:
    out = apply_fhirpath_patch(
        patient(),
        params(
            op(
                "replace",
                "Patient.identifier.where(system='http://example.org/mrn').value",
                value=("String", "MRN-10"),
            ),
            op(
                "replace",
                "Patient.extension('http://example.org/favourite-colour').value",
                value=("String", "blue"),
            ),
        ),
    )
    assert out["identifier"][1] == {"system": "http://example.org/mrn", "value": "MRN-10"}
    assert out["extension"][0]["valueString"] == "blue"


def test_fhirpath_replace_complex_value() -> None:
    new = {"use": "official", "family": "Smith", "given": ["Pat"]}
    out = apply_fhirpath_patch(
        patient(),
        params(op("replace", "Patient.name.where(use='official')", value=("HumanName", new))),
    )
    assert out["name"][0] == new and out["name"][1]["use"] == "usual"


def test_fhirpath_choice_elements_take_the_value_type() -> None:
    out = apply_fhirpath_patch(
        patient(), params(op("replace", "Patient.deceased", value=("DateTime", "2020-02-02")))
    )
    assert out["deceasedDateTime"] == "2020-02-02" and "deceasedBoolean" not in out
    res = patient()
    del res["deceasedBoolean"]
    out = apply_fhirpath_patch(
        res, params(op("add", "Patient", name="deceased", value=("Boolean", True)))
    )
    assert out["deceasedBoolean"] is True


def test_fhirpath_move_given_name() -> None:
    out = apply_fhirpath_patch(
        patient(), params(op("move", "Patient.name[0].given", source=2, destination=0))
    )
    assert out["name"][0]["given"] == ["Jim", "Peter", "James"]
    out = apply_fhirpath_patch(
        patient(), params(op("move", "Patient.identifier", source=0, destination=1))
    )
    assert [i["value"] for i in out["identifier"]] == ["MRN-9", "12345"]


def test_fhirpath_add_appends_to_a_repeating_element_and_creates_lists() -> None:
    res = patient()
    del res["identifier"]
    new = {"system": "http://system", "value": "value-new"}
    out = apply_fhirpath_patch(
        res, params(op("add", "Patient", name="identifier", value=("Identifier", new)))
    )
    assert out["identifier"] == [new]
    out = apply_fhirpath_patch(
        patient(), params(op("add", "Patient.name[1]", name="given", value=("String", "J.")))
    )
    assert out["name"][1]["given"] == ["Jim", "J."]
    out = apply_fhirpath_patch(
        patient(), params(op("add", "Patient.name[1]", name="family", value=("String", "Chalmers")))
    )
    assert out["name"][1]["family"] == "Chalmers"


def test_fhirpath_primitive_extension_list_stays_aligned() -> None:
    res = patient()
    res["name"][0]["_given"] = [None, {"extension": [{"url": "u", "valueCode": "MID"}]}, None]
    out = apply_fhirpath_patch(res, params(op("delete", "Patient.name[0].given[0]")))
    assert out["name"][0]["given"] == ["James", "Jim"]
    assert out["name"][0]["_given"] == [{"extension": [{"url": "u", "valueCode": "MID"}]}, None]
    out = apply_fhirpath_patch(res, params(op("delete", "Patient.name[0].given[1]")))
    assert out["name"][0]["given"] == ["Peter", "Jim"] and "_given" not in out["name"][0]


def test_fhirpath_operations_apply_in_order() -> None:
    out = apply_fhirpath_patch(
        patient(),
        params(
            op("add", "Patient", name="maritalStatus", value=("CodeableConcept", {"text": "M"})),
            op("replace", "Patient.maritalStatus.text", value=("String", "Married")),
            op("delete", "Patient.telecom[0]"),
            op("delete", "Patient.telecom[0]"),
        ),
    )
    assert out["maritalStatus"] == {"text": "Married"}
    assert "telecom" not in out


# --- FHIRPath Patch: malformed (400) and inapplicable (422) ----------------------------------


@pytest.mark.parametrize(
    "document",
    [
        [op("delete", "Patient.gender")],  # not a Parameters resource
        {"resourceType": "Patient"},
        {"resourceType": "Parameters"},
        params({"name": "op", "part": op("delete", "Patient.gender")["part"]}),
        params({"name": "operation"}),
        params({"name": "operation", "part": [{"name": "path", "valueString": "Patient"}]}),
        params(op("upsert", "Patient.gender")),
        params(op("add", "Patient", value=("Code", "male"))),  # no name
        params(op("add", "Patient", name="gender")),  # no value
        params(op("replace", "Patient.gender")),
        params(op("insert", "Patient.identifier", value=("Identifier", {}))),  # no index
        params(op("move", "Patient.identifier", source=0)),
        params(op("delete", "Patient.name.(")),
        params(op("delete", "Patient.name)")),
        params(op("delete", "")),
        params(op("delete", "Patient.gender", colour="red")),
        params(op("insert", "Patient.identifier", index="one", value=("Identifier", {}))),
        params(op("add", "Patient", name="contact", value=[{"name": "name"}])),
        params(op("replace", "Patient.managingOrganization.resolve().name", value=("String", "x"))),
        params(
            op("insert", "Patient.identifier.where(system='x')", index=0, value=("Identifier", {}))
        ),
    ],
)
def test_fhirpath_malformed_documents_are_400(document: Any) -> None:
    with pytest.raises(BadRequest) as exc:
        apply_fhirpath_patch(patient(), document)
    assert exc.value.status == 400 and exc.value.code in ("invalid", "structure")


def test_fhirpath_malformed_operation_is_reported_before_any_is_applied() -> None:
    document = params(op("delete", "Patient.name"), op("frob", "Patient"))  # op 0 would be 422
    with pytest.raises(BadRequest) as exc:
        apply_fhirpath_patch(patient(), document)
    assert "operation 1" in exc.value.diagnostics and "frob" in exc.value.diagnostics


@pytest.mark.parametrize(
    ("operation", "fragment"),
    [
        (op("replace", "Patient.maritalStatus", value=("String", "x")), "matches nothing"),
        (op("replace", "Patient.name", value=("HumanName", {})), "matches 2 elements"),
        (op("delete", "Patient.name.given"), "matches 4 elements"),
        (op("add", "Patient.name", name="text", value=("String", "x")), "matches 2"),
        (op("add", "Patient.contact", name="text", value=("String", "x")), "matches nothing"),
        (op("add", "Patient.gender", name="id", value=("String", "x")), "primitive"),
        (op("add", "Patient", name="gender", value=("Code", "female")), "already has a value"),
        (op("add", "Patient", name="deceased", value=("DateTime", "2020")), "already has"),
        (op("add", "Patient", name="colour", value=("String", "red")), "no element 'colour'"),
        (op("add", "Patient", name="deceased", value=("String", "x")), "deceased[x]"),
        (op("replace", "Patient.deceased", value=("Quantity", {"value": 1})), "deceased[x]"),
        (op("insert", "Patient.identifier", index=3, value=("Identifier", {})), "out of range"),
        (op("insert", "Patient.identifier", index=-1, value=("Identifier", {})), "out of range"),
        (op("insert", "Patient.gender", index=0, value=("Code", "x")), "not a repeating"),
        (op("insert", "Patient.name.given", index=0, value=("String", "x")), "matches 2"),
        (op("move", "Patient.identifier", source=0, destination=2), "out of range"),
        (op("move", "Patient.identifier", source=5, destination=0), "out of range"),
        (op("move", "Patient.address", source=0, destination=0), "no list"),
        (op("replace", "Patient.name.single()", value=("HumanName", {})), "cannot evaluate"),
        (op("delete", "1 + 1"), "computed value"),
        (
            op("add", "Patient", name="contact", value=[{"name": "nickname", "valueString": "x"}]),
            "no element 'nickname'",
        ),
        (
            op(
                "add",
                "Patient",
                name="contact",
                value=[
                    {"name": "gender", "valueCode": "male"},
                    {"name": "gender", "valueCode": "x"},
                ],
            ),
            "given twice",
        ),
    ],
)
def test_fhirpath_inapplicable_operations_are_422(operation: dict[str, Any], fragment: str) -> None:
    document = params(op("replace", "Patient.gender", value=("Code", "male")), operation)
    with pytest.raises(Unprocessable) as exc:
        apply_fhirpath_patch(patient(), document)
    assert exc.value.status == 422 and exc.value.code == "processing"
    assert "operation 1" in exc.value.diagnostics and fragment in exc.value.diagnostics
    assert exc.value.expression == ("Parameters.parameter[1]",)


@pytest.mark.parametrize(
    "operation",
    [
        op("replace", "Patient.id", value=("Id", "other")),
        op("delete", "Patient.id"),
        op("add", "Patient", name="id", value=("Id", "x")),
        op("replace", "Patient", value=("String", "x")),
        op("delete", "Patient"),
    ],
)
def test_fhirpath_id_and_resource_itself_cannot_change(operation: dict[str, Any]) -> None:
    res = patient()
    if operation["part"][0]["valueCode"] == "add":
        del res["id"]
    with pytest.raises(Unprocessable) as exc:
        apply_fhirpath_patch(res, params(operation))
    assert "operation 0" in exc.value.diagnostics
    assert "may not change" in exc.value.diagnostics or "resource itself" in exc.value.diagnostics


def test_fhirpath_contained_resource_id_may_change() -> None:
    res = patient()
    res["contained"] = [{"resourceType": "Organization", "id": "org", "name": "Acme"}]
    out = apply_fhirpath_patch(
        res,
        params(
            op("replace", "Patient.contained.ofType(Organization).name", value=("String", "ACME")),
            op("replace", "Patient.contained[0].id", value=("Id", "org2")),
        ),
    )
    assert out["contained"] == [{"resourceType": "Organization", "id": "org2", "name": "ACME"}]


def test_fhirpath_input_and_patch_document_are_not_modified() -> None:
    original = patient()
    snapshot = copy.deepcopy(original)
    new = {"system": "http://system", "value": "value-new"}
    document = params(
        op("add", "Patient", name="identifier", value=("Identifier", new)),
        op("replace", "Patient.name[0].family", value=("String", "X")),
        op("delete", "Patient.birthDate"),
        op("move", "Patient.telecom", source=1, destination=0),
    )
    doc_snapshot = copy.deepcopy(document)
    out = apply_fhirpath_patch(original, document)
    assert original == snapshot and document == doc_snapshot
    out["identifier"][-1]["value"] = "mutated"
    out["name"][1]["given"].append("mutated")
    assert original == snapshot and document == doc_snapshot
    with pytest.raises(FhirError):
        apply_fhirpath_patch(
            original, params(op("delete", "Patient.gender"), op("delete", "Patient.name.given"))
        )
    assert original == snapshot
