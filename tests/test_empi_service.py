"""EMPI service (ehr.empi.service) on both databases: golden records and links on every Patient
write, probabilistic links at the thresholds, the review queue, $match, link/unlink, merge and
unmerge, consent, concurrency, and $everything across a citizen's records. Issue 9."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import date
from typing import Any

import orjson
import pytest

from ehr.empi.features import DEFAULT_IDENTITY
from ehr.empi.hook import Empi
from ehr.empi.links import EMPI_SYSTEM, MATCH_GRADE_EXT, golden_sources, is_golden, link_info
from ehr.empi.scoring import DEFAULT_CONFIG
from ehr.empi.service import (
    expand_search_params,
    golden_record_id,
    install,
    link,
    linked_patient_ids,
    match_operation,
    merge,
    merge_operation,
    patient_match,
    person_patient_ids,
    resolve_review,
    review_tasks,
    unlink,
    unmerge,
)
from ehr.errors import Conflict, FhirError, Forbidden
from ehr.identifiers import (
    CITIZEN_ID_HASH_SYSTEM,
    CITIZEN_ID_SYSTEM,
    citizen_id_identifier,
    make_citizen_id,
    mrn_system,
)
from ehr.operations.everything import everything_page
from ehr.search.engine import ambient_restriction
from ehr.store import Store

KEY = b"empi-service-test-key"
GOLDEN = f"{EMPI_SYSTEM}|golden"
V3_ACTCODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"


def cid(seq: int, born: date = date(1985, 3, 7), female: bool = True) -> str:
    return make_citizen_id("330106", born, seq * 2 if female else seq * 2 + 1, female)


def patient(
    hospital: str,
    mrn: str,
    name: str = "张晓明",
    *,
    birth: str | None = "1985-03-07",
    gender: str = "female",
    phone: str | None = None,
    citizen: str | None = None,
    line: str | None = None,
    city: str = "杭州市",
) -> dict[str, Any]:
    idents: list[dict[str, Any]] = [{"system": mrn_system(hospital), "value": mrn}]
    if citizen:
        idents.insert(0, citizen_id_identifier(citizen, KEY))
    p: dict[str, Any] = {
        "resourceType": "Patient",
        "identifier": idents,
        "name": [{"text": name}],
        "gender": gender,
    }
    if birth:
        p["birthDate"] = birth
    if phone:
        p["telecom"] = [{"system": "phone", "value": phone, "use": "mobile"}]
    if line:
        p["address"] = [
            {
                "state": "浙江省",
                "city": city,
                "district": "西湖区" if city == "杭州市" else "海曙区",
                "line": [line],
            }
        ]
    return p


@pytest.fixture
def empi(store: Store) -> Empi:
    return install(store, identity=replace(DEFAULT_IDENTITY, hmac_key=KEY))


def _load(hit: Any) -> dict[str, Any]:
    return orjson.loads(hit.data)  # type: ignore[no-any-return]


def goldens(store: Store) -> list[dict[str, Any]]:
    return [_load(h) for h in store.search("Patient", [("_tag", GOLDEN)]).matches]


def golden_of(store: Store, pid: str) -> dict[str, Any]:
    gid = golden_record_id(store, pid)
    assert gid is not None and gid != pid
    return store.read("Patient", gid).resource()


def audits(store: Store, subtype: str) -> list[dict[str, Any]]:
    page = store.search("AuditEvent", [("subtype", f"{EMPI_SYSTEM}|{subtype}")])
    return [_load(h) for h in page.matches]


def score_total(empi: Empi, store: Store, p: dict[str, Any]) -> float:
    """The best candidate's score for ``p`` as the hook will compute it."""
    with store.read_conn() as conn:
        found = empi.matcher.candidates(conn, empi.matcher.extract(p))
    assert found, "no candidate at all"
    return found[0].score.total


def put(store: Store, resource: dict[str, Any]) -> None:
    store.update(resource["resourceType"], resource["id"], resource)


# ------------------------------------------------------------------------ deterministic


def test_same_citizen_id_from_two_hospitals_makes_one_golden_record(
    store: Store, empi: Empi
) -> None:
    citizen = cid(1)
    a = store.create(patient("hosp-01", "A-001", citizen=citizen, phone="13800138000"))
    # the second hospital writes a romanised name and no birth date: only the ID can tell
    b = store.create(patient("hosp-02", "B-777", "Zhang Xiaoming", birth=None, citizen=citizen))
    gs = goldens(store)
    assert len(gs) == 1
    golden = gs[0]
    assert golden_sources(golden) == [a.rid, b.rid]
    info = link_info(golden, b.rid)
    assert info is not None and info["match-grade"] == "certain" and info["link-source"] == "AUTO"
    # the hospitals' records are exactly as written: version 1, no link
    for r in (a, b):
        src = store.read("Patient", r.rid)
        assert src.version == 1 and "link" not in src.resource()
    # the golden record copies demographics but no identifier: lookups by ID find hospitals only
    assert "identifier" not in golden and golden["birthDate"] == "1985-03-07"
    assert {n["text"] for n in golden["name"]} == {"张晓明", "Zhang Xiaoming"}
    hits = store.search(
        "Patient",
        [
            (
                "identifier",
                f"{CITIZEN_ID_HASH_SYSTEM}|{a.stored().resource()['identifier'][0]['value']}",
            )
        ],
    )
    assert sorted(h.rid for h in hits.matches) == sorted([a.rid, b.rid])
    # a chained search finds the golden record of an MRN
    found = store.search(
        "Patient", [("_tag", GOLDEN), ("link:Patient.identifier", f"{mrn_system('hosp-02')}|B-777")]
    )
    assert [h.rid for h in found.matches] == [golden["id"]]
    # the automatic link is audited, with both patients as entities
    events = audits(store, "link")
    assert len(events) == 1
    assert {e["what"]["reference"] for e in events[0]["entity"]} == {
        f"Patient/{b.rid}",
        f"Patient/{golden['id']}",
    }
    assert not review_tasks(store)
    store.validator(golden, expected_type="Patient")
    store.validator(events[0], expected_type="AuditEvent")


def test_different_citizen_ids_are_never_linked(store: Store, empi: Empi) -> None:
    twin_a = patient("hosp-01", "1", "王伟", phone="13800138000", citizen=cid(2), line="文三路1号")
    twin_b = patient("hosp-02", "2", "王伟", phone="13800138000", citizen=cid(3), line="文三路1号")
    store.create(twin_a)
    store.create(twin_b)
    assert len(goldens(store)) == 2
    assert not review_tasks(store)


def test_health_card_links_deterministically(store: Store, empi: Empi) -> None:
    card = {"system": "https://ehr.example.cn/fhir/sid/health-card", "value": "HC-42"}
    a = patient("hosp-01", "1", "李娜", birth="1990-01-01")
    b = patient("hosp-02", "2", "Li Na", birth=None)
    a["identifier"].append(card)
    b["identifier"].append(card)
    ra, rb = store.create(a), store.create(b)
    assert golden_record_id(store, ra.rid) == golden_record_id(store, rb.rid)


# ------------------------------------------------------------------------ probabilistic


def test_probable_match_just_above_the_upper_threshold_links(store: Store, empi: Empi) -> None:
    first = store.create(
        patient("hosp-01", "1", phone="13800138000", line="文三路90号1幢2单元301室")
    )
    # pinyin instead of characters, no phone, no address
    dup = patient("hosp-02", "9", "Zhang Xiaoming")
    total = score_total(empi, store, dup)
    assert DEFAULT_CONFIG.upper <= total < DEFAULT_CONFIG.upper + 4
    second = store.create(dup)
    golden = golden_of(store, second.rid)
    assert golden_sources(golden) == [first.rid, second.rid]
    info = link_info(golden, second.rid)
    assert info is not None and info["match-grade"] == "probable" and info["link-source"] == "AUTO"
    assert "name=pinyin" in info["explanation"] and 0.99 <= info["score"] < 1
    assert not review_tasks(store)


def test_possible_match_just_below_the_upper_threshold_opens_a_review(
    store: Store, empi: Empi
) -> None:
    first = store.create(
        patient("hosp-01", "1", phone="13800138000", line="文三路90号1幢2单元301室")
    )
    # pinyin, another phone and an address in another city: a bit less evidence
    dup = patient(
        "hosp-02", "9", "Zhang Xiaoming", phone="13900000000", line="中山路5号", city="宁波市"
    )
    total = score_total(empi, store, dup)
    assert DEFAULT_CONFIG.upper - 4 < total < DEFAULT_CONFIG.upper
    second = store.create(dup)
    # not linked: a golden record of its own, and a review Task
    assert golden_record_id(store, second.rid) != golden_record_id(store, first.rid)
    tasks = review_tasks(store)
    assert len(tasks) == 1
    task = tasks[0]
    assert task["focus"] == {"reference": f"Patient/{second.rid}"} and task["status"] == "ready"
    cand = task["input"][0]
    assert cand["valueReference"]["reference"] == f"Patient/{golden_record_id(store, first.rid)}"
    grade = next(e["valueCode"] for e in cand["extension"] if e["url"] == MATCH_GRADE_EXT)
    assert grade == "possible"
    store.validator(task, expected_type="Task")
    # an update with the same identity does not open a second Task
    again = store.read("Patient", second.rid).resource()
    again["telecom"][0]["use"] = "home"
    store.update("Patient", second.rid, again)
    assert len(review_tasks(store)) == 1

    # the reviewer decides it is the same person
    done = resolve_review(store, task["id"], "match", by="Practitioner/reviewer-1")
    assert done["status"] == "completed"
    assert golden_record_id(store, second.rid) == golden_record_id(store, first.rid)
    golden = golden_of(store, second.rid)
    info = link_info(golden, second.rid)
    assert (
        info is not None and info["link-source"] == "MANUAL" and info["match-grade"] == "possible"
    )
    assert len(goldens(store)) == 1  # the temporary golden record is gone
    assert not review_tasks(store)
    with pytest.raises(Conflict):
        resolve_review(store, task["id"], "no-match")


def test_a_plain_patient_linking_a_source_is_not_its_golden_record(
    store: Store, empi: Empi
) -> None:
    """Candidates are grouped by the golden-tagged Patient linking them: another Patient whose
    ``link`` refers to the source (written before the golden record, so older) is not one."""
    citizen = cid(3)
    other = store.create(
        {
            "resourceType": "Patient",
            "name": [{"text": "欧阳娜娜"}],
            "birthDate": "1970-01-01",
            "link": [{"other": {"reference": "Patient/src-1"}, "type": "seealso"}],
        }
    )
    put(store, {**patient("hosp-01", "A-001", citizen=citizen), "id": "src-1"})
    gid = golden_record_id(store, "src-1")
    assert gid not in (None, "src-1", other.rid)
    b = store.create(patient("hosp-02", "B-001", citizen=citizen))
    assert golden_record_id(store, b.rid) == gid
    with store.read_conn() as conn:
        found = empi.matcher.candidates(conn, empi.matcher.extract(patient("x", "1")))
    assert [c.golden_id for c in found] == [gid]


def test_no_match_decision_is_remembered(store: Store, empi: Empi) -> None:
    first = store.create(
        patient("hosp-01", "1", phone="13800138000", line="文三路90号1幢2单元301室")
    )
    second = store.create(
        patient(
            "hosp-02", "9", "Zhang Xiaoming", phone="13900000000", line="中山路5号", city="宁波市"
        )
    )
    (task,) = review_tasks(store)
    resolve_review(store, task["id"], "no-match", by="Practitioner/reviewer-1")
    assert golden_record_id(store, second.rid) != golden_record_id(store, first.rid)
    assert len(audits(store, "no-match")) == 1
    # the record changes (phone now agrees: enough to auto-link), but the decision stands
    changed = store.read("Patient", second.rid).resource()
    changed["telecom"] = [{"system": "phone", "value": "13800138000"}]
    store.update("Patient", second.rid, changed)
    assert golden_record_id(store, second.rid) != golden_record_id(store, first.rid)
    assert not review_tasks(store)


def test_update_that_reveals_a_match_moves_a_lone_record(store: Store, empi: Empi) -> None:
    first = store.create(patient("hosp-01", "1", citizen=cid(7)))
    second = store.create(patient("hosp-02", "2", "赵六", birth="1970-01-01"))
    assert golden_record_id(store, second.rid) != golden_record_id(store, first.rid)
    corrected = store.read("Patient", second.rid).resource()
    corrected["identifier"].append(citizen_id_identifier(cid(7), KEY))
    store.update("Patient", second.rid, corrected)
    assert golden_record_id(store, second.rid) == golden_record_id(store, first.rid)
    assert len(goldens(store)) == 1


# --------------------------------------------------------------------------------- $match


def test_match_returns_golden_records_with_grades_and_scores(store: Store, empi: Empi) -> None:
    a = store.create(patient("hosp-01", "1", citizen=cid(4), phone="13800138000"))
    store.create(patient("hosp-02", "2", "张晓明", birth="1985-03-08", phone="13700000000"))  # near
    store.create(patient("hosp-03", "3", "李四", birth="1960-05-05"))  # unrelated
    query = {
        "resourceType": "Patient",
        "identifier": [{"system": CITIZEN_ID_SYSTEM, "value": cid(4)}],  # in clear: hashed first
        "name": [{"family": "张", "given": ["晓明"]}],
        "birthDate": "1985-03-07",
    }
    bundle = patient_match(store, query, base="https://exchange.example/fhir")
    assert bundle["type"] == "searchset"
    entries = bundle["entry"]
    grades = [
        next(e["valueCode"] for e in x["search"]["extension"] if e["url"] == MATCH_GRADE_EXT)
        for x in entries
    ]
    assert grades[0] == "certain" and entries[0]["search"]["score"] == 1.0
    assert entries[0]["resource"]["id"] == golden_record_id(store, a.rid) and is_golden(
        entries[0]["resource"]
    )
    assert (
        entries[0]["fullUrl"]
        == f"https://exchange.example/fhir/Patient/{entries[0]['resource']['id']}"
    )
    assert len(entries) == 2 and grades[1] in ("probable", "possible")
    assert all(0 <= x["search"]["score"] <= 1 for x in entries)
    assert [x["search"]["score"] for x in entries] == sorted(
        (x["search"]["score"] for x in entries), reverse=True
    )
    # onlyCertainMatches and count through the operation's Parameters
    certain = match_operation(
        store,
        {"resourceType": "Parameters", "parameter": [
            {"name": "resource", "resource": query},
            {"name": "onlyCertainMatches", "valueBoolean": True},
            {"name": "count", "valueInteger": 5},
        ]},
    )  # fmt: skip
    assert [x["resource"]["id"] for x in certain["entry"]] == [entries[0]["resource"]["id"]]
    nobody = patient_match(
        store,
        {"resourceType": "Patient", "name": [{"text": "欧阳娜娜"}], "birthDate": "2001-01-01"},
    )
    assert nobody["total"] == 0 and "entry" not in nobody
    with pytest.raises(FhirError):
        patient_match(store, {"resourceType": "Patient", "gender": "male"})


# ---------------------------------------------------------------------- link and unlink


def test_manual_link_and_unlink(store: Store, empi: Empi) -> None:
    a = store.create(patient("hosp-01", "1", "陈静", birth="1992-02-02"))
    b = store.create(patient("hosp-02", "2", "陈晶晶", birth="1980-10-10"))
    ga = golden_record_id(store, a.rid)
    assert ga is not None and golden_record_id(store, b.rid) != ga
    golden = link(store, b.rid, a.rid, by="Practitioner/clerk")  # a source names its golden record
    assert golden["id"] == ga and golden_sources(golden) == [a.rid, b.rid]
    assert (link_info(golden, b.rid) or {})["link-source"] == "MANUAL"
    assert len(goldens(store)) == 1
    assert sorted(linked_patient_ids(store, ga)) == sorted([ga, a.rid, b.rid])
    assert set(person_patient_ids(store, b.rid)) == {ga, a.rid, b.rid}

    new = unlink(store, b.rid, ga, by="Practitioner/clerk")
    assert golden_record_id(store, b.rid) == new != ga
    assert golden_sources(store.read("Patient", ga).resource()) == [a.rid]
    with pytest.raises(Conflict):
        unlink(store, a.rid, ga)  # the only record of its golden record
    assert [e["agent"][0]["who"] for e in audits(store, "unlink")] == [
        {"reference": "Practitioner/clerk"}
    ]


def test_golden_records_are_written_only_by_the_empi(store: Store, empi: Empi) -> None:
    a = store.create(patient("hosp-01", "1"))
    golden = golden_of(store, a.rid)
    golden["name"] = [{"text": "篡改"}]
    with pytest.raises(Forbidden):
        store.update("Patient", golden["id"], golden)
    with pytest.raises(Forbidden):
        store.delete("Patient", golden["id"])
    forged = patient("hosp-09", "x", "冒充")
    forged["meta"] = {"tag": [{"system": EMPI_SYSTEM, "code": "golden"}]}
    with pytest.raises(Forbidden):
        store.create(forged)


def test_deleting_the_only_source_deletes_its_golden_record(store: Store, empi: Empi) -> None:
    a = store.create(patient("hosp-01", "1"))
    gid = golden_record_id(store, a.rid)
    assert gid is not None
    store.delete("Patient", a.rid)
    assert not store.exists("Patient", gid)
    assert not goldens(store)


# --------------------------------------------------------------------- merge and unmerge


def _clinical(store: Store, pid: str, tag: str) -> list[str]:
    put(store, {"resourceType": "Encounter", "id": f"enc-{tag}", "status": "finished",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                "subject": {"reference": f"Patient/{pid}"}})  # fmt: skip
    put(store, {"resourceType": "Observation", "id": f"obs-{tag}", "status": "final",
                "code": {"text": "heart rate"}, "subject": {"reference": f"Patient/{pid}"},
                "encounter": {"reference": f"Encounter/enc-{tag}"},
                "performer": [{"reference": f"Patient/{pid}"}]})  # fmt: skip
    put(store, {"resourceType": "Condition", "id": f"cond-{tag}", "subject": {"reference": f"Patient/{pid}"},
                "code": {"text": "hypertension"}})  # fmt: skip
    return [f"Encounter/enc-{tag}", f"Observation/obs-{tag}", f"Condition/cond-{tag}"]


def test_merge_moves_references_and_unmerge_restores_them(store: Store, empi: Empi) -> None:
    # one hospital registered the same woman twice; another hospital has her too
    keep = store.create(patient("hosp-01", "1", "周敏", birth="1975-04-04", citizen=cid(11)))
    # two digits of the birth year swapped: the EMPI only proposed the link for review
    dup = store.create(patient("hosp-01", "7", "周敏", birth="1957-04-04", phone="13612345678"))
    (task,) = review_tasks(store)
    other = store.create(patient("hosp-02", "3", "吴刚", birth="1966-06-06"))
    moved = _clinical(store, dup.rid, "d")
    untouched = _clinical(store, other.rid, "o")
    g_dup, g_keep = golden_record_id(store, dup.rid), golden_record_id(store, keep.rid)
    assert g_dup is not None and g_keep is not None and g_dup != g_keep

    preview = merge(store, dup.rid, keep.rid, preview=True)
    outcome = next(p["resource"] for p in preview["parameter"] if p["name"] == "outcome")
    assert outcome["issue"][0]["diagnostics"] == "Merge preview: 3 resources would be moved"
    assert "merge-record" not in {p["name"] for p in preview["parameter"]}
    assert store.read("Observation", "obs-d").version == 1  # nothing written
    assert store.read("Patient", dup.rid).resource().get("active") is not False

    out = merge(store, dup.rid, keep.rid, by="Practitioner/him-1")
    params = {p["name"]: p for p in out["parameter"]}
    merge_id = params["merge-record"]["valueReference"]["reference"].split("/")[1]
    result = params["result"]["resource"]
    assert result["id"] == keep.rid
    assert {"other": {"reference": f"Patient/{dup.rid}"}, "type": "replaces"} in result["link"]
    assert any(i["value"] == "7" and i["use"] == "old" for i in result["identifier"])
    source = store.read("Patient", dup.rid).resource()
    assert source["active"] is False
    assert {"other": {"reference": f"Patient/{keep.rid}"}, "type": "replaced-by"} in source["link"]
    for ref in moved:
        rtype, rid = ref.split("/")
        cur = store.read(rtype, rid)
        assert cur.version == 2 and cur.resource()["subject"] == {
            "reference": f"Patient/{keep.rid}"
        }
        assert store.vread(rtype, rid, 1).resource()["subject"] == {
            "reference": f"Patient/{dup.rid}"
        }
    assert store.read("Observation", "obs-d").resource()["performer"] == [
        {"reference": f"Patient/{keep.rid}"}
    ]
    for ref in untouched:
        assert store.read(*ref.split("/")).version == 1
    # the duplicate joined the survivor's golden record; its own (emptied) one is gone
    assert golden_record_id(store, dup.rid) == g_keep and not store.exists("Patient", g_dup)
    # the merge answered the review: the Task is cancelled, not moved
    closed = store.read("Task", task["id"]).resource()
    assert closed["status"] == "cancelled" and closed["focus"] == {
        "reference": f"Patient/{dup.rid}"
    }
    assert len(audits(store, "merge")) == 1
    prov = store.read("Provenance", merge_id).resource()
    store.validator(prov, expected_type="Provenance")
    assert store.search("Observation", [("subject", f"Patient/{keep.rid}")]).total == 1

    undone = unmerge(store, merge_id, by="Practitioner/him-1")
    assert {p["name"] for p in undone["parameter"]} >= {"outcome", "result", "merge-record"}
    for ref in moved:
        rtype, rid = ref.split("/")
        cur = store.read(rtype, rid)
        assert cur.version == 3 and cur.resource()["subject"] == {"reference": f"Patient/{dup.rid}"}
    source = store.read("Patient", dup.rid).resource()
    assert source.get("active") is not False and "link" not in source
    target = store.read("Patient", keep.rid).resource()
    assert (
        "link" not in target
        and [i["value"] for i in target["identifier"] if i.get("use") == "old"] == []
    )
    # the golden links are as before: the restored golden record has its old id back
    assert golden_record_id(store, dup.rid) == g_dup and golden_record_id(store, keep.rid) == g_keep
    assert golden_sources(store.read("Patient", g_keep).resource()) == [keep.rid]
    assert len(audits(store, "unmerge")) == 1
    with pytest.raises(Conflict):
        unmerge(store, merge_id)


def test_unmerge_leaves_references_changed_since_the_merge(store: Store, empi: Empi) -> None:
    store.create(patient("hosp-01", "1", "周敏", birth="1975-04-04"))
    dup = store.create(patient("hosp-01", "7", "周敏", birth="1975-04-04"))
    _clinical(store, dup.rid, "d")
    out = merge_operation(
        store,
        {"resourceType": "Parameters", "parameter": [
            {"name": "source-patient", "valueReference": {"reference": f"Patient/{dup.rid}"}},
            {"name": "target-patient-identifier", "valueIdentifier": {"system": mrn_system("hosp-01"), "value": "1"}},
        ]},
    )  # fmt: skip
    params = {p["name"]: p for p in out["parameter"]}
    assert params["input"]["resource"]["resourceType"] == "Parameters"
    merge_id = params["merge-record"]["valueReference"]["reference"].split("/")[1]
    cond = store.read("Condition", "cond-d").resource()
    cond["subject"] = {"reference": "Patient/someone-else"}  # corrected by hand meanwhile
    put(store, cond)
    undone = unmerge(store, merge_id)
    outcome = next(p["resource"] for p in undone["parameter"] if p["name"] == "outcome")
    assert any(
        "Condition/cond-d" in i["diagnostics"]
        for i in outcome["issue"]
        if i["severity"] == "warning"
    )
    assert store.read("Condition", "cond-d").resource()["subject"] == {
        "reference": "Patient/someone-else"
    }
    assert store.read("Observation", "obs-d").resource()["subject"] == {
        "reference": f"Patient/{dup.rid}"
    }


def test_merge_respects_a_denying_consent(store: Store, empi: Empi) -> None:
    keep = store.create(patient("hosp-01", "1", "周敏", birth="1975-04-04"))
    dup = store.create(patient("hosp-01", "7", "周敏", birth="1975-04-04"))
    _clinical(store, dup.rid, "d")
    store.create({
        "resourceType": "Consent", "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": f"Patient/{dup.rid}"},
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTOUT"}]},
        "provision": {"type": "permit", "provision": [
            {"type": "deny", "securityLabel": [{"system": V3_ACTCODE, "code": "HIV"}]}]},
    })  # fmt: skip
    with pytest.raises(Forbidden):
        merge(store, dup.rid, keep.rid)
    # a requester who may not see the Consent cannot slip past it either
    token = ambient_restriction.set(lambda r, ctx: r.c.rtype != "Consent")
    try:
        with pytest.raises(Forbidden):
            merge(store, dup.rid, keep.rid)
    finally:
        ambient_restriction.reset(token)
    assert store.read("Observation", "obs-d").version == 1 and not audits(store, "merge")
    out = merge(store, dup.rid, keep.rid, force=True, by="Practitioner/privacy-officer")
    outcome = next(p["resource"] for p in out["parameter"] if p["name"] == "outcome")
    assert any("overridden" in i["diagnostics"] for i in outcome["issue"])
    assert store.read("Observation", "obs-d").resource()["subject"] == {
        "reference": f"Patient/{keep.rid}"
    }


def test_merge_two_golden_records_and_undo(store: Store, empi: Empi) -> None:
    a = store.create(patient("hosp-01", "1", "孙丽", birth="1988-08-08"))
    b = store.create(patient("hosp-02", "2", "孙莉莉", birth="1979-09-09"))
    ga, gb = golden_record_id(store, a.rid), golden_record_id(store, b.rid)
    assert ga and gb and ga != gb
    out = merge(store, gb, ga)
    merge_id = next(p for p in out["parameter"] if p["name"] == "merge-record")["valueReference"][
        "reference"
    ]
    assert golden_sources(store.read("Patient", ga).resource()) == [a.rid, b.rid]
    retired = store.read("Patient", gb).resource()
    assert retired["active"] is False and retired["link"] == [
        {"other": {"reference": f"Patient/{ga}"}, "type": "replaced-by"}
    ]
    assert golden_record_id(store, b.rid) == ga
    unmerge(store, merge_id.split("/")[1])
    assert golden_record_id(store, b.rid) == gb and golden_record_id(store, a.rid) == ga
    assert golden_sources(store.read("Patient", ga).resource()) == [a.rid]
    assert store.read("Patient", gb).resource()["active"] is True


# ----------------------------------------------------------------------------- concurrency


def test_concurrent_registrations_of_one_citizen_make_one_golden_record(
    store: Store, empi: Empi
) -> None:
    rounds = 6
    errors: list[BaseException] = []

    def register(hospital: str, seq: int, barrier: threading.Barrier) -> None:
        barrier.wait()
        try:
            name = "钱多多" if hospital == "hosp-01" else "Qian Duoduo"
            store.create(
                patient(
                    hospital,
                    f"{hospital}-{seq}",
                    name,
                    birth="1999-09-09",
                    citizen=cid(100 + seq, date(1999, 9, 9)),
                )
            )
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    for seq in range(rounds):
        barrier = threading.Barrier(2)
        threads = [
            threading.Thread(target=register, args=(h, seq, barrier))
            for h in ("hosp-01", "hosp-02")
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors
    gs = goldens(store)
    assert len(gs) == rounds
    assert all(len(golden_sources(g)) == 2 for g in gs)


# -------------------------------------------------------------- $everything and searches


def test_everything_and_searches_on_a_golden_record_span_its_sources(
    store: Store, empi: Empi
) -> None:
    a = store.create(patient("hosp-01", "1", citizen=cid(21)))
    b = store.create(patient("hosp-02", "2", citizen=cid(21)))
    stranger = store.create(patient("hosp-02", "3", "冯十", birth="1950-05-05"))
    _clinical(store, a.rid, "a")
    _clinical(store, b.rid, "b")
    _clinical(store, stranger.rid, "s")
    gid = golden_record_id(store, a.rid)
    assert gid is not None
    ids = linked_patient_ids(store, gid)
    assert ids[0] == gid and set(ids) == {gid, a.rid, b.rid}
    assert linked_patient_ids(store, a.rid) == [a.rid]  # a hospital's own view is unchanged

    page = everything_page(store, gid, [("_count", "100")], patient_ids=ids)
    got = {f"{h.rtype}/{h.rid}" for h in page.matches}
    assert {"Observation/obs-a", "Observation/obs-b", "Condition/cond-a", "Condition/cond-b"} <= got
    assert {f"Patient/{gid}", f"Patient/{a.rid}", f"Patient/{b.rid}"} <= got
    assert not any(x.endswith("-s") or x == f"Patient/{stranger.rid}" for x in got)

    params = expand_search_params(store, [("subject", f"Patient/{gid}"), ("_count", "50")])
    found = store.search("Observation", params)
    assert {h.rid for h in found.matches} == {"obs-a", "obs-b"}
    mdm = expand_search_params(store, [("subject:mdm", f"Patient/{a.rid}")])
    assert {h.rid for h in store.search("Condition", mdm).matches} == {"cond-a", "cond-b"}
    plain = expand_search_params(store, [("subject", f"Patient/{a.rid}")])
    assert plain == [("subject", f"Patient/{a.rid}")]


def test_one_transaction_registering_a_citizen_twice_makes_one_golden_record(
    store: Store, empi: Empi
) -> None:
    from ehr.transaction import process_bundle

    citizen = cid(31)
    entries = [
        {"fullUrl": f"urn:uuid:{n}", "resource": patient(h, m, citizen=citizen),
         "request": {"method": "POST", "url": "Patient"}}
        for n, (h, m) in enumerate([("hosp-01", "1"), ("hosp-02", "2")], start=1)
    ]  # fmt: skip
    process_bundle(store, {"resourceType": "Bundle", "type": "transaction", "entry": entries})
    (golden,) = goldens(store)
    assert len(golden_sources(golden)) == 2


def test_backfill_links_patients_stored_before_the_empi(store: Store) -> None:
    from ehr.empi.service import backfill

    first = store.create(patient("hosp-01", "1", citizen=cid(41)))
    second = store.create(patient("hosp-02", "2", "Zhang Xiaoming", birth=None, citizen=cid(41)))
    third = store.create(patient("hosp-03", "3", "郑十一", birth="1944-04-04"))
    assert not goldens(store)
    install(store, identity=replace(DEFAULT_IDENTITY, hmac_key=KEY))
    assert backfill(store, batch=2) == 3
    assert golden_record_id(store, first.rid) == golden_record_id(store, second.rid)
    assert golden_record_id(store, third.rid) not in (None, golden_record_id(store, first.rid))
    assert backfill(store) == 0


def test_array_parameters_round_trip(store: Store) -> None:
    """PostgreSQL: blocking keys and ids go to the candidate query as array literals."""
    from sqlalchemy import text

    from ehr.empi.candidates import _array

    if store.engine.dialect.name != "postgresql":
        pytest.skip("array literals are PostgreSQL's")
    values = ['id:urn:x|a"b', "id:urn:x|c\\d", "x,y", "{z}", " sp ", "NULL", "", "nm:wang|ming"]
    with store.engine.connect() as conn:
        for vs in (values, [], [""]):
            got = conn.execute(text("SELECT CAST(:a AS text[])"), {"a": _array(vs)}).scalar_one()
            assert got == vs
        ids = [1, -(2**63), 2**63 - 1]
        got = conn.execute(text("SELECT CAST(:a AS bigint[])"), {"a": _array(ids)}).scalar_one()
        assert got == ids
