"""The health one-card on the server, on SQLite and PostgreSQL, through the real app.

The card side is card_reader's applets used directly as a transport (the radio is in
test_card_e2e.py); the server is create_app + the authorization server + fhir_api.cards, with a
terminal token got with private_key_jwt; the appointments are the test hospital of
test_appointments_support (its clock: Monday 2025-07-21 09:00 CST).
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient
from joserfc import jws
from joserfc.jwk import KeySet
from sqlalchemy.exc import IntegrityError
from test_api_support import rows
from test_appointments_support import MONDAY, World, build_world
from test_auth_support import ASSERTION, AuthApp, assertion, auth_app, browser, client_key

from appointments import book
from card_reader.emulators import HealthCardApplet, SunTagApplet
from card_reader.transport import collect_evidence
from ehr.cards.config import CardSettings
from ehr.cards.credential import IssuerKeySet, card_public_jwk, issue_credential
from ehr.cards.db_stores import CardRecord, CardRegistry
from ehr.cards.issuing import is_valid_cid, issue_card, new_cid, reissue_card, revoke_card
from ehr.cards.service import CardService
from ehr.errors import Conflict
from ehr.identifiers import HEALTH_CARD_SYSTEM
from ehr.store import Store
from fhir_api.cards import ISSUE_SCOPE, TAP_SCOPE, install

SETTINGS = CardSettings(issuer="https://ehr.example.cn/fhir/health-card", lifetime_days=365)


@dataclass
class Server:
    a: AuthApp
    world: World
    cards: CardService
    http: TestClient
    terminal: dict[str, str]  # Authorization header of a terminal
    terminal_id: str
    registrar: dict[str, str]  # Authorization header of the registration counter

    @property
    def store(self) -> Store:
        return self.a.store

    def sync_audit(self) -> None:
        self.a.app.state.card_audit.sync()

    def events(self, *params: tuple[str, str]) -> list[dict[str, Any]]:
        self.sync_audit()
        page = self.store.search("AuditEvent", [*params, ("_count", "100")])
        return [json.loads(h.data) for h in page.matches]


def backend(
    a: AuthApp, registered: str, requested: str | None = None
) -> tuple[str, dict[str, str]]:
    """A backend client registered for ``registered``; its id and an Authorization header."""
    key, jwks = client_key("ES384")
    client_id = a.accounts.clients.add(
        "柜台终端",
        scopes=registered,
        client_type="confidential-asymmetric",
        jwks=jwks,
        grant_types=["client_credentials"],
    ).client.client_id
    r = browser(a.app).post(
        "/auth/token",
        data={
            "grant_type": "client_credentials",
            "scope": requested or registered,
            "client_assertion_type": ASSERTION,
            "client_assertion": assertion(key, client_id, alg="ES384"),
        },
    )
    assert r.status_code == 200, r.text
    return client_id, {"Authorization": f"Bearer {r.json()['access_token']}"}


@pytest.fixture
def server(store: Store) -> Iterator[Server]:
    world = build_world(store, days=2, schedules=("sch-a",))
    a = auth_app(store)
    a.app.state.appointments = world.svc
    cards = install(a.app, SETTINGS)
    terminal_id, terminal = backend(a, TAP_SCOPE)
    _, registrar = backend(a, ISSUE_SCOPE)
    yield Server(a, world, cards, browser(a.app), terminal, terminal_id, registrar)
    a.app.state.card_audit.close()


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def new_card(s: Server, patient: str = "pat-1") -> tuple[HealthCardApplet, dict[str, Any]]:
    key = ec.generate_private_key(ec.SECP256R1())
    r = s.http.post(
        f"/fhir/Patient/{patient}/$issue-card",
        json={"kind": "iso-dep", "card_public_jwk": card_public_jwk(key.public_key())},
        headers=s.registrar,
    )
    assert r.status_code == 201, r.text
    body = r.json()
    return HealthCardApplet(body["credential"], key), body


def nonce(s: Server, headers: dict[str, str] | None = None) -> bytes:
    r = s.http.post("/fhir/$card-nonce", headers=headers or s.terminal)
    assert r.status_code == 200, r.text
    raw = r.json()["nonce"]
    return base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))


def send(s: Server, evidence: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
    r = s.http.post("/fhir/$card-tap", json=evidence, headers=headers or s.terminal)
    assert r.status_code == 200, r.text
    return r.json()


def tap(s: Server, card: Any, headers: dict[str, str] | None = None) -> Any:
    return send(s, collect_evidence(card, nonce(s, headers)), headers)


def booking(s: Server, n: int = 4) -> dict[str, Any]:
    """A booking of pat-1 today (Monday) at slot ``n`` of the morning (09:30 for 4)."""
    return book(
        s.world.svc, s.world.parent, slot=s.world.slot("sch-a", MONDAY, "am", n), patient="pat-1"
    )


def patient(s: Server, pid: str = "pat-1") -> dict[str, Any]:
    return s.store.read("Patient", pid).resource()


def card_identifiers(s: Server, pid: str = "pat-1") -> dict[str, dict[str, Any]]:
    return {
        i["value"]: i
        for i in patient(s, pid).get("identifier", [])
        if i.get("system") == HEALTH_CARD_SYSTEM
    }


# -- issuing ------------------------------------------------------------------------------------


def test_card_ids_are_random_with_a_check_character() -> None:
    ids = {new_cid() for _ in range(500)}
    assert len(ids) == 500 and all(is_valid_cid(c) for c in ids)
    cid = next(iter(ids))
    typo = cid[:3] + ("0" if cid[3] != "0" else "1") + cid[4:]
    assert not is_valid_cid(typo)
    assert not is_valid_cid(cid[:-1]) and not is_valid_cid(cid.lower())


def test_issue_writes_the_registry_and_the_identifier_together(server: Server) -> None:
    applet, body = new_card(server)
    cid = body["cid"]
    assert is_valid_cid(cid)
    ident = card_identifiers(server)[cid]
    assert ident["use"] == "official" and ident["period"]["start"] == body["issued"]
    assert ident["type"]["coding"][0]["code"] == "HC"
    record = server.cards.registry.get(cid)
    assert record is not None and record.patient_id == "pat-1" and record.active
    # the credential verifies under the published JWKS; it carries a pseudonym, not the ID
    jwks = server.http.get("/.well-known/health-card-jwks.json")
    assert jwks.status_code == 200 and jwks.headers["content-type"].startswith(
        "application/jwk-set"
    )
    keys = KeySet.import_key_set(jwks.json())
    claims = json.loads(jws.deserialize_compact(body["credential"], keys).payload)
    assert claims["cid"] == cid and claims["iss"] == SETTINGS.issuer
    assert claims["sub"].startswith("pp-") and "pat-1" not in claims["sub"]
    citizen = next(i["value"] for i in patient(server)["identifier"] if "citizen" in i["system"])
    assert citizen not in body["credential"] and citizen not in json.dumps(claims)
    assert claims["cnf"]["jwk"] == card_public_jwk(applet.private_key.public_key())
    # issuing was audited
    events = server.events(("subtype", "issue-card"), ("patient", "Patient/pat-1"))
    assert len(events) == 1 and events[0]["outcome"] == "0"


def test_card_id_uniqueness_is_the_databases(server: Server) -> None:
    _, body = new_card(server)
    dup = CardRecord(body["cid"], "pat-2", "iso-dep", "pp-x", "active", time.time())
    with pytest.raises(IntegrityError), server.store.engine.begin() as conn:
        CardRegistry.insert(conn, dup)
    # a plain FHIR write cannot copy the card identifier to another patient: 409, nothing written
    other = patient(server, "pat-2")
    other["identifier"].append(
        {"use": "official", "system": HEALTH_CARD_SYSTEM, "value": body["cid"]}
    )
    server.sync_audit()
    before = rows(server.store)
    r = server.http.put(
        "/fhir/Patient/pat-2", json=other, headers={"Content-Type": "application/fhir+json"}
    )
    assert r.status_code == 409 and "another patient" in r.text
    server.sync_audit()
    assert rows(server.store) == before
    # nor revive the identifier of a revoked card
    revoke_card(server.store, body["cid"], "lost", cards=server.cards)
    own = patient(server)
    for i in own["identifier"]:
        if i.get("value") == body["cid"]:
            i["use"] = "official"
    with pytest.raises(Conflict, match="revoked"):
        server.store.update("Patient", "pat-1", own)


def test_issue_needs_the_issue_scope_and_good_input(server: Server) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    body = {"kind": "iso-dep", "card_public_jwk": card_public_jwk(key.public_key())}
    r = server.http.post("/fhir/Patient/pat-1/$issue-card", json=body, headers=server.terminal)
    assert r.status_code == 403 and r.json()["resourceType"] == "OperationOutcome"
    r = server.http.post("/fhir/Patient/pat-1/$issue-card", json=body)
    assert r.status_code == 401
    bad = {
        "kind": "iso-dep",
        "card_public_jwk": {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"},
    }
    r = server.http.post("/fhir/Patient/pat-1/$issue-card", json=bad, headers=server.registrar)
    assert r.status_code == 400
    r = server.http.post("/fhir/Patient/nobody/$issue-card", json=body, headers=server.registrar)
    assert r.status_code == 404
    r = server.http.post(
        "/fhir/Patient/pat-1/$issue-card",
        json={"kind": "sun", "uid": "04zz"},
        headers=server.registrar,
    )
    assert r.status_code == 400
    assert server.cards.registry.of_patient("pat-1") == []


# -- tapping ------------------------------------------------------------------------------------


def test_tap_identifies_and_checks_in(server: Server) -> None:
    appt = booking(server)
    applet, body = new_card(server)
    answer = tap(server, applet)
    assert answer["result"] == "accepted"
    assert answer["patient"] == {"reference": "Patient/pat-1", "display": "王*"}
    assert answer["appointments"] == [
        {
            "id": appt["id"],
            "time": "2025-07-21T09:30:00+08:00",
            "department": "内分泌科",
            "practitioner": "医生1",
            "status": "booked",
        }
    ]
    r = server.http.post(
        f"/fhir/Appointment/{appt['id']}/$card-checkin",
        json={"tap": answer["tap"]},
        headers=server.terminal,
    )
    assert r.status_code == 200, r.text
    done = r.json()
    assert done["queue_number"] == 1 and done["repeated"] is False
    assert server.store.read("Appointment", appt["id"]).resource()["status"] == "arrived"
    assert server.cards.counters.last(body["cid"]) == 1
    taps = server.events(("subtype", "card-tap"), ("patient", "Patient/pat-1"))
    assert [e["outcome"] for e in taps] == ["0"]
    agent = next(a for a in taps[0]["agent"] if a.get("requestor"))
    assert agent["who"]["identifier"]["value"] == server.terminal_id
    assert len(server.events(("subtype", "card-checkin"))) == 1


def test_checkin_only_for_the_tapped_patient_by_the_tapping_terminal(server: Server) -> None:
    appt = booking(server)
    other = book(
        server.world.svc,
        server.world.parent,
        slot=server.world.slot("sch-a", MONDAY, "am", 5),
        patient="pat-child",
    )
    applet, _ = new_card(server)
    answer = tap(server, applet)
    path = "/fhir/Appointment/{}/$card-checkin"
    r = server.http.post(
        path.format(other["id"]), json={"tap": answer["tap"]}, headers=server.terminal
    )
    assert r.status_code == 403  # the child's appointment: not the tapped patient
    _, second = backend(server.a, TAP_SCOPE)
    r = server.http.post(path.format(appt["id"]), json={"tap": answer["tap"]}, headers=second)
    assert r.status_code == 403  # another terminal cannot use this terminal's tap
    r = server.http.post(path.format(appt["id"]), json={"tap": "x" * 32}, headers=server.terminal)
    assert r.status_code == 403
    for a in (appt, other):
        assert server.store.read("Appointment", a["id"]).resource()["status"] == "booked"


def test_refusals_name_only_the_reason(server: Server) -> None:
    applet, body = new_card(server)
    # a clone: the NDEF copied onto a card with another key, or onto a plain tag
    for clone in (
        HealthCardApplet(body["credential"], ec.generate_private_key(ec.SECP256R1())),
        HealthCardApplet(body["credential"], applet.private_key, has_applet=False),
    ):
        assert tap(server, clone) == {"result": "refused", "reason": "not-genuine"}
    # a card signed by someone else's issuer key
    foreign_keys = IssuerKeySet.generate(time.time(), max_card_lifetime=86400)
    key = ec.generate_private_key(ec.SECP256R1())
    foreign = issue_credential(
        foreign_keys, iss=SETTINGS.issuer, cid=body["cid"], sub="pp-x", card_key=key.public_key(),
        now=time.time(), lifetime=3600,
    )  # fmt: skip
    assert tap(server, HealthCardApplet(foreign, key)) == {
        "result": "refused",
        "reason": "unknown-card",
    }
    # replay: the same evidence again; a nonce of another terminal
    evidence = collect_evidence(applet, nonce(server))
    assert send(server, evidence)["result"] == "accepted"
    assert send(server, evidence) == {"result": "refused", "reason": "replay"}
    _, other_terminal = backend(server.a, TAP_SCOPE)
    stolen = collect_evidence(applet, nonce(server, other_terminal))
    assert send(server, stolen) == {"result": "refused", "reason": "replay"}
    # garbage
    assert send(server, {"kind": "iso-dep"}) == {"result": "refused", "reason": "bad-request"}
    r = server.http.post("/fhir/$card-tap", content=b"[1, 2", headers=server.terminal)
    assert r.status_code == 400
    # every tap was audited with the failing check; the terminal saw the reason only
    refused = server.events(("subtype", "card-tap"), ("outcome", "4"))
    details = " ".join(e["outcomeDesc"] for e in refused)
    assert "card signature does not verify" in details and "no card signature" in details
    assert len(server.events(("subtype", "card-tap"))) == 7


def test_expired_credential_is_refused(server: Server) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    issued = issue_card(
        server.store, "pat-1", kind="iso-dep", card_public_jwk=card_public_jwk(key.public_key()),
        cards=server.cards, now=time.time() - 3 * 86400, lifetime=86400,
    )  # fmt: skip
    assert issued.credential is not None
    assert tap(server, HealthCardApplet(issued.credential, key)) == {
        "result": "refused",
        "reason": "expired",
    }


def test_revoked_card_is_refused_and_raises_an_alert(server: Server) -> None:
    applet, body = new_card(server)
    assert tap(server, applet)["result"] == "accepted"
    r = server.http.post(
        "/fhir/Patient/pat-1/$revoke-card",
        json={"cid": body["cid"], "reason": "lost"},
        headers=server.registrar,
    )
    assert r.status_code == 200 and r.json()["status"] == "revoked"
    ident = card_identifiers(server)[body["cid"]]
    assert ident["use"] == "old" and "end" in ident["period"]
    for _ in range(2):
        assert tap(server, applet) == {"result": "refused", "reason": "revoked"}
    alerts = server.events(("type", "110113"), ("patient", "Patient/pat-1"))
    assert len(alerts) == 2 and all(body["cid"] in e["outcomeDesc"] for e in alerts)
    notices = server.store.search("Communication", [("subject", "Patient/pat-1")])
    assert len(notices.matches) == 1  # one per card, terminal and day
    notice = json.loads(notices.matches[0].data)
    assert notice["category"][0]["coding"][0]["code"] == "alert" and notice["priority"] == "urgent"
    assert body["cid"] in notice["payload"][0]["contentString"]
    # a clone of the revoked card is not genuine: no alert for it (the card itself did not come)
    clone = HealthCardApplet(body["credential"], ec.generate_private_key(ec.SECP256R1()))
    assert tap(server, clone)["reason"] == "not-genuine"
    assert len(server.events(("type", "110113"))) == 2


def test_revoked_card_alerts_count_by_the_local_day(server: Server) -> None:
    """At most one notice per card, terminal and day of the local (China) calendar, whose day
    begins at 16:00 UTC: taps either side of 00:00 UTC (08:00 there) make one notice."""
    applet, body = new_card(server)
    revoke_card(server.store, body["cid"], "lost", cards=server.cards)
    midnight_utc = (int(time.time()) // 86400 + 1) * 86400  # the next one: the card still valid
    # in China: 07:59:58.5 and 08:00:01.5, then 23:59:58.5 and 00:00:01.5 the next day
    for t in (-1.5, 1.5, 16 * 3600 - 1.5, 16 * 3600 + 1.5):
        server.cards.clock = lambda t=t: midnight_utc + t
        assert tap(server, applet) == {"result": "refused", "reason": "revoked"}
    assert len(server.events(("type", "110113"), ("patient", "Patient/pat-1"))) == 4
    notices = server.store.search("Communication", [("subject", "Patient/pat-1")])
    days = sorted(json.loads(h.data)["identifier"][0]["value"][-10:] for h in notices.matches)
    china = [time.strftime("%Y-%m-%d", time.gmtime(midnight_utc + h * 3600)) for h in (8, 24 + 8)]
    assert days == china  # the first three taps: one day there; the last: the next


def test_lost_card_is_replaced(server: Server) -> None:
    old, body = new_card(server)
    revoke_card(server.store, body["cid"], "lost", cards=server.cards)
    key = ec.generate_private_key(ec.SECP256R1())
    new = reissue_card(
        server.store,
        body["cid"],
        card_public_jwk=card_public_jwk(key.public_key()),
        cards=server.cards,
    )
    assert new.replaces == body["cid"] and new.cid != body["cid"]
    idents = card_identifiers(server)
    assert idents[body["cid"]]["use"] == "old" and idents[new.cid]["use"] == "official"
    record = server.cards.registry.get(body["cid"])
    assert record is not None and record.replaced_by == new.cid and record.revoke_reason == "lost"
    assert tap(server, old)["reason"] == "revoked"
    assert new.credential is not None
    assert tap(server, HealthCardApplet(new.credential, key))["result"] == "accepted"
    assert len(server.events(("subtype", "revoke-card"))) == 1
    assert len(server.events(("subtype", "issue-card"))) == 2


def test_sun_tag(server: Server) -> None:
    r = server.http.post(
        "/fhir/Patient/pat-2/$issue-card",
        json={"kind": "sun", "uid": "04:5A:6B:7C:8D:9E:A0"},
        headers=server.registrar,
    )
    assert r.status_code == 201, r.text
    assert "credential" not in r.json() and r.json()["uid"] == "045a6b7c8d9ea0"
    keys = server.cards.sun_keys()
    uid = bytes.fromhex("045a6b7c8d9ea0")
    tag = SunTagApplet(
        uid, meta_read_key=keys.meta_read_key, file_read_key=keys.file_read_key(uid),
        base_url=SETTINGS.sun_url,
    )  # fmt: skip
    first = collect_evidence(tag, nonce(server))
    answer = send(server, first)
    assert answer["result"] == "accepted" and answer["patient"]["reference"] == "Patient/pat-2"
    again = dict(first, nonce=b64(nonce(server)))  # the same URL with a fresh nonce
    assert send(server, again) == {"result": "refused", "reason": "replay"}
    # the tag's UID is one card: registering it again is a conflict
    r = server.http.post(
        "/fhir/Patient/pat-1/$issue-card",
        json={"kind": "sun", "uid": "045a6b7c8d9ea0"},
        headers=server.registrar,
    )
    assert r.status_code == 409


def test_terminal_without_the_scope_is_refused(server: Server) -> None:
    _, reader_only = backend(server.a, "system/Patient.rs")
    applet, _ = new_card(server)
    for path in ("/fhir/$card-nonce", "/fhir/$card-tap", "/fhir/Appointment/x/$card-checkin"):
        r = server.http.post(path, json={}, headers=reader_only)
        assert r.status_code == 403 and r.json()["resourceType"] == "OperationOutcome", path
        assert server.http.post(path, json={}).status_code == 401
    r = server.http.post("/fhir/$card-nonce", headers={"Authorization": "Bearer not-a-token"})
    assert r.status_code == 401
    assert len(server.events(("subtype", "card-nonce"), ("outcome", "4"))) == 1


# -- the stores under concurrency ---------------------------------------------------------------


def test_a_nonce_is_consumed_once_and_a_counter_accepted_once(server: Server) -> None:
    _, body = new_card(server)
    cards = server.cards
    now = time.time()
    n = cards.nonces.issue("t1", now)
    assert cards.nonces.consume(n, "t2", now) is False  # another terminal's: kept
    barrier = threading.Barrier(8)

    def consume(_: int) -> bool:
        barrier.wait()
        return cards.nonces.consume(n, "t1", now)

    def advance(_: int) -> bool:
        barrier.wait()
        return cards.counters.advance(body["cid"], 7)

    with ThreadPoolExecutor(8) as pool:
        assert sum(pool.map(consume, range(8))) == 1
        assert sum(pool.map(advance, range(8))) == 1
    assert cards.counters.advance(body["cid"], 7) is False
    assert cards.counters.advance(body["cid"], 8) is True
    # expired nonces are refused and swept; a terminal keeps a bounded number of nonces
    old = cards.nonces.issue("t1", now - 1000)
    assert cards.nonces.consume(old, "t1", now) is False
    for _ in range(SETTINGS.max_nonces + 5):
        cards.nonces.issue("t1", now)
    assert cards.nonces.outstanding("t1") == SETTINGS.max_nonces


def test_issuer_keys_rotate_and_old_cards_still_verify(server: Server) -> None:
    applet, body = new_card(server)
    first = server.cards.issuer_keys.listing()
    assert len(first) == 1 and first[0].retired is None
    kid = server.cards.issuer_keys.rotate()
    _, body2 = new_card(server, "pat-2")
    header = json.loads(base64.urlsafe_b64decode(body2["credential"].split(".")[0] + "=="))
    assert header["kid"] == kid != first[0].kid
    published = [
        k["kid"] for k in server.http.get("/.well-known/health-card-jwks.json").json()["keys"]
    ]
    assert published == [kid, first[0].kid]  # active first; the retired one kept
    assert tap(server, applet)["result"] == "accepted"  # signed by the retired key
    # once no card signed by it can be valid any more, the retired key is dropped
    later = time.time() + SETTINGS.lifetime_s + 10
    assert server.cards.issuer_keys.prune(later) == [first[0].kid]


def test_two_processes_making_the_first_key_make_one(store: Store) -> None:
    a = CardService.create(store, SETTINGS, audit=lambda rec: None, pseudonym_key=b"k")
    b = CardService.create(store, SETTINGS, audit=lambda rec: None, pseudonym_key=b"k")
    barrier = threading.Barrier(2)

    def make(cards: CardService) -> str:
        barrier.wait()
        return cards.issuer_keys.signing_keyset().active.kid

    with ThreadPoolExecutor(2) as pool:
        kids = set(pool.map(make, (a, b)))
    assert len(kids) == 1
    assert [k.kid for k in a.issuer_keys.listing()] == list(kids)


# -- the command line ---------------------------------------------------------------------------


def test_cards_command_line(
    store: Store, db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    tmp_path: Any,
) -> None:  # fmt: skip
    import argparse

    from ehr.settings import get_settings
    from fhir_api.cards.cli import add_subcommands

    monkeypatch.setenv("EHR_DATABASE_URL", db_url)
    get_settings.cache_clear()
    parser = argparse.ArgumentParser(prog="ehr")
    add_subcommands(parser.add_subparsers(dest="command", required=True))

    def ehr(*argv: str) -> tuple[int, list[str]]:
        capsys.readouterr()
        args = parser.parse_args(list(argv))
        code = int(args.fn(args))
        return code, capsys.readouterr().out.splitlines()

    pid = store.create({"resourceType": "Patient", "name": [{"text": "张小伟"}]}).rid
    try:
        code, out = ehr("cards", "issue", pid, "--new-card-key", str(tmp_path / "card.pem"))
        assert code == 0 and is_valid_cid(out[0]) and out[1].count(".") == 2
        cid = out[0]
        assert (tmp_path / "card.pem").read_bytes().startswith(b"-----BEGIN PRIVATE KEY")
        code, out = ehr("cards", "issue", pid, "--kind", "sun", "--uid", "04010203040506")
        assert code == 0 and len(out) == 1
        code, out = ehr("cards", "list", "--patient", pid)
        assert code == 0 and [line.split("\t")[2:4] for line in out] == [
            ["iso-dep", "active"],
            ["sun", "active"],
        ]
        assert ehr("cards", "revoke", cid, "--reason", "stolen")[0] == 0
        assert ehr("cards", "revoke", "NOSUCHCARD0000000")[0] == 1
        assert ehr("cards", "issue", "nobody", "--kind", "sun", "--uid", "04010203040507")[0] == 1
        code, out = ehr("cards", "list", "--status", "revoked")
        assert code == 0 and len(out) == 1 and out[0].startswith(cid) and "stolen" in out[0]
        assert len(ehr("cards", "keys")[1]) == 1
    finally:
        get_settings.cache_clear()
    idents = {i["value"]: i["use"] for i in store.read("Patient", pid).resource()["identifier"]}
    assert idents[cid] == "old" and list(idents.values()).count("official") == 1
    page = store.search("AuditEvent", [("patient", f"Patient/{pid}"), ("_count", "50")])
    kinds = sorted(json.loads(h.data)["subtype"][1]["code"] for h in page.matches)
    assert kinds == ["issue-card", "issue-card", "revoke-card"]


def test_an_administrator_may_issue_at_the_registration_counter(server: Server) -> None:
    from test_auth_support import PASSWORD, authorize_params, exchange, get_code, pkce, public_app

    def user_token(username: str, role: str) -> dict[str, str]:
        server.a.accounts.users.add(username, role=role, password=PASSWORD)
        scope = "user/Patient.rus"
        client_id = public_app(server.a, scope)
        verifier, challenge = pkce()
        tc = browser(server.a.app)
        cb = get_code(tc, authorize_params(client_id, scope, challenge), username)
        r = exchange(tc, cb["code"][0], verifier, client_id)
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['access_token']}"}

    body = {"kind": "sun", "uid": "04000000000001"}
    nurse = user_token("nurse.li", "nurse")
    r = server.http.post("/fhir/Patient/pat-2/$issue-card", json=body, headers=nurse)
    assert r.status_code == 403
    admin = user_token("admin.wang", "admin")
    r = server.http.post("/fhir/Patient/pat-2/$issue-card", json=body, headers=admin)
    assert r.status_code == 201, r.text
    event = server.events(("subtype", "issue-card"))[0]
    assert any(a.get("altId") for a in event["agent"])  # the administrator, not just the app
