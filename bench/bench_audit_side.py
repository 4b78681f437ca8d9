"""The audit's cost on reads, servers side by side (issue 5): a finer instrument than
``bench_audit.py`` for comparing settings: the p99 at light load, and at full load where the
CPU goes.

    .venv/bin/python bench/bench_audit_side.py [--rounds 10] [--seconds 8] [--connections 1]
    .venv/bin/python bench/bench_audit_side.py --variants \\
        'off:EHR_SECURITY_AUDIT=0|on:|old:EHR_SECURITY_AUDIT_SHIPPER_YIELD=0;EHR_SECURITY_AUDIT_FLUSH_MS=1000'
    .venv/bin/python bench/bench_audit_side.py --connections 16 --rounds 40 --seconds 2 \\
        --variants 'off:EHR_SECURITY_AUDIT=0|on:|fs200:EHR_SECURITY_AUDIT_FSYNC_MS=200'
    git worktree add /tmp/before <commit>    # that commit's code beside this one's:
    .venv/bin/python bench/bench_audit_side.py --connections 16 --rounds 40 --seconds 2 \\
        --variants 'off:EHR_SECURITY_AUDIT=0|before:EHR_BENCH_CHECKOUT=/tmp/before|on:'

How: N Patients with one Observation each are loaded once into a scratch PostgreSQL database;
each *variant* (``NAME:VAR=VALUE;…``, the environment of its server on top of the audit as
``ehr serve`` runs it, AuditEvents deferred) gets a copy of it and a server (``ehr serve
--workers 2``, with its shipper). All servers run for the whole bench; wrk drives one at a
time for ``--seconds`` (reads by id, ``bench_audit.py``'s), then ``--gap`` idle, the order
reversed every round. Printed: each slice, then per variant the medians of reads/s, p50 and
p99, and their ratios to the first variant's; and the CPU per read of the variant's processes
over the slice and its gap, by role (the workers, the audit shipper, the database backends),
with the mean of the per-round paired ratios of the total and its 95 % interval. Server, load
generator and database share the machine; the first variant's p99 is the machine's own noise
floor.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import free_port, fresh_pg_database, machine  # noqa: E402
from bench.bench_audit import (  # noqa: E402
    SERVER_PID,
    CpuMeter,
    backend_token,
    load,
    mean_interval,
    server,
    server_env,
    wrk,
)

DEFAULT = "off:EHR_SECURITY_AUDIT=0|on:"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--variants", default=DEFAULT, help="NAME:VAR=VALUE;…|NAME:…")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--connections", type=int, default=1)
    ap.add_argument("--patients", type=int, default=5000)
    ap.add_argument("--gap", type=float, default=1.0, help="idle seconds after a slice")
    ap.add_argument("--pool", type=int, default=6, help="each worker's database connections")
    args = ap.parse_args()
    variants: list[tuple[str, dict[str, str]]] = []
    for spec in args.variants.split("|"):
        name, _, env = spec.partition(":")
        variants.append((name, dict(kv.split("=", 1) for kv in env.split(";") if kv)))
    print(machine(), flush=True)
    template = fresh_pg_database("ehr_bench_side")
    load(template, args.patients)
    slices: dict[str, list[dict[str, float]]] = {name: [] for name, _ in variants}
    with ExitStack() as stack:
        bases: dict[str, tuple[str, str, str]] = {}
        for name, extra in variants:
            url = fresh_pg_database(f"ehr_bench_side_{name}", template=template)
            env = server_env(
                {"EHR_SECURITY_AUDIT_MATERIALIZE": "never", **extra}, pool_size=args.pool
            )
            base = stack.enter_context(server(url, env, 2, free_port()))
            bases[name] = (base, backend_token(url, base, "system/*.rs"), url)
            wrk(base, bases[name][1], args.patients, 3, args.connections)  # (warm)
        for r in range(args.rounds):
            for name, _ in variants if r % 2 == 0 else variants[::-1]:
                base, token, url = bases[name]
                meter = CpuMeter(SERVER_PID[base], url)
                meter.begin()
                got = wrk(base, token, args.patients, args.seconds, args.connections)
                time.sleep(args.gap)
                meter.end()
                got.update(meter.per_read(got["requests"]))
                slices[name].append(got)
                print(f"  round {r + 1:2} {name:<8} {got['rps']:6.0f} reads/s  p50 "
                      f"{got['p50_ms']:.3f} ms  p99 {got['p99_ms']:.3f} ms  cpu "
                      f"{got['cpu_us_per_read']:5.0f} us/read (workers {got['workers_us']:.0f}, "
                      f"shipper {got['shipper_us']:.1f}, db {got['db_us']:.0f})", flush=True)  # fmt: skip
    print(f"\n| variant, c{args.connections}, medians of {args.rounds} slices of {args.seconds} s "
          "| reads/s | p50 | ratio | p99 | ratio |\n|---|---|---|---|---|---|")  # fmt: skip
    ref = variants[0][0]

    def med(name: str, key: str) -> float:
        return statistics.median(s[key] for s in slices[name])

    for name, _ in variants:
        print(f"| {name} | {med(name, 'rps'):.0f} | {med(name, 'p50_ms'):.3f} ms | "
              f"{med(ref, 'p50_ms') / med(name, 'p50_ms'):.3f} | {med(name, 'p99_ms'):.3f} ms | "
              f"{med(ref, 'p99_ms') / med(name, 'p99_ms'):.3f} |")  # fmt: skip
    print(f"ratios are {ref}'s median over the variant's (1.000: no cost)")
    print("\n| variant | CPU per read | workers | shipper | db | total's paired ratio, mean "
          "(95 % CI) |\n|---|---|---|---|---|---|")  # fmt: skip
    for name, _ in variants:
        paired = [a["cpu_us_per_read"] / b["cpu_us_per_read"]
                  for a, b in zip(slices[ref], slices[name], strict=True)]  # fmt: skip
        mean, lo, hi = mean_interval(paired)
        print(f"| {name} | {med(name, 'cpu_us_per_read'):.0f} us | {med(name, 'workers_us'):.0f} | "
              f"{med(name, 'shipper_us'):.1f} | {med(name, 'db_us'):.0f} | {mean:.3f} "
              f"({lo:.3f}-{hi:.3f}) |")  # fmt: skip
    print(
        f"CPU per read: medians, us, of the servers' processes and database backends over each "
        f"slice and its gap; the ratio is {ref}'s over the variant's, per round"
    )


if __name__ == "__main__":
    main()
