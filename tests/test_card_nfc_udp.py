"""nfcpy's real reader code over its UDP driver (127.0.0.1 only) against emulated cards.

The card side is card_reader.emulators (an ISO-DEP health card, an NTAG 424 DNA-like SUN tag);
the reader side is card_reader.nfc.NfcReader (nfcpy ContactlessFrontend + Type4Tag); the
evidence is checked by ehr.cards.verify_tap. Every emulator binds a fresh OS-chosen port
before the reader polls.
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from card_reader.emulators import HealthCardApplet, SunTagApplet, Type4CardEmulator
from card_reader.nfc import NfcReader
from card_reader.transport import CardRemoved, ReaderError
from ehr.cards import (
    InMemoryCounterStore,
    InMemoryNonceStore,
    InMemoryRevocationList,
    InMemorySunTagDirectory,
    IssuerKeySet,
    SunConfig,
    SunKeys,
    TapVerdict,
    issue_credential,
    nonce_check_for,
    verify_tap,
)

ISS = "https://ehr.example/cards"
TERMINAL = "counter-3"
TAP_TIMEOUT = 5.0


class Server:
    def __init__(self) -> None:
        self.now = time.time()
        self.keys = IssuerKeySet.generate(self.now - 60, max_card_lifetime=5 * 365 * 86400)
        self.nonces = InMemoryNonceStore()
        self.counters = InMemoryCounterStore()
        self.revoked = InMemoryRevocationList()
        self.sun_keys = SunKeys(meta_read_key=os.urandom(16), file_read_master_key=os.urandom(16))
        self.sun_tags = InMemorySunTagDirectory()

    def health_card(self, cid: str) -> HealthCardApplet:
        key = ec.generate_private_key(ec.SECP256R1())
        token = issue_credential(
            self.keys,
            iss=ISS,
            cid=cid,
            sub=f"pp-{cid}",
            card_key=key.public_key(),
            now=self.now,
            lifetime=86400,
        )
        return HealthCardApplet(token, key)

    def sun_tag(self, cid: str) -> SunTagApplet:
        uid = b"\x04" + os.urandom(6)
        self.sun_tags.register(uid, cid)
        return SunTagApplet(
            uid,
            meta_read_key=self.sun_keys.meta_read_key,
            file_read_key=self.sun_keys.file_read_key(uid),
            base_url="https://card.ehr.example/t",
        )

    def nonce(self) -> bytes:
        return self.nonces.issue(TERMINAL, self.now)

    def verify(self, evidence: dict[str, Any]) -> TapVerdict:
        return verify_tap(
            evidence,
            issuer_keys=self.keys,
            nonce_check=nonce_check_for(self.nonces, TERMINAL, self.now),
            counter_store=self.counters,
            revocation_check=self.revoked,
            now=self.now,
            issuer=ISS,
            sun=SunConfig(self.sun_keys, self.sun_tags),
        )


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.fixture
def server() -> Server:
    return Server()


@pytest.fixture
def reader_for() -> Iterator[Any]:
    readers: list[NfcReader] = []

    def make(emulator: Type4CardEmulator) -> NfcReader:
        reader = NfcReader(emulator.path, targets=("106A",), poll_interval=0.05)
        readers.append(reader)
        reader.open()
        return reader

    yield make
    for r in readers:
        r.close()


def test_health_card_tap_is_verified(server: Server, reader_for: Any) -> None:
    card = server.health_card("HC-100")
    with Type4CardEmulator(card) as emulator:
        assert emulator.path.startswith("udp:127.0.0.1:")
        reader = reader_for(emulator)
        for expected_counter in (1, 2):
            started = time.monotonic()
            evidence = reader.read_tap(server.nonce(), timeout=TAP_TIMEOUT)
            assert evidence is not None, "no tap seen"
            assert time.monotonic() - started < 2
            assert evidence["uid"] == emulator.uid.hex()
            verdict = server.verify(evidence)
            assert (verdict.accepted, verdict.cid) == (True, "HC-100"), verdict
            assert server.counters.last("HC-100") == expected_counter
        # the credential (> 500 bytes) needed response chaining; the card saw each command once:
        # SELECT app, SELECT CC, READ CC, SELECT NDEF, READ NLEN, 3 x READ, SELECT applet, AUTH
        assert len(card.credential) > 2 * 253
        assert emulator.apdus == 2 * 10


def test_small_frames_use_command_chaining(server: Server, reader_for: Any) -> None:
    # FSCI 2: 32-byte frames, so the 38-byte INTERNAL AUTHENTICATE is sent in two I-blocks
    with Type4CardEmulator(server.health_card("HC-101"), fsci=2) as emulator:
        evidence = reader_for(emulator).read_tap(server.nonce(), timeout=TAP_TIMEOUT)
        assert evidence is not None
        assert server.verify(evidence).accepted


def test_clone_of_the_ndef_is_refused(server: Server, reader_for: Any) -> None:
    genuine = server.health_card("HC-102")
    clone = HealthCardApplet(genuine.credential, ec.generate_private_key(ec.SECP256R1()))
    with Type4CardEmulator(clone) as emulator:
        evidence = reader_for(emulator).read_tap(server.nonce(), timeout=TAP_TIMEOUT)
        assert evidence is not None and evidence["credential"] == genuine.credential
        verdict = server.verify(evidence)
        assert verdict.for_terminal() == {"result": "refused", "reason": "not-genuine"}


def test_replayed_tap_is_refused(server: Server, reader_for: Any) -> None:
    with Type4CardEmulator(server.health_card("HC-103")) as emulator:
        evidence = reader_for(emulator).read_tap(server.nonce(), timeout=TAP_TIMEOUT)
        assert evidence is not None
        assert server.verify(evidence).accepted
        assert server.verify(dict(evidence)).reason == "replay"


def test_sun_tag_tap_is_verified_and_its_url_cannot_be_reused(
    server: Server, reader_for: Any
) -> None:
    tag = server.sun_tag("HC-SUN-7")
    with Type4CardEmulator(tag, uid=tag.uid) as emulator:
        reader = reader_for(emulator)
        first = reader.read_tap(server.nonce(), timeout=TAP_TIMEOUT)
        assert first is not None and first["kind"] == "sun"
        assert first["url"].startswith("https://card.ehr.example/t?e=")
        verdict = server.verify(first)
        assert (verdict.accepted, verdict.cid) == (True, "HC-SUN-7"), verdict

        second = reader.read_tap(server.nonce(), timeout=TAP_TIMEOUT)
        assert second is not None and second["url"] != first["url"]
        assert server.verify(second).accepted
        assert server.counters.last("HC-SUN-7") == 2

        reused = dict(second, nonce=first["nonce"])
        assert server.verify(reused).reason == "replay"  # nonce already used
        reused = dict(second)
        reused["nonce"] = b64(server.nonce())
        assert server.verify(reused).reason == "replay"  # fresh nonce, old SUN counter


@pytest.mark.parametrize("silent_after", [1, 5, 8])
def test_card_pulled_away_mid_read(server: Server, reader_for: Any, silent_after: int) -> None:
    with Type4CardEmulator(server.health_card("HC-104"), silent_after=silent_after) as emulator:
        reader = reader_for(emulator)
        started = time.monotonic()
        with pytest.raises(CardRemoved, match="tap it again"):
            reader.read_tap(server.nonce(), timeout=TAP_TIMEOUT)
        assert time.monotonic() - started < 4
        assert emulator.apdus == silent_after
        assert reader.wait_for_removal(2.0)
        assert reader.read_tap(server.nonce(), timeout=1.0) is None  # gone for good


def test_no_card_in_the_field(server: Server, reader_for: Any) -> None:
    with Type4CardEmulator(server.health_card("HC-105")) as emulator:
        emulator.remove()
        started = time.monotonic()
        assert reader_for(emulator).read_tap(server.nonce(), timeout=1.0) is None
        assert time.monotonic() - started < 4


def test_card_stays_then_leaves(server: Server, reader_for: Any) -> None:
    with Type4CardEmulator(server.health_card("HC-106")) as emulator:
        reader = reader_for(emulator)
        assert reader.read_tap(server.nonce(), timeout=TAP_TIMEOUT) is not None
        assert reader.wait_for_removal(0.5) is False  # still on the reader
        emulator.remove()
        assert reader.wait_for_removal(3.0) is True


def test_reader_unplugged_and_plugged_back(server: Server, reader_for: Any) -> None:
    with Type4CardEmulator(server.health_card("HC-107")) as emulator:
        reader = reader_for(emulator)
        assert reader.read_tap(server.nonce(), timeout=TAP_TIMEOUT) is not None
        assert reader._clf is not None
        reader._clf.device.socket.close()  # the device handle dies under nfcpy
        with pytest.raises(ReaderError):
            reader.read_tap(server.nonce(), timeout=TAP_TIMEOUT)
        reader.close()
        reader.open()
        evidence = reader.read_tap(server.nonce(), timeout=TAP_TIMEOUT)
        assert evidence is not None and server.verify(evidence).accepted


@pytest.mark.parametrize("path", ["usb:ffff:ffff", "tty:USB99:pn532", "udp:127.0.0.1:notaport"])
def test_no_reader_at_the_path(path: str) -> None:
    with pytest.raises(ReaderError):
        NfcReader(path).open()
