"""What matching on every Patient write (the EMPI, issue 9) adds to ingest, in-process.

    .venv/bin/python -m bench.bench_empi_ingest [--bundles 40] [--encounters 8]
                                                [--citizens 2000] [--backends sqlite,postgresql]

How the figures are obtained: per backend, two fresh, migrated databases side by side, one with
the EMPI off and one with it on (SQLite files in a temporary directory, or the PostgreSQL
databases ``ehr_bench_empi_ingest_off``/``_on`` on ``EHR_BENCH_PG_ADMIN``). Every item is
written to the one, then to the other (interleaved, so a busy shared box slows both alike), one
thread, one transaction per item, timed with ``perf_counter_ns``.

1. **Registrations.** ``ehr.empi.synth.generate(--citizens, seed=7)``: one primary record per
   citizen (the first 50 untimed), then ~10 % duplicates at other hospitals (typos, pinyin,
   swapped names …) and 2 % newcomers (twins, namesakes); each is one ``Store.create``. With the EMPI on, each write also
   extracts features, locks and reads the blocking rows, scores the candidates and writes the
   golden record (or a link on one), the blocking rows, a review Task when in doubt, and an
   AuditEvent per automatic link. Reported: ms per registration p50/p95 (primaries; duplicates
   and newcomers) and the mean added time.
2. **Transaction Bundles.** ``bench.bench_ingest.patient_bundle(i, --encounters)``: the
   Synthea-like Bundles of the ingest benchmark (1 Patient and ~106 clinical resources), each
   processed by ``ehr.transaction.process_bundle`` in-process, after the reference Bundle
   (practitioners, hospitals) and one warm-up Bundle. Reported: resources/s (sum of the Bundle
   times) with the EMPI off and on, and the ratio. (bench/bench_ingest.py measures the
   concurrent and HTTP figures; this is the like-for-like difference the EMPI makes.)

**Statistics.** Both databases are ``ANALYZE``d once after the first 50 registrations and after
the warm-up Bundle. Without that, on a brand-new PostgreSQL database the first few hundred
registrations take 0.1–2 s each (measured: p95 1.5–2.2 s over registrations 0–400, then
185–217 ms; with one ANALYZE after 30 registrations, p95 228 ms then 71–75 ms): without
statistics the candidate query's golden-record lookup was planned as a sequential scan of the
reference index (EXPLAIN), until autovacuum's first analyze. That is a fresh-database effect,
not the steady state this benchmark reports.

Validation, indexing and the search-parameter index run as in production. The machine's load
average is printed with each figure: the box may be shared.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import text

from bench._common import fresh_pg_database, machine
from bench.bench_ingest import patient_bundle, reference_bundle
from ehr.empi.features import DEFAULT_IDENTITY
from ehr.empi.service import install
from ehr.empi.synth import SYNTH_KEY, generate
from ehr.store import Store
from ehr.transaction import process_bundle

DB = "ehr_bench_empi_ingest"


@contextmanager
def fresh_stores(backend: str) -> Iterator[tuple[Store, Store]]:
    """(EMPI off, EMPI on): two fresh databases."""
    with tempfile.TemporaryDirectory() as tmp:
        stores = []
        for suffix in ("off", "on"):
            url = (
                fresh_pg_database(f"{DB}_{suffix}")
                if backend == "postgresql"
                else f"sqlite:///{Path(tmp) / f'empi-ingest-{suffix}.sqlite'}"
            )
            store = Store(url, pool_size=2)
            store.migrate()
            stores.append(store)
        install(stores[1], identity=replace(DEFAULT_IDENTITY, hmac_key=SYNTH_KEY))
        try:
            yield stores[0], stores[1]
        finally:
            for store in stores:
                store.dispose()


def analyze(*stores: Store) -> None:
    """Give the planner statistics (see the module docstring)."""
    for store in stores:
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("ANALYZE"))


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


def load() -> str:
    return f"{os.getloadavg()[0]:.1f}"


def interleaved(
    items: list[Any], off: Callable[[Any], object], on: Callable[[Any], object]
) -> tuple[list[float], list[float]]:
    """ms per item, EMPI off and on; each item goes to both, in alternating order."""
    t_off: list[float] = []
    t_on: list[float] = []
    for i, item in enumerate(items):
        pair = [(off, t_off), (on, t_on)]
        for fn, out in pair if i % 2 == 0 else pair[::-1]:
            arg = copy.deepcopy(item)  # a write may change what it is given
            t0 = time.perf_counter_ns()
            fn(arg)
            out.append((time.perf_counter_ns() - t0) / 1e6)
    return t_off, t_on


def _line(xs: list[float]) -> str:
    return f"{len(xs)} p50 {statistics.median(xs):.1f} / p95 {pct(xs, 0.95):.1f} ms"


def registrations(backend: str, citizens: int) -> None:
    pop = generate(citizens, seed=7)
    primaries = [r.patient for r in pop.records if r.kind == "primary"]
    later = [r.patient for r in pop.records if r.kind != "primary"]
    with fresh_stores(backend) as (s_off, s_on):
        for p in primaries[:50]:  # not timed: then statistics
            s_off.create(copy.deepcopy(p))
            s_on.create(copy.deepcopy(p))
        analyze(s_off, s_on)
        a_off, a_on = interleaved(primaries[50:], s_off.create, s_on.create)
        b_off, b_on = interleaved(later, s_off.create, s_on.create)
    for label, a, b in (("off", a_off, b_off), ("on ", a_on, b_on)):
        print(f"  registrations, EMPI {label}: primaries {_line(a)}; duplicates and newcomers "
              f"{_line(b)}; mean {statistics.fmean(a + b):.1f} ms (load {load()})", flush=True)  # fmt: skip
    off, on = statistics.fmean(a_off + b_off), statistics.fmean(a_on + b_on)
    print(f"  -> the EMPI adds {on - off:.1f} ms per Patient write ({on / off:.1f}x)", flush=True)


def bundles(backend: str, n: int, encounters: int) -> None:
    payloads = [patient_bundle(i, encounters) for i in range(n)]
    per_bundle = sum(len(b["entry"]) for b in payloads) / n
    with fresh_stores(backend) as (s_off, s_on):
        for store in (s_off, s_on):
            process_bundle(store, reference_bundle())
            process_bundle(store, patient_bundle(10_000_000, encounters))  # warm-up
        analyze(s_off, s_on)
        t_off, t_on = interleaved(
            payloads, partial(process_bundle, s_off), partial(process_bundle, s_on)
        )
    rate = {}
    for label, ms in (("off", t_off), ("on ", t_on)):
        rate[label] = per_bundle * len(ms) / (sum(ms) / 1000)
        print(f"  Bundles, EMPI {label}: {n} x {per_bundle:.0f} entries, {rate[label]:,.0f} "
              f"resources/s; per Bundle p50 {statistics.median(ms):.0f} / p95 "
              f"{pct(ms, 0.95):.0f} ms (load {load()})", flush=True)  # fmt: skip
    added = statistics.fmean(t_on) - statistics.fmean(t_off)
    print(f"  -> Bundle ingest with the EMPI: {rate['on '] / rate['off']:.1%} of the rate "
          f"without ({added:+.0f} ms per Bundle)", flush=True)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundles", type=int, default=40)
    ap.add_argument("--encounters", type=int, default=8)
    ap.add_argument("--citizens", type=int, default=2000)
    ap.add_argument("--backends", default="sqlite,postgresql")
    args = ap.parse_args(argv)
    print(machine())
    for backend in args.backends.split(","):
        print(f"{backend}:", flush=True)
        registrations(backend, args.citizens)
        bundles(backend, args.bundles, args.encounters)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
