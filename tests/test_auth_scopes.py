"""SMART scopes: v2 and v1 parsing, constraints, matching, narrowing (pure functions)."""

from __future__ import annotations

import pytest

from ehr.accounts import InvalidScope, allows, constraints, parse_scope, parse_scopes


def test_v2_scopes_parse_into_context_type_and_interactions() -> None:
    s = parse_scope("patient/Observation.rs")
    assert s is not None
    assert (s.context, s.rtype, s.interactions, s.params) == (
        "patient",
        "Observation",
        frozenset("rs"),
        (),
    )
    u = parse_scope("user/*.cruds")
    assert u is not None and u.rtype == "*" and u.interactions == frozenset("cruds")
    sysp = parse_scope("system/Patient.r")
    assert sysp is not None and sysp.context == "system" and sysp.interactions == frozenset("r")


@pytest.mark.parametrize(
    ("v1", "v2"),
    [
        ("patient/*.read", "patient/*.rs"),
        ("user/*.write", "user/*.cud"),
        ("user/Observation.*", "user/Observation.cruds"),
        ("system/*.*", "system/*.cruds"),
    ],
)
def test_v1_forms_map_onto_v2(v1: str, v2: str) -> None:
    a, b = parse_scope(v1), parse_scope(v2)
    assert a is not None and b is not None
    assert a == b and str(a) == v2 and a.v1


def test_constraints_are_parsed_into_search_params() -> None:
    s = parse_scope(
        "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory"
    )
    assert s is not None
    assert s.params == (
        ("category", "http://terminology.hl7.org/CodeSystem/observation-category|laboratory"),
    )
    scopes = parse_scopes(
        "patient/Observation.rs?category=laboratory patient/Observation.rs?category=vital-signs"
    )
    assert constraints(scopes, "patient", "Observation", "s") == [
        (("category", "laboratory"),),
        (("category", "vital-signs"),),
    ]
    assert allows(scopes, "patient", "Observation", "r")
    assert constraints(scopes, "patient", "Condition", "r") == []
    both = parse_scopes("patient/Observation.rs?category=laboratory patient/Observation.r")
    assert constraints(both, "patient", "Observation", "r") is None  # the unconstrained one wins
    assert constraints(both, "patient", "Observation", "s") == [(("category", "laboratory"),)]


@pytest.mark.parametrize(
    "bad",
    [
        "patient/Observation.xyz",
        "patient/Observation.sr",  # letters out of order
        "user/observation.read",  # not a resource type
        "patient/Observation.",
        "system/*.rs?category",
    ],
)
def test_malformed_resource_scopes_are_refused(bad: str) -> None:
    with pytest.raises(InvalidScope):
        parse_scope(bad)


def test_other_scopes_are_kept_by_name() -> None:
    s = parse_scopes("launch launch/patient openid fhirUser offline_access patient/*.rs openid")
    assert s.names == (
        "launch",
        "launch/patient",
        "openid",
        "fhirUser",
        "offline_access",
        "patient/*.rs",
    )
    assert {"launch", "launch/patient", "openid", "fhirUser", "offline_access"} <= s.other
    assert "online_access" not in s
    assert parse_scope("launch/patient") is None


def test_allows_checks_context_type_and_interaction() -> None:
    s = "patient/Observation.rs user/Patient.r system/*.s"
    assert allows(s, "patient", "Observation", "r")
    assert allows(s, "patient", "Observation", "s")
    assert not allows(s, "patient", "Observation", "c")
    assert not allows(s, "patient", "Condition", "r")
    assert not allows(s, "user", "Observation", "r")
    assert allows(s, "user", "Patient", "r")
    assert allows(s, "system", "Encounter", "s")
    assert not allows(s, "system", "Encounter", "r")
    assert allows(s, None, "Observation", "s")
    assert allows("patient/*.read", "patient", "Condition", "s")
    assert not allows("patient/*.read", "patient", "Condition", "u")
    assert allows("user/*.write", "user", "Condition", "d")
    assert not allows("openid fhirUser", None, "Patient", "r")
    with pytest.raises(ValueError):
        allows(s, "patient", "Observation", "read")


def test_covers_allows_narrowing_and_refuses_escalation() -> None:
    granted = parse_scopes("launch/patient patient/*.read openid offline_access")
    assert granted.covers(parse_scopes("patient/Observation.rs"))
    assert granted.covers(parse_scopes("patient/Observation.r openid"))
    assert granted.covers(parse_scopes("patient/Observation.rs?category=laboratory"))
    assert not granted.covers(parse_scopes("patient/Observation.rs fhirUser"))
    assert not granted.covers(parse_scopes("patient/Observation.c"))
    assert not granted.covers(parse_scopes("user/Observation.rs"))
    constrained = parse_scopes("patient/Observation.rs?category=laboratory")
    assert not constrained.covers(parse_scopes("patient/Observation.rs"))


def test_covering_keeps_what_a_client_may_have() -> None:
    registered = parse_scopes("launch/patient patient/*.rs openid fhirUser")
    asked = parse_scopes("openid patient/Observation.rs user/*.cruds offline_access")
    assert str(registered.covering(asked)) == "openid patient/Observation.rs"
