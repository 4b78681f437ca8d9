"""End to end, in Debian's Chromium: the clinician workstation (``/app/workstation/``).

A clinician signs in through the real login page, finds a patient they treat by name, and sees
the summary: allergies up front, problems, medications, encounters and a results table with a
trend chart drawn on a canvas. The chart's points and the latest value are checked against the
FHIR API (a backend token), not against numbers written here.
"""

from __future__ import annotations

import base64
import re
import time as clock
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any

import e2e_support
import pytest
from e2e_support import DESKTOP, E2E, PHONE, sign_in

from appointments import Availability, Session, availability_extension
from appointments.codes import AVAILABILITY_EXT, SLOT_SESSION_EXT
from appointments.fhirdata import CST
from ehr.cards.issuing import issue_card
from ehr.cards.verify import KIND_SUN

pytestmark = pytest.mark.e2e

# the harness's fixtures, used here by name
e2e = e2e_support.e2e
e2e_template = e2e_support.e2e_template

LOINC = "http://loinc.org"


def _bundle(e2e: E2E, token: str, path: str) -> list[dict[str, Any]]:
    r = e2e.api("GET", path, token)
    assert r.status_code == 200, r.text
    return [e["resource"] for e in r.json().get("entry", [])]


def _name(patient: dict[str, Any]) -> str:
    n = (patient.get("name") or [{}])[0]
    return str(n.get("text") or n.get("family", "") + "".join(n.get("given", [])))


def _treated_patient_with_results(e2e: E2E, token: str, practitioner: str) -> dict[str, Any]:
    """A patient the doctor has seen (an Encounter they took part in) with repeated results."""
    encounters = _bundle(e2e, token, f"Encounter?participant={practitioner}&_count=200")
    seen = sorted({e["subject"]["reference"].split("/", 1)[1] for e in encounters})
    assert seen, "the demo doctor has no encounters"
    best: tuple[int, str] | None = None
    for pid in seen:
        obs = _bundle(
            e2e, token, f"Observation?patient={pid}&category=vital-signs,laboratory&_count=500"
        )
        if best is None or len(obs) > best[0]:
            best = (len(obs), pid)
    assert best is not None and best[0] >= 2, "no treated patient with results"
    r = e2e.api("GET", f"Patient/{best[1]}", token)
    assert r.status_code == 200
    return dict(r.json())


def _drawn_pixels(page: Any, selector: str) -> int:
    """How many pixels of the canvas are painted (not transparent)."""
    return int(
        page.eval_on_selector(
            selector,
            """c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                      let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n; }""",
        )
    )


def test_workstation_find_patient_and_summary_with_chart(e2e: E2E) -> None:
    doctor = e2e.account("demo.doctor")
    token = e2e.service_token()
    patient = _treated_patient_with_results(e2e, token, doctor.fhir_user)
    name = _name(patient)

    page = e2e.page(DESKTOP)
    page.goto(e2e.url("/app/workstation/"))
    sign_in(page, "demo.doctor")
    page.wait_for_url(re.compile(r"/app/workstation/"))
    search = page.get_by_label("姓名、证件号、就诊卡号或刷卡")
    search.wait_for()
    e2e.shot(page, "home")

    # find by name, with the keyboard
    search.fill(name)
    search.press("Enter")
    open_button = page.locator(f"button.open-patient[data-patient='{patient['id']}']")
    open_button.wait_for()
    e2e.shot(page, "found")
    open_button.focus()
    page.keyboard.press("Enter")

    page.wait_for_url(re.compile(rf"#/patient/{re.escape(patient['id'])}"))
    heading = page.locator("#patient-name")
    heading.wait_for()
    assert heading.inner_text() == name
    assert page.evaluate("document.activeElement.id") == "patient-name"
    # allergies come first, before problems, medications and encounters
    order = page.evaluate(
        "['allergies','problems','medications','encounters','results']"
        ".map(id => document.getElementById(id)).map(n => n ? n.getBoundingClientRect().top : -1)"
    )
    assert -1 not in order and order[0] < min(order[1:])

    # what the API says the patient has is on the page
    allergies = _bundle(e2e, token, f"AllergyIntolerance?patient={patient['id']}")
    allergy_text = page.locator("#allergies").inner_text()
    if allergies:
        for a in allergies:
            label = a["code"].get("text") or a["code"]["coding"][0].get("display")
            assert label in allergy_text
    else:
        assert "无已知过敏" in allergy_text
    conditions = _bundle(e2e, token, f"Condition?patient={patient['id']}&_count=200")
    problems = page.locator("#problems").inner_text()
    for c in conditions:
        assert (c["code"].get("text") or c["code"]["coding"][0].get("display")) in problems

    # the results table and the trend chart of the series selected by default
    chart = page.locator("#trend canvas").first
    chart.wait_for()
    page.wait_for_function(
        "() => { const c = document.querySelector('#trend canvas');"
        " return c && window.Chart && window.Chart.getChart(c); }"
    )
    assert _drawn_pixels(page, "#trend canvas") > 1000
    pressed = page.locator("#results button[aria-pressed=true]")
    assert pressed.count() == 1
    code = pressed.get_attribute("data-code")
    expected = _bundle(
        e2e, token, f"Observation?patient={patient['id']}&code={LOINC}|{code}&_sort=date&_count=500"
    )
    values = [
        o["valueQuantity"]["value"] if "valueQuantity" in o
        else max(c["valueQuantity"]["value"] for c in o["component"])
        for o in expected if o.get("status") not in ("entered-in-error", "cancelled")
    ]  # fmt: skip
    assert len(values) >= 2
    drawn = page.evaluate(
        "() => window.Chart.getChart(document.querySelector('#trend canvas')).data.datasets[0].data"
    )
    assert [float(v) for v in drawn] == [float(v) for v in values]
    label = chart.get_attribute("aria-label") or ""
    assert f"{values[-1]:g}" in label.replace(".0 ", " ") or str(values[-1]) in label
    row = page.locator(f"#results tbody tr[data-code='{code}']")
    assert str(values[-1]).rstrip("0").rstrip(".") in row.inner_text()
    e2e.shot(page, "summary")

    # pick another series with the keyboard: the chart is redrawn for it
    others = page.locator("#results button[aria-pressed=false]")
    if others.count():
        other = others.first
        other_code = other.get_attribute("data-code")
        other.focus()
        page.keyboard.press("Enter")
        page.wait_for_selector("#trend canvas[data-code]")
        assert (
            page.locator(f"#results button[data-code='{other_code}']").get_attribute("aria-pressed")
            == "true"
        )
        assert _drawn_pixels(page, "#trend canvas") > 1000

    # the English switch translates the page, the record and the search results included
    page.click("#lang")
    page.locator("h2#find-title", has_text="Find a patient").wait_for()
    page.locator("#allergies-title", has_text="Allergies").wait_for()
    page.locator("#find-results", has_text="Patients found: 1").wait_for()
    english = expected[-1]["code"]["coding"][0]["display"]  # LOINC displays are English
    page.locator(f"#results tbody tr[data-code='{code}']", has_text=english).wait_for()
    page.locator("#trend canvas").first.wait_for()
    e2e.shot(page, "summary-en")
    page.click("#lang")
    page.locator("#allergies-title", has_text="过敏").wait_for()

    # a card tap: the reader types the card id and Enter; one patient -> the record opens
    card = issue_card(e2e.store, patient["id"], kind=KIND_SUN, uid="04A1B2C3D4E5F6").cid
    page.get_by_role("button", name="关闭病历").click()
    page.wait_for_function("() => location.hash === '#/'")
    assert page.locator("#patient").is_hidden()
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "find-q"
    page.keyboard.insert_text(card.lower())
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(rf"#/patient/{re.escape(patient['id'])}$"))
    page.locator("#patient-name", has_text=name).wait_for()

    # a phone-sized screen stacks the panels
    page.set_viewport_size(PHONE)
    page.locator("#trend canvas").first.wait_for()
    e2e.shot(page, "summary-phone")

    # the workstation is shared: signing out revokes the token and ends the login session, so
    # the next person is asked for a password, not shown the doctor's consent page
    page.set_viewport_size(DESKTOP)
    used = page.evaluate("JSON.parse(sessionStorage.getItem('ehr.smart.session')).accessToken")
    assert e2e.api("GET", f"Patient/{patient['id']}", used).status_code == 200
    page.click("#logout")
    page.wait_for_url(re.compile(r"/auth/login"))
    page.locator("#username").wait_for()
    # revoked at once; a worker that checked the token in the last revocation TTL (5 s) may
    # still accept it until then
    deadline = clock.monotonic() + 10
    while e2e.api("GET", f"Patient/{patient['id']}", used).status_code != 401:
        assert clock.monotonic() < deadline, "the signed-out token is still accepted"
        clock.sleep(0.5)


# -- today's clinic: call the next patient, write the note, finish the visit ----------------------


def _params(**values: Any) -> dict[str, Any]:
    out: list[dict[str, Any]] = []
    for k, v in values.items():
        if isinstance(v, dict):
            out.append({"name": k, "valueReference": v})
        elif isinstance(v, int):
            out.append({"name": k, "valueInteger": v})
        else:
            out.append({"name": k, "valueString": v})
    return {"resourceType": "Parameters", "parameter": out}


def _checked_in_today(e2e: E2E, token: str, role: str, org: str, patient: str) -> dict[str, Any]:
    """Give the doctor's Schedule a clinic session all day, every day (the test runs on any
    weekday), then book the patient into the next free slot today and check them in: all
    through the API, as the booking app and the counter terminal would."""
    role_id = role.split("/", 1)[1]
    schedules = _bundle(e2e, token, f"Schedule?actor={role}&active=true")
    assert schedules, "the demo doctor has no Schedule"
    sched = schedules[0]
    week = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    every_day = Availability(  # (1-minute slots in the last hour: a slot left until 23:57)
        org.split("/", 1)[1],
        (Session("day", week, time(0, 0), time(23, 0), slot_minutes=5),
         Session("eve", week, time(23, 0), time(23, 59), slot_minutes=1)),
    )  # fmt: skip
    sched["extension"] = [
        x for x in sched.get("extension", []) if x.get("url") != AVAILABILITY_EXT
    ] + [availability_extension(every_day)]
    put = e2e.api("PUT", f"Schedule/{sched['id']}", token, json=sched)
    assert put.status_code == 200, put.text
    now = datetime.now(CST)
    today = now.date().isoformat()
    gen = e2e.api("POST", f"Schedule/{sched['id']}/$generate-slots", token,
                  json=_params(start=today, days=1))  # fmt: skip
    assert gen.status_code == 200, gen.text
    found = e2e.api("GET", f"Appointment/$find?practitioner=PractitionerRole/{role_id}"
                    f"&start={today}&end={today}&_count=1000", token).json()  # fmt: skip
    later = [
        e["resource"] for e in found.get("entry", [])
        if e["resource"]["schedule"]["reference"] == f"Schedule/{sched['id']}"
        and datetime.fromisoformat(e["resource"]["start"]) > now + timedelta(minutes=1)
    ]  # fmt: skip
    if not later:
        pytest.skip("no clinic slot left today (the test runs in the last minutes of the day)")
    booked = e2e.api("POST", "Appointment/$book", token, json=_params(
        slot={"reference": f"Slot/{later[0]['id']}"}, patient={"reference": f"Patient/{patient}"}))  # fmt: skip
    assert booked.status_code in (200, 201), booked.text
    checked = e2e.api("POST", f"Appointment/{booked.json()['id']}/$checkin", token,
                      json=_params(channel="counter"))  # fmt: skip
    assert checked.status_code == 200, checked.text
    session = next(x["valueCode"] for x in later[0]["extension"] if x["url"] == SLOT_SESSION_EXT)
    return {"schedule": sched["id"], "session": session, "appointment": booked.json()["id"]}


def test_workstation_call_next_write_note_and_finish(e2e: E2E) -> None:
    _call_next_write_note_and_finish(e2e)


def test_workstation_call_next_on_postgresql(pg_database: str, tmp_path: Path) -> None:
    """The same visit on PostgreSQL (the row locks of call-next, the visibility SQL)."""
    with e2e_support.e2e_world(tmp_path, "test_workstation_call_next_pg", db_url=pg_database) as w:
        _call_next_write_note_and_finish(w)
        assert not w.errors, w.errors


def _call_next_write_note_and_finish(e2e: E2E) -> None:
    doctor = e2e.account("demo.doctor")
    token = e2e.service_token("system/*.cruds")
    patient = _treated_patient_with_results(e2e, token, doctor.fhir_user)
    assert doctor.practitioner_role and doctor.organization
    visit = _checked_in_today(e2e, token, doctor.practitioner_role, doctor.organization,
                              patient["id"])  # fmt: skip

    page = e2e.page(DESKTOP)
    page.goto(e2e.url("/app/workstation/"))
    sign_in(page, "demo.doctor")
    session = page.locator(f".clinic-session[data-schedule='{visit['schedule']}']"
                           f"[data-session='{visit['session']}']")  # fmt: skip
    session.wait_for()
    assert "候诊 1 人" in session.inner_text()
    e2e.shot(page, "clinic")

    label = {"day": "全天", "eve": "晚间"}[visit["session"]]
    call = session.get_by_role("button", name=f"{label}门诊：叫下一位患者")
    call.focus()
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(rf"#/patient/{re.escape(patient['id'])}\?encounter="))
    encounter = page.url.rsplit("encounter=", 1)[1]
    page.locator("#patient-name").wait_for()
    assert page.locator("#patient-name").inner_text() == _name(patient)
    assert "就诊中" in page.locator("#visit").inner_text()
    assert "请 1 号" in page.locator("#app-status").inner_text()
    # the server agrees: the Encounter is in progress and the doctor takes part in it
    enc = e2e.api("GET", f"Encounter/{encounter}", token).json()
    assert enc["status"] == "in-progress"
    assert enc["appointment"][0]["reference"] == f"Appointment/{visit['appointment']}"

    text = "主诉：咳嗽3天。查体：咽部充血。诊断：急性上呼吸道感染。处理：对症治疗，多饮水。"
    page.get_by_label("病历内容（主诉、现病史、查体、诊断、处理）").fill(text)
    page.get_by_role("button", name="保存病历").click()
    page.locator("#note-saved", has_text="病历已保存").wait_for()
    e2e.shot(page, "note")
    docs = _bundle(e2e, token, f"DocumentReference?encounter=Encounter/{encounter}")
    assert len(docs) == 1
    doc = docs[0]
    assert doc["type"]["coding"][0]["code"] == "11506-3"
    assert doc["subject"]["reference"] == f"Patient/{patient['id']}"
    assert base64.b64decode(doc["content"][0]["attachment"]["data"]).decode() == text
    # saving again replaces the note (a new version), it does not add a second one
    page.get_by_label("病历内容（主诉、现病史、查体、诊断、处理）").fill(text + "3天后复诊。")
    page.get_by_role("button", name="保存病历").click()
    page.locator("#note-saved", has_text="第 2 版").wait_for()
    docs = _bundle(e2e, token, f"DocumentReference?encounter=Encounter/{encounter}")
    assert len(docs) == 1 and docs[0]["meta"]["versionId"] == "2"

    page.get_by_role("button", name="结束就诊").click()
    page.locator("#app-status", has_text="本次就诊已结束").wait_for()
    assert e2e.api("GET", f"Encounter/{encounter}", token).json()["status"] == "finished"
    appt = e2e.api("GET", f"Appointment/{visit['appointment']}", token).json()
    assert appt["status"] == "fulfilled"
    session.locator("text=已完成 1 人").wait_for()
    e2e.shot(page, "finished")


# -- break the glass where consent restricts ------------------------------------------------------


def _deny_organization(patient: str, org: str) -> dict[str, Any]:
    """The patient's privacy Consent: do not share my record with ``org``."""
    return {
        "resourceType": "Consent",
        "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                              "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": LOINC, "code": "59284-0"}]}],
        "patient": {"reference": f"Patient/{patient}"},
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                                   "code": "OPTIN"}]},
        "provision": {"type": "deny", "actor": [{
            "role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                 "code": "PRCP"}]},
            "reference": {"reference": org}}]},
    }  # fmt: skip


def test_workstation_break_the_glass_where_consent_restricts(e2e: E2E) -> None:
    doctor = e2e.account("demo.doctor")
    assert doctor.organization
    token = e2e.service_token("system/*.cruds")
    patient = _treated_patient_with_results(e2e, token, doctor.fhir_user)
    pid, name = patient["id"], _name(patient)
    made = e2e.api("POST", "Consent", token, json=_deny_organization(pid, doctor.organization))
    assert made.status_code == 201, made.text

    page = e2e.page(DESKTOP)
    page.goto(e2e.url("/app/workstation/"))
    sign_in(page, "demo.doctor")
    search = page.get_by_label("姓名、证件号、就诊卡号或刷卡")
    # the record is hidden: a search by name finds nobody
    search.fill(name)
    search.press("Enter")
    page.locator("#find-results", has_text="没有找到患者").wait_for()
    # the exchange id (e.g. from a referral) opens the break-the-glass form, not the record
    search.fill(f"Patient/{pid}")
    search.press("Enter")
    form = page.locator("#glass-form")
    form.wait_for()
    assert page.locator("#patient-name").count() == 0
    assert page.evaluate("document.activeElement.id") == "glass-title"
    # a reason is required
    form.get_by_role("button", name="紧急访问（破窗）").click()
    page.locator("#glass-error", has_text="请填写紧急访问理由").wait_for()
    assert page.locator("#patient-name").count() == 0
    e2e.shot(page, "restricted")
    page.get_by_label("常用理由").select_option(label="急诊抢救，患者无法表达意愿")
    reason = page.get_by_label("紧急访问理由（必填）").input_value()
    assert reason == "急诊抢救，患者无法表达意愿"
    form.get_by_role("button", name="紧急访问（破窗）").click()

    page.locator("#patient-name").wait_for()
    assert page.locator("#patient-name").inner_text() == name
    assert reason in page.locator("#glass-active").inner_text()
    page.wait_for_function(
        "() => { const c = document.querySelector('#trend canvas');"
        " return c && window.Chart && window.Chart.getChart(c); }"
    )
    assert _drawn_pixels(page, "#trend canvas") > 1000
    e2e.shot(page, "break-glass")

    # the server lifted the consent for these requests only, told the patient and audited it
    told = _bundle(e2e, token, f"Communication?recipient=Patient/{pid}")
    assert [c["sender"]["reference"] for c in told] == [doctor.fhir_user]
    assert told[0]["category"][0]["coding"][0]["code"] == "BTG"
    events = _bundle(e2e, token, f"AuditEvent?patient=Patient/{pid}&_count=500")
    btg = [
        e for e in events
        if any(c.get("code") == "BTG" for p in e.get("purposeOfEvent", []) for c in p["coding"])
    ]  # fmt: skip
    assert btg and all(p.get("text") == reason for e in btg for p in e["purposeOfEvent"])
    assert {a["who"].get("reference") for e in btg for a in e["agent"]} >= {doctor.fhir_user}

    # ending the emergency access closes the record again
    page.get_by_role("button", name="结束紧急访问").click()
    page.locator("#glass-form").wait_for()
    assert page.locator("#patient-name").count() == 0
    # the browser logs the refused reads (404, as for a record that does not exist): expected
    refused = f"404 (Not Found) ({e2e.origin}/fhir/Patient/{pid})"
    assert sum(refused in e for e in e2e.errors) >= 2
    e2e.errors[:] = [e for e in e2e.errors if refused not in e]
