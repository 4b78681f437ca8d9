"""The citizen's phone booking app (/app/booking/), end to end in Chromium on a phone-sized
screen: sign in through the real login and consent pages, book a slot, see it listed, cancel it,
see who accessed the record (a clinician's break-the-glass read highlighted). What the pages show
is cross-checked through the FHIR API. Helpers: tests/e2e_support.py."""

from __future__ import annotations

import dataclasses
import re
from typing import Any
from urllib.parse import quote

import e2e_support
import pytest
from e2e_support import E2E, sign_in
from playwright.sync_api import expect
from test_auth_support import FAST_PASSWORDS

from appointments.fhirdata import Reader
from appointments.policy import load_policy, save_policy
from fhir_api.apps.demo_accounts import ensure_demo_accounts
from fhir_api.auth import AuthSettings
from fhir_api.auth.config import account_store

pytestmark = pytest.mark.e2e
# the harness's fixtures, used here by name
e2e = e2e_support.e2e
e2e_template = e2e_support.e2e_template

BOOKING = "/app/booking/"


def _appointments(e2e: E2E, token: str, patient: str) -> list[dict]:
    r = e2e.api("GET", f"Appointment?patient={patient}&_count=100", token)
    assert r.status_code == 200, r.text
    return [x["resource"] for x in r.json().get("entry", [])]


def _facts(appt: dict, name: str) -> list[Any]:
    """The values of the booking facts ``name`` of an Appointment (its sub-extensions)."""
    return [
        v
        for e in appt.get("extension", [])
        for x in e.get("extension", [])
        if x["url"] == name
        for k, v in x.items()
        if k.startswith("value")
    ]


def _set_cut_off(e2e: E2E, appt: dict, hours: float) -> None:
    """The hospital of ``appt`` now stops online cancellations ``hours`` before a visit."""
    org = _facts(appt, "organization")[0]["reference"].split("/")[1]
    with Reader.open(e2e.store) as reader:
        policy = load_policy(reader, org)
    save_policy(e2e.store, org, dataclasses.replace(policy, cancel_cutoff_hours=hours))


def _citizen_booked(e2e: E2E, query: str) -> tuple[Any, str, str, dict]:
    """The demo citizen signed in on a phone, with the first slot :func:`book_first_slot`
    finds for ``query`` booked: (the page, a service token, the citizen's Patient reference,
    the Appointment)."""
    patient = e2e.account("demo.citizen").fhir_user
    service = e2e.service_token()
    page = e2e.page()
    page.goto(e2e.url(BOOKING))
    sign_in(page, "demo.citizen")
    book_first_slot(page, query)
    (appt,) = _appointments(e2e, service, patient)
    return page, service, patient, appt


def pick_later_day(page: Any, nth: int = 1) -> None:
    """Show the slots of the ``nth`` day offered (0 is the first). From the second day on a slot
    is always a day or more ahead, so past no cancellation cut-off whatever the hour the suite
    runs at (the first day's first slot may start within the 2 hours of the cut-off)."""
    page.locator("#slots .choices button[data-day]").nth(nth).click()


def book_first_slot(page: Any, query: str) -> None:
    """Search by symptom or department, take the first free slot of the second day offered,
    hold it and confirm."""
    page.get_by_label("按症状或科室搜索").fill(query)
    page.get_by_role("button", name="搜索").click()
    page.locator("#search-results button").first.click()
    pick_later_day(page)
    page.locator("#slots button.slot").first.click()
    page.get_by_role("button", name="锁定此号").click()
    page.get_by_role("button", name="确认预约").click()
    expect(page.locator("#confirmation")).to_contain_text("预约成功")


def test_citizen_books_lists_cancels_and_sees_the_access_log(e2e: E2E) -> None:
    citizen = e2e.account("demo.citizen")
    patient = citizen.fhir_user
    service = e2e.service_token()
    assert _appointments(e2e, service, patient) == []

    page = e2e.page()  # 390 x 844, zh-CN
    page.goto(e2e.url(BOOKING))
    sign_in(page, "demo.citizen")
    page.wait_for_url(re.compile(r"/app/booking/$"))  # code and state gone from the address
    expect(page.locator("#patient-name")).to_contain_text(citizen.display_name)
    expect(page.locator("#patient-name")).to_contain_text("本人")
    e2e.shot(page, "1-signed-in")

    # search by symptom, pick the first matching department
    page.get_by_label("按症状或科室搜索").fill("发烧")
    page.get_by_role("button", name="搜索").click()
    first = page.locator("#search-results button").first
    expect(first).to_be_visible()
    department = first.inner_text()
    first.click()
    # the second day offered, its first slot; hold it, confirm
    pick_later_day(page)
    slot = page.locator("#slots button.slot").first
    expect(slot).to_be_visible()
    slot_label = slot.inner_text()
    slot.click()
    expect(slot).to_have_attribute("aria-pressed", "true")
    e2e.shot(page, "2-slots")
    page.get_by_role("button", name="锁定此号").click()
    expect(page.locator("#hold")).to_contain_text("已为您保留")
    page.get_by_role("button", name="确认预约").click()
    confirmation = page.locator("#confirmation")
    expect(confirmation).to_contain_text("预约成功")
    expect(confirmation).to_contain_text("就诊序号")
    e2e.shot(page, "3-confirmation")

    booked = _appointments(e2e, service, patient)
    assert [a["status"] for a in booked] == ["booked"]
    appt = booked[0]
    (number,) = _facts(appt, "slotNumber")
    expect(confirmation).to_contain_text(f"第 {number} 号")
    expect(confirmation).to_contain_text("前在线取消或改约")  # (the hospital's cut-off)
    assert f"第{number}号" in slot_label
    assert department.split(" · ")[-1] in confirmation.inner_text()

    # listed under "my appointments"
    page.get_by_role("tab", name="我的预约").click()
    item = page.locator(f"#upcoming li[data-id='{appt['id']}']")
    expect(item).to_contain_text("已预约")
    expect(item).to_contain_text(f"第 {number} 号")
    e2e.shot(page, "4-my-appointments")

    # cancel it (the inline confirmation, then the server's answer)
    item.get_by_role("button", name="取消预约").click()
    item.locator(".card").get_by_role("button", name="取消预约").click()
    expect(page.locator("#app-status")).to_contain_text("预约已取消")
    expect(page.locator(f"#upcoming li[data-id='{appt['id']}']")).to_have_count(0)
    expect(page.locator(f"#past li[data-id='{appt['id']}']")).to_contain_text("已取消")
    assert [a["status"] for a in _appointments(e2e, service, patient)] == ["cancelled"]
    e2e.shot(page, "5-cancelled")

    # someone else reads the record: a clinician, in an emergency (break-the-glass)
    doctor = e2e.user_token("demo.doctor", "user/*.rs")
    r = e2e.api("GET", patient, doctor, headers={"X-Break-Glass": quote("急诊抢救：患者昏迷")})
    assert r.status_code == 200, r.text

    page.get_by_role("tab", name="访问记录").click()
    log = page.locator("#access-log")
    expect(log.locator("li").first).to_be_visible()
    glass = log.locator("li[data-break-glass='true']")
    expect(glass.first).to_contain_text("紧急访问")
    expect(glass.first).to_contain_text("急诊抢救")
    expect(glass.first.locator(".who")).to_contain_text(e2e.account("demo.doctor").display_name)
    org = e2e.account("demo.doctor").organization
    assert org is not None
    org_name = e2e.api("GET", org, service).json()["name"]
    expect(glass.first.locator(".org")).to_contain_text(org_name)
    # the citizen's own reads are there too, as their own
    expect(log.locator("li .who", has_text="您本人").first).to_be_visible()
    expect(log.locator("li .purpose", has_text="本人查询").first).to_be_visible()
    e2e.shot(page, "6-access-log")

    # the same audit trail through the API, under the citizen's own token (what the page read)
    audit = e2e.api(
        "GET",
        f"AuditEvent?patient={patient}&_count=200",
        e2e.user_token("demo.citizen", "patient/*.rs", patient=patient.split("/")[1]),
    )
    assert audit.status_code == 200, audit.text
    purposes = [
        c["code"]
        for x in audit.json()["entry"]
        for p in x["resource"].get("purposeOfEvent", [])
        for c in p["coding"]
    ]
    assert "BTG" in purposes and "PATRQT" in purposes


def test_record_health_card_and_english(e2e: E2E) -> None:
    citizen = e2e.account("demo.citizen")
    service = e2e.service_token()
    me = e2e.api("GET", citizen.fhir_user, service).json()
    card = next(
        i["value"]
        for i in me["identifier"]
        if i["system"].endswith("/sid/health-card") and i.get("use") != "old"
    )
    observations = e2e.api(
        "GET", f"Observation?patient={citizen.fhir_user}&_summary=count", service
    ).json()["total"]
    assert observations > 0

    page = e2e.page()
    page.goto(e2e.url(BOOKING))
    sign_in(page, "demo.citizen")
    expect(page.locator("#patient-name")).to_contain_text(citizen.display_name)

    page.get_by_role("tab", name="健康档案").click()
    expect(page.locator("#results")).to_be_visible()
    chart = page.locator("#trend-chart")
    expect(chart).to_have_attribute("role", "img")
    expect(chart).to_have_attribute("aria-label", re.compile(r"\d"))
    box = chart.bounding_box()
    assert box is not None and box["width"] > 300 and box["height"] > 150
    expect(page.locator("#immunizations h3")).to_have_text("疫苗接种")
    e2e.shot(page, "1-record")

    page.get_by_role("tab", name="健康卡").click()
    expect(page.locator("#card-number")).to_have_text(card)
    qr = page.locator("#card-qr")
    expect(qr).to_have_attribute("alt", re.compile(card))
    assert qr.evaluate("img => img.complete && img.naturalWidth > 100")
    e2e.shot(page, "2-card")

    # keyboard: arrows move between tabs; the English switch is remembered
    page.get_by_role("tab", name="健康卡").focus()
    page.keyboard.press("ArrowLeft")
    expect(page.get_by_role("tab", name="访问记录")).to_be_focused()
    expect(page.get_by_role("tab", name="访问记录")).to_have_attribute("aria-selected", "true")
    page.get_by_role("button", name="English").click()
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.get_by_role("tab", name="Access")).to_be_visible()
    expect(page.locator("#access-log")).to_contain_text("Your own request")
    page.reload()
    expect(page.get_by_role("tab", name="Bookings")).to_be_visible()
    e2e.shot(page, "3-english")


def test_demo_accounts_are_made_once_and_linked(e2e: E2E) -> None:
    accounts = account_store(e2e.store.engine, AuthSettings(), FAST_PASSWORDS)
    before = {u.username: u.id for u in accounts.users.list()}
    again = ensure_demo_accounts(e2e.store, accounts)
    assert {a.username for a in again} == {"demo.citizen", "demo.doctor", "demo.nurse",
                                           "demo.nurse2"}  # fmt: skip
    assert {u.username: u.id for u in accounts.users.list()} == before  # nothing new
    service = e2e.service_token()
    doctor, nurse = e2e.account("demo.doctor"), e2e.account("demo.nurse")
    assert doctor.organization == nurse.organization
    org = e2e.api("GET", str(doctor.organization), service).json()
    assert "hospital" in str(org["type"])
    role = e2e.api("GET", str(doctor.practitioner_role), service).json()
    assert role["practitioner"]["reference"] == doctor.fhir_user
    for a in again:
        assert accounts.users.authenticate(a.username, a.password, "127.0.0.1").status == "ok"


def test_a_parent_books_for_their_child(e2e: E2E) -> None:
    parent = e2e.account("demo.citizen")
    child = parent.acts_for[0]
    service = e2e.service_token()
    child_name = e2e.api("GET", f"Patient/{child}", service).json()["name"][0]["text"]

    page = e2e.page()
    page.goto(e2e.url(BOOKING))
    sign_in(page, "demo.citizen", patient=child)  # the consent page offers self or the child
    expect(page.locator("#patient-name")).to_contain_text(child_name)
    expect(page.locator("#patient-name")).to_contain_text("家人")

    book_first_slot(page, "儿科")
    e2e.shot(page, "1-booked-for-child")

    booked = _appointments(e2e, service, f"Patient/{child}")
    assert [a["status"] for a in booked] == ["booked"]
    booked_by = [v["reference"] for v in _facts(booked[0], "bookedBy")]
    assert booked_by == [parent.fhir_user]  # the parent booked, for the child
    assert _appointments(e2e, service, parent.fhir_user) == []

    page.get_by_role("tab", name="我的预约").click()
    expect(page.locator(f"#upcoming li[data-id='{booked[0]['id']}']")).to_contain_text("已预约")

    # back to themselves: the same consent page, the other choice
    page.get_by_role("button", name="更换就诊人").click()
    page.wait_for_url(re.compile(r"/auth/authorize"))
    page.check(f"input[name=patient][value='{parent.fhir_user.split('/')[1]}']")
    page.get_by_role("button", name="允许").click()
    expect(page.locator("#patient-name")).to_contain_text(parent.display_name)
    expect(page.locator("#patient-name")).to_contain_text("本人")
    page.get_by_role("tab", name="我的预约").click()
    expect(page.locator("#panel-mine")).to_contain_text("暂无预约")


def test_reschedule_moves_the_booking(e2e: E2E) -> None:
    page, service, patient, before = _citizen_booked(e2e, "牙痛")

    page.get_by_role("tab", name="我的预约").click()
    item = page.locator(f"#upcoming li[data-id='{before['id']}']")
    item.get_by_role("button", name="改约").click()
    # a later day than the booked one (the second offered): the third, its first slot
    item.locator(".choices button[data-day]").nth(2).click()
    item.locator("button.slot").first.click()
    item.locator("button.sticky-action").click()
    expect(page.locator("#app-status")).to_contain_text("已改约到")
    e2e.shot(page, "1-rescheduled")

    (after,) = _appointments(e2e, service, patient)
    assert after["id"] == before["id"] and after["status"] == "booked"
    assert after["start"][:10] > before["start"][:10]
    assert after["slot"] != before["slot"]
    freed = e2e.api("GET", before["slot"][0]["reference"], service).json()
    assert freed["status"] == "free"


def test_a_cancellation_past_the_cut_off_is_refused_with_the_servers_reason(e2e: E2E) -> None:
    page, service, patient, appt = _citizen_booked(e2e, "眼")

    # the hospital now stops cancellations 1000 hours ahead: this booking is past its cut-off
    _set_cut_off(e2e, appt, 1000.0)
    citizen = e2e.user_token("demo.citizen", "patient/*.rs patient/Appointment.cru",
                             patient=patient.split("/")[1])  # fmt: skip
    refused = e2e.api(
        "POST",
        f"Appointment/{appt['id']}/$cancel",
        citizen,
        json={"resourceType": "Parameters"},
    )
    assert 400 <= refused.status_code < 500
    reason = refused.json()["issue"][0]["diagnostics"]

    page.get_by_role("tab", name="我的预约").click()
    item = page.locator(f"#upcoming li[data-id='{appt['id']}']")
    item.get_by_role("button", name="取消预约").click()
    item.locator(".card").get_by_role("button", name="取消预约").click()
    expect(page.locator("#app-alert")).to_contain_text(reason)
    expect(item).to_contain_text("已预约")
    e2e.shot(page, "1-refused")
    assert [a["status"] for a in _appointments(e2e, service, patient)] == ["booked"]
    # the refused request is logged by the browser as a failed resource: expected here
    page.wait_for_timeout(200)
    e2e.errors[:] = [e for e in e2e.errors if "Failed to load resource" not in e]


def test_a_booking_within_the_cut_off_says_so_and_offers_no_online_cancel(e2e: E2E) -> None:
    page, service, patient, first = _citizen_booked(
        e2e, "眼"
    )  # (to learn the hospital; then given up, while it may be)
    page.get_by_role("tab", name="我的预约").click()
    item = page.locator(f"#upcoming li[data-id='{first['id']}']")
    expect(item).to_contain_text("前在线取消或改约")
    item.get_by_role("button", name="取消预约").click()
    item.locator(".card").get_by_role("button", name="取消预约").click()
    expect(page.locator("#app-status")).to_contain_text("预约已取消")

    # the hospital now stops online cancellations 1000 hours ahead: every slot is within it
    _set_cut_off(e2e, first, 1000.0)
    page.get_by_role("tab", name="预约", exact=True).click()
    page.get_by_label("按症状或科室搜索").fill("眼")
    page.get_by_role("button", name="搜索").click()
    page.locator("#search-results button").first.click()
    pick_later_day(page)
    page.locator("#slots button.slot").first.click()
    page.get_by_role("button", name="锁定此号").click()
    expect(page.locator("#hold")).to_contain_text("预约后不能在线取消或改约")  # told first
    e2e.shot(page, "1-held-within-the-cut-off")
    page.get_by_role("button", name="确认预约").click()
    expect(page.locator("#confirmation")).to_contain_text("在线取消和改约已于")
    booked = [a for a in _appointments(e2e, service, patient) if a["status"] == "booked"]
    assert len(booked) == 1
    page.get_by_role("tab", name="我的预约").click()
    item = page.locator(f"#upcoming li[data-id='{booked[0]['id']}']")
    expect(item).to_contain_text("如需取消请联系医院")
    expect(item.get_by_role("button", name="取消预约")).to_have_count(0)
    expect(item.get_by_role("button", name="改约")).to_have_count(0)
    e2e.shot(page, "2-no-online-cancel")


def test_a_refused_consent_is_reported_and_not_retried(e2e: E2E) -> None:
    page = e2e.page()
    page.goto(e2e.url(BOOKING))
    sign_in(page, "demo.citizen", allow=False)
    page.wait_for_url(re.compile(r"/app/booking/$"))  # back, without code or error in the address
    expect(page.locator("#app-alert")).to_contain_text("您没有允许本应用访问")
    expect(page.get_by_role("button", name="重新登录")).to_be_visible()
    page.wait_for_timeout(500)
    assert re.search(r"/app/booking/$", page.url)  # no loop back to the consent page
    e2e.shot(page, "1-denied")


def test_no_released_slot_offers_the_waitlist(e2e: E2E) -> None:
    import dataclasses
    from datetime import time as clock

    from appointments.fhirdata import Reader
    from appointments.policy import load_policy, save_policy

    # every hospital releases today's slots at the last second of today: nothing is open
    with Reader.open(e2e.store) as reader:
        orgs = [o["id"] for o in reader.find("Organization", [("active", "true")], limit=100)]
        policies = {o: load_policy(reader, o) for o in orgs}
    for org, policy in policies.items():
        late = dataclasses.replace(policy, release_days_ahead=0, release_time=clock(23, 59, 59))
        save_policy(e2e.store, org, late)
    patient = e2e.account("demo.citizen").fhir_user
    service = e2e.service_token()

    page = e2e.page()
    page.goto(e2e.url(BOOKING))
    sign_in(page, "demo.citizen")
    page.get_by_label("按症状或科室搜索").fill("眼")
    page.get_by_role("button", name="搜索").click()
    page.locator("#search-results button").first.click()
    expect(page.locator("#slots")).to_contain_text("近7天没有可预约的号源")
    service_id = page.locator("#department").input_value()
    page.get_by_role("button", name="加入候补").click()
    expect(page.locator("#app-status")).to_contain_text("已加入候补")
    e2e.shot(page, "1-waitlist")

    (entry,) = _appointments(e2e, service, patient)
    assert entry["status"] == "waitlist"
    actors = [p["actor"]["reference"] for p in entry["participant"]]
    assert f"HealthcareService/{service_id}" in actors
    page.get_by_role("tab", name="我的预约").click()
    expect(page.locator(f"#upcoming li[data-id='{entry['id']}']")).to_contain_text("候补")
