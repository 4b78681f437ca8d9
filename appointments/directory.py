"""A per-process cache of what ``$find`` reads on every call but rarely changes: the active
Schedules (with their parsed availability rules) and the hospitals' booking policies.

Each cached list is checked against ``max(last_updated)`` of its resource type before use (one
index lookup on ``ix_resources_rtype_last_updated``): any create, update or delete of a Schedule
(or Basic) in any process moves it, so a change is seen by the next ``$find``. Entries also
expire after ``ttl`` seconds, which covers the rare commit that lands with an older timestamp
than one already seen. The booking rules use the policy cache (checked on their own
transaction's connection) and read Schedules and Slots themselves.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import false, func, select

from ehr.model import loads
from ehr.search.tables import idx_reference, idx_token
from ehr.storage.tables import resources

from .availability import Availability, availability_of
from .fhirdata import Reader
from .policy import BookingPolicy, load_policy

__all__ = ["Directory", "ScheduleEntry"]


@dataclass(frozen=True)
class ScheduleEntry:
    schedule: dict[str, Any]
    availability: Availability | None
    actors: frozenset[str]
    specialties: frozenset[str]  # "code" and "system|code"


@dataclass
class _Cached:
    stamp: int | None
    at: float
    value: Any


@dataclass
class Directory:
    ttl: float = 30.0
    _entries: dict[str, _Cached] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _stamp(self, reader: Reader, rtype: str) -> int | None:
        return reader.conn.execute(
            select(func.max(resources.c.last_updated)).where(resources.c.rtype == rtype)
        ).scalar()

    def _get(self, key: str, stamp: int | None) -> Any:
        with self._lock:
            c = self._entries.get(key)
        if c is not None and c.stamp == stamp and time.monotonic() - c.at < self.ttl:
            return c.value
        return None

    def _put(self, key: str, stamp: int | None, value: Any) -> None:
        with self._lock:
            self._entries[key] = _Cached(stamp, time.monotonic(), value)

    def schedules(self, reader: Reader) -> list[ScheduleEntry]:
        """Every active Schedule."""
        stamp = self._stamp(reader, "Schedule")
        got = self._get("schedules", stamp)
        if got is not None:
            return got  # type: ignore[no-any-return]
        rows = reader.conn.execute(
            select(resources.c.data)
            .join(idx_token, idx_token.c.pk == resources.c.pk)
            .where(
                resources.c.rtype == "Schedule",
                resources.c.deleted == false(),
                idx_token.c.rtype == "Schedule",
                idx_token.c.param == "active",
                idx_token.c.code == "true",
            )
        ).scalars()
        out = []
        for data in rows:
            s = loads(data)
            specs: set[str] = set()
            for cc in s.get("specialty") or ():
                for cd in cc.get("coding") or ():
                    if cd.get("code"):
                        specs |= {cd["code"], f"{cd.get('system', '')}|{cd['code']}"}
            actors = frozenset(a.get("reference", "") for a in s.get("actor") or ())
            out.append(ScheduleEntry(s, availability_of(s), actors, frozenset(specs)))
        out.sort(key=lambda e: str(e.schedule.get("id")))
        self._put("schedules", stamp, out)
        return out

    def policy(self, reader: Reader, org: str | None) -> BookingPolicy:
        stamp = self._stamp(reader, "Basic")
        key = f"policy:{org}"
        got = self._get(key, stamp)
        if got is not None:
            return got  # type: ignore[no-any-return]
        policy = load_policy(reader, org)
        self._put(key, stamp, policy)
        return policy

    @staticmethod
    def roles_of(reader: Reader, practitioner: str) -> list[str]:
        """The PractitionerRole ids of ``Practitioner/practitioner`` (reference index lookup)."""
        rows = reader.conn.execute(
            select(resources.c.rid)
            .join(idx_reference, idx_reference.c.pk == resources.c.pk)
            .where(
                idx_reference.c.target_id == practitioner,
                idx_reference.c.target_type == "Practitioner",
                idx_reference.c.rtype == "PractitionerRole",
                idx_reference.c.param == "practitioner",
                resources.c.deleted == false(),
            )
        ).scalars()
        return sorted(set(rows))
