"""ehr.demo: the deterministic demo city is valid FHIR R4, self-contained, in load order, Chinese,
and never carries a citizen ID in clear."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

from ehr.codesystems import ETHNICITIES, ETHNICITY_EXTENSION, SEX_EXTENSION, gb_sex_to_gender
from ehr.demo import (
    DEMO_CITIZEN_ID_KEY,
    RESOURCE_ORDER,
    anchor_date,
    city_bundle,
    demo_citizen_ids,
    generate_city,
)
from ehr.demo.__main__ import main as demo_main
from ehr.demo.names import pinyin_of
from ehr.identifiers import (
    CITIZEN_ID_HASH_SYSTEM,
    CITIZEN_ID_SYSTEM,
    citizen_id_birth_date,
    citizen_id_sex,
    hash_citizen_id,
    is_valid_citizen_id,
)
from ehr.validation import validate_resource

HAN = re.compile(r"^[\u4e00-\u9fff]+$")
PINYIN = re.compile(r"^[A-Z][a-zü']*$")


@pytest.fixture(scope="module")
def city() -> list[dict[str, Any]]:
    return generate_city()


@pytest.fixture(scope="module")
def by_key(city: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {f"{r['resourceType']}/{r['id']}": r for r in city}


def _of(city: list[dict[str, Any]], rtype: str) -> list[dict[str, Any]]:
    return [r for r in city if r["resourceType"] == rtype]


def _references(x: Any) -> Iterator[str]:
    if isinstance(x, dict):
        if isinstance(x.get("reference"), str):
            yield x["reference"]
        for v in x.values():
            yield from _references(v)
    elif isinstance(x, list):
        for v in x:
            yield from _references(v)


def _dump(resources: Any) -> str:
    return json.dumps(resources, ensure_ascii=False, separators=(",", ":"))


# ------------------------------------------------------------------------- determinism


def test_same_seed_gives_byte_identical_output(city: list[dict[str, Any]]) -> None:
    assert _dump(generate_city(2026, 300)) == _dump(city)


def test_a_different_seed_gives_a_different_city() -> None:
    a, b = generate_city(1, 20), generate_city(2, 20)
    assert _dump(a) != _dump(b)
    assert [p["name"][0]["text"] for p in _of(a, "Patient")] != [
        p["name"][0]["text"] for p in _of(b, "Patient")
    ]


def test_dates_count_from_the_seed_anchor_not_today(city: list[dict[str, Any]]) -> None:
    anchor = anchor_date(2026)
    assert anchor == date(2025, 7, 21) and anchor_date(2027) != anchor
    for enc in _of(city, "Encounter"):
        assert enc["period"]["start"] < enc["period"]["end"] < anchor.isoformat()
    for pat in _of(city, "Patient"):
        assert pat["birthDate"] < anchor.isoformat()


# ------------------------------------------------------------------------------- shape


def test_size_and_kinds(city: list[dict[str, Any]]) -> None:
    counts = Counter(r["resourceType"] for r in city)
    assert set(counts) == set(RESOURCE_ORDER)
    assert counts["Patient"] == 300
    assert 35 <= counts["Practitioner"] == counts["PractitionerRole"] <= 50
    hospitals = [o for o in _of(city, "Organization") if o["id"].startswith("org-h")]
    assert [h["name"] for h in hospitals] == [
        "云泽市第一人民医院",
        "云泽市中医院",
        "云泽市妇幼保健院",
        "云泽市儿童医院",
    ]
    assert counts["RelatedPerson"] > 0 and counts["Immunization"] > 0
    assert counts["AllergyIntolerance"] > 0 and counts["MedicationRequest"] > 0


def test_citizens_parameter() -> None:
    small = generate_city(7, 5)
    assert [p["id"] for p in _of(small, "Patient")] == [f"pat-{i:04d}" for i in range(1, 6)]
    assert not _of(generate_city(7, 0), "Patient")


def test_ids_are_unique_valid_and_readable(city: list[dict[str, Any]]) -> None:
    keys = [f"{r['resourceType']}/{r['id']}" for r in city]
    assert len(keys) == len(set(keys))
    assert all(re.fullmatch(r"[A-Za-z0-9\-.]{1,64}", r["id"]) for r in city)
    assert "Patient/pat-0001" in keys and "Organization/org-h1" in keys


def test_every_resource_is_valid_r4b(city: list[dict[str, Any]]) -> None:
    errors = []
    for r in city:
        try:
            get_fhir_model_class(r["resourceType"]).model_validate(r)
        except Exception as exc:  # collect them all for one readable failure
            errors.append(f"{r['resourceType']}/{r['id']}: {exc}")
    assert not errors, "\n".join(errors[:5])


def test_every_resource_passes_the_store_validation(city: list[dict[str, Any]]) -> None:
    for r in city:
        validate_resource(r, expected_type=r["resourceType"], expected_id=r["id"])


def test_references_resolve_and_point_backwards(city: list[dict[str, Any]]) -> None:
    seen: set[str] = set()
    for r in city:
        for reference in _references(r):
            assert reference in seen, f"{r['resourceType']}/{r['id']} -> {reference}"
        seen.add(f"{r['resourceType']}/{r['id']}")


def test_types_come_in_load_order(city: list[dict[str, Any]]) -> None:
    groups = [
        t
        for i, t in enumerate(r["resourceType"] for r in city)
        if i == 0 or t != city[i - 1]["resourceType"]
    ]
    assert groups == list(RESOURCE_ORDER)


def test_every_resource_is_labelled_test_data(city: list[dict[str, Any]]) -> None:
    htest = ("http://terminology.hl7.org/CodeSystem/v3-ActReason", "HTEST")
    for r in city:
        assert [(c["system"], c["code"]) for c in r["meta"]["security"]] == [htest]


# ------------------------------------------------------------------- protected citizen ID


def test_no_clear_citizen_id_anywhere(city: list[dict[str, Any]]) -> None:
    text = _dump(city)
    clear = demo_citizen_ids()
    assert len(clear) == 300 and len(set(clear.values())) == 300
    assert CITIZEN_ID_SYSTEM not in text
    bodies = {cid[:17] for cid in clear.values()}  # not even without the check digit
    runs = set(re.findall(r"[0-9]{17,}", text))
    assert runs  # the scan sees long numbers (health record numbers have 17 digits)
    leaks = {run for run in runs for i in range(len(run) - 16) if run[i : i + 17] in bodies}
    assert not leaks


def test_patients_carry_the_hash_and_a_region_only_mask(city: list[dict[str, Any]]) -> None:
    clear = demo_citizen_ids()
    anchor = anchor_date(2026)
    for pat in _of(city, "Patient"):
        cid = clear[pat["id"]]
        assert is_valid_citizen_id(cid, today=anchor)
        hashed = [i for i in pat["identifier"] if i["system"] == CITIZEN_ID_HASH_SYSTEM]
        assert len(hashed) == 1
        assert hashed[0]["value"] == hash_citizen_id(cid, DEMO_CITIZEN_ID_KEY)
        assert hashed[0]["extension"][0]["valueString"] == cid[:6] + "*" * 12
        # the ID agrees with the demographics it was made from
        assert citizen_id_birth_date(cid).isoformat() == pat["birthDate"]
        assert gb_sex_to_gender(citizen_id_sex(cid)) == pat["gender"]
        # invented prefectures 3299 (the city), 4199, 5199: no real person's number
        assert cid[:4] in ("3299", "4199", "5199")


def test_the_hash_key_is_a_parameter() -> None:
    a = _of(generate_city(3, 2), "Patient")[0]["identifier"][0]["value"]
    b = _of(generate_city(3, 2, id_key=b"deployment key"), "Patient")[0]["identifier"][0]["value"]
    assert a != b


def test_parents_acting_for_children(city: list[dict[str, Any]], by_key: dict[str, Any]) -> None:
    anchor = anchor_date(2026)
    patient_hashes = {
        i["value"]: p
        for p in _of(city, "Patient")
        for i in p["identifier"]
        if i["system"] == CITIZEN_ID_HASH_SYSTEM
    }
    related = _of(city, "RelatedPerson")
    assert related
    for rp in related:
        child = by_key[rp["patient"]["reference"]]
        assert child["birthDate"] > date(anchor.year - 18, anchor.month, anchor.day).isoformat()
        assert rp["relationship"][0]["coding"][0]["code"] in ("MTH", "FTH")
        parent = patient_hashes[rp["identifier"][0]["value"]]  # the parent is a citizen too
        assert parent["name"][0]["text"] == rp["name"][0]["text"]
        assert parent["birthDate"] < child["birthDate"]


# ------------------------------------------------------------------------- Chinese data


def test_chinese_names_with_pinyin(city: list[dict[str, Any]]) -> None:
    for r in _of(city, "Patient") + _of(city, "Practitioner"):
        han, latin = r["name"]
        assert HAN.match(han["text"]) and han["text"] == han["family"] + han["given"][0]
        assert PINYIN.match(latin["family"]) and PINYIN.match(latin["given"][0])
        assert latin["text"] == f"{latin['family']} {latin['given'][0]}"
        assert [e["valueCode"] for e in han["extension"]] == ["IDE", "zh-CN"]
        assert [e["valueCode"] for e in latin["extension"]] == ["ABC", "zh-Latn-pinyin"]


def test_pinyin_rules() -> None:
    assert pinyin_of("建国") == "Jianguo"
    assert pinyin_of("伟") == "Wei"
    assert pinyin_of("一安") == "Yi'an"  # apostrophe before a syllable starting with a/o/e
    assert pinyin_of("浩恩") == "Hao'en"


def test_patient_demographics(city: list[dict[str, Any]], by_key: dict[str, Any]) -> None:
    for pat in _of(city, "Patient"):
        ext = {e["url"]: e["valueCoding"] for e in pat["extension"]}
        assert gb_sex_to_gender(ext[SEX_EXTENSION]["code"]) == pat["gender"]
        assert ext[ETHNICITY_EXTENSION]["display"] == ETHNICITIES[ext[ETHNICITY_EXTENSION]["code"]]
        addr = pat["address"][0]
        assert (addr["state"], addr["city"], addr["country"]) == ("江苏省", "云泽市", "CN")
        assert addr["text"].startswith("江苏省云泽市" + addr["district"] + addr["line"][0])
        for tel in pat.get("telecom", []):
            assert re.fullmatch(r"140\d{8}", tel["value"])  # the non-subscriber demo range
        centre = pat["managingOrganization"]["reference"]
        for gp in pat.get("generalPractitioner", []):
            assert by_key[gp["reference"]]["organization"]["reference"] == centre
    assert Counter(p["gender"] for p in _of(city, "Patient")).keys() == {"male", "female"}


def test_hospital_mrns_match_visits(city: list[dict[str, Any]]) -> None:
    visited: dict[str, set[str]] = {}
    for enc in _of(city, "Encounter"):
        org = enc["serviceProvider"]["reference"]
        if org.startswith("Organization/org-h"):
            visited.setdefault(enc["subject"]["reference"], set()).add(org)
    for pat in _of(city, "Patient"):
        mrn_orgs = {
            i["assigner"]["reference"]
            for i in pat["identifier"]
            if i["system"].startswith("https://ehr.example.cn/fhir/sid/mrn/")
        }
        assert mrn_orgs == visited.get(f"Patient/{pat['id']}", set())


# ----------------------------------------------------------------------------- clinical


def test_vital_signs_follow_the_profiles(city: list[dict[str, Any]]) -> None:
    loinc = {
        "heartrate": "8867-4",
        "bp": "85354-9",
        "bodytemp": "8310-5",
        "bodyweight": "29463-7",
        "bodyheight": "8302-2",
        "oxygensat": "2708-6",
        "bmi": "39156-5",
    }
    seen = set()
    for obs in _of(city, "Observation"):
        if obs["category"][0]["coding"][0]["code"] != "vital-signs":
            continue
        profile = obs["meta"]["profile"][0].rsplit("/", 1)[1]
        seen.add(profile)
        assert obs["code"]["coding"][0] == {
            **obs["code"]["coding"][0],
            "system": "http://loinc.org",
            "code": loinc[profile],
        }
        if profile == "bp":
            comps = {c["code"]["coding"][0]["code"]: c["valueQuantity"] for c in obs["component"]}
            assert set(comps) == {"8480-6", "8462-4"}
            assert comps["8480-6"]["value"] > comps["8462-4"]["value"]
            assert all(
                q["system"] == "http://unitsofmeasure.org" and q["code"] == "mm[Hg]"
                for q in comps.values()
            )
        else:
            q = obs["valueQuantity"]
            assert q["system"] == "http://unitsofmeasure.org" and q["code"]
        if profile == "oxygensat":
            assert "59408-5" in [c["code"] for c in obs["code"]["coding"]]
    assert seen == set(loinc)


def test_clinical_codes(city: list[dict[str, Any]]) -> None:
    icd = Counter(c["code"]["coding"][0]["code"] for c in _of(city, "Condition"))
    assert icd["I10"] > 20 and icd["E11.9"] > 5
    labs = Counter(o["code"]["coding"][0]["code"] for o in _of(city, "Observation"))
    assert labs["14771-0"] > 0 and labs["4548-4"] > 0  # fasting glucose (mmol/L), HbA1c
    for mr in _of(city, "MedicationRequest"):
        assert mr["medicationCodeableConcept"]["text"]
    assert all(
        i["vaccineCode"]["coding"][0]["system"] == "http://hl7.org/fhir/sid/cvx"
        for i in _of(city, "Immunization")
    )


def test_nothing_happens_before_birth(city: list[dict[str, Any]], by_key: dict[str, Any]) -> None:
    for enc in _of(city, "Encounter"):
        assert enc["period"]["start"][:10] >= by_key[enc["subject"]["reference"]]["birthDate"]
    for imm in _of(city, "Immunization"):
        assert imm["occurrenceDateTime"][:10] >= by_key[imm["patient"]["reference"]]["birthDate"]


def test_chronic_medicines_end_in_one_active_order(city: list[dict[str, Any]]) -> None:
    active: Counter[tuple[str, str]] = Counter()
    for mr in _of(city, "MedicationRequest"):
        if (
            mr["status"] == "active"
            and mr["courseOfTherapyType"]["coding"][0]["code"] == "continuous"
        ):
            active[
                (mr["subject"]["reference"], mr["medicationCodeableConcept"]["coding"][0]["code"])
            ] += 1
    assert active and max(active.values()) == 1


# ------------------------------------------------------------------------------- bundle


def test_city_bundle_is_a_transaction_of_puts() -> None:
    bundle = city_bundle(5, 10, base="https://fhir.example.cn/fhir/")
    resources = generate_city(5, 10)
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "transaction"
    assert [e["resource"] for e in bundle["entry"]] == resources
    for e in bundle["entry"]:
        url = f"{e['resource']['resourceType']}/{e['resource']['id']}"
        assert e["request"] == {"method": "PUT", "url": url}
        assert e["fullUrl"] == f"https://fhir.example.cn/fhir/{url}"
    get_fhir_model_class("Bundle").model_validate(bundle)
    assert "fullUrl" not in city_bundle(5, 1)["entry"][0]


def test_command_line_writes_ndjson(tmp_path: Path) -> None:
    out = tmp_path / "city.ndjson"
    assert demo_main(["--seed", "4", "--citizens", "3", "--ndjson", "-o", str(out)]) == 0
    lines = out.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == generate_city(4, 3)
