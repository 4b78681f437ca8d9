"""Audit overhead on reads (issue 5: "audit writes never slow a read by more than 10%").

    .venv/bin/python bench/bench_audit.py [--patients 10000] [--seconds 10] [--rounds 2]

How: loads N Patients and one Observation each into a scratch PostgreSQL database
``ehr_bench_audit``; starts the secured API (``fhir_api.security:create_secure_app``, 2 uvicorn
workers) and drives it with wrk (16 keep-alive connections, 2 threads): ``GET`` of a random
Patient or Observation by id with a ``system/*.rs`` backend token (the cheapest read there is,
so the audit's share is the largest). The same load runs with the audit trail off
(``EHR_SECURITY_AUDIT=0``) and on, alternating for ``--rounds``; the ratio of read throughput
on/off is the figure. With the audit on it also runs once with ``EHR_SECURITY_AUDIT_MATERIALIZE=
eager`` (AuditEvent resources written at once rather than when the server is idle), to show the
full cost, and measures afterwards how fast the deferred AuditEvents are stored (events/s).

Every run checks that nothing was lost: after the server stops (SIGTERM: it writes what is
queued), the chain holds exactly one event per request wrk made (plus the warm-up and the
token grant; at most ``--concurrency`` more, in flight when wrk stopped), and
``verify_audit_chain`` passes. Server, load generator and database share the machine.

CPU per read: of the server processes (all their threads) and of the database's backends; of
the server's, the audit writer threads' share is printed apart (the trail names its thread in
the kernel), so the writer's work can be told from the request path's. On a shared box CPU per
read still rises with the load of other work (caches, SMT): compare only runs made back to
back, and look at several.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
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


def _backends(url: str) -> list[int]:
    import psycopg

    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    name = dsn.rsplit("/", 1)[1]
    with psycopg.connect(dsn.rsplit("/", 1)[0] + "/postgres", autocommit=True) as c:
        return [
            r[0]
            for r in c.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s", (name,)
            ).fetchall()
        ]


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

    def end(self) -> float:
        now = self._sample()
        server = {self.server_pid, *_children(self.server_pid)}
        writer = _writer_threads(sorted(server))
        self.server_s = sum(v - self.start.get(p, 0.0) for p, v in now.items() if p in server)
        self.db_s = sum(v - self.start.get(p, 0.0) for p, v in now.items() if p not in server)
        self.writer_s = sum(v - self.start_writer.get(k, 0.0) for k, v in writer.items())
        return self.server_s + self.db_s


SERVER_PID: dict[str, int] = {}


@contextmanager
def server(url: str, env: dict[str, str], workers: int, port: int) -> Iterator[str]:
    full = {**os.environ, "EHR_DATABASE_URL": url, **env}
    proc = subprocess.Popen(
        [sys.executable, "-m", "fhir_api.cli", "serve", "--host", "127.0.0.1", "--port",
         str(port), "--workers", str(workers), "--log-level", "warning", "--no-access-log",
         "--no-migrate"],
        env=full, cwd=ROOT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}/fhir"
    SERVER_PID[base] = proc.pid
    try:
        wait_serving(base, proc)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def wrk(base: str, token: str, n: int, seconds: int, connections: int) -> dict[str, float]:
    lua = f"""
math.randomseed(os.time())
wrk.headers["Authorization"] = "Bearer {token}"
request = function()
  local i = math.random(0, {n - 1})
  if math.random() < 0.5 then
    return wrk.format("GET", "/fhir/Patient/bench-pat-" .. i)
  end
  return wrk.format("GET", "/fhir/Observation/bench-obs-" .. i)
end
"""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(lua)
    out = subprocess.run(
        ["wrk", "-t", "2", "-c", str(connections), "-d", f"{seconds}s", "--latency", "-s", f.name,
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


def chain_rows(url: str) -> int:
    from sqlalchemy import func, select

    from ehr.security.tables import audit_chain

    store = Store(url, pool_size=1)
    try:
        with store.read_conn() as conn:
            return int(conn.execute(select(func.count()).select_from(audit_chain)).scalar_one())
    finally:
        store.dispose()


#: extra settings of the diagnostic modes (``--modes``): where the audit's cost goes
DIAGNOSTIC = {
    "queue-only": {"EHR_SECURITY_AUDIT_FLUSH_MS": "3600000", "EHR_SECURITY_AUDIT_SPOOL": "0"},
    "spool-only": {"EHR_SECURITY_AUDIT_FLUSH_MS": "3600000"},
    "no-spool": {"EHR_SECURITY_AUDIT_SPOOL": "0"},
}


def run(
    url: str, args: argparse.Namespace, token_cache: dict[str, str], audit: str
) -> dict[str, Any]:
    """One wrk run; ``audit``: off | idle | eager, or a diagnostic mode (:data:`DIAGNOSTIC`)."""
    port = free_port()
    data_dir = tempfile.mkdtemp(prefix="bench-audit-")
    env = {"EHR_DATA_DIR": data_dir, "EHR_SECURITY_AUDIT": "0" if audit == "off" else "1",
           "EHR_SECURITY_AUDIT_MATERIALIZE": audit if audit in ("idle", "eager") else "idle",
           "EHR_SECURITY_AUDIT_MAX_QUEUE": "10000000", **DIAGNOSTIC.get(audit, {})}  # fmt: skip
    before = chain_rows(url)  # (the previous server wrote all its records when it stopped)
    with server(url, env, args.workers, port) as base:
        grants = 0 if base in token_cache else 1  # a token grant is an audited event too
        token = token_cache.get(base) or backend_token(url, base, "system/*.rs")
        token_cache[base] = token
        warm = 200
        with httpx.Client(headers={"Authorization": f"Bearer {token}"}) as c:
            for i in range(warm):
                assert c.get(f"{base}/Patient/bench-pat-{i % args.patients}").status_code == 200
        meter = CpuMeter(SERVER_PID[base], url)
        meter.begin()
        result = wrk(base, token, args.patients, args.seconds, args.concurrency)
        cpu = meter.end()
    after = chain_rows(url)
    # requests wrk counted, plus those in flight when it stopped (still served and audited)
    result["cpu_us_per_read"] = cpu / result["requests"] * 1e6
    result["server_cpu_us_per_read"] = meter.server_s / result["requests"] * 1e6
    result["db_cpu_us_per_read"] = meter.db_s / result["requests"] * 1e6
    result["writer_cpu_us_per_read"] = meter.writer_s / result["requests"] * 1e6
    result["audited"] = after - before
    result["expected_audited"] = 0 if audit == "off" else result["requests"] + warm + grants
    # nothing lost: every counted request is audited; at most ``concurrency`` more were in flight
    surplus = result["audited"] - result["expected_audited"]
    result["complete"] = audit == "off" or 0 <= surplus <= args.concurrency
    return result


def catch_up(url: str) -> dict[str, float]:
    """Store the deferred AuditEvents; returns how many and how fast."""
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


def _line(mode: str, r: dict[str, Any]) -> str:
    return (
        f"audit {mode:<5} {r['rps']:7.0f} reads/s  p50 {r['p50_ms']:6.2f} ms  p99 "
        f"{r['p99_ms']:7.2f} ms  cpu {r['cpu_us_per_read']:5.0f} us/read (server "
        f"{r['server_cpu_us_per_read']:.0f} of which audit writer "
        f"{r['writer_cpu_us_per_read']:.0f}, db {r['db_cpu_us_per_read']:.0f})  audited "
        f"{r['audited']:.0f} for {r['expected_audited']:.0f} counted"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=10_000)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    url = fresh_pg_database("ehr_bench_audit")
    load(url, args.patients)
    tokens: dict[str, str] = {}
    runs: dict[str, list[dict[str, Any]]] = {"off": [], "idle": [], "eager": []}
    deferred: list[dict[str, float]] = []
    for i in range(args.rounds):  # alternate, so drift in the machine's load hits both alike
        for mode in ("off", "idle") if i < args.rounds - 1 else ("off", "idle", "eager"):
            r = run(url, args, tokens, mode)
            runs[mode].append(r)
            print(_line(mode, r), flush=True)
            if mode == "idle":  # pay the deferred cost now, out of the measured window
                deferred.append(catch_up(url))

    def med(mode: str, key: str) -> float:
        return statistics.median(x[key] for x in runs[mode])

    off, idle, eager = med("off", "rps"), med("idle", "rps"), med("eager", "rps")
    cpu_off, cpu_idle, cpu_eager = (med(m, "cpu_us_per_read") for m in ("off", "idle", "eager"))
    lost = [r for m in ("idle", "eager") for r in runs[m] if not r["complete"]]
    rate = statistics.median(d["events_per_s"] for d in deferred)
    result = {
        "machine": machine(),
        "load_average_at_end": os.getloadavg(),
        "patients": args.patients,
        "concurrency": args.concurrency,
        "server_workers": args.workers,
        "seconds": args.seconds,
        "runs": runs,
        "deferred_materialization": deferred,
        "throughput_ratio_idle": idle / off,
        "throughput_ratio_eager": eager / off,
        "cpu_ratio_idle": cpu_off / cpu_idle,
        "cpu_ratio_eager": cpu_off / cpu_eager,
        "runs_with_lost_events": len(lost),
    }
    print()
    print(
        f"| reads by id (Patient, Observation), c{args.concurrency}, {args.workers} workers, "
        f"median of {args.rounds} | reads/s | ratio | server+db CPU per read | ratio |"
    )
    print("|---|---|---|---|---|")
    print(f"| audit off | {off:.0f} | 1.00 | {cpu_off:.0f} us | 1.00 |")
    print(
        f"| audit on (AuditEvents stored when idle, default) | {idle:.0f} | {idle / off:.2f} | "
        f"{cpu_idle:.0f} us | {cpu_off / cpu_idle:.2f} |"
    )
    print(
        f"| audit on (AuditEvents stored at once) | {eager:.0f} | {eager / off:.2f} | "
        f"{cpu_eager:.0f} us | {cpu_off / cpu_eager:.2f} |"
    )
    print(f"\nread throughput ratio, audit on/off: {idle / off:.3f} (by CPU cost: "
          f"{cpu_off / cpu_idle:.3f}); with AuditEvents stored at once: {eager / off:.3f} "
          f"({cpu_off / cpu_eager:.3f})")  # fmt: skip
    print(f"of the server's CPU per read with the audit on, its audit writer threads spent "
          f"{med('idle', 'writer_cpu_us_per_read'):.0f} us (the request path and the rest: "
          f"{med('idle', 'server_cpu_us_per_read') - med('idle', 'writer_cpu_us_per_read'):.0f} "
          f"us, against {med('off', 'server_cpu_us_per_read'):.0f} us with it off); the "
          f"database {med('idle', 'db_cpu_us_per_read'):.0f} us (off: "
          f"{med('off', 'db_cpu_us_per_read'):.0f} us)")  # fmt: skip
    print(f"deferred AuditEvents stored afterwards at {rate:.0f} events/s; chains verified: "
          f"{all(d['chain_ok'] for d in deferred)}; runs that lost an event: {len(lost)}")  # fmt: skip
    out = ROOT / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / "bench_audit.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
