"""NTAG 424 DNA Secure Unique NFC (SUN) messages, verified on the server.

Specification: NXP AN12196 "NTAG 424 DNA and NTAG 424 DNA TagTamper features and hints"
(https://www.nxp.com/docs/en/application-note/AN12196.pdf), section "Secure Dynamic Messaging";
key diversification: NXP AN10922 "Symmetric key diversifications"
(https://www.nxp.com/docs/en/application-note/AN10922.pdf), section 2.2 (AES-128).

On every read the tag mirrors into its NDEF URL:

- **PICC data** ``e``: AES-128-CBC (zero IV) under ``K_SDMMetaRead`` of
  ``PICCDataTag(1) || UID(7) || SDMReadCtr(3, little-endian) || padding``;
- optionally **encrypted file data**: AES-128-CBC under the session key ``K_SesSDMFileReadENC``
  with ``IV = E(K_SesSDMFileReadENC, SDMReadCtr || 0^13)``;
- **SDMMAC** ``c``: AES-CMAC under the session key ``K_SesSDMFileReadMAC`` over the URL text from
  ``SDMMACInputOffset`` up to the MAC itself, truncated to its odd-indexed bytes (8 bytes).

Session keys: ``K_Ses... = CMAC(K_SDMFileRead, SV)`` with
``SV1 = C3 3C 00 01 00 80 || UID || ctr`` (ENC) and ``SV2 = 3C C3 00 01 00 80 || UID || ctr`` (MAC).

**Keys of the exchange.** ``K_SDMMetaRead`` decrypts the PICC data *before* the UID is known, so
it cannot be per tag: it is one key for the tag batch (:attr:`SunKeys.meta_read_key`).
``K_SDMFileRead`` (the MAC key) is diversified per tag from a master key with AN10922's AES-128
CMAC method::

    M   = UID(7) || key number(1) || system identifier   (at most 31 bytes)
    D   = 0x01 || M || (80 00 .. padding to 32 bytes, only when shorter)
    K_i = CMAC'(K_master, D)   -- the last block is XORed with K1 if D needed no padding, else K2

so a key read out of one tag opens no other tag. The system identifier defaults to
``b"EHR-SUN"``; the key number is the tag's SDMFileRead key slot (2 on our tags).

**URL layout.** Our tags are personalised as ``https://<host>/t?e=<PICC>&c=<SDMMAC>`` with
``SDMMACInputOffset`` at the PICC data, so the MAC covers ``<PICC>&c=`` (:class:`SunLayout`).
AN12196's examples (empty MAC input, or encrypted file data ``<ENC>&cmac=``) are layouts too.

A replayed URL carries an old counter; the caller keeps the last counter per card and refuses
anything not strictly greater (see :mod:`ehr.cards.verify`). A URL harvested by a skimmer but
never used is *not* detected by the counter: it is accepted once, at its first use.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC

__all__ = [
    "PICC_DATA_TAG",
    "SunError",
    "SunKeys",
    "SunLayout",
    "SunMessage",
    "cmac",
    "decrypt_file_data",
    "decrypt_picc_data",
    "diversify_key",
    "parse_sun_url",
    "read_uid_counter",
    "sdm_file_read_key",
    "sdm_mac",
    "session_enc_key",
    "session_mac_key",
    "verify_sun_message",
]

BLOCK = 16
ZERO_IV = bytes(BLOCK)
#: PICCDataTag of our tags: UID mirrored (bit 7), SDMReadCtr mirrored (bit 6), UID length 7.
PICC_DATA_TAG = 0xC7
_SV1_PREFIX = bytes.fromhex("C33C00010080")
_SV2_PREFIX = bytes.fromhex("3CC300010080")
_DIV_CONSTANT_AES128 = b"\x01"
DEFAULT_SYSTEM_ID = b"EHR-SUN"
DEFAULT_FILE_READ_KEY_NO = 2


class SunError(ValueError):
    """A SUN message that cannot be read: malformed URL, wrong lengths, or wrong key."""


def _check_key(key: bytes) -> None:
    if len(key) != BLOCK:
        raise ValueError("AES-128 keys are 16 bytes")


def _aes_cbc_decrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    dec = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    return dec.update(data) + dec.finalize()


def _aes_ecb_encrypt_block(key: bytes, block: bytes) -> bytes:
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return enc.update(block) + enc.finalize()


def cmac(key: bytes, data: bytes) -> bytes:
    """AES-CMAC (NIST SP 800-38B), 16 bytes."""
    _check_key(key)
    mac = CMAC(algorithms.AES(key))
    mac.update(data)
    return mac.finalize()


# --- AN10922 key diversification -----------------------------------------------------------


def _dbl(block: bytes) -> bytes:
    n = int.from_bytes(block, "big") << 1
    if n >> 128:
        n = (n & ((1 << 128) - 1)) ^ 0x87
    return n.to_bytes(BLOCK, "big")


def diversify_key(master_key: bytes, m: bytes) -> bytes:
    """AN10922 AES-128 diversification of ``master_key`` with diversification input ``m``.

    Unlike plain CMAC, a short input is always padded to two blocks (32 bytes).
    """
    _check_key(master_key)
    if not 1 <= len(m) <= 31:
        raise ValueError("AN10922 diversification input must be 1..31 bytes")
    d = _DIV_CONSTANT_AES128 + m
    k1 = _dbl(_aes_ecb_encrypt_block(master_key, ZERO_IV))
    if len(d) == 2 * BLOCK:
        last_key = k1
    else:
        d = d + b"\x80" + bytes(2 * BLOCK - len(d) - 1)
        last_key = _dbl(k1)
    d = d[:BLOCK] + bytes(a ^ b for a, b in zip(d[BLOCK:], last_key, strict=True))
    enc = Cipher(algorithms.AES(master_key), modes.CBC(ZERO_IV)).encryptor()
    return (enc.update(d) + enc.finalize())[-BLOCK:]


def sdm_file_read_key(
    master_key: bytes,
    uid: bytes,
    *,
    key_no: int = DEFAULT_FILE_READ_KEY_NO,
    system_id: bytes = DEFAULT_SYSTEM_ID,
) -> bytes:
    """The tag's ``K_SDMFileRead``: ``diversify_key(master, UID || key_no || system_id)``."""
    if len(uid) != 7:
        raise ValueError("NTAG 424 DNA UIDs are 7 bytes")
    return diversify_key(master_key, uid + bytes([key_no]) + system_id)


# --- AN12196 SDM ---------------------------------------------------------------------------


def decrypt_picc_data(meta_read_key: bytes, picc_data: bytes) -> tuple[bytes, int]:
    """Decrypt the 16-byte PICC data; return ``(UID, SDMReadCtr)``.

    Raises :class:`SunError` unless the plaintext starts with our PICCDataTag (a wrong key or
    a forged value decrypts to noise).
    """
    _check_key(meta_read_key)
    if len(picc_data) != BLOCK:
        raise SunError("PICC data must be 16 bytes")
    plain = _aes_cbc_decrypt(meta_read_key, ZERO_IV, picc_data)
    if plain[0] != PICC_DATA_TAG:
        raise SunError("PICC data tag mismatch")
    return plain[1:8], int.from_bytes(plain[8:11], "little")


def _session_vector(prefix: bytes, uid: bytes, counter: int) -> bytes:
    if len(uid) != 7:
        raise ValueError("NTAG 424 DNA UIDs are 7 bytes")
    if not 0 <= counter < 1 << 24:
        raise ValueError("SDMReadCtr is a 24-bit counter")
    return prefix + uid + counter.to_bytes(3, "little")


def session_mac_key(file_read_key: bytes, uid: bytes, counter: int) -> bytes:
    """``K_SesSDMFileReadMAC = CMAC(K_SDMFileRead, SV2)``."""
    return cmac(file_read_key, _session_vector(_SV2_PREFIX, uid, counter))


def session_enc_key(file_read_key: bytes, uid: bytes, counter: int) -> bytes:
    """``K_SesSDMFileReadENC = CMAC(K_SDMFileRead, SV1)``."""
    return cmac(file_read_key, _session_vector(_SV1_PREFIX, uid, counter))


def sdm_mac(file_read_key: bytes, uid: bytes, counter: int, mac_input: bytes) -> bytes:
    """SDMMAC: CMAC under the session MAC key, truncated to bytes 1, 3, .., 15 (8 bytes)."""
    return cmac(session_mac_key(file_read_key, uid, counter), mac_input)[1::2]


def decrypt_file_data(file_read_key: bytes, uid: bytes, counter: int, data: bytes) -> bytes:
    """Decrypt SDMENCFileData (a multiple of 16 bytes)."""
    if not data or len(data) % BLOCK:
        raise SunError("encrypted file data must be a non-empty multiple of 16 bytes")
    key = session_enc_key(file_read_key, uid, counter)
    iv = _aes_ecb_encrypt_block(key, counter.to_bytes(3, "little") + bytes(13))
    return _aes_cbc_decrypt(key, iv, data)


# --- URLs ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SunLayout:
    """Where a tag mirrors its SDM data in the URL query.

    ``picc``: the encrypted PICC data parameter; or, for a plain mirror, ``uid`` and ``ctr``
    (``picc=None``). ``mac``: the SDMMAC. ``enc``: optional encrypted file data.
    ``mac_input_from``: the parameter whose value starts the MAC input (``SDMMACInputOffset``);
    the input runs to the start of the MAC value.
    """

    picc: str | None = "e"
    mac: str = "c"
    enc: str | None = None
    uid: str | None = None
    ctr: str | None = None
    mac_input_from: str = "e"


@dataclass(frozen=True)
class SunMessage:
    """The parts of one SUN URL."""

    picc_data: bytes | None
    plain_uid: bytes | None
    plain_counter: int | None
    mac: bytes
    mac_input: bytes
    enc_file_data: bytes | None


def _query_values(url: str) -> dict[str, tuple[int, str]]:
    """Query parameter -> (offset of its value in ``url``, raw value); each at most once."""
    start = url.find("?")
    if start < 0:
        raise SunError("URL has no query")
    out: dict[str, tuple[int, str]] = {}
    pos = start + 1
    fragment_at = url.find("#", pos)
    end = len(url) if fragment_at < 0 else fragment_at
    for part in url[pos:end].split("&"):
        name, eq, value = part.partition("=")
        if eq and name:
            if name in out:
                raise SunError(f"parameter {name!r} repeated")
            out[name] = (pos + len(name) + 1, value)
        pos += len(part) + 1
    return out


def _hex(value: str, size: int | None, what: str) -> bytes:
    try:
        raw = bytes.fromhex(value)
    except ValueError as exc:
        raise SunError(f"{what} is not hex") from exc
    if size is not None and len(raw) != size:
        raise SunError(f"{what} must be {size} bytes")
    return raw


def parse_sun_url(url: str, layout: SunLayout | None = None) -> SunMessage:
    """Split a SUN URL into its parts; the MAC input is taken verbatim from the URL text."""
    layout = layout or SunLayout()
    if len(url) > 2048 or not url.isascii():
        raise SunError("not a SUN URL")
    scheme = urlsplit(url).scheme
    if scheme not in ("https", "http"):
        raise SunError("not a SUN URL")
    values = _query_values(url)
    needed = [layout.mac, layout.mac_input_from]
    needed += [layout.picc] if layout.picc else [layout.uid or "uid", layout.ctr or "ctr"]
    missing = [n for n in needed if n not in values]
    if missing:
        raise SunError(f"missing parameter(s) {', '.join(missing)}")
    mac_at, mac_hex = values[layout.mac]
    input_at = values[layout.mac_input_from][0]
    if input_at > mac_at:
        raise SunError("MAC input starts after the MAC")
    picc = plain_uid = None
    plain_ctr = None
    if layout.picc:
        picc = _hex(values[layout.picc][1], BLOCK, "PICC data")
    else:
        plain_uid = _hex(values[layout.uid or "uid"][1], 7, "UID")
        ctr_raw = _hex(values[layout.ctr or "ctr"][1], 3, "counter")
        plain_ctr = int.from_bytes(ctr_raw, "big")
    enc = None
    if layout.enc and layout.enc in values:
        enc = _hex(values[layout.enc][1], None, "file data")
    return SunMessage(
        picc_data=picc,
        plain_uid=plain_uid,
        plain_counter=plain_ctr,
        mac=_hex(mac_hex, 8, "SDMMAC"),
        mac_input=url[input_at:mac_at].encode("ascii"),
        enc_file_data=enc,
    )


@dataclass(frozen=True)
class SunKeys:
    """The exchange's SUN keys: one meta-read key, one master for the per-tag MAC keys."""

    meta_read_key: bytes
    file_read_master_key: bytes
    system_id: bytes = DEFAULT_SYSTEM_ID
    file_read_key_no: int = DEFAULT_FILE_READ_KEY_NO

    def __post_init__(self) -> None:
        _check_key(self.meta_read_key)
        _check_key(self.file_read_master_key)

    def file_read_key(self, uid: bytes) -> bytes:
        return sdm_file_read_key(
            self.file_read_master_key, uid, key_no=self.file_read_key_no, system_id=self.system_id
        )

    def __repr__(self) -> str:  # never print keys
        return f"SunKeys(system_id={self.system_id!r}, file_read_key_no={self.file_read_key_no})"


def read_uid_counter(message: SunMessage, keys: SunKeys) -> tuple[bytes, int]:
    """The tag's UID and read counter (decrypted, or from a plain mirror)."""
    if message.picc_data is not None:
        return decrypt_picc_data(keys.meta_read_key, message.picc_data)
    assert message.plain_uid is not None and message.plain_counter is not None
    return message.plain_uid, message.plain_counter


def verify_sun_message(message: SunMessage, file_read_key: bytes, uid: bytes, counter: int) -> bool:
    """True if the SDMMAC is right (constant-time comparison)."""
    expected = sdm_mac(file_read_key, uid, counter, message.mac_input)
    return hmac.compare_digest(expected, message.mac)
