"""``ehr-terminal``: the counter terminal program of the resident health one-card.

    ehr-terminal --api https://ehr.example.cn/fhir --client-id 3f2a… --key terminal.jwk \\
                 --reader usb
    ehr-terminal --new-key terminal.jwk      # make a key pair; prints the JWKS to register

Design: /work/shared/CARD.md ("Flow at the counter"). The loop (:meth:`Terminal.step`, one turn):

1. fetch a nonce from the server (``$card-nonce``) unless the one in hand is still fresh;
2. wait for a card on the reader (:class:`card_reader.nfc.NfcReader`, nfcpy: ``usb``,
   ``tty:…``, ``udp:HOST:PORT``) and collect the evidence (:mod:`card_reader.transport`);
3. send it (``$card-tap``) and show the verdict: the patient's masked name and the day's
   appointments, or the refusal in words a clerk can act on. The terminal never decides who the
   patient is;
4. check the patient in (``Appointment/{id}/$card-checkin``) for each of the day's bookings and
   show the queue numbers (unless ``--no-checkin``);
5. wait until the card leaves the field.

Nothing stops it but Ctrl-C: a card pulled away mid-read (tap again), an unplugged reader
(re-opened with a back-off), the network or server down (retried with a back-off), an
unauthorized terminal (shown, retried slowly) are all messages on the screen. Messages are in
Chinese with English.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol, TextIO

from .client import (
    ApiError,
    ApiRefused,
    ApiUnavailable,
    Nonce,
    TerminalClient,
    new_key,
)
from .transport import CardError, CardRemoved, ReaderError

__all__ = ["MESSAGES", "Backoff", "Reader", "Screen", "Terminal", "main"]

log = logging.getLogger("card_reader.terminal")

#: refusal reason code -> (Chinese, English) for the counter clerk and the patient
MESSAGES: dict[str, tuple[str, str]] = {
    "unknown-card": ("无法识别此卡，请到人工窗口办理", "Card not recognised: please see a clerk"),
    "not-genuine": ("此卡未通过验证，请到人工窗口办理", "Card could not be verified: please see a clerk"),
    "revoked": ("此卡已挂失或注销，请到人工窗口办理", "This card was reported lost or cancelled: please see a clerk"),
    "expired": ("此卡已过期，请到人工窗口换卡", "This card has expired: please renew it at the counter"),
    "replay": ("请重新刷卡", "Please tap the card again"),
    "bad-request": ("读卡数据有误，请重新刷卡", "The card was not read properly: please tap again"),
}  # fmt: skip
STATUS = {
    "pending": "待确认 pending",
    "booked": "已预约 booked",
    "arrived": "已签到 arrived",
    "checked-in": "已签到 checked in",
}


class Reader(Protocol):
    """What the terminal needs of a reader (:class:`card_reader.nfc.NfcReader`)."""

    def open(self) -> None: ...

    def close(self) -> None: ...

    def read_tap(self, nonce: bytes, *, timeout: float) -> dict[str, Any] | None: ...

    def wait_for_removal(self, timeout: float) -> bool: ...


class Screen:
    """The terminal's display: lines of text (a GUI would subclass it)."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self._last = ""

    def say(self, zh: str, en: str = "") -> None:
        line = f"{zh}  {en}".rstrip() if en else zh
        if line != self._last:  # a retry loop does not flood the screen
            print(line, file=self.out, flush=True)
            self._last = line

    def show_tap(self, answer: dict[str, Any]) -> None:
        self._last = ""
        if answer.get("result") != "accepted":
            reason = str(answer.get("reason", "bad-request"))
            zh, en = MESSAGES.get(reason, MESSAGES["bad-request"])
            self.say(f"✗ {zh}", f"{en} [{reason}]")
            return
        patient = answer.get("patient") or {}
        self.say(f"✓ 身份已确认：{patient.get('display', '')}", "Identity confirmed")
        appts = answer.get("appointments") or []
        if not appts:
            self.say("  今日无预约", "No appointment today")
        for a in appts:
            when = str(a.get("time") or "")[11:16]
            self.say(
                f"  {when} {a.get('department', '')} {a.get('practitioner', '')} "
                f"[{STATUS.get(str(a.get('status')), a.get('status'))}]"
            )

    def checked_in(self, appt: dict[str, Any], answer: dict[str, Any]) -> None:
        number = answer.get("queue_number")
        self.say(
            f"  ✓ 签到成功 {appt.get('department', '')}：排队号 {number}",
            f"Checked in: queue number {number}",
        )

    def checkin_failed(self, appt: dict[str, Any], err: ApiError) -> None:
        self.say(f"  ✗ 签到未成功 {appt.get('department', '')}：{err}", "Check-in failed")


class Backoff:
    """Exponential back-off with jitter: ``base``, 2×, 4× ... up to ``cap`` seconds."""

    def __init__(self, base: float = 1.0, cap: float = 30.0) -> None:
        self.base, self.cap = base, cap
        self.failures = 0

    def next(self) -> float:
        delay = min(self.cap, self.base * 2**self.failures)
        self.failures += 1
        return delay * random.uniform(0.8, 1.0)

    def reset(self) -> None:
        self.failures = 0


class Terminal:
    """The counter terminal's loop (see the module docstring); :meth:`step` is one turn."""

    def __init__(
        self,
        client: TerminalClient,
        reader: Reader,
        screen: Screen | None = None,
        *,
        auto_checkin: bool = True,
        tap_timeout: float = 1.0,
        removal_timeout: float = 10.0,
        backoff: Backoff | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.reader = reader
        self.screen = screen or Screen()
        self.auto_checkin = auto_checkin
        self.tap_timeout = tap_timeout
        self.removal_timeout = removal_timeout
        self.backoff = backoff or Backoff()
        self.sleep = sleep
        self._nonce: Nonce | None = None
        self._reader_open = False
        self._ready_shown = False
        self.last_answer: dict[str, Any] | None = None

    # -- one turn ------------------------------------------------------------------------------
    def step(self) -> str:
        """Wait for one tap and handle it. Returns what happened: ``accepted``, ``refused``,
        ``idle`` (no card), ``card-error``, ``reader-error``, ``network``, ``unauthorized``,
        ``error``."""
        try:
            return self._step()
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception:  # never die at the counter: log, show, go on
            log.exception("unexpected error")
            self.screen.say("系统错误，请稍候", "Unexpected error: retrying")
            self._pause()
            return "error"

    def _pause(self) -> None:
        self.sleep(self.backoff.next())

    def _step(self) -> str:
        if not self._ensure_reader():
            return "reader-error"
        nonce = self._ensure_nonce()
        if nonce is None:
            return "unauthorized" if self._unauthorized else "network"
        if not self._ready_shown:
            self.screen.say("请刷卡", "Please tap your health card")
            self._ready_shown = True
        try:
            evidence = self.reader.read_tap(nonce.value, timeout=self.tap_timeout)
        except CardRemoved as exc:
            self._nonce = None
            self.screen.say("读卡中断，请重新刷卡", str(exc))
            self._after_card()
            return "card-error"
        except CardError as exc:
            self._nonce = None
            self.screen.say("无法读取此卡", str(exc))
            self._after_card()
            return "card-error"
        except ReaderError as exc:
            self._reader_lost(exc)
            return "reader-error"
        if evidence is None:
            return "idle"
        self._nonce = None  # spent: the next tap gets a fresh one
        self._ready_shown = False
        try:
            answer = self.client.tap(evidence)
        except ApiUnavailable as exc:
            log.info("tap: %s", exc)
            self.screen.say("网络中断，请稍后重新刷卡", "Cannot reach the server: tap again later")
            self._after_card()
            return "network"
        except ApiError as exc:
            self.screen.say("服务器拒绝了请求", str(exc))
            self._after_card()
            return "unauthorized" if isinstance(exc, ApiRefused) else "error"
        self.backoff.reset()
        self.last_answer = answer
        self.screen.show_tap(answer)
        accepted = answer.get("result") == "accepted"
        if accepted and self.auto_checkin:
            self._check_in(answer)
        self._after_card()
        return "accepted" if accepted else "refused"

    def _check_in(self, answer: dict[str, Any]) -> None:
        tap = str(answer.get("tap") or "")
        for appt in answer.get("appointments") or []:
            if appt.get("status") != "booked":
                continue
            try:
                done = self.client.check_in(str(appt["id"]), tap)
            except ApiError as exc:
                self.screen.checkin_failed(appt, exc)
                continue
            appt["status"] = "arrived"
            appt["queue_number"] = done.get("queue_number")
            self.screen.checked_in(appt, done)

    # -- reader, nonce -------------------------------------------------------------------------
    def _ensure_reader(self) -> bool:
        if self._reader_open:
            return True
        try:
            self.reader.open()
        except ReaderError as exc:
            self._reader_lost(exc)
            return False
        self._reader_open = True
        self._ready_shown = False
        self.backoff.reset()
        return True

    def _reader_lost(self, exc: Exception) -> None:
        self._reader_open = False
        try:
            self.reader.close()
        except Exception:  # the device is gone already
            log.debug("closing a dead reader", exc_info=True)
        self.screen.say("读卡器未连接，请检查读卡器", f"Card reader not available: {exc}")
        self._pause()

    _unauthorized = False

    def _ensure_nonce(self) -> Nonce | None:
        if self._nonce is not None and time.monotonic() < self._nonce.refresh_at:
            return self._nonce
        self._nonce = None
        try:
            self._nonce = self.client.nonce()
        except ApiRefused as exc:
            self._unauthorized = True
            self.screen.say("终端未获授权，请联系信息科", str(exc))
            self._pause()
            return None
        except ApiUnavailable as exc:
            self._unauthorized = False
            log.info("nonce: %s", exc)
            self.screen.say("网络中断，正在重试…", "Cannot reach the server: retrying")
            self._pause()
            return None
        except ApiError as exc:
            self._unauthorized = False
            self.screen.say("服务器拒绝了请求，正在重试…", f"The server refused: {exc}")
            self._pause()
            return None
        self._unauthorized = False
        self.backoff.reset()
        return self._nonce

    def _after_card(self) -> None:
        """Wait until the card is taken away, so one tap is handled once."""
        try:
            if not self.reader.wait_for_removal(self.removal_timeout):
                self.screen.say("请取走卡片", "Please take the card away")
                self.reader.wait_for_removal(self.removal_timeout)
        except ReaderError as exc:
            self._reader_lost(exc)

    # -- the loop ------------------------------------------------------------------------------
    def run(self, stop: threading.Event | None = None) -> None:
        """Turn until ``stop`` is set (or Ctrl-C)."""
        try:
            while stop is None or not stop.is_set():
                self.step()
        finally:
            try:
                self.reader.close()
            except Exception:
                log.debug("closing the reader", exc_info=True)


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="ehr-terminal", description="Health one-card counter terminal (健康一卡通柜台终端)"
    )
    ap.add_argument("--api", help="the FHIR base URL, e.g. https://ehr.example.cn/fhir")
    ap.add_argument("--client-id", help="this terminal's OAuth client id")
    ap.add_argument("--key", help="this terminal's private key (JWK JSON or PEM)")
    ap.add_argument(
        "--reader",
        default="usb",
        help="nfcpy reader path: usb[:VID:PID], tty:PORT:DRIVER, udp:HOST:PORT",
    )
    ap.add_argument("--token-url", help="the token endpoint (default: from SMART discovery)")
    ap.add_argument("--no-checkin", action="store_true", help="identify only, do not check in")
    ap.add_argument("--tap-timeout", type=float, default=1.0, help=argparse.SUPPRESS)
    ap.add_argument("--new-key", metavar="FILE", help="make a key pair, print the JWKS, exit")
    ap.add_argument("-v", "--verbose", action="store_true")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING)
    if args.new_key:
        print(json.dumps(new_key(args.new_key), indent=2))
        print(f"private key written to {args.new_key}; register the JWKS above with\n"
              f'  ehr clients add "counter 1" --scope "system/health-card.tap" '
              f"--jwks FILE --grant-type client_credentials", file=sys.stderr)  # fmt: skip
        return 0
    missing = [n for n in ("api", "client_id", "key") if not getattr(args, n)]
    if missing:
        print(f"missing: {', '.join('--' + m.replace('_', '-') for m in missing)}", file=sys.stderr)
        return 2
    from .nfc import NfcReader

    # nfcpy sets its logger to INFO when imported
    logging.getLogger("nfc").setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    try:
        client = TerminalClient.from_key_file(
            args.api, args.client_id, args.key, token_url=args.token_url
        )
    except (OSError, ValueError) as exc:
        print(f"cannot read the key {args.key}: {exc}", file=sys.stderr)
        return 2
    terminal = Terminal(
        client,
        NfcReader(args.reader),
        auto_checkin=not args.no_checkin,
        tap_timeout=args.tap_timeout,
    )
    # nfcpy swallows KeyboardInterrupt while it polls: Ctrl-C sets a flag the loop checks
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        terminal.run(stop)
    finally:
        client.close()
    print("再见 / bye")
    return 0


if __name__ == "__main__":
    sys.exit(main())
