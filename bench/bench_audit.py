"""Audit overhead on reads (issue 5: "audit writes never slow a read by more than 10%").

    .venv/bin/python bench/bench_audit.py [--rounds 10] [--seconds 5] [--patients 5000]
    .venv/bin/python bench/bench_audit.py --calibrate        # two identical audit-off servers
    .venv/bin/python bench/bench_audit.py --modes off,eager  # AuditEvents stored at once
    .venv/bin/python bench/bench_audit.py --modes off,x --mode x=EHR_SECURITY_AUDIT_BATCH=5000
    .venv/bin/python bench/bench_audit.py --reads search     # a search instead of reads by id

How: one server per mode (``ehr serve --workers 2``, each on its own scratch PostgreSQL
database ``ehr_bench_audit_<mode>`` loaded alike with N Patients and one Observation each),
all running at once, and started ``--starts`` times (2: each start serves half of each
phase's rounds; a server's latency can depend on the run of its processes); wrk drives one of
them at a time, in short *slices* (``GET`` of a random Patient or Observation by id with a
``system/*.rs`` backend token: the cheapest read there is, so the audit's share is the
largest; ``--reads search``: a patient's Observations by ``subject``, a searchset of one).
Each round gives every server one slice, in the order A B C, then C B A, and so on, so a
server's slices are interleaved with the others' over the whole run. Why slices: on this
shared virtual machine the CPU a read costs drifts by ±10 % between minutes, more than the
effect sought; runs minutes apart (this bench's earlier form: one server started per run, off
and on alternated) compared drift as much as audit.

Modes: ``off`` (``EHR_SECURITY_AUDIT=0``); ``on`` (the audit as ``ehr serve`` runs it: the
workers spool, the shipper chains), with the AuditEvent resources deferred until after the run
(by default a server stores them when idle; here the other servers' slices would be its idle
time); ``eager`` (AuditEvents stored as the records are chained: the full cost, all of it
inside the slices).

Two phases: *throughput* (``--concurrency`` 16 connections: the cores saturated; reads/s and
the CPU per read of the server processes, the shipper included, and of their database
backends, counted over the slice and the ``--gap`` after it, in which the shipper ships the
last records) and *latency* (``--light`` 1 connection: what one read takes when the machine
is not saturated; p50 and p99). One connection, not two: on a 2-core box two connections
already reach the reads per second of sixteen (measured, bench/RESULTS.md), so their p99 is
a saturated queue's. The figures are per-server medians and their ratios to the
first mode's (1.000: the audit costs nothing); for reads/s and CPU per read also the mean of
the per-round paired ratios with its 95 % interval, which says how precise the run was (on a
box drifting ±10 % between slices, 40 rounds of 2 s give an interval of about ±3 %: the
measure of record, ``--rounds 40 --seconds 2 --gap 1 --latency-rounds 16``).

Every audited server is checked afterwards: the chain holds one event per request wrk made
(plus the warm-up and the token grant; at most ``--concurrency`` more per slice, in flight
when wrk stopped), and ``verify_audit_chain`` passes; then the deferred AuditEvents are stored
and their rate printed. Server, load generator and database share the machine.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import (  # noqa: E402
    backend_token,
    free_port,
    fresh_pg_database,
    machine,
    wait_serving,
)
from ehr.security import verify_audit_chain  # noqa: E402
from ehr.security.audit import WRITER_THREAD, AuditTrail  # noqa: E402
from ehr.store import Store  # noqa: E402

PATIENT = {
    "resourceType": "Patient",
    "active": True,
    "name": [{"use": "official", "text": "王秀英", "family": "王", "given": ["秀英"]}],
    "gender": "female",
    "birthDate": "1985-04-12",
}


def load(url: str, n: int) -> None:
    store = Store(url)
    store.migrate()
    t = time.perf_counter()
    for start in range(0, n, 1000):
        with store.write() as ctx:
            for i in range(start, min(n, start + 1000)):
                pid = f"bench-pat-{i}"
                ctx.update("Patient", pid, {**PATIENT, "id": pid})
                ctx.update(
                    "Observation",
                    f"bench-obs-{i}",
                    {"resourceType": "Observation", "id": f"bench-obs-{i}", "status": "final",
                     "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
                     "subject": {"reference": f"Patient/{pid}"},
                     "valueQuantity": {"value": 60 + i % 40, "unit": "kg",
                                       "system": "http://unitsofmeasure.org", "code": "kg"}},
                )  # fmt: skip
    print(f"loaded {n} patients + {n} observations in {time.perf_counter() - t:.1f}s")
    store.dispose()
    # fresh statistics now, so autovacuum's ANALYZE of the new tables does not run (and plans
    # do not change) in the middle of the first measured runs
    vacuum(url)


def vacuum(url: str) -> None:
    """``VACUUM ANALYZE`` the bench database (after loading, and after each round's deferred
    AuditEvents: their ~30,000 resources and index rows would otherwise be vacuumed by
    autovacuum in the middle of a later measured run, whichever it is)."""
    import psycopg

    with psycopg.connect(
        url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True
    ) as c:
        c.execute("VACUUM ANALYZE")


TICK = os.sysconf("SC_CLK_TCK")


def _cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process so far; 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def _children(ppid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == ppid:
                    out.append(int(d.name))
            except (OSError, IndexError, ValueError):
                continue
    return out


#: one connection for the backend lookups, made once: a connection per sample may find the
#: database's connections all taken by the servers under load
_ADMIN: dict[str, Any] = {}


def _backends(url: str) -> list[int]:
    import psycopg

    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    base, name = dsn.rsplit("/", 1)
    c = _ADMIN.get(base)
    if c is None or c.closed:
        c = _ADMIN[base] = psycopg.connect(base + "/postgres", autocommit=True)
    rows = c.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (name,)).fetchall()
    return [r[0] for r in rows]


def _writer_threads(pids: list[int]) -> dict[tuple[int, int], float]:
    """CPU seconds so far of the audit writer threads of ``pids`` (named ``WRITER_THREAD`` in
    the kernel by the trail), by (pid, tid)."""
    out = {}
    for pid in pids:
        try:
            tasks = list(Path(f"/proc/{pid}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                if (task / "comm").read_text().strip() != WRITER_THREAD:
                    continue
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            out[(pid, int(task.name))] = (int(fields[11]) + int(fields[12])) / TICK
    return out


class CpuMeter:
    """CPU seconds spent by the server's worker processes and the database's backends (the
    work the load costs, whatever else the machine is doing: a contention-proof measure); of
    the server's, how much its audit writer threads spent (the rest is the request path)."""

    def __init__(self, server_pid: int, url: str) -> None:
        self.server_pid, self.url = server_pid, url
        self.start: dict[int, float] = {}
        self.start_writer: dict[tuple[int, int], float] = {}

    def _sample(self) -> dict[int, float]:
        pids = [self.server_pid, *_children(self.server_pid), *_backends(self.url)]
        return {p: _cpu(p) for p in pids}

    def begin(self) -> None:
        self.start = self._sample()
        self.start_writer = _writer_threads([self.server_pid, *_children(self.server_pid)])

    def end(self) -> None:
        """Count the CPU spent since :meth:`begin` (:meth:`per_read` gives it by role)."""
        now = self._sample()
        server = {self.server_pid, *_children(self.server_pid)}
        writer = _writer_threads(sorted(server))
        self.server_s = sum(v - self.start.get(p, 0.0) for p, v in now.items() if p in server)
        self.db_s = sum(v - self.start.get(p, 0.0) for p, v in now.items() if p not in server)
        self.writer_s = sum(v - self.start_writer.get(k, 0.0) for k, v in writer.items())

    def per_read(self, reads: float) -> dict[str, float]:
        """What :meth:`end` counted, in µs per read: in all, the server's processes (of them the
        request path, ``workers_us``, and the audit writer, ``shipper_us``) and the database's."""
        us = 1e6 / reads
        return {"cpu_us_per_read": (self.server_s + self.db_s) * us,
                "server_us": self.server_s * us,
                "workers_us": (self.server_s - self.writer_s) * us,
                "shipper_us": self.writer_s * us, "db_us": self.db_s * us}  # fmt: skip


SERVER_PID: dict[str, int] = {}


def server_env(mode: dict[str, str], *, pool_size: int) -> dict[str, str]:
    """The environment of a bench server: its own data folder (and audit spool), a pool of
    ``pool_size`` connections, no limit on the audit backlog, and the ``mode``'s variables."""
    return {"EHR_DATA_DIR": tempfile.mkdtemp(prefix="bench-audit-"),
            "EHR_DB_POOL_SIZE": str(pool_size),
            "EHR_SECURITY_AUDIT_MAX_QUEUE": "10000000", **mode}  # fmt: skip


#: a variable of a bench server's environment naming the checkout it runs from (another
#: commit's, e.g. a ``git worktree``; with this one's virtualenv): two versions side by side
CHECKOUT = "EHR_BENCH_CHECKOUT"


@contextmanager
def server(url: str, env: dict[str, str], workers: int, port: int) -> Iterator[str]:
    full = {**os.environ, "EHR_DATABASE_URL": url, **env}
    root = Path(full.pop(CHECKOUT, ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "fhir_api.cli", "serve", "--host", "127.0.0.1", "--port",
         str(port), "--workers", str(workers), "--log-level", "warning", "--no-access-log",
         "--no-migrate"],
        env=full, cwd=root,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}/fhir"
    SERVER_PID[base] = proc.pid
    try:
        wait_serving(base, proc)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=60)


#: what the slices read (``--reads``): (its label, its wrk request code): by id (the cheapest
#: read, the audit's largest share), or a search (a patient's Observations, a searchset of one)
READS = {
    "id": ("reads by id (Patient, Observation)", """
  if math.random() < 0.5 then
    return wrk.format("GET", "/fhir/Patient/bench-pat-" .. i)
  end
  return wrk.format("GET", "/fhir/Observation/bench-obs-" .. i)"""),
    "search": ("Observation?subject=", """
  return wrk.format("GET", "/fhir/Observation?subject=Patient/bench-pat-" .. i)"""),
}  # fmt: skip


def wrk(
    base: str, token: str, n: int, seconds: int, connections: int, reads: str = "id"
) -> dict[str, float]:
    lua = f"""
math.randomseed(os.time())
wrk.headers["Authorization"] = "Bearer {token}"
request = function()
  local i = math.random(0, {n - 1}){READS[reads][1]}
end
"""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(lua)
    out = subprocess.run(
        ["wrk", "-t", str(min(2, connections)), "-c", str(connections), "-d", f"{seconds}s", "--latency", "-s", f.name,
         base],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    os.unlink(f.name)

    def ms(s: str) -> float:
        m = re.match(r"([\d.]+)(us|ms|s)", s)
        assert m, s
        return float(m[1]) * {"us": 1e-3, "ms": 1.0, "s": 1000.0}[m[2]]

    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1]),  # type: ignore[index]
        "requests": float(re.search(r"(\d+) requests in", out)[1]),  # type: ignore[index]
        "p50_ms": ms(re.search(r"^\s+50%\s+(\S+)", out, re.M)[1]),  # type: ignore[index]
        "p99_ms": ms(re.search(r"^\s+99%\s+(\S+)", out, re.M)[1]),  # type: ignore[index]
        "non_2xx": float(non2xx[1]) if non2xx else 0.0,
    }


def chain_events(url: str) -> int:
    from sqlalchemy import func, select

    from ehr.security.tables import audit_chain

    store = Store(url, pool_size=1)
    try:
        with store.read_conn() as conn:
            return int(
                conn.execute(select(func.coalesce(func.sum(audit_chain.c.events), 0))).scalar_one()
            )
    finally:
        store.dispose()


def catch_up(url: str) -> dict[str, float]:
    """Store the deferred AuditEvents and verify the chain; returns how many, how fast."""
    store = Store(url)
    trail = AuditTrail(store, materialize="never")
    lag = trail.lag()
    t = time.perf_counter()
    done = 0
    while True:
        n = trail.materialize(limit=5000)
        if not n:
            break
        done += n
    dt = time.perf_counter() - t
    trail.close()
    report = verify_audit_chain(store)
    store.dispose()
    vacuum(url)
    return {"lag_before": float(lag), "stored": float(done), "seconds": dt,
            "events_per_s": done / dt if dt else 0.0, "chain_ok": float(report.ok)}  # fmt: skip


#: the servers a run can compare (``--modes``); more with ``--mode NAME=VAR=VALUE[,…]``
MODES: dict[str, dict[str, str]] = {
    "off": {"EHR_SECURITY_AUDIT": "0"},
    "off2": {"EHR_SECURITY_AUDIT": "0"},  # (calibration: two identical servers)
    # AuditEvent resources deferred: stored after the run, out of the measured slices
    "on": {"EHR_SECURITY_AUDIT_MATERIALIZE": "never"},
    "eager": {"EHR_SECURITY_AUDIT_MATERIALIZE": "eager"},
}
WARM = 200


@dataclass
class Server:
    mode: str
    url: str
    base: str
    token: str
    audited: bool
    env: dict[str, str] = field(default_factory=dict)
    slices: list[dict[str, Any]] = field(default_factory=list)
    discarded: float = 0.0  # requests of the slices run again
    reruns: int = 0
    starts: int = 0  # (each start's warm-up reads are audited too)


def connections_per_worker(base: str) -> list[int]:
    """How many of the established connections to ``base``'s port each worker holds."""
    port = base.split(":")[2].split("/")[0]
    out = subprocess.run(
        ["ss", "-tnpH", "state", "established", f"( sport = :{port} )"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return sorted(collections.Counter(re.findall(r"pid=(\d+)", out)).values())


def balanced(split: list[int], connections: int, workers: int) -> bool:
    """Every worker holds its share of the connections, give or take an eighth (fewer
    connections than workers: none holds two)."""
    if connections < workers:
        return max(split, default=0) <= 1
    fair, slack = connections / workers, max(connections / 8, 0.5)
    return len(split) == workers and all(abs(n - fair) <= slack for n in split)


def measure(srv: Server, args: argparse.Namespace, connections: int, phase: str) -> None:
    """One slice: ``wrk`` on ``srv`` for ``--seconds``, then ``--gap`` seconds idle (the
    shipper ships the last records read, within a second); the CPU of the server, its shipper
    and its database backends is counted over both.

    The workers share one listening socket, and the first to wake takes every connection
    queued: wrk's connections, opened at once, can land 2/0 or 13/3 on two workers, halving a
    slice's throughput whatever the audit does. A slice whose connections were not shared
    evenly (looked at one second in) is run again, up to three times; the split is kept."""
    for attempt in range(4):
        meter = CpuMeter(SERVER_PID[srv.base], srv.url)
        meter.begin()
        result: dict[str, Any] = {}
        run = threading.Thread(
            target=lambda out=result: out.update(
                wrk(srv.base, srv.token, args.patients, args.seconds, connections, args.reads)
            )
        )
        run.start()
        time.sleep(1.0)
        split = connections_per_worker(srv.base)
        run.join()
        time.sleep(args.gap)
        meter.end()
        if balanced(split, connections, args.workers) or attempt == 3:
            break
        srv.discarded += result["requests"]  # (audited all the same)
        srv.reruns += 1
        print(f"  ({phase} {srv.mode}: connections {split}, again)", flush=True)
    r = result
    n = r["requests"]
    r.update(phase=phase, split=split, start=srv.starts, **meter.per_read(n))
    srv.slices.append(r)
    print(
        f"  {phase:<10} {srv.mode:<6} {r['rps']:7.0f} reads/s  p50 {r['p50_ms']:6.2f} ms  p99 "
        f"{r['p99_ms']:7.2f} ms  cpu {r['cpu_us_per_read']:5.0f} us/read (server "
        f"{r['server_us']:.0f}, of it the audit shipper {r['shipper_us']:.0f}; db "
        f"{r['db_us']:.0f}) {split}",
        flush=True,
    )


def _med(srv: Server, phase: str, key: str) -> float:
    xs = [s[key] for s in srv.slices if s["phase"] == phase]
    return statistics.median(xs) if xs else float("nan")


def _paired(a: Server, b: Server, phase: str, key: str) -> list[float]:
    """Per round: ``b``'s figure over ``a``'s (the two slices of a round ran back to back)."""
    xs = [s[key] for s in a.slices if s["phase"] == phase]
    ys = [s[key] for s in b.slices if s["phase"] == phase]
    return [round(y / x, 3) for x, y in zip(xs, ys, strict=True)]


def mean_interval(xs: list[float]) -> tuple[float, float, float]:
    """The mean of ``xs`` and its 95 % confidence interval (normal approximation: the per-round
    ratios of a run of 20 or more rounds)."""
    mean = statistics.fmean(xs)
    half = 1.96 * statistics.stdev(xs) / len(xs) ** 0.5 if len(xs) > 1 else float("nan")
    return mean, mean - half, mean + half


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=5000)
    ap.add_argument("--reads", choices=sorted(READS), default="id", help="what the slices read")
    ap.add_argument("--seconds", type=int, default=5, help="of one slice")
    ap.add_argument("--gap", type=float, default=2.0, help="idle seconds after a slice")
    ap.add_argument("--concurrency", type=int, default=16, help="of the throughput slices")
    ap.add_argument("--light", type=int, default=1, help="connections of the latency slices")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=10, help="throughput slices per server")
    ap.add_argument("--latency-rounds", type=int, default=6)
    ap.add_argument(
        "--starts", type=int, default=2, help="servers' runs, the rounds shared between them"
    )
    ap.add_argument(
        "--modes",
        default="off,on",
        help="the first is the baseline (two at most: PostgreSQL's 100 connections)",
    )
    ap.add_argument("--calibrate", action="store_true", help="same as --modes off,off2")
    ap.add_argument("--mode", action="append", default=[], help="NAME=VAR=VALUE[,VAR=VALUE]")
    args = ap.parse_args()
    for spec in args.mode:
        name, _, rest = spec.partition("=")
        MODES[name] = dict(kv.split("=", 1) for kv in rest.split(",") if kv)
    modes = ["off", "off2"] if args.calibrate else args.modes.split(",")
    print(machine(), flush=True)

    servers: list[Server] = []
    for mode in modes:
        url = fresh_pg_database(f"ehr_bench_audit_{mode}")
        load(url, args.patients)
        # (two servers' pools within max_connections)
        env = server_env(MODES[mode], pool_size=12)
        audited = MODES[mode].get("EHR_SECURITY_AUDIT", "1") != "0"
        servers.append(Server(mode, url, "", "", audited, env))
    # Why more than one start: on some boxes a server's latency depends on the run of its
    # processes (two identical audit-off servers started side by side: p50 at 1 connection
    # 0.51 against 0.60 ms, steady over the run; bench/RESULTS.md, session 10), so one run per
    # mode compares runs as much as modes. Each start serves an equal share of each phase's
    # rounds.
    runs = max(1, args.starts)
    for run in range(runs):
        with ExitStack() as stack:
            for srv in servers:
                srv.base = stack.enter_context(server(srv.url, srv.env, args.workers, free_port()))
                srv.token = backend_token(srv.url, srv.base, "system/*.rs")  # (its audience)
                srv.starts += 1
                with httpx.Client(headers={"Authorization": f"Bearer {srv.token}"}) as c:
                    for i in range(WARM):
                        got = c.get(f"{srv.base}/Patient/bench-pat-{i % args.patients}")
                        assert got.is_success
            for phase, rounds, conns in (
                ("throughput", args.rounds, args.concurrency),
                ("latency", args.latency_rounds, args.light),
            ):
                mine = range(rounds * run // runs, rounds * (run + 1) // runs)
                print(f"{phase}: rounds {mine.start + 1}-{mine.stop} of {rounds} "
                      f"(servers' run {run + 1} of {runs}), c{conns}", flush=True)  # fmt: skip
                for r in mine:  # ABBA…: a server's slices alternate first and last
                    for srv in servers if r % 2 == 0 else servers[::-1]:
                        measure(srv, args, conns, phase)
    # the servers stopped (SIGTERM: the shipper ships what was spooled): nothing lost?
    lost = 0
    for srv in servers:
        if not srv.audited:
            continue
        reads = sum(s["requests"] for s in srv.slices) + srv.discarded
        # (each start: its warm-up reads and its token grant)
        surplus = chain_events(srv.url) - (reads + (WARM + 1) * srv.starts)
        # at most ``connections`` requests were in flight when each slice's wrk stopped
        ok = 0 <= surplus <= args.concurrency * (len(srv.slices) + srv.reruns)
        lost += not ok
        print(f"{srv.mode}: {reads:.0f} reads counted, chain surplus {surplus:.0f}: "
              f"{'complete' if ok else 'EVENTS LOST'}")  # fmt: skip
    deferred = {s.mode: catch_up(s.url) for s in servers if s.audited}
    for mode, d in deferred.items():
        print(f"{mode}: {d['stored']:.0f} deferred AuditEvents stored at "
              f"{d['events_per_s']:.0f}/s; chain verified: {bool(d['chain_ok'])}")  # fmt: skip

    ref = servers[0]
    print(
        f"\n| {args.workers} workers, {READS[args.reads][0]} | reads/s c"
        f"{args.concurrency} | ratio | CPU per read | ratio | p50 c{args.light} | ratio | "
        f"p99 c{args.light} | ratio |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    summary: dict[str, dict[str, float]] = {}
    for srv in servers:
        rps, cpu = _med(srv, "throughput", "rps"), _med(srv, "throughput", "cpu_us_per_read")
        p50, p99 = _med(srv, "latency", "p50_ms"), _med(srv, "latency", "p99_ms")
        ratios = {
            "reads": rps / _med(ref, "throughput", "rps"),
            "cpu": _med(ref, "throughput", "cpu_us_per_read") / cpu,
            "p50": _med(ref, "latency", "p50_ms") / p50,
            "p99": _med(ref, "latency", "p99_ms") / p99,
        }
        summary[srv.mode] = ratios
        print(f"| {srv.mode} | {rps:.0f} | {ratios['reads']:.3f} | {cpu:.0f} us | "
              f"{ratios['cpu']:.3f} | {p50:.2f} ms | {ratios['p50']:.3f} | {p99:.2f} ms | "
              f"{ratios['p99']:.3f} |")  # fmt: skip
    for srv in servers:
        by_start = {
            key: [
                round(statistics.median(xs), 3)
                for k in range(1, srv.starts + 1)
                if (xs := [s[key] for s in srv.slices if s["start"] == k and s["phase"] == ph])
            ]
            for key, ph in (("rps", "throughput"), ("p50_ms", "latency"), ("p99_ms", "latency"))
        }
        print(f"{srv.mode} by start: reads/s {by_start['rps']}, p50 {by_start['p50_ms']}, "
              f"p99 {by_start['p99_ms']}")  # fmt: skip
    for srv in servers[1:]:
        rps_r = _paired(ref, srv, "throughput", "rps")
        cpu_r = [round(1 / x, 3) for x in _paired(ref, srv, "throughput", "cpu_us_per_read")]
        print(f"{srv.mode}/{ref.mode} per round: reads/s {rps_r}; CPU per read (inverse) {cpu_r}")
        # the box's drift between slices is the noise: the mean of the per-round ratios and
        # its interval say how precise a run's answer is (more rounds: a narrower interval)
        for label, xs in (("reads/s", rps_r), ("CPU per read", cpu_r)):
            mean, lo, hi = mean_interval(xs)
            print(f"{srv.mode}/{ref.mode} {label}, mean of {len(xs)} paired rounds: {mean:.3f} "
                  f"(95 % CI {lo:.3f}-{hi:.3f})")  # fmt: skip
    print(f"ratios are {ref.mode}'s median over the server's (1.000: no cost); runs that lost "
          f"an event: {lost}")  # fmt: skip
    out = ROOT / "bench" / "out"
    out.mkdir(exist_ok=True)
    result = {"machine": machine(), "args": vars(args), "ratios": summary,
              "deferred": deferred, "lost": lost,
              "slices": {s.mode: s.slices for s in servers}}  # fmt: skip
    (out / "bench_audit.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
