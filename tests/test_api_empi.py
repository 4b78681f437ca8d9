"""EMPI over HTTP (EHR_EMPI on): one citizen registered at two hospitals becomes one golden
record; $match grades candidates; $merge then $unmerge restores the records."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ehr.empi.hook import Empi
from ehr.identifiers import citizen_id_identifier, make_citizen_id, mrn_system
from ehr.settings import Settings, get_settings
from ehr.store import Store
from fhir_api.app import create_app

FHIR = {"Content-Type": "application/fhir+json"}
KEY = b"api-empi-test-key"
GOLDEN = "https://ehr.example.cn/fhir/CodeSystem/empi|golden"


def registration(
    hospital: str, mrn: str, citizen: str | None, name: str = "林晓燕"
) -> dict[str, Any]:
    ids: list[dict[str, Any]] = [{"system": mrn_system(hospital), "value": mrn}]
    if citizen:
        ids.insert(0, citizen_id_identifier(citizen, KEY))
    return {
        "resourceType": "Patient",
        "identifier": ids,
        "name": [{"text": name}],
        "gender": "female",
        "birthDate": "1979-05-02",
    }


def test_golden_record_match_merge_unmerge(store: Store) -> None:
    app = create_app(store, Settings(empi=True, citizen_id_key=KEY.decode()))
    c = TestClient(app)
    cid = make_citizen_id("330106", date(1979, 5, 2), 4, True)
    a = c.post("/fhir/Patient", json=registration("org-h1", "A-1", cid), headers=FHIR).json()
    b = c.post("/fhir/Patient", json=registration("org-h2", "B-7", cid), headers=FHIR).json()
    golden = c.get("/fhir/Patient", params={"_tag": GOLDEN}).json()
    assert golden["total"] == 1
    links = {lk["other"]["reference"] for lk in golden["entry"][0]["resource"]["link"]}
    assert links == {f"Patient/{a['id']}", f"Patient/{b['id']}"}

    probe = registration("org-h3", "C-1", None)
    m = c.post(
        "/fhir/Patient/$match",
        json={"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": probe}]},
        headers=FHIR,
    )
    assert m.status_code == 200
    assert m.json()["entry"], "the registered citizen is a candidate"

    obs = c.post(
        "/fhir/Observation",
        json={
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "体重"},
            "subject": {"reference": f"Patient/{b['id']}"},
        },
        headers=FHIR,
    ).json()
    merged = c.post(
        "/fhir/Patient/$merge",
        headers=FHIR,
        json={
            "resourceType": "Parameters",
            "parameter": [
                {"name": "source-patient", "valueReference": {"reference": f"Patient/{b['id']}"}},
                {"name": "target-patient", "valueReference": {"reference": f"Patient/{a['id']}"}},
            ],
        },
    )
    assert merged.status_code == 200, merged.text
    assert (
        c.get(f"/fhir/Observation/{obs['id']}").json()["subject"]["reference"]
        == f"Patient/{a['id']}"
    )
    record = next(p for p in merged.json()["parameter"] if p["name"] == "merge-record")
    ref = record.get("valueReference", {}).get("reference") or record["resource"]["id"]
    undone = c.post(
        "/fhir/Patient/$unmerge",
        headers=FHIR,
        json={
            "resourceType": "Parameters",
            "parameter": [
                {
                    "name": "merge-record",
                    "valueReference": {"reference": ref if "/" in ref else f"Provenance/{ref}"},
                }
            ],
        },
    )
    assert undone.status_code == 200, undone.text
    assert (
        c.get(f"/fhir/Observation/{obs['id']}").json()["subject"]["reference"]
        == f"Patient/{b['id']}"
    )
    assert (
        c.post(
            "/fhir/Patient/$unmerge", headers=FHIR, json={"resourceType": "Parameters"}
        ).status_code
        == 400
    )


# ------------------------------------------------- searches and $everything on a golden record


def _observation(pid: str, text: str) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final", "code": {"text": text},
            "subject": {"reference": f"Patient/{pid}"}}  # fmt: skip


def _citizen(c: TestClient, seq: int) -> tuple[str, str, str, str]:
    """One citizen registered at two hospitals (one golden record) and a stranger; an
    Observation each. Returns (golden, a, b, stranger)."""
    cid = make_citizen_id("330106", date(1979, 5, 2), seq, True)
    ids = []
    for hospital, mrn, citizen, name in (("org-h1", "A-1", cid, "林晓燕"),
                                         ("org-h2", "B-7", cid, "林晓燕"),
                                         ("org-h2", "B-9", None, "欧阳娜娜")):  # fmt: skip
        r = c.post("/fhir/Patient", json=registration(hospital, mrn, citizen, name), headers=FHIR)
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
        c.post("/fhir/Observation", json=_observation(ids[-1], mrn), headers=FHIR)
    a, b, stranger = ids
    found = c.get("/fhir/Patient", params={"_tag": GOLDEN, "link": f"Patient/{a}"}).json()
    assert found["total"] == 1
    return found["entry"][0]["resource"]["id"], a, b, stranger


def _codes(bundle: dict[str, Any]) -> set[str]:
    return {e["resource"]["code"]["text"] for e in bundle.get("entry", ())
            if e["resource"]["resourceType"] == "Observation"}  # fmt: skip


def test_searches_on_a_golden_record_span_its_sources(store: Store) -> None:
    c = TestClient(create_app(store, Settings(empi=True, citizen_id_key=KEY.decode())))
    golden, a, b, _ = _citizen(c, 4)

    def search(path: str, **params: str) -> dict[str, Any]:
        r = c.get(f"/fhir/{path}", params=params)
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    # a golden record means the citizen: its sources' Observations, never the stranger's
    assert _codes(search("Observation", subject=f"Patient/{golden}")) == {"A-1", "B-7"}
    assert _codes(search("Observation", patient=golden)) == {"A-1", "B-7"}
    assert _codes(search(f"Patient/{golden}/Observation")) == {"A-1", "B-7"}
    # HAPI's :mdm qualifier expands a hospital's record to the whole citizen
    assert _codes(search("Observation", **{"subject:mdm": f"Patient/{a}"})) == {"A-1", "B-7"}
    # ... and without it a hospital's own record stays its own
    assert _codes(search("Observation", subject=f"Patient/{a}")) == {"A-1"}
    assert _codes(search(f"Patient/{b}/Observation")) == {"B-7"}
    # POST _search goes through the same hook
    posted = c.post("/fhir/Observation/_search", data={"subject": f"Patient/{golden}"})
    assert _codes(posted.json()) == {"A-1", "B-7"}

    # the links carry the parameters as given (never the citizen's other records), and page 2
    # expands again
    page1 = search("Observation", **{"subject:mdm": f"Patient/{a}", "_count": "1"})
    links = {lk["relation"]: lk["url"] for lk in page1["link"]}
    assert "subject%3Amdm" in links["self"] or "subject:mdm" in links["self"]
    assert b not in links["self"] and b not in links["next"] and golden not in links["next"]
    page2 = c.get(links["next"]).json()
    assert _codes(page1) | _codes(page2) == {"A-1", "B-7"}

    # :mdm takes Patient references; an unknown Patient is no error (and no oracle), just empty
    bad = c.get("/fhir/Observation", params={"subject:mdm": "Group/x"})
    assert bad.status_code == 400 and bad.json()["resourceType"] == "OperationOutcome"
    assert search("Observation", **{"subject:mdm": "Patient/nobody"}).get("total") == 0


def test_everything_on_a_golden_record_spans_its_sources(store: Store) -> None:
    c = TestClient(create_app(store, Settings(empi=True, citizen_id_key=KEY.decode())))
    golden, a, b, stranger = _citizen(c, 6)
    r = c.get(f"/fhir/Patient/{golden}/$everything")
    assert r.status_code == 200, r.text
    got = {f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in r.json()["entry"]}
    assert {f"Patient/{golden}", f"Patient/{a}", f"Patient/{b}"} <= got
    assert f"Patient/{stranger}" not in got
    assert _codes(r.json()) == {"A-1", "B-7"}
    # a hospital's record: its own data only (its golden record is not pulled in)
    own = c.get(f"/fhir/Patient/{a}/$everything").json()
    assert _codes(own) == {"A-1"}
    assert f"Patient/{golden}" not in {
        f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in own["entry"]
    }


def test_the_served_product_matches_every_patient_write(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``ehr serve`` (create_app with the process settings) runs the EMPI unless EHR_EMPI=0."""
    monkeypatch.delenv("EHR_EMPI", raising=False)
    get_settings.cache_clear()
    try:
        assert get_settings().empi is True
        create_app(store)
        assert any(isinstance(h, Empi) for h in store.hooks)
        store.hooks[:] = [h for h in store.hooks if not isinstance(h, Empi)]
        monkeypatch.setenv("EHR_EMPI", "0")
        get_settings.cache_clear()
        create_app(store)
        assert not any(isinstance(h, Empi) for h in store.hooks)
    finally:
        get_settings.cache_clear()
