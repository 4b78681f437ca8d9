"""A hospital's booking policy, stored as a FHIR Basic resource
(http://hl7.org/fhir/R4/basic.html) with ``code`` = ``APPOINTMENTS_CS#booking-policy``,
``subject`` = the Organization and one complex extension :data:`~appointments.codes.BOOKING_POLICY_EXT`
whose sub-extensions are the fields of :class:`BookingPolicy` in camelCase (``releaseDaysAhead``
valueInteger, ``releaseTime`` valueTime, ``cancelCutoffHours`` valueDecimal, ``waitlist``
valueBoolean, …) plus the hospital calendar (``closed``, ``extraDay`` as in
:mod:`appointments.availability`). A hospital without one gets :data:`DEFAULT_POLICY`.

Release window: the slots of day D open for booking at ``release_time`` (CST) on day
D − ``release_days_ahead``; a citizen can book them from then until the slot starts.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from ehr.errors import Unprocessable
from ehr.store import Store, WriteResult

from .availability import Closure, ExtraDay, calendar_from_extension, calendar_to_extension
from .codes import APPOINTMENTS_CS, BOOKING_POLICY_EXT
from .fhirdata import CST, Reader, ext, ref, sub_values

__all__ = ["DEFAULT_POLICY", "BookingPolicy", "load_policy", "policy_resource", "save_policy"]


@dataclass(frozen=True)
class BookingPolicy:
    """Booking rules of one hospital."""

    #: slots of day D open at ``release_time`` on day D − ``release_days_ahead``
    release_days_ahead: int = 7
    release_time: time = time(8, 0)
    #: most active (pending or booked, not yet seen) bookings of one patient at this hospital
    max_active_bookings: int = 5
    #: most bookings of one patient in one department on one day
    max_per_department_per_day: int = 1
    #: a citizen may cancel until this many hours before the slot starts
    cancel_cutoff_hours: float = 2.0
    #: ``no_show_limit`` no-shows within ``no_show_window_days`` block booking for
    #: ``blacklist_days`` from the last of them
    no_show_limit: int = 3
    no_show_window_days: int = 90
    blacklist_days: int = 90
    #: a $hold lasts this long
    hold_minutes: int = 10
    #: a freed slot goes to the first waitlisted patient
    waitlist: bool = True
    #: when a doctor cancels a session, hold an alternative slot this long for each patient
    offer_hold_hours: int = 24
    #: the booked Patient must carry a (protected) citizen ID
    real_name: bool = True
    closures: tuple[Closure, ...] = ()
    extra_days: tuple[ExtraDay, ...] = ()

    def released_until(self, now: datetime) -> date:
        """The last day whose slots are open at ``now``."""
        local = now.astimezone(CST)
        ahead = (
            self.release_days_ahead
            if local.time() >= self.release_time
            else self.release_days_ahead - 1
        )
        return local.date() + timedelta(days=ahead)

    def release_instant(self, day: date) -> datetime:
        """When the slots of ``day`` open."""
        return datetime.combine(
            day - timedelta(days=self.release_days_ahead), self.release_time, CST
        )

    def cancel_deadline(self, slot_start: datetime) -> datetime:
        return slot_start - timedelta(hours=self.cancel_cutoff_hours)


DEFAULT_POLICY = BookingPolicy()

_FIELDS: dict[str, tuple[str, str]] = {  # field -> (sub-extension url, value[x])
    "release_days_ahead": ("releaseDaysAhead", "valueInteger"),
    "release_time": ("releaseTime", "valueTime"),
    "max_active_bookings": ("maxActiveBookings", "valueInteger"),
    "max_per_department_per_day": ("maxPerDepartmentPerDay", "valueInteger"),
    "cancel_cutoff_hours": ("cancelCutoffHours", "valueDecimal"),
    "no_show_limit": ("noShowLimit", "valueInteger"),
    "no_show_window_days": ("noShowWindowDays", "valueInteger"),
    "blacklist_days": ("blacklistDays", "valueInteger"),
    "hold_minutes": ("holdMinutes", "valueInteger"),
    "waitlist": ("waitlist", "valueBoolean"),
    "offer_hold_hours": ("offerHoldHours", "valueInteger"),
    "real_name": ("realName", "valueBoolean"),
}


def policy_resource(org_id: str, policy: BookingPolicy) -> dict[str, Any]:
    """The Basic resource that stores ``policy`` for ``Organization/org_id``."""
    parts: list[dict[str, Any]] = []
    for name, (url, vtype) in _FIELDS.items():
        v = getattr(policy, name)
        parts.append({"url": url, vtype: v.isoformat() if isinstance(v, time) else v})
    parts += calendar_to_extension(policy.closures, policy.extra_days)
    return {
        "resourceType": "Basic",
        "extension": [{"url": BOOKING_POLICY_EXT, "extension": parts}],
        "code": {
            "coding": [{"system": APPOINTMENTS_CS, "code": "booking-policy"}],
            "text": "预约挂号规则",
        },
        "subject": ref("Organization", org_id),
    }


def policy_from_resource(res: dict[str, Any]) -> BookingPolicy:
    e = ext(res, BOOKING_POLICY_EXT)
    if e is None:
        return DEFAULT_POLICY
    values: dict[str, Any] = {}
    for name, (url, _) in _FIELDS.items():
        got = sub_values(e, url)
        if got:
            default = getattr(DEFAULT_POLICY, name)
            try:
                values[name] = (
                    time.fromisoformat(got[0])
                    if isinstance(default, time)
                    else type(default)(got[0])
                )
            except (TypeError, ValueError) as exc:
                raise Unprocessable(f"Booking policy {url}: bad value {got[0]!r}", "value") from exc
    closures, extras = calendar_from_extension(e)
    return dataclasses.replace(DEFAULT_POLICY, closures=closures, extra_days=extras, **values)


def _condition(org_id: str) -> list[tuple[str, str]]:
    return [("subject", f"Organization/{org_id}"), ("code", f"{APPOINTMENTS_CS}|booking-policy")]


def load_policy(reader: Reader, org_id: str | None) -> BookingPolicy:
    """The policy of ``Organization/org_id`` (:data:`DEFAULT_POLICY` without one)."""
    if not org_id:
        return DEFAULT_POLICY
    found = reader.find("Basic", _condition(org_id), limit=1)
    return policy_from_resource(found[0]) if found else DEFAULT_POLICY


def save_policy(store: Store, org_id: str, policy: BookingPolicy) -> WriteResult:
    """Create or replace the policy of ``Organization/org_id`` (a conditional update)."""
    query = "&".join(f"{k}={v}" for k, v in _condition(org_id))
    return store.conditional_update("Basic", query, policy_resource(org_id, policy))
