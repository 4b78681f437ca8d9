"""FHIR date, dateTime and instant values as inclusive ranges of microseconds since the epoch.

A value covers the whole interval its precision implies
(http://hl7.org/fhir/R4/search.html#date): ``1980`` covers 1980-01-01T00:00:00 to
1980-12-31T23:59:59.999999. Values without a time zone are taken as UTC (the server's zone).
"""

from __future__ import annotations

import calendar
import re
from datetime import UTC, datetime, timedelta

__all__ = ["DATE_RE", "US_PER_S", "date_range", "instant_us", "now_us", "us_to_instant"]

US_PER_S = 1_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# FHIR date / dateTime / instant (http://hl7.org/fhir/R4/datatypes.html#dateTime)
DATE_RE = re.compile(
    r"^(?P<y>[0-9]{4})(?:-(?P<m>0[1-9]|1[0-2])(?:-(?P<d>0[1-9]|[12][0-9]|3[01])"
    r"(?:T(?P<H>[01][0-9]|2[0-3]):(?P<M>[0-5][0-9])(?::(?P<S>[0-5][0-9]|60)(?P<f>\.[0-9]+)?)?"
    r"(?P<tz>Z|[+-](?:(?:0[0-9]|1[0-3]):[0-5][0-9]|14:00))?)?)?)?$"
)


def _us(dt: datetime) -> int:
    delta = dt - _EPOCH
    return (delta.days * 86400 + delta.seconds) * US_PER_S + delta.microseconds


def date_range(value: str) -> tuple[int, int]:
    """``(low, high)`` in microseconds, both inclusive. Raises ``ValueError`` on a bad value."""
    m = DATE_RE.match(value)
    if not m:
        raise ValueError(f"not a FHIR date/dateTime/instant: {value!r}")
    y = int(m["y"])
    if m["m"] is None:
        start = datetime(y, 1, 1, tzinfo=UTC)
        end = datetime(y + 1, 1, 1, tzinfo=UTC) if y < 9999 else None
    elif m["d"] is None:
        mo = int(m["m"])
        start = datetime(y, mo, 1, tzinfo=UTC)
        end = start + timedelta(days=calendar.monthrange(y, mo)[1])
    else:
        mo, d = int(m["m"]), int(m["d"])
        if d > calendar.monthrange(y, mo)[1]:
            raise ValueError(f"no such day: {value!r}")
        if m["H"] is None:
            start = datetime(y, mo, d, tzinfo=UTC)
            end = start + timedelta(days=1)
        else:
            tz = m["tz"]
            if tz is None or tz == "Z":
                offset = timedelta(0)
            else:
                sign = 1 if tz[0] == "+" else -1
                offset = sign * timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6]))
            sec = int(m["S"] or 0)
            leap = sec == 60
            local = datetime(y, mo, d, int(m["H"]), int(m["M"]), 59 if leap else sec, tzinfo=UTC)
            start = local - offset
            if m["S"] is None:
                end = start + timedelta(minutes=1)
            elif m["f"]:
                digits = m["f"][1:]
                frac_us = int((digits + "000000")[:6])
                start = start + timedelta(microseconds=frac_us)
                unit = 10 ** max(0, 6 - len(digits))
                end = start + timedelta(microseconds=unit)
            else:
                end = start + timedelta(seconds=1)
    low = _us(start)
    high = (
        _us(end) - 1
        if end is not None
        else _us(datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC))
    )
    return low, high


def instant_us(value: str) -> int:
    """The start of ``value``'s range (for ``_since``, ``_at`` and meta.lastUpdated)."""
    return date_range(value)[0]


def now_us() -> int:
    return _us(datetime.now(UTC))


def us_to_instant(us: int) -> str:
    """Microseconds -> FHIR instant in UTC, e.g. ``2026-11-28T21:03:04.123456Z``."""
    # isoformat: the same text as strftime("%Y-%m-%dT%H:%M:%S.%fZ") at half the cost (twice per
    # resource written: meta.lastUpdated and the response's lastModified)
    return (_NAIVE_EPOCH + timedelta(microseconds=us)).isoformat(timespec="microseconds") + "Z"


_NAIVE_EPOCH = _EPOCH.replace(tzinfo=None)
