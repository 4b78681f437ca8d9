"""The appointment services bound to one store: clock, notification sender and the booking
rules hook.

    from appointments import install
    svc = install(store)                       # registers the WriteHook on the store
    slots = find_slots(svc, FindRequest(service="hs-h1-0307"), actor)
    appt = book(svc, actor, slot=slots[0].rid, patient="pat-0001")

Every service function takes ``svc`` first and the acting user explicitly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from ehr.store import Store

from .fhirdata import CST
from .notify import LogSender, Sender

__all__ = ["Appointments", "install", "installed"]


def _wall_clock() -> datetime:
    return datetime.now(CST)


@dataclass(eq=False)
class Appointments:
    """The services' configuration. ``clock`` returns the current time (tests fix it)."""

    store: Store
    sender: Sender = field(default_factory=LogSender)
    clock: Callable[[], datetime] = _wall_clock
    #: HMAC key of citizen-ID hashes, to find a patient by a presented ID (default: settings)
    citizen_id_key: bytes = b""

    def __post_init__(self) -> None:
        from .directory import Directory
        from .rules import BookingRules

        self.directory = Directory()
        if not self.citizen_id_key:
            from ehr.settings import get_settings

            self.citizen_id_key = get_settings().citizen_id_key.encode()
        self.rules = BookingRules(self)

    def now(self) -> datetime:
        return self.clock().astimezone(CST)

    def install(self) -> Appointments:
        """Register the booking rules on the store (once): from then on plain FHIR writes of
        Appointment, Slot, Schedule and booking policies obey them."""
        if not any(getattr(h, "svc", None) is self for h in self.store.hooks):
            self.store.hooks[:] = [h for h in self.store.hooks if not _is_rules(h)]
            self.store.hooks.append(self.rules)
        return self


def _is_rules(hook: object) -> bool:
    from .rules import BookingRules

    return isinstance(hook, BookingRules)


def installed(store: Store) -> Appointments | None:
    """The appointment services already installed on ``store``, if any."""
    for hook in store.hooks:
        svc = getattr(hook, "svc", None)
        if isinstance(svc, Appointments) and _is_rules(hook):
            return svc
    return None


def install(
    store: Store, *, sender: Sender | None = None, clock: Callable[[], datetime] | None = None
) -> Appointments:
    """Appointment services on ``store`` with the booking rules installed (replacing any
    earlier installation on the same store)."""
    svc = Appointments(store, sender or LogSender(), clock or _wall_clock)
    return svc.install()
