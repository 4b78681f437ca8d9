"""Candidate lookup in the database: blocking rows, name frequencies, scoring per golden record.

Patient/$match: http://hl7.org/fhir/R4/patient-operation-match.html (the server "may use any
algorithm"). The keys are those of :mod:`ehr.empi.blocking`, stored in ``empi_blocking``
(:mod:`ehr.empi.tables`); scoring is :func:`ehr.empi.scoring.score`, graded per golden record by
:func:`ehr.empi.scoring.resolve`.

One lookup is two indexed queries whatever the population: the candidates' current Patient rows
with their golden record ids (blocks larger than ``max_block`` left out, identifier blocks
never), and the counts of their name keys. Features of a stored Patient are cached by
(id, version, lastUpdated), so a common candidate is not re-parsed at every registration.

**Name frequency.** ``count(name key) / population``, where the population is the number of
indexed source Patients (cached for ``population_ttl`` seconds) but never less than
``min_population``: in a small database one record in ten says nothing about how common a name
is, and at 10,000 a name seen once has the default ``u`` of an exact name (1e-4).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import orjson
from sqlalchemy import bindparam, delete, false, func, select
from sqlalchemy.engine import Connection

from ehr.empi.blocking import IDENTIFIER_KINDS, blocking_keys, name_count_keys
from ehr.empi.features import IdentityConfig, PatientFeatures, extract
from ehr.empi.links import golden_of_column, load_patients, no_match_ids
from ehr.empi.scoring import Grade, MatchConfig, MatchScore, resolve, score
from ehr.empi.tables import ALL_KEY, empi_blocking
from ehr.storage.tables import resources
from ehr.store import WriteContext

__all__ = ["GRADE_RANK", "Candidate", "Matcher"]

GRADE_RANK: dict[str, int] = {"certain": 0, "probable": 1, "possible": 2, "certainly-not": 3}


@dataclass(frozen=True)
class Candidate:
    """The best-scoring source Patient of one golden record (``golden_id`` None: a source not
    linked yet, e.g. stored before the EMPI was installed), and the golden record's grade after
    :func:`~ehr.empi.scoring.resolve` (which may demote ``probable`` to ``possible``)."""

    golden_id: str | None
    source_id: str
    score: MatchScore
    grade: Grade

    @property
    def key(self) -> str:
        return self.golden_id or self.source_id


_COUNTS = (
    select(empi_blocking.c.key, func.count())
    .where(empi_blocking.c.key.in_(bindparam("keys", expanding=True)))
    .group_by(empi_blocking.c.key)
)


class _Frequencies:
    def __init__(self, counts: dict[str, int], population: int) -> None:
        self.counts = counts
        self.population = population

    def name_frequency(self, key: str) -> float | None:
        return max(self.counts.get(key, 0), 1) / self.population


class Matcher:
    """Blocking rows and candidate scoring on one database (thread-safe)."""

    def __init__(
        self,
        match: MatchConfig,
        identity: IdentityConfig,
        *,
        max_block: int = 500,
        max_candidates: int = 1000,
        min_population: int = 10_000,
        population_ttl: float = 60.0,
        cache_size: int = 20_000,
    ) -> None:
        self.match = match
        self.identity = identity
        self.max_block = max_block
        self.max_candidates = max_candidates
        self.min_population = min_population
        self.population_ttl = population_ttl
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple[str, int, int], PatientFeatures] = OrderedDict()
        self._population: tuple[float, int] | None = None
        self._lock = threading.Lock()

    # -- features ------------------------------------------------------------------------------
    def extract(self, patient: dict[str, object]) -> PatientFeatures:
        return extract(patient, self.identity)

    def features(
        self, rid: str, version: int, ts: int, patient: dict[str, object] | bytes
    ) -> PatientFeatures:
        """The features of one stored version (``patient`` as a dict or its JSON bytes)."""
        key = (rid, version, ts)
        with self._lock:
            got = self._cache.get(key)
            if got is not None:
                self._cache.move_to_end(key)
                return got
        f = self.extract(orjson.loads(patient) if isinstance(patient, bytes) else patient)
        with self._lock:
            self._cache[key] = f
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return f

    # -- rows ----------------------------------------------------------------------------------
    def index(
        self, ctx: WriteContext, rid: str, f: PatientFeatures, *, replace: bool = True
    ) -> None:
        """Write (``replace``: replace) the blocking rows of source Patient ``rid``: the old
        ones are deleted at once, the new ones buffered in the transaction's repository and
        inserted at its next flush (with the resource rows: no round trip of their own; any
        query through ``ctx.conn`` flushes first, so the transaction always sees them)."""
        if replace:
            self.unindex(ctx.conn, rid)
        keys = sorted(blocking_keys(f) | name_count_keys(f) | {ALL_KEY})
        ctx.repo.insert_rows(empi_blocking, [{"key": k, "patient_id": rid} for k in keys])

    def unindex(self, conn: Connection, rid: str) -> None:
        conn.execute(delete(empi_blocking).where(empi_blocking.c.patient_id == rid))

    def indexed_keys(self, conn: Connection, rid: str) -> set[str]:
        rows = conn.execute(select(empi_blocking.c.key).where(empi_blocking.c.patient_id == rid))
        return {str(k) for k in rows.scalars()}

    def population(self, conn: Connection) -> int:
        now = time.monotonic()
        cached = self._population
        if cached is None or now - cached[0] > self.population_ttl:
            n = conn.execute(
                select(func.count())
                .select_from(empi_blocking)
                .where(empi_blocking.c.key == ALL_KEY)
            ).scalar_one()
            cached = self._population = (now, int(n))
        return max(cached[1], self.min_population)

    @cached_property
    def _rows_stmt(self) -> Any:
        """The candidate query, built once (expanding parameters ``keys``, ``soft``,
        ``exclude``): rows and golden ids of the current source Patients sharing a usable
        blocking key."""
        b, big, r = empi_blocking.alias("b"), empi_blocking.alias("big"), resources.alias("r")
        too_big = (
            select(big.c.key)
            .where(big.c.key.in_(bindparam("soft", expanding=True)))
            .group_by(big.c.key)
            .having(func.count() > self.max_block)
        )
        ids = select(b.c.patient_id).where(
            b.c.key.in_(bindparam("keys", expanding=True)), b.c.key.not_in(too_big)
        )
        # no ORDER BY: sorting by pk would make the planner walk every Patient in pk order
        return (
            select(r.c.rid, r.c.version, r.c.last_updated, r.c.data, golden_of_column(r.c.rid))
            .where(
                r.c.rtype == "Patient",
                r.c.rid.in_(ids),
                r.c.rid.not_in(bindparam("exclude", expanding=True)),
                r.c.deleted == false(),
            )
            .limit(self.max_candidates)
        )

    def _candidate_rows(
        self, conn: Connection, keys: Collection[str], exclude: Collection[str]
    ) -> list[tuple[str, int, int, bytes, str | None]]:
        """(id, version, lastUpdated, data, golden id) of the candidates: one query (blocks,
        rows and golden records together)."""
        params = {
            "keys": sorted(keys),
            "soft": sorted(k for k in keys if not k.startswith(IDENTIFIER_KINDS)),
            "exclude": sorted(exclude),
        }
        rows = [
            (str(rid), int(v), int(ts), data, str(g) if g is not None else None)
            for rid, v, ts, data, g in conn.execute(self._rows_stmt, params)
            if data is not None
        ]
        rows.sort()
        return rows

    def _name_counts(self, conn: Connection, keys: Iterable[str]) -> dict[str, int]:
        wanted = sorted(set(keys))
        if not wanted:
            return {}
        rows = conn.execute(_COUNTS, {"keys": wanted})
        return {str(k): int(n) for k, n in rows}

    # -- matching ------------------------------------------------------------------------------
    def candidates(
        self,
        conn: Connection,
        f: PatientFeatures,
        *,
        exclude: Collection[str] = (),
        source_id: str | None = None,
    ) -> list[Candidate]:
        """Every golden record with a source sharing a blocking key with ``f``, best first
        (grade, then score), each with its best source and its resolved grade. With
        ``source_id`` (the Patient being matched), golden records that recorded a no-match
        decision about it are left out before grading."""
        keys = blocking_keys(f)
        if not keys:
            return []
        rows = self._candidate_rows(conn, keys, exclude)
        if not rows:
            return []
        feats = {rid: self.features(rid, v, ts, data) for rid, v, ts, data, _ in rows}
        goldens = {rid: g for rid, _, _, _, g in rows if g is not None}
        name_keys = set(name_count_keys(f))
        for cf in feats.values():
            name_keys |= name_count_keys(cf)
        freq = _Frequencies(self._name_counts(conn, name_keys), self.population(conn))
        best: dict[str, tuple[str, MatchScore]] = {}
        for rid, cf in feats.items():
            s = score(f, cf, self.match, freq)
            group = goldens.get(rid, rid)
            held = best.get(group)
            if held is None or _better(s, held[1]):
                best[group] = (rid, s)
        if source_id is not None:
            for g in self._refused(conn, best, goldens, source_id):
                del best[g]
        grades = resolve({g: s for g, (_, s) in best.items()})
        out = [Candidate(goldens.get(rid), rid, s, grades[g]) for g, (rid, s) in best.items()]
        out.sort(key=lambda c: (GRADE_RANK[c.grade], -c.score.total, c.key))
        return out

    @staticmethod
    def _refused(
        conn: Connection,
        best: dict[str, tuple[str, MatchScore]],
        goldens: dict[str, str],
        source_id: str,
    ) -> set[str]:
        gids = [
            g
            for g, (rid, s) in best.items()
            if goldens.get(rid) == g and s.grade != "certainly-not"
        ]
        rows = load_patients(conn, gids) if gids else {}
        return {g for g, (_, _, data) in rows.items() if source_id in no_match_ids(data)}


def _better(a: MatchScore, b: MatchScore) -> bool:
    return (GRADE_RANK[a.grade], -a.total) < (GRADE_RANK[b.grade], -b.total)
