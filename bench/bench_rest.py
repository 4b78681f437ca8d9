"""REST core benchmark (issue: store and REST core): reads by id and creates at c16 against
PostgreSQL, 2 server workers, with the raw-driver ceiling measured in the same run.

    .venv/bin/python bench/bench_rest.py [--patients 10000] [--seconds 10] [--concurrency 16]

How: loads N Patients into a scratch database ``ehr_bench_rest`` (through the store), starts
``ehr serve --workers 2``, then drives it with wrk (C, 2 threads, keep-alive connections):
GET /fhir/Patient/{random id} and POST /fhir/Patient (a small Chinese-named Patient). The ceiling
is psycopg 3 on its own: 2 processes x 8 threads, each thread with its own connection, doing
the equivalent primary-key SELECT of the stored bytes, and the equivalent INSERT of a resource
row plus its history row in one transaction. Server, load generator and database share the box.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import random
import threading
import time
import uuid
from pathlib import Path

import psycopg

from bench._common import fresh_pg_database, machine, percentile, server, wrk
from ehr.store import Store

PATIENT = {
    "resourceType": "Patient",
    "active": True,
    "name": [{"use": "official", "text": "王秀英", "family": "王", "given": ["秀英"]}],
    "gender": "female",
    "birthDate": "1985-04-12",
    "telecom": [{"system": "phone", "value": "13800138000", "use": "mobile"}],
    "address": [{"city": "杭州市", "district": "西湖区", "line": ["文三路 100 号"]}],
}


def load(url: str, n: int) -> None:
    store = Store(url)
    store.migrate()
    t = time.perf_counter()
    for start in range(0, n, 1000):
        with store.write() as ctx:
            for i in range(start, min(n, start + 1000)):
                rid = f"bench-pat-{i}"
                ctx.update("Patient", rid, {**PATIENT, "id": rid, "identifier": [{"system": "urn:bench", "value": str(i)}]})
    print(f"loaded {n} patients in {time.perf_counter() - t:.1f}s")
    store.dispose()


def _raw_worker(dsn: str, n: int, kind: str, seconds: float, threads: int, q: mp.Queue) -> None:  # type: ignore[type-arg]
    lat: list[float] = []
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def run() -> None:
        mine: list[float] = []
        with psycopg.connect(dsn, autocommit=kind == "read") as conn:
            body = json.dumps(PATIENT).encode()
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                if kind == "read":
                    conn.execute(
                        "SELECT data FROM resources WHERE rtype = %s AND rid = %s",
                        ("Patient", f"bench-pat-{random.randrange(n)}"),
                    ).fetchone()
                else:
                    rid = str(uuid.uuid4())
                    with conn.transaction():
                        pk = conn.execute(
                            "INSERT INTO resources (rtype, rid, version, last_updated, deleted, data) "
                            "VALUES ('Patient', %s, 1, %s, false, %s) RETURNING pk",
                            (rid, int(time.time() * 1e6), body),
                        ).fetchone()[0]  # type: ignore[index]
                        conn.execute(
                            "INSERT INTO resource_history (pk, version, rtype, rid, last_updated, method, deleted, data) "
                            "VALUES (%s, 1, 'Patient', %s, %s, 'create', false, %s)",
                            (pk, rid, int(time.time() * 1e6), body),
                        )
                mine.append(time.perf_counter() - t0)
        with lock:
            lat.extend(mine)

    ts = [threading.Thread(target=run) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    q.put(lat)


def raw(dsn: str, n: int, kind: str, seconds: float, concurrency: int) -> dict[str, float]:
    q: mp.Queue = mp.Queue()  # type: ignore[type-arg]
    procs = [mp.Process(target=_raw_worker, args=(dsn, n, kind, seconds, concurrency // 2, q)) for _ in range(2)]
    for p in procs:
        p.start()
    lat: list[float] = []
    for _ in procs:
        lat.extend(q.get())
    for p in procs:
        p.join()
    return {
        "rps": len(lat) / seconds,
        "p50_ms": percentile(lat, 50) * 1000,
        "p99_ms": percentile(lat, 99) * 1000,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=10_000)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    url = fresh_pg_database("ehr_bench_rest")
    load(url, args.patients)
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    read_lua = f"""
math.randomseed(os.time())
request = function()
  return wrk.format("GET", "/fhir/Patient/bench-pat-" .. math.random(0, {args.patients - 1}))
end
"""
    create_lua = f"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/fhir+json"
wrk.body = [[{json.dumps(PATIENT, ensure_ascii=False)}]]
"""
    with server(url, workers=args.workers) as base:
        api_read = wrk(f"{base}/Patient", read_lua, connections=args.concurrency, seconds=args.seconds)
        api_create = wrk(f"{base}/Patient", create_lua, connections=args.concurrency, seconds=args.seconds)
    raw_read = raw(dsn, args.patients, "read", args.seconds, args.concurrency)
    raw_create = raw(dsn, args.patients, "create", args.seconds, args.concurrency)

    result = {
        "machine": machine(),
        "patients": args.patients,
        "concurrency": args.concurrency,
        "server_workers": args.workers,
        "api_read": api_read,
        "api_create": api_create,
        "raw_read": raw_read,
        "raw_create": raw_create,
        "read_ratio": api_read["rps"] / raw_read["rps"],
        "create_ratio": api_create["rps"] / raw_create["rps"],
    }
    print(json.dumps(result, indent=2))
    print()
    print(f"| measure (c{args.concurrency}, {args.workers} workers, {args.patients} patients) | API | raw psycopg | API/raw |")
    print("|---|---|---|---|")
    for k, a, r in (("reads by id", api_read, raw_read), ("creates", api_create, raw_create)):
        print(f"| {k} /s | {a['rps']:.0f} | {r['rps']:.0f} | {a['rps'] / r['rps']:.2f} |")
        print(f"| {k} p50 / p99 ms | {a['p50_ms']:.2f} / {a['p99_ms']:.2f} | {r['p50_ms']:.2f} / {r['p99_ms']:.2f} | |")
    out = Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    (out / "bench_rest.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
