"""Shared pieces of the benchmarks: a scratch PostgreSQL database, a server subprocess (the
secured ``ehr serve``, with a backend token for the benches), wrk."""

from __future__ import annotations

import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN = os.environ.get(
    "EHR_BENCH_PG_ADMIN", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def machine() -> str:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, {platform.system()} {platform.release()}, Python {platform.python_version()}"


def fresh_pg_database(name: str, template: str | None = None) -> str:
    """A new PostgreSQL database ``name`` (dropped first if it exists): empty, or a copy of the
    database ``template`` (whose URL :func:`fresh_pg_database` gave). ``EHR_BENCH_DB_SUFFIX`` is
    appended to the name, so benches run side by side don't share one."""
    name += os.environ.get("EHR_BENCH_DB_SUFFIX", "")
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    copy = f' TEMPLATE "{template.rsplit("/", 1)[1]}"' if template else ""
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        c.execute(text(f'CREATE DATABASE "{name}"{copy}'))
    admin.dispose()
    return PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Base(str):
    """The FHIR base URL of a bench server, carrying a backend access token: send
    ``headers`` (``Authorization: Bearer …``) with every request."""

    token: str
    #: the server's (parent) process id
    pid: int
    #: processes that serve beside it (the audit shipper)
    helpers: tuple[int, ...]

    def __new__(cls, url: str, token: str, pid: int = 0, helpers: tuple[int, ...] = ()) -> Base:
        self = super().__new__(cls, url)
        self.token = token
        self.pid = pid
        self.helpers = helpers
        return self

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def backend_token(db_url: str, base: str, scope: str = "system/*.cruds") -> str:
    """An access token for the benches, got as a real backend service gets one (a confidential
    client registered in the bench database, client credentials at the token endpoint)."""
    from ehr.storage.db import make_engine
    from fhir_api.auth.service_client import service_token

    engine = make_engine(db_url, pool_size=1)
    try:
        return service_token(engine, base, scope, name=f"bench-{time.time_ns()}")
    finally:
        engine.dispose()


def wait_serving(base: str, proc: subprocess.Popen[bytes], timeout_s: float = 300) -> None:
    """Wait until the server at ``base`` (a FHIR base URL) answers ``/metadata``; raise if its
    process ends or ``timeout_s`` passes first."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(f"{base}/metadata", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("server did not start")
        time.sleep(0.2)


#: what ``ehr serve --workers N`` runs (``fhir_api.cli.cmd_serve``), given to uvicorn directly
#: to allow a longer worker health check: on a box loaded by other work a worker importing the
#: app can miss uvicorn's default 5 s ping and be killed and restarted over and over
SERVE_APP = "fhir_api.security:create_secure_app"
HEALTHCHECK_S = 120


@contextmanager
def server(
    db_url: str, workers: int = 2, extra_env: dict[str, str] | None = None
) -> Iterator[Base]:
    """Run the server of ``ehr serve`` (the secured app, ``workers`` processes) on the already
    migrated database ``db_url`` in a subprocess; yields the FHIR base URL as a :class:`Base`
    whose ``headers`` carry a ``system/*.cruds`` backend token."""
    port = free_port()
    env = {"EHR_BASE_URL": "", "EHR_SECURITY_AUDIT_SHIPPER": "process", **os.environ,
           "EHR_DATABASE_URL": db_url, **(extra_env or {})}  # fmt: skip
    # fmt: off
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", SERVE_APP, "--factory", "--host", "127.0.0.1",
         "--port", str(port), "--workers", str(workers), "--log-level", "warning",
         "--no-access-log", "--timeout-graceful-shutdown", "10",
         "--timeout-worker-healthcheck", str(HEALTHCHECK_S)],
        env=env, cwd=ROOT,
    )
    # the audit shipper, as ``ehr serve`` runs it beside its workers (only while they spool)
    from fhir_api.cli import audit_shipper_command

    shipper = subprocess.Popen(
        audit_shipper_command(os.getpid()), env=env, cwd=ROOT,
    ) if env["EHR_SECURITY_AUDIT_SHIPPER"] == "process" else None
    # fmt: on
    base = f"http://127.0.0.1:{port}/fhir"
    try:
        wait_serving(base, proc)
        helpers = (shipper.pid,) if shipper is not None else ()
        yield Base(base, backend_token(db_url, base), proc.pid, helpers)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        if shipper is not None:
            shipper.terminate()  # (after the workers: its last cycle ships their last records)
            shipper.wait(timeout=60)


_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def _children(pid: int) -> list[int]:
    """Child processes of ``pid`` (their parent id, from ``/proc/*/stat``)."""
    out: list[int] = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return out


class CpuMeter:
    """CPU seconds spent by a server (its process and worker processes) and by the PostgreSQL
    backends connected to its database, between :meth:`start` and :meth:`stop`: a figure that
    holds up on a shared machine, where wall-clock throughput depends on the share of the
    cores the other work leaves."""

    def __init__(self, server_pid: int, db_url: str, helpers: tuple[int, ...] = ()) -> None:
        self.server_pid, self.db_url, self.helpers = server_pid, db_url, helpers
        self.start_cpu: dict[int, float] = {}
        self.server_s = self.db_s = 0.0

    def _backends(self) -> list[int]:
        eng = create_engine(self.db_url)
        try:
            with eng.connect() as c:
                return [
                    int(r[0])
                    for r in c.execute(
                        text(
                            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                            " AND pid <> pg_backend_pid()"
                        )
                    )
                ]
        finally:
            eng.dispose()

    def _server(self) -> list[int]:
        return [self.server_pid, *_children(self.server_pid), *self.helpers]

    def start(self) -> None:
        self.start_cpu = {p: _cpu_s(p) for p in self._server() + self._backends()}

    def stop(self) -> None:
        server, db = self._server(), self._backends()
        self.server_s = sum(_cpu_s(p) - self.start_cpu.get(p, 0.0) for p in server)
        self.db_s = sum(_cpu_s(p) - self.start_cpu.get(p, 0.0) for p in db)


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def _ms(s: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", s)
    assert m, s
    return float(m[1]) * _UNITS[m[2]]


#: wrk's per-request timeout: a slower answer counts as an error (wrk's default is 2 s)
WRK_TIMEOUT_S = 10


def wrk(
    url: str,
    lua: str,
    *,
    connections: int = 16,
    threads: int = 2,
    seconds: int = 10,
    headers: dict[str, str] | None = None,
) -> dict[str, float]:
    """Run wrk with a Lua script; returns requests/s, p50/p99 (ms), the non-2xx answers and
    the socket errors (``socket_errors``: connect, read and write errors; ``timeouts``: requests
    unanswered after :data:`WRK_TIMEOUT_S`). ``headers`` go on every request (``-H``; they
    reach requests the script builds with ``wrk.format`` without a headers table of its own).

    wrk's mean and high percentiles of latency are not trustworthy against this server: in one
    run of 31,447 requests in 10 s on 16 connections it gave a mean of 100 ms, where 16
    connections allow at most 16 × 10 s / 31,447 = 5.1 ms (Little's law); a Python client
    measured 7 ms mean and 46 ms p99 at the same load. ``mean_ms`` is therefore computed from
    Little's law (connections / requests per second), and p99 is reported as wrk gives it."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(lua)
    cmd = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--latency"]
    cmd += ["--timeout", f"{WRK_TIMEOUT_S}s"]
    for k, v in (headers or {}).items():
        cmd += ["-H", f"{k}: {v}"]
    out = subprocess.run(
        [*cmd, "-s", f.name, url], capture_output=True, text=True, check=True
    ).stdout
    os.unlink(f.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
    # the Latency Distribution lines (anchored: "72.50%" of the Req/Sec line must not match)
    p50 = _ms(re.search(r"^\s*50%\s+(\S+)", out, re.M)[1])  # type: ignore[index]
    p99 = _ms(re.search(r"^\s*99%\s+(\S+)", out, re.M)[1])  # type: ignore[index]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    counts = [int(v) for v in errors.groups()] if errors else [0, 0, 0, 0]
    return {
        "rps": rps,
        "mean_ms": connections / rps * 1000 if rps else float("nan"),
        "p50_ms": p50,
        "p99_ms": p99,
        "non_2xx": float(non2xx[1]) if non2xx else 0.0,
        "socket_errors": float(sum(counts[:3])),
        "timeouts": float(counts[3]),
    }


def percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    if not s:
        return float("nan")
    k = min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))
    return s[k]
