"""The nurse station (``/app/nurse/``) in a real browser on a tablet-sized screen: a nurse signs
in through our login page, finds a patient on the ward worklist and by wristband, records vital
signs, and the vitals are then Observations in the FHIR API; while the network is down a
submission waits in the outbox and is sent exactly once when it is back; medication is given
with the double check (wrong drug refused, a high-alert drug only once a second nurse has signed
with her own password on the tablet; a queued one whose signature expired comes back to the
nurse).

The world is the harness's demo city (``e2e_support``) with the demo nurse's ward
(:func:`fhir_api.apps.demo_ward.ensure_demo_ward`, what ``ehr demo`` loads too): three demo
patients in beds, with wristband MRNs and due orders.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import e2e_support
import pytest
from e2e_support import E2E, TABLET, sign_in
from test_auth_support import FAST_PASSWORDS

from appointments.nursing import HIGH_ALERT_ATC, WITNESS_SYSTEM
from appointments.vitals import VITALS
from ehr.model import loads
from ehr.store import Store
from fhir_api.apps import STATIC_DIR
from fhir_api.apps.demo_accounts import DemoAccount
from fhir_api.apps.demo_ward import DemoAdmission, DemoWard, ensure_demo_ward
from fhir_api.auth import AuthSettings
from fhir_api.auth.config import account_store

# the harness's fixtures, used here by name
e2e = e2e_support.e2e
e2e_template = e2e_support.e2e_template

RULES = STATIC_DIR / "nurse" / "rules.json"


# -- the ward -------------------------------------------------------------------------------------


def ward_of(e2e: E2E) -> DemoWard:
    """The demo nurse's ward (:func:`fhir_api.apps.demo_ward.ensure_demo_ward`): bed 1 has a
    ceftriaxone order, bed 2 insulin (high-alert), bed 3 an overdue vitals round."""
    ward = ensure_demo_ward(e2e.store, e2e.account("demo.nurse"))
    assert ward is not None and len(ward.admissions) == 3
    return ward


def vitals_of(e2e: E2E, patient: str, token: str) -> list[dict[str, Any]]:
    r = e2e.api("GET", f"Observation?subject=Patient/{patient}&category=vital-signs&_count=200"
                "&date=ge" + (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                token)  # fmt: skip
    assert r.status_code == 200, r.text
    return [e["resource"] for e in r.json().get("entry", [])]


def by_code(observations: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for o in observations:
        out.setdefault(o["code"]["coding"][0]["code"], []).append(o)
    return out


def shot(e2e: E2E, page: Any, name: str) -> None:
    page.evaluate("window.scrollTo(0, 0)")  # the sticky header at the top of a full-page shot
    e2e.shot(page, name)


def open_station(e2e: E2E) -> tuple[Any, DemoWard, DemoAdmission]:
    ward = ward_of(e2e)
    page = e2e.page(TABLET)
    page.goto(e2e.url("/app/nurse/"))
    sign_in(page, "demo.nurse")
    page.wait_for_url(re.compile(r"/app/nurse/"))
    # the station has started (its rules, the wards) once it names the nurse: act after that
    # (a tap made earlier waits for it: test_a_tab_tapped_while_the_station_starts_is_kept)
    page.locator("#who", has_text="当前护士").wait_for()
    return page, ward, ward.admissions[0]


# -- tests -------------------------------------------------------------------------------------------


def test_rules_mirror_the_ward_services() -> None:
    """The page's plausible ranges and high-alert list are the server's (appointments)."""
    rules = json.loads(RULES.read_text(encoding="utf-8"))
    for kind, r in rules["vitals"].items():
        v = VITALS[kind]
        assert (r["loinc"], r["unit"], r["low"], r["high"]) == (v.loinc, v.unit, v.low, v.high)
    assert tuple(rules["highAlertAtc"]) == HIGH_ALERT_ATC


def test_demo_ward_is_made_once(store: Store) -> None:
    """``ehr demo``'s ward: the nurse's ward (added to her role when she has none), three adults
    in beds with this hospital's MRN, due orders, a second nurse; a second run changes nothing."""
    put = store.update
    put("Organization", "org-x", {"resourceType": "Organization", "id": "org-x", "name": "医院"})
    put("Practitioner", "n1", {"resourceType": "Practitioner", "id": "n1"})
    put("PractitionerRole", "role-n1", {
        "resourceType": "PractitionerRole", "id": "role-n1",
        "practitioner": {"reference": "Practitioner/n1"},
        "organization": {"reference": "Organization/org-x"},
        "code": [{"coding": [{"code": "nurse"}]}],
    })  # fmt: skip
    for i, born in enumerate(
        ["1950-01-02", "1960-03-04", "2015-05-06", "1970-07-08", "1980-01-01"]
    ):
        put("Patient", f"p{i}", {"resourceType": "Patient", "id": f"p{i}", "birthDate": born,
                                 "name": [{"family": "王", "given": [str(i)]}]})  # fmt: skip
    nurse = DemoAccount("demo.nurse", "x", "nurse", "Practitioner/n1", "护士",
                        practitioner_role="PractitionerRole/role-n1", organization="Organization/org-x")  # fmt: skip
    ward = ensure_demo_ward(store, nurse, exclude=("Patient/p1",))
    assert ward is not None
    assert [a.patient for a in ward.admissions] == ["p0", "p3", "p4"]  # adults, p1 excluded
    role = loads(store.read("PractitionerRole", "role-n1").data)
    assert role["location"] == [{"reference": f"Location/{ward.ward}"}]
    [a0, a1, a2] = ward.admissions
    patient = loads(store.read("Patient", "p0").data)
    assert {"system": ward.mrn_system, "value": a0.mrn} in [
        {k: i[k] for k in ("system", "value")} for i in patient["identifier"]
    ]
    enc = loads(store.read("Encounter", a0.encounter).data)
    assert enc["status"] == "in-progress" and enc["location"][0]["location"]["reference"] == (
        f"Location/{a0.bed}"
    )
    assert (a0.drug, a1.drug, a2.drug) == ("J01DD04", "A10AB01", None)
    assert ward.second_nurse is not None and ward.second_nurse != "n1"
    counts = {t: store.search(t, [("_summary", "count")]).total for t in
              ("Patient", "Encounter", "Task", "MedicationRequest", "Location", "Practitioner")}  # fmt: skip
    assert counts["Task"] == 3 and counts["MedicationRequest"] == 2
    again = ensure_demo_ward(store, nurse, exclude=("Patient/p1",))
    assert again == ward
    assert counts == {t: store.search(t, [("_summary", "count")]).total for t in counts}


@pytest.mark.e2e
def test_nurse_records_vitals_that_become_observations(e2e: E2E) -> None:
    page, ward, adm = open_station(e2e)
    # the worklist: the patient in bed 12 with the due medication task
    row = page.locator("table.worklist tbody tr", has_text=adm.name)
    row.wait_for()
    assert adm.bed_name in row.inner_text() and "给药：头孢曲松" in row.inner_text()
    shot(e2e, page, "worklist")

    # identify by typing the wristband number (no system: looked up by identifier)
    page.get_by_role("tab", name="识别患者").click()
    page.get_by_label("腕带或卡号", exact=False).fill(adm.mrn)
    page.keyboard.press("Enter")
    banner = page.locator("#patient-name")
    banner.wait_for()
    assert banner.inner_text() == adm.name
    assert adm.bed_name in page.locator("#patient-facts").inner_text()
    assert adm.mrn in page.locator("#patient-facts").inner_text()

    # vital signs, one of them implausible: warned, confirmed, saved
    page.get_by_label("体温", exact=False).fill("36.8")
    page.get_by_label("脉搏", exact=False).fill("72")
    page.get_by_label("呼吸", exact=False).fill("18")
    page.get_by_label("收缩压", exact=False).fill("300")
    page.get_by_label("舒张压", exact=False).fill("85")
    page.get_by_label("血氧饱和度", exact=False).fill("97")
    assert "超出合理范围" in page.locator("#v-systolic-warn").inner_text()
    page.get_by_role("button", name="保存生命体征").click()
    assert page.locator("#vitals-confirm").is_visible()
    shot(e2e, page, "vitals-warning")
    page.get_by_role("button", name="保存生命体征").click()
    page.get_by_text("生命体征已保存（5 项）").wait_for()
    page.locator("#vitals-recent li", has_text="36.8").wait_for()
    shot(e2e, page, "vitals-saved")

    # the FHIR API has them, as vital-signs Observations of this patient and admission
    token = e2e.service_token()
    obs = by_code(vitals_of(e2e, adm.patient, token))
    assert sorted(obs) == sorted(["8310-5", "8867-4", "9279-1", "85354-9", "2708-6"])
    assert all(len(v) == 1 for v in obs.values())
    temp = obs["8310-5"][0]
    assert temp["valueQuantity"]["value"] == 36.8 and temp["valueQuantity"]["code"] == "Cel"
    assert temp["encounter"] == {"reference": f"Encounter/{adm.encounter}"}
    bp = [c["valueQuantity"]["value"] for c in obs["85354-9"][0]["component"]]
    assert bp == [300, 85]
    # English, by keyboard: the switch, then the tabs with the arrow keys
    page.get_by_role("button", name="Switch to English").focus()
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="Record vital signs").wait_for()
    assert page.locator("html").get_attribute("lang") == "en"
    assert f"Bed {adm.bed_name}" in page.locator("#patient-facts").inner_text()
    page.get_by_role("tab", name="Ward worklist").focus()
    page.keyboard.press("ArrowRight")
    assert page.get_by_label("Wristband or card number", exact=False).is_visible()
    assert page.get_by_role("tab", name="Identify patient").get_attribute("aria-selected") == "true"
    shot(e2e, page, "english")

    performer = obs["8867-4"][0]["performer"][0]["reference"]
    assert performer == e2e.account("demo.nurse").practitioner_role  # the nurse, in her role


@pytest.mark.e2e
def test_a_tab_tapped_while_the_station_starts_is_kept(e2e: E2E) -> None:
    """Right after sign-in, while the station still loads its rules, the nurse taps
    "识别患者" and sends a wristband number: the tab opens at once, and the patient opens
    once the station has started (before: the tap did nothing, the field stayed hidden)."""
    adm = ward_of(e2e).admissions[0]
    page = e2e.page(TABLET)
    held: list[Any] = []  # the station's rules, held back until the nurse has acted
    page.route(re.compile(r"/app/nurse/rules\.json$"), lambda route: held.append(route))
    page.goto(e2e.url("/app/nurse/"))
    sign_in(page, "demo.nurse")
    page.wait_for_url(re.compile(r"/app/nurse/"))
    deadline = time.monotonic() + 30
    while not held and time.monotonic() < deadline:
        page.wait_for_timeout(50)
    assert held, "the station never asked for its rules"
    page.get_by_role("tab", name="识别患者").click()
    page.get_by_label("腕带或卡号", exact=False).fill(adm.mrn, timeout=5000)
    page.keyboard.press("Enter")
    banner = page.locator("#patient-name", has_text=adm.name)
    assert not banner.is_visible()  # (it waits for the station)
    held[0].continue_()
    banner.wait_for()


def test_nurse_offline_submission_waits_and_is_sent_once(e2e: E2E) -> None:
    page, ward, adm = open_station(e2e)
    page.get_by_role("tab", name="识别患者").click()
    page.get_by_label("腕带或卡号", exact=False).fill(f"{ward.mrn_system}|{adm.mrn}")
    page.keyboard.press("Enter")
    page.locator("#patient-name", has_text=adm.name).wait_for()
    facts = page.locator("#patient-facts").inner_text()
    assert (
        adm.bed_name in facts and adm.mrn in facts
    )  # this hospital's MRN, the bed of the admission

    page.context.set_offline(True)
    page.get_by_label("脉搏", exact=False).fill("88")
    page.get_by_label("体温", exact=False).fill("37.9")
    page.get_by_role("button", name="保存生命体征").click()
    pending = page.locator("#pending-list li")
    pending.first.wait_for()
    assert pending.count() == 1
    assert "等待发送" in pending.first.inner_text() and "脉搏 88" in pending.first.inner_text()
    # a medication given offline waits too (the server's double check will refuse this one)
    page.get_by_role("button", name="给药：头孢曲松").click()
    page.get_by_label("扫描患者腕带").fill(adm.mrn)
    page.get_by_label("扫描药品条码").fill("A10AB01")
    page.get_by_role("button", name="确认给药").click()
    page.get_by_text("给药记录已保存在本机").wait_for()
    assert pending.count() == 2
    assert "待发送 2 条" in page.locator("#pending-toggle").inner_text()
    shot(e2e, page, "offline-pending")
    token = e2e.service_token()
    assert vitals_of(e2e, adm.patient, token) == []

    page.on("dialog", lambda d: d.accept())  # "discard this unsent record?"
    page.context.set_offline(False)
    page.locator("#vitals-recent li", has_text="37.9").wait_for()
    failed = page.locator("#pending-list li.pending-failed")
    failed.wait_for()
    assert pending.count() == 1 and "药品与医嘱不符" in failed.inner_text()
    e2e.errors.clear()  # the browser logs the 409 answer
    shot(e2e, page, "offline-sent")
    failed.get_by_role("button", name="删除").click()
    page.locator("#pending").wait_for(state="hidden")
    obs = by_code(vitals_of(e2e, adm.patient, token))
    assert sorted(obs) == ["8310-5", "8867-4"]
    assert [len(v) for v in obs.values()] == [1, 1]  # sent exactly once
    assert obs["8867-4"][0]["valueQuantity"]["value"] == 88

    # the server stores a submission but its answer is lost: the tablet retries, no duplicate
    lost: list[Any] = []

    def lose_the_answer(route: Any) -> None:
        if lost:
            route.continue_()
        else:
            lost.append(route.fetch())  # the request reaches the server...
            route.abort("connectionreset")  # ...and the answer never comes back

    page.route(re.compile(r"/\$record-vitals$"), lose_the_answer)
    page.get_by_label("脉搏", exact=False).fill("90")
    page.get_by_role("button", name="保存生命体征").click()
    page.get_by_text("生命体征已保存在本机").wait_for()
    assert lost[0].status == 201 and pending.count() == 1
    e2e.errors.clear()  # the reset connection
    page.get_by_role("button", name="立即重试").click()
    page.locator("#pending").wait_for(state="hidden")
    pulses = by_code(vitals_of(e2e, adm.patient, token))["8867-4"]
    assert sorted(o["valueQuantity"]["value"] for o in pulses) == [88, 90]


def administrations(e2e: E2E, patient: str, token: str) -> list[dict[str, Any]]:
    r = e2e.api("GET", f"MedicationAdministration?subject=Patient/{patient}", token)
    assert r.status_code == 200, r.text
    return [e["resource"] for e in r.json().get("entry", [])]


@pytest.mark.e2e
def test_nurse_gives_medication_with_the_double_check(e2e: E2E) -> None:
    page, ward, adm = open_station(e2e)
    token = e2e.service_token()
    # from the worklist row to the patient
    page.get_by_role("button", name=f"打开 {adm.name}").click()
    page.locator("#patient-name", has_text=adm.name).wait_for()

    # the wrong drug is scanned: the server's double check refuses, nothing is recorded
    page.get_by_role("button", name="给药：头孢曲松").click()
    page.get_by_label("扫描患者腕带").fill(adm.mrn)
    page.get_by_label("扫描药品条码").fill("A10AB01")
    page.get_by_role("button", name="确认给药").click()
    page.get_by_role("alert").filter(has_text="药品与医嘱不符").wait_for()
    assert page.locator("#pending-list li").count() == 0  # refused, not queued
    e2e.errors.clear()  # the browser logs the 409 answer
    assert administrations(e2e, adm.patient, token) == []
    shot(e2e, page, "wrong-drug")

    # the right one
    page.get_by_label("扫描药品条码").fill("J01DD04")
    page.get_by_role("button", name="确认给药").click()
    page.get_by_text("已记录给药：头孢曲松").wait_for()
    [given] = administrations(e2e, adm.patient, token)
    assert given["status"] == "completed"
    assert given["request"] == {"reference": f"MedicationRequest/{adm.order}"}
    r = e2e.api("GET", f"Task?focus=MedicationRequest/{adm.order}", token)
    assert [e["resource"]["status"] for e in r.json()["entry"]] == ["completed"]

    # bed 2: insulin is high-alert, not without a second nurse who signs (双人核对)
    second = ward.admissions[1]
    assert second.order is not None and ward.second_nurse is not None
    checker = e2e.account("demo.nurse2")
    assert checker.fhir_user == f"Practitioner/{ward.second_nurse}"
    page.get_by_role("button", name="返回清单").click()
    page.get_by_role("button", name=f"打开 {second.name}").click()
    page.locator("#patient-name", has_text=second.name).wait_for()
    page.get_by_role("button", name="给药：胰岛素注射液").click()
    page.get_by_text("高警示药品：需第二名护士核对").first.wait_for()
    assert page.locator("#admin-witness").inner_text() == "核对人：尚未签名确认"
    page.get_by_label("扫描患者腕带").fill(second.mrn)
    page.get_by_label("扫描药品条码").fill("A10AB01")
    page.get_by_role("button", name="确认给药").click()
    page.get_by_role("alert").filter(has_text="另一名护士核对").wait_for()
    assert administrations(e2e, second.patient, token) == []
    # naming a colleague is not a double check: the server wants her signature
    nurse = e2e.account("demo.nurse")
    nurse_token = page.evaluate(
        "JSON.parse(sessionStorage.getItem('ehr.smart.session')).accessToken"
    )
    named = e2e.api("POST", f"MedicationRequest/{second.order}/$administer", nurse_token, json={
        "resourceType": "Parameters", "parameter": [
            {"name": "clientId", "valueString": "e2e-named-only"},
            {"name": "patientIdentifier", "valueString": f"{ward.mrn_system}|{second.mrn}"},
            {"name": "drugCode", "valueString": "A10AB01"},
            {"name": "verifier", "valueReference": {"reference": checker.fhir_user}},
        ]})  # fmt: skip
    assert named.status_code == 409 and "verifierAssertion" in named.text
    e2e.errors.clear()
    # the second nurse signs on this tablet: not the nurse herself, not a wrong password
    page.get_by_role("button", name="核对护士签名确认").click()
    dialog = page.get_by_role("dialog", name="核对护士确认（双人核对）")
    dialog.wait_for()
    assert second.name in dialog.inner_text() and "胰岛素注射液" in dialog.inner_text()
    dialog.get_by_label("核对护士用户名").fill("demo.nurse")
    dialog.get_by_label("核对护士密码").fill(nurse.password)
    dialog.get_by_role("button", name="确认核对").click()
    dialog.get_by_role("alert").filter(has_text="不能是您本人").wait_for()
    assert dialog.get_by_label("核对护士密码").input_value() == ""  # cleared once read
    dialog.get_by_label("核对护士用户名").fill(checker.username)
    dialog.get_by_label("核对护士密码").fill("not her password")
    dialog.get_by_role("button", name="确认核对").click()
    dialog.get_by_role("alert").filter(has_text="用户名或密码不正确").wait_for()
    e2e.errors.clear()  # the browser logs the 403 and 401 answers
    dialog.get_by_label("核对护士密码").fill(checker.password)
    shot(e2e, page, "witness-dialog")
    dialog.get_by_role("button", name="确认核对").click()
    page.locator("#admin-witness", has_text=f"核对人：{checker.display_name}").wait_for()
    assert not dialog.is_visible()
    assert page.locator("#witness-password").input_value() == ""
    stored = page.evaluate(
        "JSON.stringify({...localStorage}) + JSON.stringify({...sessionStorage})"
    )
    assert checker.password not in stored
    shot(e2e, page, "double-check")
    page.get_by_role("button", name="确认给药").click()
    page.get_by_text("已记录给药：胰岛素注射液").wait_for()
    [insulin] = administrations(e2e, second.patient, token)
    performers = {
        p["function"]["coding"][0]["code"]: p["actor"]["reference"] for p in insulin["performer"]
    }
    assert performers == {"performer": nurse.fhir_user, "verifier": checker.fhir_user}
    assert insulin["dosage"]["dose"]["value"] == 4
    assert WITNESS_SYSTEM in [i["system"] for i in insulin["identifier"]]


@pytest.mark.e2e
def test_a_queued_high_alert_administration_whose_signature_expired_comes_back(e2e: E2E) -> None:
    """Offline, a signed high-alert administration waits in the outbox; when it is sent after
    the signature (5 minutes) has expired, the server refuses it and the nurse sees why: the
    record stays in the list as failed, nothing is given twice or dropped silently."""
    page, ward, _ = open_station(e2e)
    second = ward.admissions[1]
    checker = e2e.account("demo.nurse2")
    page.get_by_role("button", name=f"打开 {second.name}").click()
    page.locator("#patient-name", has_text=second.name).wait_for()
    page.get_by_role("button", name="Switch to English").click()
    page.get_by_role("button", name="Give: 胰岛素注射液").click()
    page.get_by_role("button", name="Checking nurse signs").click()
    dialog = page.get_by_role("dialog", name="Second nurse confirms (double check)")
    dialog.get_by_label("Checking nurse's user name").fill(checker.username)
    dialog.get_by_label("Checking nurse's password").fill(checker.password)
    dialog.get_by_role("button", name="Confirm check").click()
    page.locator("#admin-witness", has_text=f"Checked by: {checker.display_name}").wait_for()
    page.context.set_offline(True)
    page.get_by_label("Scan the patient's wristband").fill(second.mrn)
    page.get_by_label("Scan the drug barcode").fill("A10AB01")
    page.get_by_role("button", name="Confirm administration").click()
    page.get_by_text("the administration is kept on this tablet").wait_for()
    # time passes: the queued signature is now an expired one
    expired = expired_witness(e2e, second.order or "")
    page.evaluate(
        """(token) => {
            for (const key of Object.keys(localStorage)) {
                if (!key.startsWith('nurse.outbox.v1:')) continue;
                const list = JSON.parse(localStorage.getItem(key));
                for (const e of list) {
                    for (const p of e.body.parameter) {
                        if (p.name === 'verifierAssertion') p.valueString = token;
                    }
                }
                localStorage.setItem(key, JSON.stringify(list));
            }
        }""",
        expired,
    )
    page.on("dialog", lambda d: d.accept())
    page.context.set_offline(False)
    failed = page.locator("#pending-list li.pending-failed")
    failed.wait_for()
    assert "signature has expired" in failed.inner_text() and "sign again" in failed.inner_text()
    e2e.errors.clear()  # the browser logs the 409 answer
    shot(e2e, page, "witness-expired")
    assert administrations(e2e, second.patient, e2e.service_token()) == []
    failed.get_by_role("button", name="Discard").click()
    page.locator("#pending").wait_for(state="hidden")


def expired_witness(e2e: E2E, order: str) -> str:
    """demo.nurse2's signature for giving ``order``, as the server issued it 10 minutes ago."""
    from ehr.accounts.tokens import WITNESS_TYP, sign_jwt

    accounts = account_store(e2e.store.engine, AuthSettings(), FAST_PASSWORDS)
    nurse, checker = (accounts.users.by_username(u) for u in ("demo.nurse", "demo.nurse2"))
    assert nurse is not None and checker is not None
    alg, key = accounts.keys.signing_key()
    now = int(time.time()) - 600
    return sign_jwt({
        "iss": f"{e2e.origin}/auth", "aud": f"{e2e.origin}/fhir", "sub": checker.id,
        "fhirUser": f"{e2e.origin}/fhir/{checker.fhir_user}", "role": "nurse",
        "purpose": f"administer:MedicationRequest/{order}",
        "act": {"sub": nurse.id, "client_id": "nurse-app"},
        "iat": now, "exp": now + 300, "jti": uuid.uuid4().hex,
    }, alg, key, WITNESS_TYP)  # fmt: skip
