"""Shared pieces of the benchmarks: a scratch PostgreSQL database, a server subprocess, wrk."""

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
PG_ADMIN = os.environ.get("EHR_BENCH_PG_ADMIN", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


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


def fresh_pg_database(name: str) -> str:
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        c.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def server(db_url: str, workers: int = 2, extra_env: dict[str, str] | None = None) -> Iterator[str]:
    """Run ``ehr serve`` in a subprocess; yields the FHIR base URL."""
    port = free_port()
    env = {**os.environ, "EHR_DATABASE_URL": db_url, **(extra_env or {})}
    proc = subprocess.Popen(
        [sys.executable, "-m", "fhir_api.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
         "--workers", str(workers), "--log-level", "warning", "--no-access-log"],
        env=env, cwd=ROOT,
    )
    base = f"http://127.0.0.1:{port}/fhir"
    try:
        for _ in range(200):
            try:
                if httpx.get(f"{base}/metadata", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise RuntimeError("server did not start")
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=20)


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def _ms(s: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", s)
    assert m, s
    return float(m[1]) * _UNITS[m[2]]


def wrk(url: str, lua: str, *, connections: int = 16, threads: int = 2, seconds: int = 10) -> dict[str, float]:
    """Run wrk with a Lua script; returns requests/s, p50/p99 (ms) and the error count."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(lua)
    out = subprocess.run(
        ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--latency", "-s", f.name, url],
        capture_output=True, text=True, check=True,
    ).stdout
    os.unlink(f.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
    p50 = _ms(re.search(r"50%\s+(\S+)", out)[1])  # type: ignore[index]
    p99 = _ms(re.search(r"99%\s+(\S+)", out)[1])  # type: ignore[index]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    return {
        "rps": rps,
        "p50_ms": p50,
        "p99_ms": p99,
        "non_2xx": float(non2xx[1]) if non2xx else 0.0,
        "socket_errors": 1.0 if errors else 0.0,
    }


def percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    if not s:
        return float("nan")
    k = min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))
    return s[k]
