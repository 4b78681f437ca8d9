"""Emulated cards for self-tests: an ISO-DEP health card and an NTAG 424 DNA-like SUN tag.

Specifications: ISO/IEC 14443-4 (RATS/ATS, I-, R- and S-blocks, chaining, block numbers);
NFC Forum Type 4 Tag v2.0 (NDEF application and files); ISO/IEC 7816-4 APDUs; NXP AN12196
(SUN messages). Runs on nfcpy's UDP driver (``clf.listen(LocalTarget('106A'))`` then
``clf.exchange()``), bound to 127.0.0.1 only (:class:`card_reader.nfc.LoopbackUdpDevice`).

nfcpy ships no Type 4 card emulation, so :class:`Type4CardEmulator` does the ISO-DEP part:

- answers RATS with an ATS (FSCI, FWI as configured; no CID, no NAD) -- nfcpy's reader waits
  only 30 ms for it, which is why the socket is bound before the reader polls and the ATS is
  sent first thing after activation;
- I-blocks: command chaining (answers R(ACK)), response chaining up to the reader's FSD;
- R(ACK) / R(NAK): next chained block, retransmission, or R(ACK) to a presence check;
- S(DESELECT); RFOFF or a long silence ends the session.

The APDUs go to an applet (:class:`HealthCardApplet`, :class:`SunTagApplet`), which can also be
used directly as a :class:`~card_reader.transport.Transport` (``exchange = process``).
:meth:`Type4CardEmulator.remove` (or ``silent_after``) pulls the card away mid-read.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Protocol

import ndef
import nfc
import nfc.clf
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC

from card_reader.nfc import LoopbackUdpDevice
from card_reader.transport import CC_FILE, CREDENTIAL_RECORD_TYPE, HEALTH_CARD_AID, NDEF_AID

__all__ = [
    "Applet",
    "HealthCardApplet",
    "NdefApplet",
    "SunTagApplet",
    "Type4CardEmulator",
    "random_uid",
]

log = logging.getLogger(__name__)

NDEF_FILE = bytes.fromhex("E104")
NDEF_FILE_SIZE = 0x1000
SW_OK = b"\x90\x00"
SW_WRONG_LENGTH = b"\x67\x00"
SW_CONDITIONS = b"\x69\x85"
SW_NOT_FOUND = b"\x6a\x82"
SW_WRONG_P1P2 = b"\x6b\x00"
SW_INS = b"\x6d\x00"
SW_CLA = b"\x6e\x00"
SW_UNKNOWN = b"\x6f\x00"
_FSD = (16, 24, 32, 40, 48, 64, 96, 128, 256)


def random_uid() -> bytes:
    """A random 7-byte NXP-style UID (first byte 04)."""
    return b"\x04" + os.urandom(6)


class Applet(Protocol):
    def process(self, apdu: bytes) -> bytes:
        """One command APDU in, response APDU (data + SW) out."""
        ...

    def reset(self) -> None:
        """The card entered the field again: nothing selected."""
        ...


def _parse_apdu(apdu: bytes) -> tuple[int, int, int, int, bytes, int | None]:
    """(CLA, INS, P1, P2, data, Le) of a short APDU; ValueError if malformed."""
    if len(apdu) < 4:
        raise ValueError("APDU too short")
    cla, ins, p1, p2 = apdu[:4]
    body = apdu[4:]
    if not body:
        return cla, ins, p1, p2, b"", None
    if len(body) == 1:
        return cla, ins, p1, p2, b"", body[0] or 256
    lc = body[0]
    if lc == 0 or len(body) not in (1 + lc, 2 + lc):
        raise ValueError("bad Lc")
    le = (body[1 + lc] or 256) if len(body) == 2 + lc else None
    return cla, ins, p1, p2, body[1 : 1 + lc], le


class NdefApplet:
    """The NFC Forum Type 4 Tag NDEF application (read-only); subclasses add their commands."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._app: bytes | None = None
        self._file: bytes | None = None
        self._file_data = b""

    def ndef_message(self) -> bytes:
        raise NotImplementedError

    def _capability_container(self) -> bytes:
        return (
            bytes.fromhex("000F 20 00FF 00FF 04 06")
            + NDEF_FILE
            + NDEF_FILE_SIZE.to_bytes(2, "big")
            + b"\x00\xff"  # read: free; write: never
        )

    def select_aid(self, aid: bytes) -> bool:
        if aid == NDEF_AID:
            self._app, self._file = aid, None
            return True
        return False

    def process(self, apdu: bytes) -> bytes:
        try:
            cla, ins, p1, p2, data, le = _parse_apdu(apdu)
        except ValueError:
            return SW_WRONG_LENGTH
        if cla != 0x00:
            return SW_CLA
        if ins == 0xA4 and p1 == 0x04:
            return SW_OK if self.select_aid(data) else SW_NOT_FOUND
        if ins == 0xA4 and p1 == 0x00 and self._app == NDEF_AID:
            if data == CC_FILE:
                self._file, self._file_data = data, self._capability_container()
            elif data == NDEF_FILE:
                message = self.ndef_message()
                self._file, self._file_data = data, len(message).to_bytes(2, "big") + message
            else:
                return SW_NOT_FOUND
            return SW_OK
        if ins == 0xB0:
            if self._file is None:
                return SW_CONDITIONS
            offset = (p1 << 8) | p2
            if offset > len(self._file_data):
                return SW_WRONG_P1P2
            return self._file_data[offset : offset + (le or 256)] + SW_OK
        return self.other(ins, p1, p2, data, le)

    def other(self, ins: int, p1: int, p2: int, data: bytes, le: int | None) -> bytes:
        return SW_INS

    def exchange(self, apdu: bytes) -> bytes:
        """Use the applet directly as a Transport (no radio)."""
        return self.process(apdu)


class HealthCardApplet(NdefApplet):
    """An ISO-DEP health card: NDEF credential + an applet that signs nonce || counter.

    ``has_applet=False`` is a copy of the NDEF file on a plain tag; a clone that copied the
    NDEF onto a card with its own applet is ``HealthCardApplet(credential, other_key)``.
    """

    def __init__(
        self,
        credential: str,
        private_key: ec.EllipticCurvePrivateKey,
        *,
        counter: int = 0,
        has_applet: bool = True,
    ) -> None:
        self.credential = credential
        self.private_key = private_key
        self.counter = counter
        self.has_applet = has_applet
        super().__init__()

    def ndef_message(self) -> bytes:
        record = ndef.Record(CREDENTIAL_RECORD_TYPE, "", self.credential.encode("ascii"))
        return b"".join(ndef.message_encoder([record]))

    def select_aid(self, aid: bytes) -> bool:
        if self.has_applet and aid == HEALTH_CARD_AID:
            self._app, self._file = aid, None
            return True
        return super().select_aid(aid)

    def other(self, ins: int, p1: int, p2: int, data: bytes, le: int | None) -> bytes:
        if ins != 0x88 or self._app != HEALTH_CARD_AID:
            return SW_INS
        if not 16 <= len(data) <= 64:
            return SW_WRONG_LENGTH
        self.counter += 1
        counter = self.counter.to_bytes(4, "big")
        der = self.private_key.sign(data + counter, ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return counter + r.to_bytes(32, "big") + s.to_bytes(32, "big") + SW_OK


def _cmac(key: bytes, data: bytes) -> bytes:
    mac = CMAC(algorithms.AES(key))
    mac.update(data)
    return mac.finalize()


def _aes_cbc_zero_iv(key: bytes, data: bytes) -> bytes:
    enc = Cipher(algorithms.AES(key), modes.CBC(bytes(16))).encryptor()
    return enc.update(data) + enc.finalize()


class SunTagApplet(NdefApplet):
    """An NTAG 424 DNA-like tag whose NDEF URL carries a fresh SUN message on every read.

    URL: ``{base_url}?e=<PICC data>&c=<SDMMAC>``; the MAC input runs from the PICC data to the
    MAC (``SDMMACInputOffset`` = PICC data offset). The read counter counts NDEF file reads.
    """

    def __init__(
        self,
        uid: bytes,
        *,
        meta_read_key: bytes,
        file_read_key: bytes,
        base_url: str,
        counter: int = 0,
    ) -> None:
        if len(uid) != 7:
            raise ValueError("NTAG 424 DNA UIDs are 7 bytes")
        self.uid = uid
        self.meta_read_key = meta_read_key
        self.file_read_key = file_read_key
        self.base_url = base_url
        self.counter = counter
        super().__init__()

    def next_url(self) -> str:
        """The URL of the next read (increments the read counter)."""
        self.counter += 1
        ctr = self.counter.to_bytes(3, "little")
        picc = _aes_cbc_zero_iv(self.meta_read_key, b"\xc7" + self.uid + ctr + os.urandom(5))
        picc_hex = picc.hex().upper()
        mac_input = f"{picc_hex}&c=".encode("ascii")
        session = _cmac(self.file_read_key, bytes.fromhex("3CC300010080") + self.uid + ctr)
        mac = _cmac(session, mac_input)[1::2]
        return f"{self.base_url}?e={picc_hex}&c={mac.hex().upper()}"

    def ndef_message(self) -> bytes:
        return b"".join(ndef.message_encoder([ndef.UriRecord(self.next_url())]))


class Type4CardEmulator:
    """An ISO-DEP (Type 4A) card on nfcpy's UDP driver, in a background thread.

    ``port=0`` picks a free port; the socket is bound when the object is made, so a reader can
    poll :attr:`port` at once. Use as a context manager, or ``start()`` / ``stop()``.
    """

    def __init__(
        self,
        applet: Applet,
        *,
        uid: bytes | None = None,
        port: int = 0,
        fsci: int = 8,
        fwi: int = 10,
        silent_after: int | None = None,
        idle_timeout: float = 5.0,
    ) -> None:
        if not 0 <= fsci <= 8 or not 0 <= fwi <= 14:
            raise ValueError("fsci 0..8, fwi 0..14")
        self.applet = applet
        self.uid = uid or random_uid()
        self.fsci, self.fwi = fsci, fwi
        self.silent_after = silent_after
        self.idle_timeout = idle_timeout
        self.apdus = 0
        self.sessions = 0
        self._device = LoopbackUdpDevice(port, listener=True)
        self._clf = nfc.ContactlessFrontend()
        self._clf.device = self._device
        self._stop = threading.Event()
        self._removed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="type4-emulator", daemon=True)

    @property
    def port(self) -> int:
        return self._device.port

    @property
    def path(self) -> str:
        """The reader path that reaches this card."""
        return f"udp:127.0.0.1:{self.port}"

    def start(self) -> Type4CardEmulator:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(timeout=5)
        self._clf.close()

    def remove(self) -> None:
        """Pull the card out of the field: it stops answering, now and later."""
        self._removed.set()

    def __enter__(self) -> Type4CardEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _gone(self) -> bool:
        return self._stop.is_set() or self._removed.is_set()

    def _run(self) -> None:
        target = nfc.clf.LocalTarget("106A")
        target.sens_res = bytearray(b"\x44\x00")  # double-size (7-byte) UID
        target.sdd_res = bytearray(self.uid)
        target.sel_res = bytearray(b"\x20")  # ISO/IEC 14443-4 compliant
        while not self._gone():
            try:
                activated = self._clf.listen(target, 0.5)
            except (OSError, nfc.clf.CommunicationError) as exc:
                if self._stop.is_set():
                    return
                log.debug("listen: %s", exc)
                continue
            if activated is None or not activated.tt4_cmd or activated.tt4_cmd[0] != 0xE0:
                continue  # not a RATS: stale frame
            try:
                self._session(bytes(activated.tt4_cmd))
            except OSError:  # socket closed by stop()
                return

    def _session(self, rats: bytes) -> None:
        fsd = _FSD[min(rats[1] >> 4, 8)] if len(rats) > 1 else 256
        max_inf = fsd - 3  # PCB + EDC
        send: bytes | None = bytes([0x05, 0x70 | self.fsci, 0x00, self.fwi << 4, 0x02])
        self.applet.reset()
        self.sessions += 1
        last_bn, last_block = 1, b""
        command = b""
        pending: list[bytes] = []
        idle = 0.0
        while not self._gone():
            try:
                cmd = self._clf.exchange(send, 0.25)
            except nfc.clf.BrokenLinkError:
                return  # RFOFF: the reader dropped the field
            except nfc.clf.TimeoutError:
                send, idle = None, idle + 0.25
                if idle >= self.idle_timeout:
                    return
                continue
            except nfc.clf.CommunicationError:
                send = None
                continue
            idle = 0.0
            if self._gone() or not cmd:
                send = None
                continue
            pcb, inf = cmd[0], bytes(cmd[1:])
            if bytes(cmd) in (b"\x26", b"\x52"):  # SENS_REQ / ALL_REQ: a reader starts over
                return  # (the reader repeats it after its 1 s timeout; listen() answers then)
            if pcb & 0xEE == 0x02:  # I-block
                bn = pcb & 1
                if pcb & 0x10:  # command chaining: acknowledge, keep collecting
                    command += inf
                    send = bytes([0xA2 | bn])
                    continue
                apdu, command = command + inf, b""
                if self.silent_after is not None and self.apdus >= self.silent_after:
                    self.remove()
                    return
                self.apdus += 1
                try:
                    response = self.applet.process(apdu)
                except Exception:  # a broken applet answers like a broken card
                    log.exception("applet failed")
                    response = SW_UNKNOWN
                pending = [response[i : i + max_inf] for i in range(0, len(response), max_inf)]
                first = pending.pop(0)
                last_bn, last_block = bn, bytes([0x02 | bn | (0x10 if pending else 0)]) + first
                send = last_block
            elif pcb & 0xFE == 0xA2:  # R(ACK)
                bn = pcb & 1
                if pending and bn != last_bn:
                    chunk = pending.pop(0)
                    last_bn = bn
                    last_block = bytes([0x02 | bn | (0x10 if pending else 0)]) + chunk
                send = last_block or None
            elif pcb & 0xFE == 0xB2:  # R(NAK): retransmit, or acknowledge a presence check
                send = (
                    last_block if (pcb & 1) == last_bn and last_block else bytes([0xA2 | last_bn])
                )
            elif pcb & 0xF7 == 0xC2:  # S(DESELECT)
                self._clf.exchange(bytes(cmd[:1]), 0)
                return
            else:
                send = None
