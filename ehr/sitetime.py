"""The exchange's local time: China Standard Time (UTC+8, no daylight saving). Instants are
stored and exchanged with their offset (UTC in the audit trail); what counts "per day" (a
notice at most once a day, a clinic day) counts by the local calendar, whose day begins at
16:00 UTC."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

__all__ = ["CST", "local_day"]

#: China Standard Time
CST = timezone(timedelta(hours=8))


def local_day(when: datetime) -> str:
    """The local calendar day of the aware instant ``when``, as ``YYYY-MM-DD``."""
    return when.astimezone(CST).strftime("%Y-%m-%d")
