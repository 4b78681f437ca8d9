"""NTAG 424 DNA SUN: the AN12196 vectors, the AN10922 diversification vector, and tap checks.

Vectors: NXP AN12196 (all keys zero), as quoted in /work/shared/CARD.md; NXP AN10922 section 2.2.1.
The tag side of the tap tests is card_reader's emulator, written separately from ehr.cards.sun.
"""

from __future__ import annotations

import base64
import os

import pytest

from card_reader.emulators import SunTagApplet
from ehr.cards import (
    InMemoryCounterStore,
    InMemoryRevocationList,
    InMemorySunTagDirectory,
    IssuerKeySet,
    SunConfig,
    SunKeys,
    SunLayout,
    verify_tap,
)
from ehr.cards.sun import (
    SunError,
    decrypt_file_data,
    decrypt_picc_data,
    diversify_key,
    parse_sun_url,
    read_uid_counter,
    sdm_file_read_key,
    sdm_mac,
    verify_sun_message,
)

ZERO = bytes(16)
NOW = 1_800_000_000.0


# --- AN12196 vectors -----------------------------------------------------------------------


def test_an12196_encrypted_picc_data_and_mac_over_empty_input() -> None:
    uid, counter = decrypt_picc_data(ZERO, bytes.fromhex("EF963FF7828658A599F3041510671E88"))
    assert uid == bytes.fromhex("04DE5F1EACC040")
    assert counter == 61
    assert sdm_mac(ZERO, uid, counter, b"") == bytes.fromhex("94EED9EE65337086")


def test_an12196_encrypted_file_data_and_mac_over_it() -> None:
    uid, counter = decrypt_picc_data(ZERO, bytes.fromhex("FD91EC264309878BE6345CBE53BADF40"))
    assert (uid, counter) == (bytes.fromhex("04958CAA5C5E80"), 8)
    enc = "CEE9A53E3E463EF1F459635736738962"
    assert decrypt_file_data(ZERO, uid, counter, bytes.fromhex(enc)) == b"xxxxxxxxxxxxxxxx"
    assert sdm_mac(ZERO, uid, counter, f"{enc}&cmac=".encode()) == bytes.fromhex("ECC1E7F6C6C73BF6")


def test_an12196_plain_mirror() -> None:
    uid, counter = bytes.fromhex("041E3C8A2D6B80"), int("000006", 16)
    assert sdm_mac(ZERO, uid, counter, b"") == bytes.fromhex("4B00064004B0B3D3")


@pytest.mark.parametrize(
    ("url", "layout", "uid", "counter"),
    [
        (
            "https://choose.url.com/ntag424?e=EF963FF7828658A599F3041510671E88&c=94EED9EE65337086",
            SunLayout(picc="e", mac="c", mac_input_from="c"),
            "04DE5F1EACC040",
            61,
        ),
        (
            "https://choose.url.com/ntag424?picc_data=FD91EC264309878BE6345CBE53BADF40"
            "&enc=CEE9A53E3E463EF1F459635736738962&cmac=ECC1E7F6C6C73BF6",
            SunLayout(picc="picc_data", enc="enc", mac="cmac", mac_input_from="enc"),
            "04958CAA5C5E80",
            8,
        ),
        (
            "https://choose.url.com/ntag424?uid=041E3C8A2D6B80&ctr=000006&cmac=4B00064004B0B3D3",
            SunLayout(picc=None, uid="uid", ctr="ctr", mac="cmac", mac_input_from="cmac"),
            "041E3C8A2D6B80",
            6,
        ),
    ],
)
def test_an12196_vectors_as_urls(url: str, layout: SunLayout, uid: str, counter: int) -> None:
    keys = SunKeys(meta_read_key=ZERO, file_read_master_key=ZERO)
    message = parse_sun_url(url, layout)
    assert read_uid_counter(message, keys) == (bytes.fromhex(uid), counter)
    assert verify_sun_message(message, ZERO, bytes.fromhex(uid), counter)
    extra = parse_sun_url(url.replace("ntag424?", "ntag424?x=1&"), layout)
    assert verify_sun_message(extra, ZERO, bytes.fromhex(uid), counter)  # before the MAC input
    wrong_ctr = counter + 1
    assert not verify_sun_message(message, ZERO, bytes.fromhex(uid), wrong_ctr)


def test_an10922_aes128_diversification_vector() -> None:
    master = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
    m = bytes.fromhex("04782E21801D803042F54E585020416275")  # UID || AID || "NXP Abu"
    assert diversify_key(master, m) == bytes.fromhex("A8DD63A3B89D54B37CA802473FDA9175")


def test_diversified_keys_differ_per_tag_and_input_bounds() -> None:
    master = os.urandom(16)
    a, b = sdm_file_read_key(master, bytes(7)), sdm_file_read_key(master, b"\x00" * 6 + b"\x01")
    assert a != b and len(a) == 16
    assert diversify_key(master, b"\xaa" * 31) != diversify_key(master, b"\xaa" * 30)
    with pytest.raises(ValueError):
        diversify_key(master, b"\xaa" * 32)


def test_wrong_meta_read_key_is_refused() -> None:
    with pytest.raises(SunError):
        decrypt_picc_data(b"\x01" * 16, bytes.fromhex("EF963FF7828658A599F3041510671E88"))


@pytest.mark.parametrize(
    "url",
    [
        "https://x.example/t",
        "https://x.example/t?e=00&c=00",
        "https://x.example/t?e=EF963FF7828658A599F3041510671E88",
        "https://x.example/t?e=EF963FF7828658A599F3041510671E88&c=94EED9EE6533708G",
        "https://x.example/t?e=EF963FF7828658A599F3041510671E88&e=00&c=94EED9EE65337086",
        "ftp://x.example/t?e=EF963FF7828658A599F3041510671E88&c=94EED9EE65337086",
    ],
)
def test_malformed_sun_urls(url: str) -> None:
    with pytest.raises(SunError):
        parse_sun_url(url)


# --- tap checks ----------------------------------------------------------------------------


class World:
    """The server's state for SUN taps, and one personalised tag."""

    def __init__(self) -> None:
        self.keys = SunKeys(meta_read_key=os.urandom(16), file_read_master_key=os.urandom(16))
        self.directory = InMemorySunTagDirectory()
        self.counters = InMemoryCounterStore()
        self.revoked = InMemoryRevocationList()
        self.issuer_keys = IssuerKeySet.generate(NOW, max_card_lifetime=86400)
        self.tag = self.personalise("HC-SUN-1")

    def personalise(self, cid: str, *, register: bool = True) -> SunTagApplet:
        uid = b"\x04" + os.urandom(6)
        if register:
            self.directory.register(uid, cid)
        return SunTagApplet(
            uid,
            meta_read_key=self.keys.meta_read_key,
            file_read_key=self.keys.file_read_key(uid),
            base_url="https://card.ehr.example/t",
        )

    def tap(self, url: str, *, nonce_ok: bool = True):  # type: ignore[no-untyped-def]
        evidence = {
            "kind": "sun",
            "uid": "",
            "nonce": base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("="),
            "url": url,
        }
        return verify_tap(
            evidence,
            issuer_keys=self.issuer_keys,
            nonce_check=lambda n: nonce_ok,
            counter_store=self.counters,
            revocation_check=self.revoked,
            now=NOW,
            sun=SunConfig(self.keys, self.directory),
        )


def test_genuine_tag_accepted_and_counter_recorded() -> None:
    w = World()
    for expected_counter in (1, 2, 3):
        verdict = w.tap(w.tag.next_url())
        assert verdict.accepted, verdict
        assert (verdict.cid, verdict.kind) == ("HC-SUN-1", "sun")
        assert w.counters.last("HC-SUN-1") == expected_counter
    assert verdict.for_terminal() == {"result": "accepted"}


def test_reused_url_is_a_replay() -> None:
    w = World()
    url = w.tag.next_url()
    assert w.tap(url).accepted
    again = w.tap(url)
    assert (again.accepted, again.reason, again.cid) == (False, "replay", "HC-SUN-1")
    assert again.for_terminal() == {"result": "refused", "reason": "replay"}


def test_older_url_after_a_newer_one_is_a_replay() -> None:
    w = World()
    old, new = w.tag.next_url(), w.tag.next_url()
    assert w.tap(new).accepted
    assert w.tap(old).reason == "replay"


def _flip_hex(url: str, param: str, index: int) -> str:
    at = url.index(f"{param}=") + len(param) + 1 + index
    ch = "0" if url[at] != "0" else "1"
    return url[:at] + ch + url[at + 1 :]


@pytest.mark.parametrize(("param", "index"), [("c", 0), ("c", 15), ("e", 0), ("e", 31)])
def test_tampered_url_is_not_genuine(param: str, index: int) -> None:
    w = World()
    verdict = w.tap(_flip_hex(w.tag.next_url(), param, index))
    assert not verdict.accepted
    assert verdict.reason in ("not-genuine", "unknown-card")  # e flipped: noise, or a stray UID
    assert w.counters.last("HC-SUN-1") is None  # a refused tap records no counter
    if param == "c":
        assert verdict.reason == "not-genuine"


def test_lowercased_mac_input_is_not_genuine() -> None:
    w = World()
    url = w.tag.next_url()
    e_at = url.index("e=") + 2
    assert (
        w.tap(url[:e_at] + url[e_at : e_at + 32].lower() + url[e_at + 32 :]).reason == "not-genuine"
    )


def test_tag_with_undiversified_key_is_not_genuine() -> None:
    w = World()
    rogue = w.personalise("HC-SUN-2")
    rogue.file_read_key = w.keys.file_read_master_key  # master key copied instead of K_i
    assert w.tap(rogue.next_url()).reason == "not-genuine"


def test_unregistered_tag_and_foreign_urls_are_unknown() -> None:
    w = World()
    stranger = w.personalise("HC-SUN-3", register=False)
    assert w.tap(stranger.next_url()).reason == "unknown-card"
    assert w.tap("https://shop.example/product/42").reason == "unknown-card"


def test_revoked_tag_is_refused_with_an_alert() -> None:
    w = World()
    w.revoked.revoke("HC-SUN-1")
    verdict = w.tap(w.tag.next_url())
    assert (verdict.accepted, verdict.reason, verdict.alert, verdict.cid) == (
        False,
        "revoked",
        True,
        "HC-SUN-1",
    )
    assert verdict.for_terminal() == {"result": "refused", "reason": "revoked"}


def test_unknown_nonce_is_a_replay_before_any_crypto() -> None:
    w = World()
    verdict = w.tap(w.tag.next_url(), nonce_ok=False)
    assert verdict.reason == "replay" and verdict.cid is None
    assert w.counters.last("HC-SUN-1") is None
