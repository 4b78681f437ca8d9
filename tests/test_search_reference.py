"""Reference and uri search, chains and reverse chains
(http://hl7.org/fhir/R4/search.html#reference, #chaining, #has, #uri, _list)."""

from __future__ import annotations

from urllib.parse import parse_qsl

import pytest

from ehr.errors import BadRequest
from ehr.store import Store

BASE = "https://ehr.example.org/fhir"


def find(store: Store, rtype: str | None, query: str, **kw: object) -> set[str]:
    page = store.search(rtype, parse_qsl(query, keep_blank_values=True), **kw)
    return {h.rid for h in page.matches}


@pytest.fixture
def world(store: Store) -> dict[str, str]:
    o: dict[str, str] = {}
    with store.write() as ctx:
        o["org"] = ctx.create({"resourceType": "Organization", "name": "Clinic North"}).rid
        o["dr"] = ctx.create({"resourceType": "Practitioner", "name": [{"family": "House"}]}).rid
        o["dr2"] = ctx.create({"resourceType": "Practitioner", "name": [{"family": "Wilson"}]}).rid
        o["pat"] = ctx.create({"resourceType": "Patient", "name": [{"family": "Chalmers"}],
            "generalPractitioner": [{"reference": f"Practitioner/{o['dr']}"}],
            "managingOrganization": {"reference": f"Organization/{o['org']}"}}).rid  # fmt: skip
        o["pat2"] = ctx.create({"resourceType": "Patient", "name": [{"family": "Other"}],
            "generalPractitioner": [{"reference": f"Practitioner/{o['dr2']}"}],
            "meta": {"profile": ["http://example.org/fhir/StructureDefinition/a/b"], "source": "urn:src:1"}}).rid  # fmt: skip
        o["grp"] = ctx.create({"resourceType": "Location", "name": "Chalmers ward"}).rid
        o["o_pat"] = ctx.create({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
            "subject": {"reference": f"Patient/{o['pat']}"}, "performer": [{"reference": f"Practitioner/{o['dr']}"}]}).rid  # fmt: skip
        o["o_abs"] = ctx.create({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
            "subject": {"reference": f"{BASE}/Patient/{o['pat2']}"}}).rid  # fmt: skip
        o["o_ext"] = ctx.create({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
            "subject": {"reference": "https://elsewhere.org/fhir/Patient/p9"}}).rid  # fmt: skip
        o["o_grp"] = ctx.create({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
            "subject": {"reference": f"Location/{o['grp']}"}}).rid  # fmt: skip
        o["o_ident"] = ctx.create({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
            "subject": {"identifier": {"system": "urn:mrn", "value": "12345"}}}).rid  # fmt: skip
        o["o_none"] = ctx.create(
            {"resourceType": "Observation", "status": "final", "code": {"text": "x"}}
        ).rid
        o["enc"] = ctx.create({"resourceType": "Encounter", "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": {"reference": f"Patient/{o['pat']}"}}).rid  # fmt: skip
        o["list"] = ctx.create({"resourceType": "List", "status": "current", "mode": "working",
            "entry": [{"item": {"reference": f"Patient/{o['pat2']}"}}, {"item": {"reference": f"Observation/{o['o_pat']}"}}]}).rid  # fmt: skip
    return o


def test_type_and_id_forms(store: Store, world: dict[str, str]) -> None:
    w = world
    assert find(store, "Observation", f"subject=Patient/{w['pat']}") == {w["o_pat"]}
    assert find(store, "Observation", f"subject={w['pat']}") == {w["o_pat"]}  # bare id
    assert find(store, "Observation", f"subject:Patient={w['pat']}") == {w["o_pat"]}
    assert find(store, "Observation", f"subject:Group={w['pat']}") == set()
    assert find(store, "Observation", f"patient={w['pat']}") == {w["o_pat"]}
    assert find(store, "Observation", f"subject=Location/{w['grp']},Patient/{w['pat']}") == {
        w["o_grp"],
        w["o_pat"],
    }
    assert find(store, "Patient", f"general-practitioner=Practitioner/{w['dr']}") == {w["pat"]}
    assert find(store, "Patient", f"organization={w['org']}") == {w["pat"]}


def test_absolute_urls(store: Store, world: dict[str, str]) -> None:
    w = world
    ext = "https://elsewhere.org/fhir/Patient/p9"
    assert find(store, "Observation", f"subject={ext}") == {w["o_ext"]}
    assert find(store, "Observation", f"subject={BASE}/Patient/{w['pat2']}") == {w["o_abs"]}
    # a URL under our own base also finds the relative reference
    assert find(store, "Observation", f"subject={BASE}/Patient/{w['pat']}", base=BASE) == {
        w["o_pat"]
    }
    assert find(store, "Observation", f"subject={BASE}/Patient/{w['pat']}") == set()


def test_identifier_and_missing(store: Store, world: dict[str, str]) -> None:
    w = world
    assert find(store, "Observation", "subject:identifier=urn:mrn|12345") == {w["o_ident"]}
    assert find(store, "Observation", "subject:identifier=12345") == {w["o_ident"]}
    assert find(store, "Observation", "subject:identifier=urn:other|12345") == set()
    assert find(store, "Observation", "subject:missing=true") == {w["o_none"], w["o_ident"]}
    assert w["o_pat"] in find(store, "Observation", "subject:missing=false")


def test_chains(store: Store, world: dict[str, str]) -> None:
    w = world
    assert find(store, "Observation", "subject:Patient.name=chalmers") == {w["o_pat"]}
    assert find(store, "Observation", "subject.name=chalmers") == {
        w["o_pat"],
        w["o_grp"],
    }  # Patient or Location
    assert find(store, "Patient", "general-practitioner.name=house") == {w["pat"]}
    assert find(store, "Patient", "general-practitioner:Practitioner.family=wilson") == {w["pat2"]}
    assert find(store, "Patient", "organization.name=clinic") == {w["pat"]}
    # two levels deep, and the chain's value ORs
    assert find(store, "Observation", "subject:Patient.general-practitioner.name=house") == {
        w["o_pat"]
    }
    assert find(store, "Observation", "subject:Patient.general-practitioner.name=house,wilson") == {
        w["o_pat"]
    }
    assert find(store, "Encounter", "subject:Patient.organization.name=clinic") == {w["enc"]}
    assert find(store, "Observation", f"subject:Patient._id={w['pat']}") == {w["o_pat"]}
    with pytest.raises(BadRequest, match="not a parameter"):
        find(store, "Observation", "subject:Patient.nonsense=1", strict=True)


def test_chain_ignores_deleted_targets(store: Store, world: dict[str, str]) -> None:
    store.delete("Practitioner", world["dr"])
    assert find(store, "Patient", "general-practitioner.name=house") == set()


def test_has(store: Store, world: dict[str, str]) -> None:
    w = world
    assert find(store, "Patient", f"_has:Observation:patient:performer=Practitioner/{w['dr']}") == {
        w["pat"]
    }
    assert find(store, "Patient", "_has:Observation:subject:code:text=x") == {w["pat"]}
    assert find(store, "Patient", "_has:Encounter:patient:class=AMB") == {w["pat"]}
    assert find(store, "Patient", "_has:Encounter:patient:class=EMER") == set()
    # nested: practitioners who look after patients that have an encounter
    assert find(
        store,
        "Practitioner",
        "_has:Patient:general-practitioner:_has:Encounter:patient:status=finished",
    ) == {w["dr"]}
    # with a chain inside
    assert find(
        store, "Practitioner", "_has:Observation:performer:subject:Patient.name=chalmers"
    ) == {w["dr"]}
    with pytest.raises(BadRequest):
        find(store, "Patient", "_has:Observation:patient=x", strict=True)


def test_list(store: Store, world: dict[str, str]) -> None:
    w = world
    assert find(store, "Patient", f"_list={w['list']}") == {w["pat2"]}
    assert find(store, "Observation", f"_list={w['list']}") == {w["o_pat"]}
    assert find(store, None, f"_list={w['list']}") == {w["pat2"], w["o_pat"]}


def test_uri_above_below_and_source(store: Store, world: dict[str, str]) -> None:
    w = world
    prof = "http://example.org/fhir/StructureDefinition/a/b"
    assert find(store, "Patient", f"_profile={prof}") == {w["pat2"]}
    assert find(store, "Patient", "_profile=http://example.org/fhir/StructureDefinition/a") == set()
    assert find(store, "Patient", "_profile:below=http://example.org/fhir/StructureDefinition") == {
        w["pat2"]
    }
    assert find(store, "Patient", f"_profile:above={prof}/c/d") == {w["pat2"]}
    assert find(store, "Patient", "_profile:above=http://example.org/fhir/Other/a/b") == set()
    assert find(store, "Patient", "_source=urn:src:1") == {w["pat2"]}


def test_compartment(store: Store, world: dict[str, str]) -> None:
    w = world
    comp = ("Patient", w["pat"])
    assert find(store, "Observation", "", compartment=comp) == {w["o_pat"]}
    assert find(store, "Patient", "", compartment=comp) == {w["pat"]}
    assert find(store, None, "", compartment=comp) == {w["pat"], w["o_pat"], w["enc"]}
    assert find(store, None, "_type=Encounter", compartment=comp) == {w["enc"]}
    # includes stay inside the compartment
    page = store.search("Observation", [("_include", "Observation:performer")], compartment=comp)
    assert [h.rid for h in page.matches] == [w["o_pat"]] and page.includes == []
    page = store.search("Observation", [("_include", "Observation:subject")], compartment=comp)
    assert [h.rid for h in page.includes] == [w["pat"]]
