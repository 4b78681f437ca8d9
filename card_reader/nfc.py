"""The nfcpy adapter: wait for a tap on a real (or simulated) reader, read it as a Transport.

nfcpy 1.0.4 (https://nfcpy.readthedocs.io/en/latest/modules/clf.html). Reader paths:

- ``usb``, ``usb:VVVV:PPPP`` (vendor:product), ``usb:BBB:DDD`` (bus:device): a USB reader
  (Sony RC-S380, ACR122U, PN533-based ...). Needs the system's libusb-1.0
  (``apt-get install libusb-1.0-0``) and access to the device (a udev rule).
- ``tty:USB0:pn532`` (port:driver): a serial reader.
- ``udp:HOST:PORT``: nfcpy's simulated RF link over UDP (tests, demos). For a loopback HOST
  both ends bind 127.0.0.1 only (:class:`LoopbackUdpDevice`); nfcpy's own driver binds a
  listener to 0.0.0.0.

:class:`NfcReader` turns nfcpy's outcomes into this package's errors, never a crash:

- no reader at the path, libusb missing, reader unplugged (``IOError``), or nfcpy giving up
  (``connect()`` returning False) -> :class:`~card_reader.transport.ReaderError`;
- the card pulled away mid-read (``nfc.tag.TagCommandError``: timeout / transmission /
  protocol error, ``nfc.clf.CommunicationError``) -> :class:`~card_reader.transport.CardRemoved`;
- a card that is not ISO-DEP (Type 4) -> :class:`~card_reader.transport.CardNotSupported`.

Note: nfcpy's ``connect()`` also swallows KeyboardInterrupt (it returns False); the terminal
sees a ReaderError then.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from types import TracebackType
from typing import Any

import nfc
import nfc.clf
import nfc.clf.udp
import nfc.tag
import nfc.tag.tt4

from card_reader.transport import (
    CardNotSupported,
    CardProtocolError,
    CardRemoved,
    ReaderError,
    collect_evidence,
)

__all__ = ["DEFAULT_TARGETS", "LoopbackUdpDevice", "NfcReader", "NfcTransport", "open_frontend"]

#: Type A and B at 106 kbps: every ISO-DEP card and the NTAG 424 DNA.
DEFAULT_TARGETS = ("106A", "106B")
LOOPBACK = "127.0.0.1"


class LoopbackUdpDevice(nfc.clf.udp.Device):  # type: ignore[misc]
    """nfcpy's UDP driver with its socket bound to 127.0.0.1.

    ``listener=True`` (a card emulator): the socket is bound to ``port`` (0: a free port, see
    :attr:`port`) when the device is made, and kept across ``mute()`` so no frame is lost
    between two ``listen()`` calls. ``listener=False`` (a reader): each poll gets a fresh
    ephemeral port on 127.0.0.1, like nfcpy's driver does on 0.0.0.0.
    """

    def __init__(self, port: int, *, listener: bool) -> None:
        self._listener = listener
        self.addr = (LOOPBACK, port)
        self._path = f"{LOOPBACK}:{port}"
        self.socket: socket.socket | None = None
        self._vendor_name = "nfcpy"
        self._device_name = "UDP loopback"
        self._chipset_name = "UDP"
        self._create_socket()

    @property
    def port(self) -> int:
        return int(self.addr[1])

    def _create_socket(self) -> None:
        if self.socket is None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            if self._listener:
                sock.bind(self.addr)
                self.addr = (LOOPBACK, sock.getsockname()[1])
                self._path = f"{LOOPBACK}:{self.addr[1]}"
            else:
                sock.bind((LOOPBACK, 0))
            self.socket = sock
            self.sent_data = self.rcvd_data = 0

    def _bind_socket(self, time_to_return: float) -> bool:
        return True  # bound in _create_socket

    def mute(self) -> None:
        if not self._listener:
            super().mute()

    def close(self) -> None:
        if self.socket is not None:
            if not self._listener:
                super().mute()  # tells the card the field is off
            else:
                self.socket.close()
            self.socket = None


def _udp_loopback_port(path: str) -> int | None:
    parts = path.split(":")
    if parts[0] != "udp" or len(parts) != 3:
        return None
    try:
        if not ipaddress.ip_address(parts[1]).is_loopback:
            return None
        return int(parts[2])
    except ValueError:
        return None


def open_frontend(path: str) -> nfc.ContactlessFrontend:
    """Open the reader at ``path``; raise :class:`ReaderError` with a clear message if absent."""
    port = _udp_loopback_port(path)
    if port is not None:
        clf = nfc.ContactlessFrontend()
        clf.device = LoopbackUdpDevice(port, listener=False)
        return clf
    try:
        return nfc.ContactlessFrontend(path)
    except FileNotFoundError as exc:  # nfcpy: libusb-1.0 not installed
        raise ReaderError(f"Cannot open reader {path}: {exc} (install libusb-1.0)") from exc
    except (OSError, ValueError) as exc:
        raise ReaderError(f"No usable NFC reader at {path}: {exc}") from exc


class NfcTransport:
    """A :class:`~card_reader.transport.Transport` over an activated nfcpy Type 4 tag."""

    def __init__(self, tag: Any) -> None:
        if not isinstance(tag, nfc.tag.tt4.Type4Tag):
            raise CardNotSupported(f"Not a health card ({getattr(tag, 'type', 'unknown')} tag).")
        self.tag = tag

    def exchange(self, apdu: bytes) -> bytes:
        try:
            rsp = self.tag.transceive(bytearray(apdu))
        except (nfc.tag.TagCommandError, nfc.clf.CommunicationError) as exc:
            raise CardRemoved() from exc
        except OSError as exc:
            raise ReaderError(f"The NFC reader stopped working: {exc}") from exc
        except (TypeError, IndexError, ValueError) as exc:  # nfcpy on a malformed frame
            raise CardProtocolError(f"Malformed answer from the card ({exc}).") from exc
        if rsp is None:
            raise CardRemoved()
        return bytes(rsp)


class NfcReader:
    """One NFC reader of a counter terminal.

    >>> with NfcReader("usb") as reader:          # doctest: +SKIP
    ...     evidence = reader.read_tap(nonce, timeout=30)
    """

    def __init__(
        self,
        path: str,
        *,
        targets: tuple[str, ...] = DEFAULT_TARGETS,
        poll_interval: float = 0.1,
    ) -> None:
        self.path = path
        self.targets = targets
        self.poll_interval = poll_interval
        self._clf: nfc.ContactlessFrontend | None = None
        self._tag: Any = None

    def open(self) -> None:
        if self._clf is None:
            self._clf = open_frontend(self.path)

    def close(self) -> None:
        clf, self._clf, self._tag = self._clf, None, None
        if clf is not None:
            clf.close()

    def __enter__(self) -> NfcReader:
        self.open()
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def wait_for_card(self, timeout: float) -> Any:
        """The next card in the field (an nfcpy Tag), or None after ``timeout`` seconds."""
        self.open()
        assert self._clf is not None
        deadline = time.monotonic() + timeout
        options = {
            "targets": list(self.targets),
            "on-connect": lambda tag: False,  # hand the tag back to us
            "iterations": 1,
            "interval": self.poll_interval,
            "beep-on-connect": False,
        }
        try:
            tag = self._clf.connect(rdwr=options, terminate=lambda: time.monotonic() > deadline)
        except OSError as exc:  # connect() raises ENODEV itself when the device is gone
            raise ReaderError(f"The NFC reader is not available: {exc}") from exc
        if tag is False:
            raise ReaderError("The NFC reader stopped responding (unplugged?).")
        self._tag = tag or None
        return self._tag

    def read_tap(self, nonce: bytes, *, timeout: float) -> dict[str, Any] | None:
        """Wait for a tap and collect its evidence; None if no card came within ``timeout``."""
        tag = self.wait_for_card(timeout)
        if tag is None:
            return None
        return collect_evidence(NfcTransport(tag), nonce, uid=bytes(tag.identifier))

    def wait_for_removal(self, timeout: float) -> bool:
        """True once the last card has left the field; False if still there after ``timeout``."""
        tag, deadline = self._tag, time.monotonic() + timeout
        while tag is not None:
            try:
                present = bool(tag.is_present)
            except (nfc.tag.TagCommandError, nfc.clf.CommunicationError):
                present = False
            except OSError as exc:
                raise ReaderError(f"The NFC reader stopped working: {exc}") from exc
            if not present:
                break
            if time.monotonic() >= deadline:
                return False
            time.sleep(self.poll_interval)
        self._tag = None
        return True
