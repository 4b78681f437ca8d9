"""Patient/$summary (ehr.operations.summary) on both databases: the document Bundle, its
Composition, sections, entries, narratives and empty sections."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import orjson
import pytest

from ehr.errors import BadRequest, Gone, NotFound
from ehr.operations.summary import patient_summary
from ehr.search.dates import instant_us
from ehr.store import Store
from ehr.validation import validate_resource

BASE = "http://exchange.example/fhir"
LOINC = "http://loinc.org"
NOW = instant_us("2025-07-21T08:00:00Z")
UCUM = "http://unitsofmeasure.org"
CAT = "http://terminology.hl7.org/CodeSystem/observation-category"


def put(store: Store, resource: dict[str, Any]) -> None:
    store.update(resource["resourceType"], resource["id"], resource)


def cc(code: str, text: str, system: str = LOINC) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}], "text": text}


def status(system_tail: str, code: str) -> dict[str, Any]:
    return {
        "coding": [{"system": f"http://terminology.hl7.org/CodeSystem/{system_tail}", "code": code}]
    }


def allergy(aid: str, text: str, clinical: str, verification: str = "confirmed") -> dict[str, Any]:
    return {
        "resourceType": "AllergyIntolerance", "id": aid, "patient": {"reference": "Patient/p1"},
        "clinicalStatus": status("allergyintolerance-clinical", clinical),
        "verificationStatus": status("allergyintolerance-verification", verification),
        "category": ["medication"], "criticality": "high", "code": {"text": text},
        "recordedDate": "2020-05-01",
        "reaction": [{"manifestation": [{"text": "荨麻疹"}], "severity": "moderate"}],
    }  # fmt: skip


def condition(cid: str, text: str, clinical: str, onset: str) -> dict[str, Any]:
    return {
        "resourceType": "Condition", "id": cid, "subject": {"reference": "Patient/p1"},
        "clinicalStatus": status("condition-clinical", clinical),
        "verificationStatus": status("condition-ver-status", "confirmed"),
        "code": {"text": text}, "onsetDateTime": onset,
        **({"abatementDateTime": "2024-01-20"} if clinical == "resolved" else {}),
    }  # fmt: skip


def obs(oid: str, cat: str, code: str, text: str, when: str, value: float, unit: str,
        patient: str = "p1", st: str = "final") -> dict[str, Any]:  # fmt: skip
    return {
        "resourceType": "Observation", "id": oid, "status": st,
        "category": [{"coding": [{"system": CAT, "code": cat}]}],
        "code": cc(code, text), "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": when,
        "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
    }  # fmt: skip


@pytest.fixture
def record(store: Store) -> Store:
    put(store, {"resourceType": "Patient", "id": "p1", "name": [{"text": "张三"}]})
    put(store, {"resourceType": "Patient", "id": "p2", "name": [{"family": "李", "given": ["四"]}]})
    put(store, {"resourceType": "Organization", "id": "exchange", "name": "区域健康信息交换平台"})
    put(store, {"resourceType": "Medication", "id": "med-aml", "code": {"text": "氨氯地平片 5mg"}})
    put(store, allergy("al-pen", "青霉素 (penicillin)", "active"))
    put(store, allergy("al-old", "花粉 (pollen)", "resolved"))
    put(store, allergy("al-no", "海鲜 (seafood)", "active", verification="refuted"))
    put(store, condition("c-htn", "原发性高血压", "active", "2019-03-02"))
    put(store, condition("c-dm", "2型糖尿病", "active", "2021-06-10"))
    put(store, condition("c-flu", "急性支气管炎", "resolved", "2024-01-05"))
    put(store, {
        "resourceType": "MedicationRequest", "id": "mr-met", "status": "active", "intent": "order",
        "subject": {"reference": "Patient/p1"}, "authoredOn": "2025-06-01",
        "medicationCodeableConcept": {"text": "二甲双胍片 0.5g"},
        "dosageInstruction": [{"text": "每日两次，每次0.5g，口服"}],
    })  # fmt: skip
    put(store, {
        "resourceType": "MedicationRequest", "id": "mr-amox", "status": "completed", "intent": "order",
        "subject": {"reference": "Patient/p1"}, "authoredOn": "2024-01-05",
        "medicationCodeableConcept": {"text": "阿莫西林胶囊"},
    })  # fmt: skip
    put(store, {
        "resourceType": "MedicationStatement", "id": "ms-aml", "status": "active",
        "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2025-01-10",
        "medicationReference": {"reference": "Medication/med-aml"},
    })  # fmt: skip
    for iid, vac, when, st in (("im-flu", "流感疫苗", "2024-10-20", "completed"),
                               ("im-hepb", "乙肝疫苗", "2001-02-01", "completed"),
                               ("im-err", "麻疹疫苗", "2023-01-01", "entered-in-error")):  # fmt: skip
        put(store, {
            "resourceType": "Immunization", "id": iid, "status": st, "vaccineCode": {"text": vac},
            "patient": {"reference": "Patient/p1"}, "occurrenceDateTime": when,
            "protocolApplied": [{"doseNumberPositiveInt": 1}],
        })  # fmt: skip
    put(
        store,
        obs(
            "lab-glu-old",
            "laboratory",
            "14771-0",
            "空腹血糖",
            "2024-02-01T08:00:00+08:00",
            7.9,
            "mmol/L",
        ),
    )
    put(
        store,
        obs(
            "lab-glu-new",
            "laboratory",
            "14771-0",
            "空腹血糖",
            "2025-06-01T08:00:00+08:00",
            6.4,
            "mmol/L",
        ),
    )
    put(
        store,
        obs(
            "lab-chol",
            "laboratory",
            "14647-2",
            "总胆固醇",
            "2025-03-01T08:00:00+08:00",
            4.9,
            "mmol/L",
        ),
    )
    put(store, obs("lab-x", "laboratory", "4548-4", "糖化血红蛋白", "2025-07-01T08:00:00+08:00", 9.9, "%",
                   st="cancelled"))  # fmt: skip
    put(
        store,
        obs("vs-hr-old", "vital-signs", "8867-4", "心率", "2025-01-01T09:00:00+08:00", 88, "/min"),
    )
    put(
        store,
        obs("vs-hr-new", "vital-signs", "8867-4", "心率", "2025-06-01T09:00:00+08:00", 72, "/min"),
    )
    put(
        store,
        obs("vs-wt", "vital-signs", "29463-7", "体重", "2025-06-01T09:00:00+08:00", 70.5, "kg"),
    )
    bp = obs("vs-bp", "vital-signs", "85354-9", "血压", "2025-06-01T09:00:00+08:00", 0, "mm[Hg]")
    del bp["valueQuantity"]
    bp["component"] = [
        {"code": cc("8480-6", "收缩压"), "valueQuantity": {"value": 128, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"}},
        {"code": cc("8462-4", "舒张压"), "valueQuantity": {"value": 82, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"}},
    ]  # fmt: skip
    put(store, bp)
    # someone else's newer results must not leak in
    put(
        store,
        obs(
            "lab-p2",
            "laboratory",
            "14771-0",
            "空腹血糖",
            "2025-07-01T08:00:00+08:00",
            5.0,
            "mmol/L",
            "p2",
        ),
    )
    put(
        store,
        obs(
            "vs-p2", "vital-signs", "8867-4", "心率", "2025-07-01T09:00:00+08:00", 60, "/min", "p2"
        ),
    )
    return store


def summary(store: Store, pid: str = "p1", **kw: Any) -> dict[str, Any]:
    out: dict[str, Any] = orjson.loads(patient_summary(store, pid, base=BASE, now=NOW, **kw))
    return out


def by_code(comp: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["code"]["coding"][0]["code"]: s for s in comp["section"]}


def refs(section: dict[str, Any]) -> list[str]:
    return [e["reference"].removeprefix(BASE + "/") for e in section.get("entry", [])]


def test_document_bundle_and_composition(record: Store) -> None:
    b = summary(record)
    validate_resource(b)  # structure, cardinalities, required codes of the whole document
    assert b["type"] == "document"
    assert b["identifier"]["system"] == "urn:ietf:rfc:3986"
    assert b["identifier"]["value"].startswith("urn:uuid:")
    assert b["timestamp"] == "2025-07-21T08:00:00.000000Z"
    comp = b["entry"][0]["resource"]
    assert comp["resourceType"] == "Composition"
    assert b["entry"][0]["fullUrl"] == f"urn:uuid:{comp['id']}"
    assert comp["status"] == "final"
    assert comp["type"]["coding"][0] == {
        "system": LOINC,
        "code": "60591-5",
        "display": "Patient summary Document",
    }
    assert comp["title"] == "患者摘要 / Patient Summary"
    assert comp["date"] == b["timestamp"]
    assert comp["subject"] == {"reference": f"{BASE}/Patient/p1", "display": "张三"}
    urls = [e["fullUrl"] for e in b["entry"]]
    assert len(urls) == len(set(urls))
    author = next(
        e["resource"] for e in b["entry"] if e["fullUrl"] == comp["author"][0]["reference"]
    )
    assert author["resourceType"] == "Device"
    assert [s["code"]["coding"][0]["code"] for s in comp["section"]] == [
        "48765-2", "11450-4", "10160-0", "11369-6", "30954-2", "8716-3"
    ]  # fmt: skip
    # every reference of the Composition resolves to an entry of the Bundle
    for s in comp["section"]:
        for e in s.get("entry", []):
            assert e["reference"] in urls


def test_sections_list_what_is_current(record: Store) -> None:
    sec = by_code(summary(record)["entry"][0]["resource"])
    assert refs(sec["48765-2"]) == ["AllergyIntolerance/al-pen"]
    assert refs(sec["11450-4"]) == ["Condition/c-dm", "Condition/c-htn"]  # newest onset first
    assert refs(sec["10160-0"]) == ["MedicationRequest/mr-met", "MedicationStatement/ms-aml"]
    assert refs(sec["11369-6"]) == ["Immunization/im-flu", "Immunization/im-hepb"]
    # the latest result per code, newest first; cancelled and other patients' left out
    assert refs(sec["30954-2"]) == ["Observation/lab-glu-new", "Observation/lab-chol"]
    # vital signs in panel order: blood pressure, heart rate, weight
    assert refs(sec["8716-3"]) == [
        "Observation/vs-bp",
        "Observation/vs-hr-new",
        "Observation/vs-wt",
    ]


def test_included_resources_and_the_medication_they_refer_to(record: Store) -> None:
    b = summary(record)
    keys = [e["fullUrl"].removeprefix(BASE + "/") for e in b["entry"][1:]]
    assert keys[0] == "Patient/p1"
    assert "Medication/med-aml" in keys  # referenced by MedicationStatement.medicationReference
    for absent in ("AllergyIntolerance/al-old", "Condition/c-flu", "MedicationRequest/mr-amox",
                   "Immunization/im-err", "Observation/lab-glu-old", "Observation/lab-x",
                   "Observation/lab-p2", "Observation/vs-p2", "Patient/p2"):  # fmt: skip
        assert absent not in keys
    stored = {e["fullUrl"]: e["resource"] for e in b["entry"]}
    assert stored[f"{BASE}/Observation/lab-glu-new"]["valueQuantity"]["value"] == 6.4
    assert stored[f"{BASE}/Patient/p1"]["meta"]["versionId"] == "1"


def test_narratives_are_xhtml_with_chinese_and_english_labels(record: Store) -> None:
    comp = summary(record)["entry"][0]["resource"]
    sec = by_code(comp)
    for s in [comp, *comp["section"]]:
        assert s["text"]["status"] == "generated"
        root = ET.fromstring(s["text"]["div"])  # well-formed XML
        assert root.tag == "{http://www.w3.org/1999/xhtml}div"
    for s in comp["section"]:
        assert "(" in s["title"] and any("一" <= ch <= "鿿" for ch in s["title"])

    def text(code: str) -> str:
        return "".join(ET.fromstring(sec[code]["text"]["div"]).itertext())

    assert "过敏原 (Allergen)" in text("48765-2") and "青霉素 (penicillin)" in text("48765-2")
    assert "高 (high)" in text("48765-2") and "荨麻疹" in text("48765-2")
    assert "原发性高血压" in text("11450-4") and "急性支气管炎" not in text("11450-4")
    assert "氨氯地平片 5mg" in text("10160-0")  # the name comes from the referenced Medication
    assert "每日两次，每次0.5g，口服" in text("10160-0")
    assert "流感疫苗" in text("11369-6") and "麻疹疫苗" not in text("11369-6")
    assert "6.4 mmol/L" in text("30954-2") and "7.9 mmol/L" not in text("30954-2")
    assert "128/82 mmHg" in text("8716-3") and "72 /min" in text("8716-3")


def test_empty_sections_say_why(record: Store) -> None:
    comp = summary(record, "p2")["entry"][0]["resource"]
    sec = by_code(comp)
    assert refs(sec["30954-2"]) == ["Observation/lab-p2"]
    assert refs(sec["8716-3"]) == ["Observation/vs-p2"]
    assert "emptyReason" not in sec["30954-2"]
    for code in ("48765-2", "11450-4", "10160-0", "11369-6"):
        s = sec[code]
        assert "entry" not in s
        assert s["emptyReason"]["coding"][0]["code"] == "nilknown"
        assert "无已知记录 (No information available)" in s["text"]["div"]
    assert comp["subject"]["display"] == "李四"


def test_deterministic(record: Store) -> None:
    one = patient_summary(record, "p1", base=BASE, now=NOW)
    assert patient_summary(record, "p1", base=BASE, now=NOW) == one
    later = orjson.loads(patient_summary(record, "p1", base=BASE, now=NOW + 1))
    assert later["identifier"] != orjson.loads(one)["identifier"]
    record.update(
        "Condition", "c-htn", condition("c-htn", "原发性高血压", "remission", "2019-03-02")
    )
    changed = orjson.loads(patient_summary(record, "p1", base=BASE, now=NOW))
    assert changed["identifier"] != orjson.loads(one)["identifier"]
    assert refs(by_code(changed["entry"][0]["resource"])["11450-4"]) == ["Condition/c-dm"]


def test_author_organization(record: Store) -> None:
    b = summary(record, author="Organization/exchange")
    comp = b["entry"][0]["resource"]
    assert comp["author"] == [{"reference": f"{BASE}/Organization/exchange"}]
    assert b["entry"][2]["resource"]["name"] == "区域健康信息交换平台"
    with pytest.raises(BadRequest):
        summary(record, author="Organization/nobody")
    with pytest.raises(BadRequest):
        summary(record, author="Practitioner/x")


def test_unknown_or_deleted_patient(record: Store) -> None:
    with pytest.raises(NotFound):
        summary(record, "nobody")
    record.delete("Patient", "p2")
    with pytest.raises(Gone):
        summary(record, "p2")
