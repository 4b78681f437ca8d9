"""Token search (http://hl7.org/fhir/R4/search.html#token): code, system|code, |code,
system|, :not, :text, :of-type, :missing, :in / :not-in against stored ValueSets, _id, _tag."""

from __future__ import annotations

from urllib.parse import parse_qsl

import pytest

from ehr.errors import BadRequest
from ehr.store import Store

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"


def find(store: Store, rtype: str | None, query: str, **kw: object) -> set[str]:
    page = store.search(rtype, parse_qsl(query, keep_blank_values=True), **kw)
    return {h.rid for h in page.matches}


def obs(code: list[dict[str, str]], text: str | None = None, **extra: object) -> dict[str, object]:
    cc: dict[str, object] = {"coding": code}
    if text:
        cc["text"] = text
    return {"resourceType": "Observation", "status": "final", "code": cc, **extra}


@pytest.fixture
def data(store: Store) -> dict[str, str]:
    out = {}
    with store.write() as ctx:
        out["bp"] = ctx.create(
            obs([{"system": LOINC, "code": "8480-6", "display": "Systolic blood pressure"}])
        ).rid
        out["hr"] = ctx.create(
            obs([{"system": LOINC, "code": "8867-4", "display": "Heart rate"}], "Pulse")
        ).rid
        out["snomed"] = ctx.create(
            obs([{"system": SNOMED, "code": "8480-6"}])
        ).rid  # same code, other system
        out["nosys"] = ctx.create(obs([{"code": "8480-6"}])).rid
        out["text_only"] = {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "Weight"},
        }  # type: ignore[assignment]
        out["text_only"] = ctx.create(out["text_only"]).rid  # type: ignore[arg-type]
        out["male"] = ctx.create({"resourceType": "Patient", "gender": "male", "active": True,
            "identifier": [{"system": "urn:mrn", "value": "M-1",
                            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}], "text": "Medical record"}}],
            "meta": {"tag": [{"system": "urn:tags", "code": "vip"}]}}).rid  # fmt: skip
        out["female"] = ctx.create({"resourceType": "Patient", "gender": "female",
            "identifier": [{"system": "urn:ssn", "value": "M-1"}]}).rid  # fmt: skip
        out["nogender"] = ctx.create({"resourceType": "Patient"}).rid
    return out


def test_code_forms(store: Store, data: dict[str, str]) -> None:
    all_8480 = {data["bp"], data["snomed"], data["nosys"]}
    assert find(store, "Observation", "code=8480-6") == all_8480
    assert find(store, "Observation", f"code={LOINC}|8480-6") == {data["bp"]}
    assert find(store, "Observation", "code=|8480-6") == {data["nosys"]}
    assert find(store, "Observation", f"code={LOINC}|") == {data["bp"], data["hr"]}
    assert find(store, "Observation", f"code={LOINC}|8480-6,{SNOMED}|8480-6") == {
        data["bp"],
        data["snomed"],
    }
    assert find(store, "Observation", "code=8480") == set()  # tokens are exact


def test_not_includes_missing(store: Store, data: dict[str, str]) -> None:
    assert find(store, "Observation", f"code:not={LOINC}|8480-6") == {
        data["hr"],
        data["snomed"],
        data["nosys"],
        data["text_only"],
    }
    assert find(store, "Patient", "gender:not=male") == {data["female"], data["nogender"]}


def test_text(store: Store, data: dict[str, str]) -> None:
    assert find(store, "Observation", "code:text=systolic") == {data["bp"]}
    assert find(store, "Observation", "code:text=pulse") == {data["hr"]}  # CodeableConcept.text
    assert find(store, "Observation", "code:text=weigh") == {data["text_only"]}
    assert find(store, "Patient", "identifier:text=medical") == {data["male"]}


def test_code_typed_params_accept_the_implied_system(store: Store, data: dict[str, str]) -> None:
    assert find(store, "Patient", "gender=male") == {data["male"]}
    assert find(store, "Patient", "gender=http://hl7.org/fhir/administrative-gender|male") == {
        data["male"]
    }
    assert find(store, "Patient", "active=true") == {data["male"]}


def test_identifier_and_of_type(store: Store, data: dict[str, str]) -> None:
    assert find(store, "Patient", "identifier=M-1") == {data["male"], data["female"]}
    assert find(store, "Patient", "identifier=urn:mrn|M-1") == {data["male"]}
    assert find(
        store, "Patient", "identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|M-1"
    ) == {data["male"]}
    assert (
        find(
            store,
            "Patient",
            "identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|M-2",
        )
        == set()
    )
    with pytest.raises(BadRequest, match="of-type"):
        find(store, "Patient", "identifier:of-type=MR|M-1")


def test_missing(store: Store, data: dict[str, str]) -> None:
    assert find(store, "Patient", "gender:missing=true") == {data["nogender"]}
    assert find(store, "Patient", "gender:missing=false") == {data["male"], data["female"]}
    with pytest.raises(BadRequest, match="true or false"):
        find(store, "Patient", "gender:missing=yes")


def test_meta_params(store: Store, data: dict[str, str]) -> None:
    assert find(store, "Patient", "_tag=urn:tags|vip") == {data["male"]}
    assert find(store, "Patient", "_tag=vip") == {data["male"]}
    assert find(store, "Patient", f"_id={data['male']},{data['female']}") == {
        data["male"],
        data["female"],
    }
    assert find(store, "Patient", f"_id:not={data['male']}") == {data["female"], data["nogender"]}
    assert find(store, None, "_tag=vip") == {data["male"]}  # system level


def test_in_and_not_in_with_stored_valuesets(store: Store, data: dict[str, str]) -> None:
    store.create({"resourceType": "ValueSet", "status": "active", "url": "http://example.org/vs/vitals",
        "compose": {"include": [{"system": LOINC, "concept": [{"code": "8480-6"}, {"code": "8867-4"}]}]}})  # fmt: skip
    store.create({"resourceType": "CodeSystem", "status": "active", "content": "complete", "url": "http://example.org/cs",
        "concept": [{"code": "a", "concept": [{"code": "a1"}, {"code": "a2"}]}, {"code": "b"}]})  # fmt: skip
    vs_cs = store.create({"resourceType": "ValueSet", "status": "active", "url": "http://example.org/vs/a",
        "compose": {"include": [{"system": "http://example.org/cs", "filter": [{"property": "concept", "op": "is-a", "value": "a"}]}]}})  # fmt: skip
    with store.write() as ctx:
        a1 = ctx.create(obs([{"system": "http://example.org/cs", "code": "a1"}])).rid
        b = ctx.create(obs([{"system": "http://example.org/cs", "code": "b"}])).rid
    assert find(store, "Observation", "code:in=http://example.org/vs/vitals") == {
        data["bp"],
        data["hr"],
    }
    assert find(store, "Observation", f"code:in=ValueSet/{vs_cs.rid}") == {a1}
    assert find(store, "Observation", "code:not-in=http://example.org/vs/a") == {
        data["bp"], data["hr"], data["snomed"], data["nosys"], data["text_only"], b}  # fmt: skip
    with pytest.raises(BadRequest, match="Unknown ValueSet"):
        find(store, "Observation", "code:in=http://example.org/vs/none")


def test_above_below_on_tokens_are_unsupported(store: Store, data: dict[str, str]) -> None:
    with pytest.raises(BadRequest, match="not supported"):
        find(store, "Observation", f"code:below={SNOMED}|123", strict=True)
    page = store.search("Observation", [("code:below", f"{SNOMED}|123")])
    assert len(page.matches) == 5 and page.self_params == []
