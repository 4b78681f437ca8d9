"""Audit cost, side by side: two servers with different audit settings loaded at the same time.

    .venv/bin/python bench/bench_audit_ab.py off on [--rounds 4] [--patients 5000] [--seconds 8]
    .venv/bin/python bench/bench_audit_ab.py off thread --mode thread=EHR_SECURITY_AUDIT_SHIPPER=thread

Why: ``bench_audit.py`` alternates audit off and on, one run after the other; on a shared
virtual machine the CPU a read costs drifts by ±10 % between minutes, more than the effect
sought. Here both servers (``ehr serve --workers 2``, each on its own database loaded alike)
run at once under the same load (``wrk -t2 -c16`` each), so drift hits both alike; each round
starts them in the other order. The figure is the CPU per read (server processes, the audit
shipper included, and their PostgreSQL backends, divided by the reads served) of each, and
the ratio A/B per round and of the medians. Reads/s are printed too, but with two servers on
two cores they say how the scheduler shared the cores, not what a read costs.

Modes: ``off`` (``EHR_SECURITY_AUDIT=0``), ``on`` (the default settings); more as
``--mode NAME=VAR=VALUE[,VAR=VALUE…]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
from contextlib import ExitStack
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import backend_token, free_port, fresh_pg_database, machine  # noqa: E402
from bench.bench_audit import SERVER_PID, CpuMeter, catch_up, load, server, wrk  # noqa: E402

MODES: dict[str, dict[str, str]] = {"off": {"EHR_SECURITY_AUDIT": "0"}, "on": {}}


def _drive(
    out: dict[str, dict[str, float]], mode: str, base: str, token: str, args: argparse.Namespace
) -> None:
    out[mode] = wrk(base, token, args.patients, args.seconds, 16)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--patients", type=int, default=5000)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--mode", action="append", default=[], help="NAME=VAR=VALUE[,VAR=VALUE]")
    args = ap.parse_args()
    for spec in args.mode:
        name, _, rest = spec.partition("=")
        MODES[name] = dict(kv.split("=", 1) for kv in rest.split(",") if kv)
    print(machine())
    urls = {}
    for tag in ("a", "b"):
        urls[tag] = fresh_pg_database(f"ehr_bench_audit_{tag}")
        load(urls[tag], args.patients)
    results: dict[str, list[tuple[float, float, float, float]]] = {args.a: [], args.b: []}
    for r in range(args.rounds):
        order = [("a", args.a), ("b", args.b)]
        with ExitStack() as stack:
            bases: dict[str, tuple[str, str, str]] = {}
            for tag, mode in order if r % 2 == 0 else order[::-1]:
                env = {"EHR_DATA_DIR": tempfile.mkdtemp(prefix="bench-audit-ab-"),
                       "EHR_SECURITY_AUDIT_MAX_QUEUE": "10000000", **MODES[mode]}  # fmt: skip
                base = stack.enter_context(server(urls[tag], env, 2, free_port()))
                token = backend_token(urls[tag], base, "system/*.rs")
                with httpx.Client(headers={"Authorization": f"Bearer {token}"}) as c:
                    for i in range(200):
                        c.get(f"{base}/Patient/bench-pat-{i % args.patients}")
                bases[mode] = (base, tag, token)
            meters = {m: CpuMeter(SERVER_PID[b], urls[t]) for m, (b, t, _) in bases.items()}
            for meter in meters.values():
                meter.begin()
            out: dict[str, dict[str, float]] = {}
            threads = [
                threading.Thread(target=_drive, args=(out, m, bases[m][0], bases[m][2], args))
                for m in bases
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            line = []
            for mode in (args.a, args.b):
                cpu, n = meters[mode].end(), out[mode]["requests"]
                m = meters[mode]
                row = (out[mode]["rps"], cpu / n * 1e6, m.writer_s / n * 1e6, m.db_s / n * 1e6)
                results[mode].append(row)
                line.append(f"{mode}: {row[0]:.0f}/s, CPU {row[1]:.0f} us/read (audit "
                            f"writer/shipper {row[2]:.0f}, db {row[3]:.0f})")  # fmt: skip
            print(f"round {r + 1}: " + " | ".join(line), flush=True)
        for tag in ("a", "b"):
            catch_up(urls[tag])
    a_cpu = [x[1] for x in results[args.a]]
    b_cpu = [x[1] for x in results[args.b]]
    per_round = [round(x / y, 3) for x, y in zip(a_cpu, b_cpu, strict=True)]
    ratio = statistics.median(a_cpu) / statistics.median(b_cpu)
    print(f"median CPU per read: {args.a} {statistics.median(a_cpu):.0f} us, {args.b} "
          f"{statistics.median(b_cpu):.0f} us; ratio {args.a}/{args.b} {ratio:.3f}; per round "
          f"{per_round}")  # fmt: skip


if __name__ == "__main__":
    main()
