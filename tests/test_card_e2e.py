"""End to end: the counter terminal program, nfcpy's real reader code over its UDP driver against
emulated cards on 127.0.0.1, and the real API on a uvicorn socket, on SQLite and PostgreSQL.

card side: card_reader.emulators (ISO-DEP health card, NTAG 424 DNA-like SUN tag) on a loopback
UDP port; terminal side: card_reader.terminal.Terminal + card_reader.nfc.NfcReader +
card_reader.client.TerminalClient (OAuth client credentials with private_key_jwt); server side:
create_app + the authorization server + fhir_api.cards + the appointment services of
test_appointments_support (clock: Monday 2025-07-21 09:00 CST).
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from test_api_support import free_port
from test_appointments_support import MONDAY, World, build_world
from test_auth_support import AuthApp, auth_app, client_key, live
from test_card_server import SETTINGS, b64

from appointments import book
from card_reader.client import ApiRefused, TerminalClient
from card_reader.emulators import HealthCardApplet, SunTagApplet, Type4CardEmulator
from card_reader.nfc import NfcReader
from card_reader.terminal import Backoff, Screen, Terminal
from ehr.cards.credential import card_public_jwk
from ehr.cards.issuing import issue_card, revoke_card
from ehr.cards.service import CardService
from ehr.store import Store
from fhir_api.cards import TAP_SCOPE, install

TAP_TIMEOUT = 5.0


@dataclass
class Counter:
    """One counter terminal: its client, reader and screen."""

    client: TerminalClient
    out: io.StringIO
    terminal: Terminal
    readers: list[NfcReader] = field(default_factory=list)

    @property
    def screen(self) -> str:
        return self.out.getvalue()


@dataclass
class E2E:
    a: AuthApp
    world: World
    cards: CardService
    api: str  # the FHIR base on the live socket
    stack: ExitStack

    @property
    def store(self) -> Store:
        return self.a.store

    def register(self, scope: str = TAP_SCOPE) -> tuple[str, Any]:
        key, jwks = client_key("ES384")
        client_id = self.a.accounts.clients.add(
            "门诊一楼柜台", scopes=scope, client_type="confidential-asymmetric", jwks=jwks,
            grant_types=["client_credentials"],
        ).client.client_id  # fmt: skip
        return client_id, key

    def counter(self, emulator: Type4CardEmulator | None = None, *, scope: str = TAP_SCOPE,
                api: str | None = None, reader_path: str | None = None) -> Counter:  # fmt: skip
        client_id, key = self.register(scope)
        client = TerminalClient(api or self.api, client_id, key, "ES384", timeout=5.0)
        self.stack.callback(client.close)
        path = reader_path or (emulator.path if emulator else "udp:127.0.0.1:9")
        reader = NfcReader(path, targets=("106A",), poll_interval=0.05)
        self.stack.callback(reader.close)
        out = io.StringIO()
        terminal = Terminal(
            client, reader, Screen(out), tap_timeout=TAP_TIMEOUT, removal_timeout=0.05,
            backoff=Backoff(0.01, 0.05),
        )  # fmt: skip
        return Counter(client, out, terminal, [reader])

    def card(self, patient: str = "pat-1", **kw: Any) -> HealthCardApplet:
        key = ec.generate_private_key(ec.SECP256R1())
        issued = issue_card(
            self.store, patient, kind="iso-dep", card_public_jwk=card_public_jwk(key.public_key()),
            cards=self.cards, **kw,
        )  # fmt: skip
        assert issued.credential is not None
        return HealthCardApplet(issued.credential, key)

    def emulate(self, applet: Any, **kw: Any) -> Type4CardEmulator:
        return self.stack.enter_context(Type4CardEmulator(applet, **kw))

    def booking(self, n: int = 4, patient: str = "pat-1") -> dict[str, Any]:
        slot = self.world.slot("sch-a", MONDAY, "am", n)
        return book(self.world.svc, self.world.parent, slot=slot, patient=patient)

    def status(self, appointment: dict[str, Any]) -> str:
        return str(self.store.read("Appointment", appointment["id"]).resource()["status"])

    def events(self, *params: tuple[str, str]) -> list[dict[str, Any]]:
        self.a.app.state.card_audit.sync()
        page = self.store.search("AuditEvent", [*params, ("_count", "100")])
        return [json.loads(h.data) for h in page.matches]


@pytest.fixture
def e2e(store: Store) -> Iterator[E2E]:
    world = build_world(store, days=1, schedules=("sch-a",))
    a = auth_app(store)
    a.app.state.appointments = world.svc
    cards = install(a.app, SETTINGS)
    with ExitStack() as stack, live(a.app) as origin:
        stack.callback(a.app.state.card_audit.close)
        yield E2E(a, world, cards, f"{origin}/fhir", stack)


def timed(fn: Any, *args: Any) -> Any:
    started = time.monotonic()
    result = fn(*args)
    assert time.monotonic() - started < 8, "one terminal turn took too long"
    return result


# (1) ------------------------------------------------------------------------------------------


def test_tap_identifies_and_checks_in(e2e: E2E) -> None:
    appt = e2e.booking()
    emulator = e2e.emulate(e2e.card())
    counter = e2e.counter(emulator)
    assert timed(counter.terminal.step) == "accepted", counter.screen
    assert "身份已确认：王*" in counter.screen
    assert "09:30 内分泌科 医生1" in counter.screen
    assert "签到成功 内分泌科：排队号 1" in counter.screen and "queue number 1" in counter.screen
    assert e2e.status(appt) == "arrived"
    answer = counter.terminal.last_answer
    assert answer is not None and answer["patient"]["reference"] == "Patient/pat-1"
    assert set(answer) == {"result", "tap", "patient", "appointments"}
    assert [e["outcome"] for e in e2e.events(("subtype", "card-tap"))] == ["0"]


def test_sun_tag_identifies(e2e: E2E) -> None:
    issued = issue_card(e2e.store, "pat-2", kind="sun", uid="04112233445566", cards=e2e.cards)
    keys = e2e.cards.sun_keys()
    uid = bytes.fromhex("04112233445566")
    tag = SunTagApplet(uid, meta_read_key=keys.meta_read_key, base_url=SETTINGS.sun_url,
                       file_read_key=issued.sun_file_read_key or b"")  # fmt: skip
    counter = e2e.counter(e2e.emulate(tag, uid=uid))
    assert timed(counter.terminal.step) == "accepted", counter.screen
    assert "身份已确认：李*国" in counter.screen and "今日无预约" in counter.screen


# (2) ------------------------------------------------------------------------------------------


def test_clone_of_the_ndef_is_refused(e2e: E2E) -> None:
    appt = e2e.booking()
    genuine = e2e.card()
    clone = HealthCardApplet(genuine.credential, ec.generate_private_key(ec.SECP256R1()))
    counter = e2e.counter(e2e.emulate(clone))
    assert timed(counter.terminal.step) == "refused"
    assert "此卡未通过验证" in counter.screen and "[not-genuine]" in counter.screen
    assert "王" not in counter.screen
    assert e2e.status(appt) == "booked"


# (3) ------------------------------------------------------------------------------------------


def test_replayed_taps_are_refused(e2e: E2E) -> None:
    counter = e2e.counter(e2e.emulate(e2e.card()))
    reader, client = counter.readers[0], counter.client
    evidence = reader.read_tap(client.nonce().value, timeout=TAP_TIMEOUT)
    assert evidence is not None
    assert client.tap(evidence)["result"] == "accepted"
    assert client.tap(evidence) == {"result": "refused", "reason": "replay"}  # same nonce
    # a SUN URL used again, with a fresh nonce
    issue_card(e2e.store, "pat-2", kind="sun", uid="04aabbccddeeff", cards=e2e.cards)
    keys, uid = e2e.cards.sun_keys(), bytes.fromhex("04aabbccddeeff")
    tag = SunTagApplet(uid, meta_read_key=keys.meta_read_key, base_url=SETTINGS.sun_url,
                       file_read_key=keys.file_read_key(uid))  # fmt: skip
    sun = e2e.counter(e2e.emulate(tag, uid=uid))
    first = sun.readers[0].read_tap(sun.client.nonce().value, timeout=TAP_TIMEOUT)
    assert first is not None and sun.client.tap(first)["result"] == "accepted"
    again = dict(first, nonce=b64(sun.client.nonce().value))  # the URL's counter is spent
    assert sun.client.tap(again) == {"result": "refused", "reason": "replay"}


# (4) ------------------------------------------------------------------------------------------


def test_revoked_card_is_refused_and_raises_an_alert(e2e: E2E) -> None:
    appt = e2e.booking()
    applet = e2e.card()
    cid = e2e.cards.registry.of_patient("pat-1")[0].cid
    revoke_card(e2e.store, cid, "stolen", cards=e2e.cards)
    counter = e2e.counter(e2e.emulate(applet))
    assert timed(counter.terminal.step) == "refused"
    assert "此卡已挂失或注销" in counter.screen and "[revoked]" in counter.screen
    assert e2e.status(appt) == "booked"
    alerts = e2e.events(("type", "110113"), ("patient", "Patient/pat-1"))
    assert len(alerts) == 1 and "stolen" in alerts[0]["outcomeDesc"]
    notices = e2e.store.search(
        "Communication", [("subject", "Patient/pat-1"), ("category", "alert")]
    )
    assert len(notices.matches) == 1


# (5) ------------------------------------------------------------------------------------------


def test_expired_credential_is_refused(e2e: E2E) -> None:
    applet = e2e.card(now=time.time() - 10 * 86400, lifetime=86400)
    counter = e2e.counter(e2e.emulate(applet))
    assert timed(counter.terminal.step) == "refused"
    assert "此卡已过期" in counter.screen and "[expired]" in counter.screen


# (6) ------------------------------------------------------------------------------------------


def test_terminal_without_the_right_scope_is_refused(e2e: E2E) -> None:
    emulator = e2e.emulate(e2e.card())
    # registered for something else: no token for the card scope at all
    counter = e2e.counter(emulator, scope="system/Patient.rs")
    assert timed(counter.terminal.step) == "unauthorized"
    assert "终端未获授权" in counter.screen
    # a valid token without the card scope: 403 from the card operations
    client_id, key = e2e.register("system/Patient.rs")
    other = TerminalClient(e2e.api, client_id, key, "ES384", scope="system/Patient.rs")
    try:
        with pytest.raises(ApiRefused) as err:
            other.nonce()
        assert err.value.status == 403
    finally:
        other.close()


# (7) ------------------------------------------------------------------------------------------


def test_two_terminals_racing_check_in_once(e2e: E2E) -> None:
    appt = e2e.booking()
    emulator = e2e.emulate(e2e.card())
    one, two = e2e.counter(emulator), e2e.counter(emulator)
    taps = []
    for c in (one, two):  # the card is read at both counters
        evidence = c.readers[0].read_tap(c.client.nonce().value, timeout=TAP_TIMEOUT)
        assert evidence is not None
        c.readers[0].close()
        answer = c.client.tap(evidence)
        assert answer["result"] == "accepted" and answer["appointments"][0]["id"] == appt["id"]
        taps.append(answer["tap"])
    barrier = threading.Barrier(2)

    def check_in(pair: tuple[Counter, str]) -> dict[str, Any]:
        barrier.wait()
        return pair[0].client.check_in(appt["id"], pair[1])

    with ThreadPoolExecutor(2) as pool:
        done = list(pool.map(check_in, [(one, taps[0]), (two, taps[1])]))
    assert {d["queue_number"] for d in done} == {1}
    assert sorted(d["repeated"] for d in done) == [False, True]
    assert len({d["encounter"] for d in done}) == 1
    encounters = e2e.store.search("Encounter", [("appointment", f"Appointment/{appt['id']}")])
    assert len(encounters.matches) == 1
    assert e2e.status(appt) == "arrived"


# robustness ------------------------------------------------------------------------------------


def test_terminal_survives_a_card_pulled_away(e2e: E2E) -> None:
    emulator = e2e.emulate(e2e.card(), silent_after=6)
    counter = e2e.counter(emulator)
    assert timed(counter.terminal.step) == "card-error"
    assert "读卡中断，请重新刷卡" in counter.screen and "tap it again" in counter.screen


def test_terminal_survives_the_network_down(e2e: E2E) -> None:
    emulator = e2e.emulate(e2e.card())
    counter = e2e.counter(emulator, api=f"http://127.0.0.1:{free_port()}/fhir")
    for _ in range(2):
        assert timed(counter.terminal.step) == "network"
    assert counter.screen.count("网络中断") == 1  # said once, not once per retry
    assert counter.terminal.backoff.failures == 2


def test_terminal_survives_a_missing_reader(e2e: E2E) -> None:
    counter = e2e.counter(reader_path="usb:ffff:ffff")
    assert timed(counter.terminal.step) == "reader-error"
    assert "读卡器未连接" in counter.screen


def test_terminal_survives_the_reader_unplugged_and_plugged_back(e2e: E2E) -> None:
    counter = e2e.counter(e2e.emulate(e2e.card()))
    assert timed(counter.terminal.step) == "accepted"
    reader = counter.readers[0]
    assert reader._clf is not None
    reader._clf.device.socket.close()  # the USB device handle dies under nfcpy
    assert timed(counter.terminal.step) == "reader-error"
    assert "读卡器未连接" in counter.screen
    assert timed(counter.terminal.step) == "accepted"  # re-opened on the next turn
    assert counter.screen.count("身份已确认") == 2
