"""The audit's cost on one connection's reads, servers side by side (issue 5, the p99 at light
load): a finer instrument than ``bench_audit.py``'s latency phase, for comparing settings.

    .venv/bin/python bench/bench_audit_side.py [--rounds 10] [--seconds 8] [--connections 1]
    .venv/bin/python bench/bench_audit_side.py --variants \\
        'off:EHR_SECURITY_AUDIT=0|on:|old:EHR_SECURITY_AUDIT_SHIPPER_YIELD=0;EHR_SECURITY_AUDIT_FLUSH_MS=1000'

How: N Patients with one Observation each are loaded once into a scratch PostgreSQL database;
each *variant* (``NAME:VAR=VALUE;…``, the environment of its server on top of the audit as
``ehr serve`` runs it, AuditEvents deferred) gets a copy of it and a server (``ehr serve
--workers 2``, with its shipper). All servers run for the whole bench; wrk drives one at a
time for ``--seconds`` (reads by id, ``bench_audit.py``'s), then 1 s idle, the order reversed
every round. Printed: each slice, then per variant the medians of reads/s, p50 and p99, and
their ratios to the first variant's. Server, load generator and database share the machine;
the first variant's p99 is the machine's own noise floor.
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
from bench.bench_audit import backend_token, load, server, server_env, wrk  # noqa: E402

DEFAULT = "off:EHR_SECURITY_AUDIT=0|on:"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--variants", default=DEFAULT, help="NAME:VAR=VALUE;…|NAME:…")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--connections", type=int, default=1)
    ap.add_argument("--patients", type=int, default=5000)
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
        bases: dict[str, tuple[str, str]] = {}
        for name, extra in variants:
            url = fresh_pg_database(f"ehr_bench_side_{name}", template=template)
            env = server_env({"EHR_SECURITY_AUDIT_MATERIALIZE": "never", **extra}, pool_size=6)
            base = stack.enter_context(server(url, env, 2, free_port()))
            bases[name] = (base, backend_token(url, base, "system/*.rs"))
            wrk(base, bases[name][1], args.patients, 3, args.connections)  # (warm)
        for r in range(args.rounds):
            for name, _ in variants if r % 2 == 0 else variants[::-1]:
                base, token = bases[name]
                got = wrk(base, token, args.patients, args.seconds, args.connections)
                time.sleep(1.0)
                slices[name].append(got)
                print(f"  round {r + 1:2} {name:<8} {got['rps']:6.0f} reads/s  p50 "
                      f"{got['p50_ms']:.3f} ms  p99 {got['p99_ms']:.3f} ms", flush=True)  # fmt: skip
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


if __name__ == "__main__":
    main()
