"""Candidate lookup in the database: blocking rows, name frequencies, scoring per golden record.

Patient/$match: http://hl7.org/fhir/R4/patient-operation-match.html (the server "may use any
algorithm"). The keys are those of :mod:`ehr.empi.blocking`, stored in ``empi_blocking``
(:mod:`ehr.empi.tables`); scoring is :func:`ehr.empi.scoring.score`, graded per golden record by
:func:`ehr.empi.scoring.resolve`.

One lookup is one indexed query when nobody shares a blocking key (most registrations): the
candidates' current Patient rows (blocks larger than ``max_block`` left out, identifier blocks
never). When there are candidates, a second round trip brings the Patients linking them (their
golden records, whose no-match decisions are read from the same rows) and the counts of their
name keys. On PostgreSQL the statements of a round trip go in one pipeline, each with a constant
text (arrays, not expanded ``IN`` lists: psycopg prepares them once per connection), and a
registration's advisory locks (:meth:`Matcher.candidates` ``lock_ids``) are taken in the first
one, ahead of the candidate query: each statement of a pipeline reads with its own snapshot, so
the candidates are read after the locks are held. Features of a stored Patient are cached by
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
from ehr.empi.links import is_golden, no_match_ids
from ehr.empi.scoring import Grade, MatchConfig, MatchScore, resolve, score
from ehr.empi.tables import ALL_KEY, empi_blocking
from ehr.search.tables import idx_reference
from ehr.storage.db import driver_error, is_postgres
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
    .where(empi_blocking.c.key.in_(bindparam("names", expanding=True)))
    .group_by(empi_blocking.c.key)
)
_PG_COUNTS = (
    "SELECT key, count(*) FROM empi_blocking WHERE key = ANY(%(names)s::text[]) GROUP BY key"
)

#: the Patients whose ``link`` refers to one of ``ids`` (a golden record links its sources), with
#: their content: which of them are golden records, and their no-match decisions, are read from it
_REFERRERS = (
    select(
        idx_reference.c.target_id,
        resources.c.rid,
        resources.c.data,
    )
    .select_from(idx_reference.join(resources, resources.c.pk == idx_reference.c.pk))
    .where(
        idx_reference.c.target_id.in_(bindparam("ids", expanding=True)),
        idx_reference.c.target_type == "Patient",
        idx_reference.c.rtype == "Patient",
        idx_reference.c.param == "link",
        resources.c.deleted == false(),
    )
    .order_by(resources.c.pk)
)
_PG_REFERRERS = (
    "SELECT ref.target_id, g.rid, g.data FROM idx_reference AS ref"
    " JOIN resources AS g ON g.pk = ref.pk"
    " WHERE ref.target_id = ANY(%(ids)s::text[]) AND ref.target_type = 'Patient'"
    " AND ref.rtype = 'Patient' AND ref.param = 'link' AND g.deleted = false ORDER BY g.pk"
)

#: the advisory locks of a registration's blocking keys, in the order given (PostgreSQL)
_PG_LOCK = "SELECT count(pg_advisory_xact_lock(k)) FROM unnest(%(lock_ids)s::bigint[]) AS t(k)"

_Query = tuple[Any, str | None]  # (SQLAlchemy statement, PostgreSQL text or None: not run there)


def _array(values: Iterable[str | int]) -> str:
    """A PostgreSQL array literal of ``values`` (every element quoted): sent as one text
    parameter and cast in the statement, it costs the driver a string, where a Python list
    would be adapted element by element."""
    text = [str(v) for v in values]
    if any("\\" in t or '"' in t for t in text):
        text = [t.replace("\\", "\\\\").replace('"', '\\"') for t in text]
    return '{"' + '","'.join(text) + '"}' if text else "{}"


def _fetch(
    conn: Connection, queries: list[_Query], params: dict[str, list[Any]]
) -> list[list[tuple[Any, ...]]]:
    """The rows of each of ``queries``, run in order with ``params`` (lists). PostgreSQL: their
    texts, the lists as array literals, in one pipeline (one round trip; statements after a
    failed one are not run); elsewhere the SQLAlchemy statements, one by one (a query without
    one is skipped)."""
    if not is_postgres(conn):
        return [list(conn.execute(q, params)) if q is not None else [] for q, _ in queries]
    import psycopg

    arrays = {k: _array(v) for k, v in params.items()}

    raw = conn.connection.driver_connection
    assert raw is not None
    sql = ""
    curs: list[psycopg.Cursor[Any]] = []
    try:
        with raw.pipeline():
            for _, text in queries:
                assert text is not None
                sql = text
                curs.append(raw.cursor())
                curs[-1].execute(sql, arrays)
            return [cur.fetchall() for cur in curs]
    except psycopg.Error as exc:
        raise driver_error(sql, exc, arrays) from exc
    finally:
        for cur in curs:
            cur.close()


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
        ``exclude``): the rows of the current source Patients sharing a usable blocking key."""
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
            select(r.c.rid, r.c.version, r.c.last_updated, r.c.data)
            .where(
                r.c.rtype == "Patient",
                r.c.rid.in_(ids),
                r.c.rid.not_in(bindparam("exclude", expanding=True)),
                r.c.deleted == false(),
            )
            .limit(self.max_candidates)
        )

    @cached_property
    def _pg_rows(self) -> str:
        """:attr:`_rows_stmt` for PostgreSQL, with array parameters (one text for any number
        of keys). Its shape fixes the plan whatever the statistics say (they lag behind a
        table that grows from empty, as ``empi_blocking`` does when the EMPI is new): the
        blocking rows by key, then each candidate's row by its id (a ``LIMIT`` keeps the
        lateral subquery a parameterized index lookup rather than a join the planner may
        turn into a scan of every Patient)."""
        return (
            "SELECT r.rid, r.version, r.last_updated, r.data FROM ("
            "SELECT DISTINCT b.patient_id FROM empi_blocking AS b"
            " WHERE b.key = ANY(%(keys)s::text[]) AND b.key <> ALL(ARRAY("
            "SELECT big.key FROM empi_blocking AS big WHERE big.key = ANY(%(soft)s::text[])"
            f" GROUP BY big.key HAVING count(*) > {int(self.max_block)}))"
            " AND b.patient_id <> ALL(%(exclude)s::text[])) AS ids"
            " CROSS JOIN LATERAL (SELECT r.rid, r.version, r.last_updated, r.data"
            " FROM resources AS r WHERE r.rtype = 'Patient' AND r.rid = ids.patient_id"
            " AND r.deleted = false LIMIT 1) AS r"
            f" LIMIT {int(self.max_candidates)}"
        )

    def _candidate_rows(
        self,
        conn: Connection,
        keys: Collection[str],
        exclude: Collection[str],
        lock_ids: Collection[int] = (),
    ) -> list[tuple[str, int, int, bytes]]:
        """(id, version, lastUpdated, data) of the candidates: one round trip, which first
        takes the advisory locks ``lock_ids`` on PostgreSQL."""
        params: dict[str, list[Any]] = {
            "keys": sorted(keys),
            "soft": sorted(k for k in keys if not k.startswith(IDENTIFIER_KINDS)),
            "exclude": sorted(exclude),
            "lock_ids": list(lock_ids),
        }
        queries: list[_Query] = [(self._rows_stmt, self._pg_rows)]
        if lock_ids and is_postgres(conn):
            queries.insert(0, (None, _PG_LOCK))
        found = _fetch(conn, queries, params)[-1]
        rows = [
            (str(rid), int(v), int(ts), bytes(data))
            for rid, v, ts, data in found
            if data is not None
        ]
        rows.sort()
        return rows

    def _links_and_counts(
        self, conn: Connection, ids: Collection[str], names: Iterable[str]
    ) -> tuple[dict[str, tuple[str, dict[str, Any]]], dict[str, int]]:
        """One round trip: source id -> (id, content) of the golden record linking it (the
        oldest one, if several), and the counts of name keys ``names``."""
        params = {"ids": sorted(ids), "names": sorted(set(names))}
        links, counts = _fetch(conn, [(_REFERRERS, _PG_REFERRERS), (_COUNTS, _PG_COUNTS)], params)
        goldens: dict[str, tuple[str, dict[str, Any]]] = {}
        parsed: dict[str, dict[str, Any]] = {}
        for target, rid, data in links:
            target, rid = str(target), str(rid)
            if data is None or target == rid or target in goldens:
                continue
            content = parsed.get(rid)
            if content is None:
                content = parsed[rid] = orjson.loads(data)
            if is_golden(content):
                goldens[target] = (rid, content)
        return goldens, {str(k): int(n) for k, n in counts}

    # -- matching ------------------------------------------------------------------------------
    def candidates(
        self,
        conn: Connection,
        f: PatientFeatures,
        *,
        exclude: Collection[str] = (),
        source_id: str | None = None,
        lock_ids: Collection[int] = (),
    ) -> list[Candidate]:
        """Every golden record with a source sharing a blocking key with ``f``, best first
        (grade, then score), each with its best source and its resolved grade. With
        ``source_id`` (the Patient being matched), golden records that recorded a no-match
        decision about it are left out before grading. ``lock_ids``: PostgreSQL advisory
        locks to take (in that order) before the candidates are read."""
        keys = blocking_keys(f)
        if not keys:
            return []
        rows = self._candidate_rows(conn, keys, exclude, lock_ids)
        if not rows:
            return []
        feats = {rid: self.features(rid, v, ts, data) for rid, v, ts, data in rows}
        name_keys = set(name_count_keys(f))
        for cf in feats.values():
            name_keys |= name_count_keys(cf)
        linked, counts = self._links_and_counts(conn, feats, name_keys)
        goldens = {rid: g for rid, (g, _) in linked.items()}
        freq = _Frequencies(counts, self.population(conn))
        best: dict[str, tuple[str, MatchScore]] = {}
        for rid, cf in feats.items():
            s = score(f, cf, self.match, freq)
            group = goldens.get(rid, rid)
            held = best.get(group)
            if held is None or _better(s, held[1]):
                best[group] = (rid, s)
        if source_id is not None:
            for g in _refused(best, linked, source_id):
                del best[g]
        grades = resolve({g: s for g, (_, s) in best.items()})
        out = [Candidate(goldens.get(rid), rid, s, grades[g]) for g, (rid, s) in best.items()]
        out.sort(key=lambda c: (GRADE_RANK[c.grade], -c.score.total, c.key))
        return out


def _refused(
    best: dict[str, tuple[str, MatchScore]],
    linked: dict[str, tuple[str, dict[str, Any]]],
    source_id: str,
) -> set[str]:
    """The golden records (keys of ``best``) that recorded a no-match decision about
    ``source_id``."""
    out: set[str] = set()
    for g, (rid, s) in best.items():
        got = linked.get(rid)
        if (
            got is not None
            and got[0] == g
            and s.grade != "certainly-not"
            and source_id in no_match_ids(got[1])
        ):
            out.add(g)
    return out


def _better(a: MatchScore, b: MatchScore) -> bool:
    return (GRADE_RANK[a.grade], -a.total) < (GRADE_RANK[b.grade], -b.total)
