"""Reading a card through the one-method transport, with scripted APDU transcripts.

Each script is the exact command/response byte sequence a card exchanges with the terminal
(ISO/IEC 7816-4, NFC Forum Type 4 Tag); the resulting evidence goes through ehr.cards.verify_tap.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable
from typing import Any

import ndef
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from card_reader.transport import (
    CardNotSupported,
    CardProtocolError,
    CardRemoved,
    collect_evidence,
)
from ehr.cards import (
    InMemoryCounterStore,
    InMemoryNonceStore,
    InMemoryRevocationList,
    IssuerKeySet,
    TapVerdict,
    issue_credential,
    nonce_check_for,
    verify_tap,
)

NOW = 1_800_000_000.0
ISS = "https://ehr.example/cards"
UID = bytes.fromhex("04A1B2C3D4E5F6")
TERMINAL = "terminal-7"

SELECT_NDEF_APP = "00A4040007D276000085010100"
SELECT_CC = "00A4000C02E103"
READ_CC = "00B000000F"
CC = "000F2000FF00FF0406E104100000FF"
SELECT_NDEF_FILE = "00A4000C02E104"
SELECT_APPLET = "00A4040009F0454852434152440100"  # F0 "EHRCARD" 01
OK = "9000"

Step = tuple[str, "str | BaseException"]


class ScriptedTransport:
    """Replays a transcript: each command must match, in order; answers the scripted bytes."""

    def __init__(self, steps: list[Step]) -> None:
        self.steps = steps
        self.sent: list[str] = []

    def exchange(self, apdu: bytes) -> bytes:
        assert len(self.sent) < len(self.steps), f"unexpected extra command {apdu.hex()}"
        expected, answer = self.steps[len(self.sent)]
        self.sent.append(apdu.hex().upper())
        assert self.sent[-1] == expected, f"step {len(self.sent)}: {self.sent[-1]} != {expected}"
        if isinstance(answer, BaseException):
            raise answer
        return bytes.fromhex(answer)

    def finished(self) -> bool:
        return len(self.sent) == len(self.steps)


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def ndef_read_steps(message: bytes, chunk: int = 0xFF) -> list[Step]:
    file = len(message).to_bytes(2, "big") + message
    steps: list[Step] = [
        (SELECT_NDEF_APP, OK),
        (SELECT_CC, OK),
        (READ_CC, CC + OK),
        (SELECT_NDEF_FILE, OK),
        ("00B0000002", file[:2].hex().upper() + OK),
    ]
    for offset in range(2, len(file), chunk):
        part = file[offset : offset + chunk]
        steps.append((f"00B0{offset:04X}{len(part):02X}", part.hex().upper() + OK))
    return steps


def credential_message(token: str) -> bytes:
    return b"".join(ndef.message_encoder([ndef.Record("application/jwt", "", token.encode())]))


def auth_steps(nonce: bytes, counter: int, key: ec.EllipticCurvePrivateKey) -> list[Step]:
    der = key.sign(nonce + counter.to_bytes(4, "big"), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    answer = counter.to_bytes(4, "big") + r.to_bytes(32, "big") + s.to_bytes(32, "big")
    command = f"00880000{len(nonce):02X}{nonce.hex().upper()}00"
    return [(SELECT_APPLET, OK), (command, answer.hex().upper() + OK)]


class Counter:
    """The server side: issuer keys, nonce / counter / revocation stores."""

    def __init__(self) -> None:
        self.keys = IssuerKeySet.generate(NOW - 86400, max_card_lifetime=5 * 365 * 86400)
        self.nonces = InMemoryNonceStore()
        self.counters = InMemoryCounterStore()
        self.revoked = InMemoryRevocationList()
        self.card_key = ec.generate_private_key(ec.SECP256R1())
        self.token = self.credential("HC-0042")

    def credential(self, cid: str, *, now: float = NOW - 3600, lifetime: int = 365 * 86400) -> str:
        return issue_credential(
            self.keys,
            iss=ISS,
            cid=cid,
            sub="pp-91c2",
            card_key=self.card_key.public_key(),
            now=now,
            lifetime=lifetime,
        )

    def nonce(self) -> bytes:
        return self.nonces.issue(TERMINAL, NOW)

    def verify(self, evidence: dict[str, Any], *, terminal: str = TERMINAL) -> TapVerdict:
        return verify_tap(
            evidence,
            issuer_keys=self.keys,
            nonce_check=nonce_check_for(self.nonces, terminal, NOW),
            counter_store=self.counters,
            revocation_check=self.revoked,
            now=NOW,
            issuer=ISS,
        )


@pytest.fixture
def server() -> Counter:
    return Counter()


def tap(steps: list[Step], nonce: bytes) -> dict[str, Any]:
    transport = ScriptedTransport(steps)
    evidence = collect_evidence(transport, nonce, uid=UID)
    assert transport.finished()
    return evidence


def genuine_steps(server: Counter, nonce: bytes, counter: int) -> list[Step]:
    return ndef_read_steps(credential_message(server.token)) + auth_steps(
        nonce, counter, server.card_key
    )


def test_genuine_card(server: Counter) -> None:
    nonce = server.nonce()
    evidence = tap(genuine_steps(server, nonce, 17), nonce)
    assert evidence["kind"] == "iso-dep"
    assert evidence["uid"] == "04a1b2c3d4e5f6"
    assert evidence["credential"] == server.token
    assert evidence["counter"] == 17
    verdict = server.verify(evidence)
    assert (verdict.accepted, verdict.cid, verdict.sub) == (True, "HC-0042", "pp-91c2")
    assert server.counters.last("HC-0042") == 17


def test_ndef_read_in_small_chunks(server: Counter) -> None:
    """A card whose capability container allows only 59-byte reads."""
    nonce = server.nonce()
    steps = ndef_read_steps(credential_message(server.token), chunk=0x3B)
    steps[2] = (READ_CC, CC.replace("2000FF", "20003B") + OK)
    evidence = tap(steps + auth_steps(nonce, 1, server.card_key), nonce)
    assert server.verify(evidence).accepted


def test_clone_that_copied_the_ndef_is_not_genuine(server: Counter) -> None:
    nonce = server.nonce()
    clone_key = ec.generate_private_key(ec.SECP256R1())  # its own applet, not the card's key
    steps = ndef_read_steps(credential_message(server.token)) + auth_steps(nonce, 18, clone_key)
    verdict = server.verify(tap(steps, nonce))
    assert (verdict.accepted, verdict.reason) == (False, "not-genuine")
    assert verdict.for_terminal() == {"result": "refused", "reason": "not-genuine"}
    assert server.counters.last("HC-0042") is None


def test_ndef_copied_onto_a_plain_tag_is_not_genuine(server: Counter) -> None:
    nonce = server.nonce()
    steps = ndef_read_steps(credential_message(server.token)) + [(SELECT_APPLET, "6A82")]
    evidence = tap(steps, nonce)
    assert evidence["signature"] is None
    assert server.verify(evidence).reason == "not-genuine"


def test_replayed_nonce_is_refused(server: Counter) -> None:
    nonce = server.nonce()
    evidence = tap(genuine_steps(server, nonce, 3), nonce)
    assert server.verify(evidence).accepted
    again = server.verify(evidence)  # the recorded tap, sent again
    assert (again.accepted, again.reason) == (False, "replay")


def test_recorded_answer_with_a_fresh_nonce_is_not_genuine(server: Counter) -> None:
    old_nonce = server.nonce()
    evidence = tap(genuine_steps(server, old_nonce, 4), old_nonce)
    fresh = server.nonce()
    evidence["nonce"] = b64(fresh)
    assert server.verify(evidence).reason == "not-genuine"


def test_nonce_of_another_terminal_or_expired_is_refused(server: Counter) -> None:
    nonce = server.nonce()
    evidence = tap(genuine_steps(server, nonce, 5), nonce)
    assert server.verify(evidence, terminal="terminal-8").reason == "replay"
    assert server.verify(evidence).accepted  # still valid for the terminal it was issued to

    stale = server.nonces.issue(TERMINAL, NOW - 121)
    evidence = tap(genuine_steps(server, stale, 6), stale)
    assert server.verify(evidence).reason == "replay"


def test_counter_must_increase(server: Counter) -> None:
    for counter, expected in ((10, True), (10, False), (9, False), (11, True)):
        nonce = server.nonce()
        verdict = server.verify(tap(genuine_steps(server, nonce, counter), nonce))
        assert verdict.accepted is expected, (counter, verdict)
        if not expected:
            assert verdict.reason == "replay"
    assert server.counters.last("HC-0042") == 11


def test_revoked_card_is_refused_with_alert(server: Counter) -> None:
    server.revoked.revoke("HC-0042")
    nonce = server.nonce()
    verdict = server.verify(tap(genuine_steps(server, nonce, 1), nonce))
    assert (verdict.reason, verdict.alert, verdict.cid) == ("revoked", True, "HC-0042")


def test_expired_credential_is_refused(server: Counter) -> None:
    server.token = server.credential("HC-0043", now=NOW - 10 * 86400, lifetime=86400)
    nonce = server.nonce()
    verdict = server.verify(tap(genuine_steps(server, nonce, 1), nonce))
    assert (verdict.reason, verdict.cid) == ("expired", "HC-0043")


def test_credential_of_another_issuer_is_unknown(server: Counter) -> None:
    server.keys = IssuerKeySet.generate(
        NOW, max_card_lifetime=86400
    )  # keys we don't know signed it
    nonce = server.nonce()
    assert server.verify(tap(genuine_steps(server, nonce, 1), nonce)).reason == "unknown-card"


@pytest.mark.parametrize("cut", [1, 4, 6, 9])
def test_card_pulled_away_mid_read(server: Counter, cut: int) -> None:
    nonce = server.nonce()
    steps = genuine_steps(server, nonce, 1)
    steps = steps[:cut] + [(steps[cut][0], CardRemoved())]
    with pytest.raises(CardRemoved, match="tap it again"):
        collect_evidence(ScriptedTransport(steps), nonce, uid=UID)


def test_sun_tag_evidence_is_its_url(server: Counter) -> None:
    url = "https://card.ehr.example/t?e=EF963FF7828658A599F3041510671E88&c=94EED9EE65337086"
    message = b"".join(ndef.message_encoder([ndef.UriRecord(url)]))
    nonce = server.nonce()
    evidence = tap(ndef_read_steps(message), nonce)
    assert evidence == {"kind": "sun", "uid": UID.hex(), "nonce": b64(nonce), "url": url}
    assert server.verify(evidence).reason == "unknown-card"  # SUN not configured on this server


@pytest.mark.parametrize(
    ("steps", "error"),
    [
        ([(SELECT_NDEF_APP, "6A82")], CardNotSupported),  # no NDEF application
        (
            [
                (SELECT_NDEF_APP, OK),
                (SELECT_CC, OK),
                (READ_CC, CC + OK),
                (SELECT_NDEF_FILE, OK),
                ("00B0000002", "0000" + OK),
            ],
            CardNotSupported,
        ),  # empty NDEF file
        (
            [
                (SELECT_NDEF_APP, OK),
                (SELECT_CC, OK),
                (READ_CC, CC + OK),
                (SELECT_NDEF_FILE, OK),
                ("00B0000002", "FFF0" + OK),
            ],
            CardProtocolError,
        ),  # NDEF longer than the file
        ([(SELECT_NDEF_APP, OK), (SELECT_CC, "6A82")], CardProtocolError),
        ([(SELECT_NDEF_APP, "90")], CardProtocolError),  # half a status word
    ],
)
def test_cards_that_are_not_health_cards(steps: list[Step], error: type[Exception]) -> None:
    with pytest.raises(error):
        collect_evidence(ScriptedTransport(steps), os.urandom(32))


def test_ndef_with_neither_credential_nor_url() -> None:
    message = b"".join(ndef.message_encoder([ndef.TextRecord("hello")]))
    with pytest.raises(CardNotSupported, match="no credential or card URL"):
        collect_evidence(ScriptedTransport(ndef_read_steps(message)), os.urandom(32))


@pytest.mark.parametrize(
    "mutate",
    [
        lambda e: e.pop("nonce"),
        lambda e: e.update(nonce="!!!"),
        lambda e: e.update(nonce="AAAA"),  # 3 bytes
        lambda e: e.update(kind="magstripe"),
        lambda e: e.update(counter="17"),
        lambda e: e.update(counter=2**32),
        lambda e: e.update(uid="zz"),
        lambda e: e.update(credential=None),
        lambda e: e.update(signature=12),
    ],
)
def test_malformed_evidence_is_a_bad_request(
    server: Counter, mutate: Callable[[dict[str, Any]], object]
) -> None:
    nonce = server.nonce()
    evidence = tap(genuine_steps(server, nonce, 1), nonce)
    mutate(evidence)
    verdict = server.verify(evidence)
    assert (verdict.accepted, verdict.reason) == (False, "bad-request")
    assert server.nonces.consume(nonce, TERMINAL, NOW)  # a bad request does not burn the nonce
