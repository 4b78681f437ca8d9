"""Result parameters (http://hl7.org/fhir/R4/search.html#return): _include / _revinclude
(:iterate, *), _sort, _count, _total, _summary, _elements, and the searchset Bundle."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from ehr.errors import BadRequest
from ehr.search.bundle import searchset_bundle
from ehr.search.engine import SearchEngine, SearchPage
from ehr.store import Store

BASE = "https://ehr.example.org/fhir"


def rids(hits: list[Any]) -> list[str]:
    return [h.rid for h in hits]


@pytest.fixture
def clinic(store: Store) -> dict[str, str]:
    o: dict[str, str] = {}
    with store.write() as ctx:
        o["dr"] = ctx.create({"resourceType": "Practitioner", "name": [{"family": "House"}]}).rid
        o["org"] = ctx.create({"resourceType": "Organization", "name": "North"}).rid
        o["pat"] = ctx.create({"resourceType": "Patient", "name": [{"family": "Adams"}], "gender": "male",
            "birthDate": "1970-01-01", "maritalStatus": {"text": "married"},
            "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Adams</div>"},
            "generalPractitioner": [{"reference": f"Practitioner/{o['dr']}"}],
            "managingOrganization": {"reference": f"Organization/{o['org']}"}}).rid  # fmt: skip
        o["pat2"] = ctx.create(
            {"resourceType": "Patient", "name": [{"family": "Baker"}], "birthDate": "1980-01-01"}
        ).rid
        o["obs"] = ctx.create({"resourceType": "Observation", "status": "final", "code": {"text": "bp"},
            "subject": {"reference": f"Patient/{o['pat']}"}, "performer": [{"reference": f"Practitioner/{o['dr']}"}]}).rid  # fmt: skip
        o["obs2"] = ctx.create({"resourceType": "Observation", "status": "final", "code": {"text": "hr"},
            "subject": {"reference": f"Patient/{o['pat']}"}}).rid  # fmt: skip
        o["prov"] = ctx.create({"resourceType": "Provenance", "recorded": "2020-01-01T00:00:00Z",
            "agent": [{"who": {"reference": f"Practitioner/{o['dr']}"}}],
            "target": [{"reference": f"Observation/{o['obs']}"}]}).rid  # fmt: skip
    return o


def test_include_and_revinclude(store: Store, clinic: dict[str, str]) -> None:
    c = clinic
    page = store.search("Observation", [("_id", c["obs"]), ("_include", "Observation:subject")])
    assert rids(page.matches) == [c["obs"]] and rids(page.includes) == [c["pat"]]
    page = store.search(
        "Observation", [("_id", c["obs"]), ("_include", "Observation:subject:Practitioner")]
    )
    assert page.includes == []
    page = store.search("Observation", [("_id", c["obs"]), ("_include", "Observation:*")])
    assert set(rids(page.includes)) == {c["pat"], c["dr"]}
    page = store.search("Patient", [("_id", c["pat"]), ("_revinclude", "Observation:subject")])
    assert set(rids(page.includes)) == {c["obs"], c["obs2"]}
    page = store.search("Patient", [("_id", c["pat"]), ("_revinclude", "*")])
    assert set(rids(page.includes)) == {c["obs"], c["obs2"]}


def test_iterate(store: Store, clinic: dict[str, str]) -> None:
    c = clinic
    plain = [
        ("_id", c["obs2"]),
        ("_include", "Observation:subject"),
        ("_include", "Patient:general-practitioner"),
    ]
    assert set(rids(store.search("Observation", plain).includes)) == {c["pat"]}
    iterated = [
        ("_id", c["obs2"]),
        ("_include", "Observation:subject"),
        ("_include:iterate", "Patient:general-practitioner"),
    ]
    assert set(rids(store.search("Observation", iterated).includes)) == {c["pat"], c["dr"]}
    rev = [
        ("_id", c["pat"]),
        ("_revinclude", "Observation:subject"),
        ("_revinclude:iterate", "Provenance:target"),
    ]
    assert set(rids(store.search("Patient", rev).includes)) == {c["obs"], c["obs2"], c["prov"]}
    # everything reachable, each once, never a match again
    star = [("_id", c["obs"]), ("_include:iterate", "*")]
    inc = rids(store.search("Observation", star).includes)
    assert sorted(inc) == sorted({c["pat"], c["dr"], c["org"]})


def test_includes_are_bounded(store: Store, clinic: dict[str, str]) -> None:
    engine = SearchEngine(store.registry, max_includes=1)
    with store.read_conn() as conn:
        page = engine.search(
            conn, "Observation", [("_id", clinic["obs"]), ("_include", "Observation:*")]
        )
    assert len(page.includes) == 1
    assert any("limited to 1" in i.diagnostics for i in page.issues)


def test_sort(store: Store, clinic: dict[str, str]) -> None:
    c = clinic
    with store.write() as ctx:
        c["z"] = ctx.create(
            {"resourceType": "Patient", "name": [{"family": "Zed"}], "gender": "female"}
        ).rid

    def order(sort: str) -> list[str]:
        return rids(store.search("Patient", [("_sort", sort)]).matches)

    assert order("family") == [c["pat"], c["pat2"], c["z"]]
    assert order("-family") == [c["z"], c["pat2"], c["pat"]]
    assert order("birthdate") == [c["pat"], c["pat2"], c["z"]]  # missing last
    assert order("-birthdate") == [c["pat2"], c["pat"], c["z"]]  # missing last in both directions
    assert order("gender,-family") == [c["z"], c["pat"], c["pat2"]]
    assert order("-_lastUpdated") == [c["z"], c["pat2"], c["pat"]]
    assert order("_id") == sorted([c["pat"], c["pat2"], c["z"]])
    assert order("organization,family") == [c["pat"], c["pat2"], c["z"]]
    with pytest.raises(BadRequest, match="sort"):
        store.search("Patient", [("_sort", "nonsense")], strict=True)


def test_count_total_and_summary_count(store: Store, clinic: dict[str, str]) -> None:
    page = store.search("Patient", [("_count", "1")])
    assert len(page.matches) == 1 and page.total == 2 and page.next_params is not None
    page = store.search("Patient", [("_count", "0")])
    assert page.matches == [] and page.total == 2 and page.next_params is None
    page = store.search("Patient", [("_summary", "count")])
    assert page.matches == [] and page.total == 2
    assert store.search("Patient", [("_total", "none")]).total is None
    assert store.search("Patient", [("_total", "accurate"), ("_count", "1")]).total == 2
    with pytest.raises(BadRequest, match="_count"):
        store.search("Patient", [("_count", "many")])
    small = SearchEngine(store.registry, max_count=3, total_cap=2)
    with store.write() as ctx:
        for _ in range(4):
            ctx.create({"resourceType": "Patient"})
    with store.read_conn() as conn:
        page = small.search(conn, "Patient", [("_count", "500")])
        assert len(page.matches) == 3 and ("_count", "3") in page.self_params
        assert page.total is None  # more than total_cap: the estimate gives up
        assert small.search(conn, "Patient", [("_total", "accurate")]).total == 6


def bundle_of(page: SearchPage, path: str = "Patient") -> dict[str, Any]:
    return orjson.loads(searchset_bundle(page, base=BASE, path=path))  # type: ignore[no-any-return]


def test_summary_and_elements(store: Store, clinic: dict[str, str]) -> None:
    pat = clinic["pat"]

    def resource(*params: tuple[str, str]) -> dict[str, Any]:
        b = bundle_of(store.search("Patient", [("_id", pat), *params]))
        return b["entry"][0]["resource"]  # type: ignore[no-any-return]

    full = resource()
    assert "maritalStatus" in full and "text" in full and "tag" not in full["meta"]
    summary = resource(("_summary", "true"))
    assert (
        "maritalStatus" not in summary
        and "text" not in summary
        and "generalPractitioner" not in summary
    )
    assert summary["name"] == full["name"] and summary["birthDate"] == "1970-01-01"
    assert {"code": "SUBSETTED"}.items() <= summary["meta"]["tag"][-1].items()
    text = resource(("_summary", "text"))
    assert set(text) == {"resourceType", "id", "meta", "text"}
    data = resource(("_summary", "data"))
    assert "text" not in data and "maritalStatus" in data
    assert resource(("_summary", "false")) == full
    elements = resource(("_elements", "name,gender"))
    assert set(elements) == {"resourceType", "id", "meta", "name", "gender"}
    obs = bundle_of(
        store.search("Observation", [("_id", clinic["obs"]), ("_elements", "subject")]),
        "Observation",
    )
    assert set(obs["entry"][0]["resource"]) == {
        "resourceType",
        "id",
        "meta",
        "status",
        "code",
        "subject",
    }  # + mandatory
    with pytest.raises(BadRequest, match="_summary"):
        store.search("Patient", [("_summary", "maybe")])


def test_searchset_bundle(store: Store, clinic: dict[str, str]) -> None:
    page = store.search(
        "Patient", [("_id", clinic["pat"]), ("_revinclude", "Observation:subject"), ("bogus", "1")]
    )
    raw = searchset_bundle(page, base=BASE, path="Patient")
    b = orjson.loads(raw)
    assert b["resourceType"] == "Bundle" and b["type"] == "searchset" and b["total"] == 1
    assert b["link"] == [
        {
            "relation": "self",
            "url": f"{BASE}/Patient?_id={clinic['pat']}&_revinclude=Observation:subject",
        }
    ]
    modes = [(e.get("fullUrl"), e["search"]["mode"]) for e in b["entry"]]
    assert modes[0] == (f"{BASE}/Patient/{clinic['pat']}", "match")
    assert sorted(m for _, m in modes) == ["include", "include", "match", "outcome"]
    assert "bogus" in b["entry"][-1]["resource"]["issue"][0]["diagnostics"]
    # stored bytes are embedded as they are
    assert store.read("Patient", clinic["pat"]).data in raw
