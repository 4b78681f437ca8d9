"""Notifications to patients as Communication resources (http://hl7.org/fhir/R4/communication.html)
sent through a pluggable :class:`Sender`.

Inside the write transaction that causes it (a cancellation, a waitlist promotion, ...) a
Communication is created with ``status = in-progress``: it commits or rolls back with the
change it reports. After the commit the sender delivers it and the Communication becomes
``completed`` (with ``sent``) or ``stopped`` (with ``statusReason``); a delivery failure never
undoes the change, and a stuck ``in-progress`` Communication can be retried by a job.

Senders: :class:`LogSender` (the default, logs and records), :class:`SmsSender` over an
:class:`SmsGateway` and :class:`WeChatSender` over a :class:`WeChatGateway` (one-method
interfaces the deployment implements for its SMS provider and WeChat service account).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from ehr.errors import FhirError
from ehr.store import Store, WriteContext

from .codes import APPOINTMENTS_CS
from .fhirdata import Reader, fmt_instant, ref, ref_id, ref_type

__all__ = [
    "LogSender",
    "Message",
    "Recipient",
    "Sender",
    "SmsGateway",
    "SmsSender",
    "WeChatGateway",
    "WeChatSender",
    "notify",
]

log = logging.getLogger("appointments.notify")


@dataclass(frozen=True)
class Recipient:
    reference: str  # Patient/x or RelatedPerson/y
    phone: str | None = None
    wechat_openid: str | None = None


@dataclass(frozen=True)
class Message:
    communication_id: str
    category: str
    text: str
    recipients: tuple[Recipient, ...]
    about: tuple[str, ...] = ()


class Sender(Protocol):
    """Delivers one message; raises to report a failure."""

    def send(self, message: Message) -> None: ...


@dataclass
class LogSender:
    """Logs every message and keeps the last ones (for tests and the demo)."""

    sent: list[Message] = field(default_factory=list)
    keep: int = 1000

    def send(self, message: Message) -> None:
        log.info(
            "notify %s -> %s: %s",
            message.category,
            [r.reference for r in message.recipients],
            message.text,
        )
        self.sent.append(message)
        del self.sent[: -self.keep]


class SmsGateway(Protocol):
    def send_sms(self, phone: str, text: str) -> None: ...


class WeChatGateway(Protocol):
    def send_template(self, openid: str, category: str, text: str) -> None: ...


@dataclass
class SmsSender:
    gateway: SmsGateway

    def send(self, message: Message) -> None:
        phones = [r.phone for r in message.recipients if r.phone]
        if not phones:
            raise RuntimeError("no recipient has a mobile phone number")
        for p in dict.fromkeys(phones):
            self.gateway.send_sms(p, message.text)


@dataclass
class WeChatSender:
    gateway: WeChatGateway

    def send(self, message: Message) -> None:
        ids = [r.wechat_openid for r in message.recipients if r.wechat_openid]
        if not ids:
            raise RuntimeError("no recipient has a WeChat openid")
        for o in dict.fromkeys(ids):
            self.gateway.send_template(o, message.category, message.text)


WECHAT_OPENID_SYSTEM = "https://api.weixin.qq.com/openid"


def _recipient(reader: Reader, reference: str) -> Recipient:
    rtype, rid = ref_type(reference), ref_id(reference)
    phone = openid = None
    res = reader.get(rtype, rid) if rtype and rid else None
    if res:
        for t in res.get("telecom") or ():
            if t.get("system") in ("phone", "sms") and t.get("value") and phone is None:
                phone = str(t["value"])
        for i in res.get("identifier") or ():
            if i.get("system") == WECHAT_OPENID_SYSTEM:
                openid = str(i.get("value"))
    return Recipient(reference, phone, openid)


def notify(
    ctx: WriteContext,
    sender: Sender,
    *,
    patient: str,
    text: str,
    category: str,
    about: list[str] | tuple[str, ...] = (),
    also: list[str] | tuple[str, ...] = (),
    now: Callable[[], datetime],
) -> str:
    """Record a Communication to ``Patient/patient`` (and the ``also`` references, e.g. the
    RelatedPerson who booked) about the ``about`` references; deliver it after the commit.
    Returns the Communication id."""
    reader = Reader.of(ctx)
    refs = list(dict.fromkeys([f"Patient/{patient}", *also]))
    recipients = tuple(_recipient(reader, r) for r in refs)
    comm: dict[str, Any] = {
        "resourceType": "Communication",
        "status": "in-progress",
        "category": [{"coding": [{"system": APPOINTMENTS_CS, "code": category}]}],
        "subject": ref("Patient", patient),
        "recipient": [{"reference": r} for r in refs],
        "payload": [{"contentString": text}],
    }
    if about:
        comm["about"] = [{"reference": a} for a in about]
    created = ctx.create(comm, validate=False)
    message = Message(created.rid, category, text, recipients, tuple(about))
    store = ctx.store
    ctx.after_commit.append(lambda: _deliver(store, sender, message, now))
    return created.rid


def _deliver(store: Store, sender: Sender, message: Message, now: Callable[[], datetime]) -> None:
    status, reason = "completed", None
    try:
        sender.send(message)
    except Exception as exc:  # a failed delivery is recorded, never raised into the booking
        log.warning("notification %s failed: %s", message.communication_id, exc)
        status, reason = "stopped", str(exc)[:200]
    try:
        with store.write() as ctx:
            cur = Reader.of(ctx).get("Communication", message.communication_id, lock=True)
            if cur is None:
                return
            cur["status"] = status
            if status == "completed":
                cur["sent"] = fmt_instant(now())
            else:
                cur["statusReason"] = {"text": reason}
            ctx.update("Communication", message.communication_id, cur, validate=False)
    except FhirError as exc:  # pragma: no cover - a status update lost to a concurrent write
        log.warning("could not record delivery of %s: %s", message.communication_id, exc)
