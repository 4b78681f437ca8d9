"""Talking to a card through a one-method transport: APDUs in, evidence for the server out.

Specifications: ISO/IEC 7816-4 APDUs (SELECT ``A4``, READ BINARY ``B0``, INTERNAL AUTHENTICATE
``88``); NFC Forum Type 4 Tag Technical Specification v2.0 (NDEF application
``D2760000850101``, capability container ``E103``); NDEF (NFC Forum NDEF 1.0, via ``ndeflib``).
Card design: /work/shared/CARD.md.

A :class:`Transport` has one method, ``exchange(apdu) -> response`` (data + SW1 SW2). The nfcpy
adapter (:mod:`card_reader.nfc`) is one; tests replay scripted byte transcripts through another.

:func:`collect_evidence` reads the card's NDEF message and then:

- an NDEF record ``application/jwt`` (the issuer-signed credential) means an ISO-DEP health
  card: SELECT the health-card applet (:data:`HEALTH_CARD_AID`) and send INTERNAL AUTHENTICATE
  with the server's nonce; the card answers ``counter (4, BE) || ECDSA signature``. A card with
  the credential but no applet (a copy of the NDEF) yields ``"signature": null``; the server
  refuses it. The terminal never decides who the patient is.
- a URI record means an NTAG 424 DNA SUN tag: the URL itself is the evidence.

Evidence (the JSON body sent to the server's tap endpoint; ``ehr.cards.verify`` reads it)::

    {"kind": "iso-dep", "uid": "<hex>", "nonce": "<base64url>", "credential": "<compact JWS>",
     "counter": <int>, "signature": "<base64url r||s>" | null}
    {"kind": "sun", "uid": "<hex>", "nonce": "<base64url>", "url": "<SUN URL>"}

Error tree (what the counter clerk sees, then the terminal waits for the next tap)::

    CardError
    ├── CardRemoved        the card left the field (or stopped answering) mid-read
    ├── CardNotSupported   no NDEF application, no credential or URL: not a health card
    └── CardProtocolError  an unexpected status word or malformed data
    ReaderError            the reader is unplugged, missing or not usable
"""

from __future__ import annotations

import base64
import struct
from typing import Any, Protocol

import ndef

__all__ = [
    "CREDENTIAL_RECORD_TYPE",
    "HEALTH_CARD_AID",
    "NDEF_AID",
    "CardError",
    "CardNotSupported",
    "CardProtocolError",
    "CardRemoved",
    "ReaderError",
    "Transport",
    "collect_evidence",
    "internal_authenticate",
    "read_binary",
    "read_ndef",
    "select_aid",
    "select_file",
]

NDEF_AID = bytes.fromhex("D2760000850101")
CC_FILE = bytes.fromhex("E103")
#: The health-card applet (proprietary AID: ``F0`` + "EHRCARD" + version 1).
HEALTH_CARD_AID = bytes.fromhex("F0") + b"EHRCARD" + b"\x01"
CREDENTIAL_RECORD_TYPE = "application/jwt"
SW_OK = b"\x90\x00"
SW_NOT_FOUND = 0x6A82
MAX_NDEF_BYTES = 8192
MAX_READ = 0xFF  # short APDU Le; larger NDEF files are read in several commands


class CardError(Exception):
    """The card could not be read; the message is meant for the counter clerk."""


class CardRemoved(CardError):
    """The card left the field, or stopped answering, in the middle of a read."""

    def __init__(
        self, message: str = "The card was moved away during the read: tap it again."
    ) -> None:
        super().__init__(message)


class CardNotSupported(CardError):
    """The card is not a health card (no NDEF application, credential or SUN URL)."""


class CardProtocolError(CardError):
    """The card answered with an unexpected status word or malformed data."""

    def __init__(self, message: str, sw: int | None = None) -> None:
        super().__init__(message)
        self.sw = sw


class ReaderError(Exception):
    """The NFC reader is missing, unplugged or unusable."""


class Transport(Protocol):
    def exchange(self, apdu: bytes) -> bytes:
        """Send a command APDU, return the response APDU (data + SW1 SW2).

        Raises :class:`CardRemoved` when the card stops answering, :class:`ReaderError` when
        the reader fails.
        """
        ...


def _transmit(transport: Transport, apdu: bytes, what: str) -> tuple[bytes, int]:
    rsp = bytes(transport.exchange(apdu))
    if len(rsp) < 2:
        raise CardProtocolError(f"{what}: response shorter than a status word")
    return rsp[:-2], int.from_bytes(rsp[-2:], "big")


def _command(
    cla: int, ins: int, p1: int, p2: int, data: bytes = b"", le: int | None = None
) -> bytes:
    if len(data) > 255 or (le is not None and not 0 <= le <= 256):
        raise ValueError("short APDUs only")
    apdu = bytes([cla, ins, p1, p2])
    if data:
        apdu += bytes([len(data)]) + data
    if le is not None:
        apdu += bytes([le & 0xFF])
    return apdu


def _ok(transport: Transport, apdu: bytes, what: str) -> bytes:
    data, sw = _transmit(transport, apdu, what)
    if sw != 0x9000:
        raise CardProtocolError(f"{what} failed (SW {sw:04X})", sw)
    return data


def select_aid(transport: Transport, aid: bytes) -> bytes:
    """SELECT by DF name (``00 A4 04 00 Lc AID 00``)."""
    return _ok(transport, _command(0x00, 0xA4, 0x04, 0x00, aid, le=256), f"SELECT {aid.hex()}")


def select_file(transport: Transport, fid: bytes) -> None:
    """SELECT an EF by file identifier, no response data (``00 A4 00 0C 02 FID``)."""
    _ok(transport, _command(0x00, 0xA4, 0x00, 0x0C, fid), f"SELECT {fid.hex()}")


def read_binary(transport: Transport, offset: int, length: int) -> bytes:
    """READ BINARY of the selected EF (``00 B0 offset Le``), up to ``length`` bytes."""
    if not 0 <= offset <= 0x7FFF or not 1 <= length <= 256:
        raise ValueError("offset 0..7FFF, length 1..256")
    return _ok(
        transport, _command(0x00, 0xB0, offset >> 8, offset & 0xFF, le=length), "READ BINARY"
    )


def _read_file(transport: Transport, offset: int, length: int, chunk: int) -> bytes:
    data = b""
    while len(data) < length:
        part = read_binary(transport, offset + len(data), min(chunk, length - len(data)))
        if not part:
            raise CardProtocolError("READ BINARY returned no data")
        data += part
    return data[:length]


def read_ndef(transport: Transport) -> bytes:
    """The NDEF message of a Type 4 Tag (mapping version 2.0; short NLEN)."""
    try:
        select_aid(transport, NDEF_AID)
    except CardProtocolError as exc:
        if exc.sw is None:
            raise
        raise CardNotSupported("Not a health card (no NDEF application).") from exc
    select_file(transport, CC_FILE)
    cc = read_binary(transport, 0, 15)
    if len(cc) < 15:
        raise CardProtocolError("capability container too short")
    _cclen, version, mle, _mlc, t, length, fid, max_size, read_access = struct.unpack(
        ">HBHHBB2sHB", cc[:14]
    )
    if version >> 4 not in (1, 2) or (t, length) != (0x04, 0x06):
        raise CardNotSupported("Not a health card (unsupported NDEF mapping).")
    if read_access != 0x00:
        raise CardNotSupported("Not a health card (NDEF file not readable).")
    chunk = max(1, min(mle, MAX_READ))
    select_file(transport, fid)
    (nlen,) = struct.unpack(">H", _read_file(transport, 0, 2, chunk))
    if nlen == 0:
        raise CardNotSupported("Not a health card (empty NDEF file).")
    if nlen > min(max_size - 2, MAX_NDEF_BYTES):
        raise CardProtocolError(f"NDEF length {nlen} exceeds the file")
    return _read_file(transport, 2, nlen, chunk)


def internal_authenticate(transport: Transport, nonce: bytes) -> tuple[int, bytes] | None:
    """Have the health-card applet sign ``nonce``: ``(counter, signature)``.

    None when the card has no health-card applet (SELECT answers 6A82).
    """
    try:
        select_aid(transport, HEALTH_CARD_AID)
    except CardProtocolError as exc:
        if exc.sw == SW_NOT_FOUND:
            return None
        raise
    rsp = _ok(transport, _command(0x00, 0x88, 0x00, 0x00, nonce, le=256), "INTERNAL AUTHENTICATE")
    if len(rsp) < 4 + 8:
        raise CardProtocolError("INTERNAL AUTHENTICATE: response too short")
    return int.from_bytes(rsp[:4], "big"), rsp[4:]


def _records(message: bytes) -> list[Any]:
    try:
        return list(ndef.message_decoder(message))
    except ndef.DecodeError as exc:
        raise CardNotSupported("Not a health card (unreadable NDEF message).") from exc


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def collect_evidence(transport: Transport, nonce: bytes, *, uid: bytes = b"") -> dict[str, Any]:
    """Read a tapped card and return the evidence to send to the server (see module doc).

    ``nonce``: fetched from the server before the tap. ``uid``: the anticollision UID.
    """
    records = _records(read_ndef(transport))
    common = {"uid": uid.hex(), "nonce": _b64url(nonce)}
    for record in records:
        if record.type == CREDENTIAL_RECORD_TYPE:
            try:
                credential = bytes(record.data).decode("ascii")
            except UnicodeDecodeError as exc:
                raise CardNotSupported("Not a health card (credential is not text).") from exc
            answer = internal_authenticate(transport, nonce)
            counter, signature = answer if answer else (None, None)
            return {
                "kind": "iso-dep",
                **common,
                "credential": credential,
                "counter": counter,
                "signature": _b64url(signature) if signature is not None else None,
            }
    for record in records:
        if isinstance(record, ndef.UriRecord):
            return {"kind": "sun", **common, "url": record.iri}
    raise CardNotSupported("Not a health card (no credential or card URL).")
