"""REST core benchmark (issue: store and REST core): reads by id and creates at c16 against
PostgreSQL, 2 server workers, with the raw-driver ceiling measured in the same run.

    .venv/bin/python -m bench.bench_rest [--patients 10000] [--seconds 10] [--concurrency 16]
                                         [--auth-disabled] [--no-empi] [--only read|create]
                                         [--create-type Patient|Observation]

How: loads N Patients into a scratch database ``ehr_bench_rest`` (through the store), starts
``ehr serve --workers 2`` (the secured app: every request carries a ``system/*.cruds`` backend
token obtained from the server's token endpoint, and is audited; ``--auth-disabled`` sets
``EHR_AUTH_DISABLED=1`` for comparison: no token checks, still audited), then drives it with wrk
(C, 2 threads, keep-alive connections), after a short warm-up:
GET /fhir/Patient/{random id} and POST /fhir/Patient (a small Chinese-named Patient, a different
citizen each time: name, birth date, phone; the EMPI hook matches every Patient write, which
``--no-empi`` turns off with ``EHR_EMPI=0`` to show the REST core alone), or with
``--create-type Observation`` POST /fhir/Observation (a heart rate of a random loaded Patient:
the create path of a clinical resource, which no EMPI hook touches). Any non-2xx
answer fails the run. The load average (``/proc/loadavg``) is recorded before and after. The ceiling
is psycopg 3 on its own: 2 processes x 8 threads, each thread with its own connection, doing
the equivalent primary-key SELECT of the stored bytes, and the equivalent INSERT of a resource
row plus its history row in one transaction. Server, load generator and database share the box.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import threading
import time
import uuid
from pathlib import Path

import psycopg

from bench._common import CpuMeter, fresh_pg_database, machine, percentile, server, wrk
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


#: a distinct citizen per POST (name, birth date, phone): the EMPI hook matches every Patient
#: write, and thousands of identical registrations would all pile onto one golden record
CREATE_LUA = """
local counter = 0
function setup(thread) thread:set("id", counter); counter = counter + 1 end
function init(args) math.randomseed(os.time() * 100 + id) end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/fhir+json"
local fams = {"王","李","张","刘","陈","杨","黄","赵","吴","周","徐","孙","马","朱","胡","郭","何","高","林","罗",
  "郑","梁","谢","宋","唐","许","韩","冯","邓","曹","彭","曾","肖","田","董","袁","潘","于","蒋","蔡"}
local chars = {"伟","芳","娜","秀","英","敏","静","丽","强","磊","军","洋","勇","艳","杰","娟","涛","明","超","兰",
  "霞","平","刚","桂","华","文","玉","红","建","国","志","海","云","婷","雪","琳","晨","宇","浩","欣"}
local tpl = [[@TEMPLATE@]]
request = function()
  local fam = fams[math.random(#fams)]
  local given = chars[math.random(#chars)] .. chars[math.random(#chars)]
  local body = tpl:gsub("{F}", fam):gsub("{G}", given)
  body = body:gsub("{B}", string.format("%d-%02d-%02d", math.random(1930, 2020), math.random(12), math.random(28)))
  body = body:gsub("{P}", string.format("13%09d", math.random(0, 999999999)))
  body = body:gsub("{N}", tostring(math.random(0, @PATIENTS@ - 1)))
  body = body:gsub("{V}", tostring(math.random(40, 180)))
  return wrk.format(nil, nil, nil, body)
end
"""


def create_template() -> dict[str, object]:
    """The created Patient, with ``{F}``/``{G}`` (family / given name), ``{B}`` (birth date)
    and ``{P}`` (phone) filled in per request by :data:`CREATE_LUA`."""
    return {
        **PATIENT,
        "name": [{"use": "official", "text": "{F}{G}", "family": "{F}", "given": ["{G}"]}],
        "birthDate": "{B}",
        "telecom": [{"system": "phone", "value": "{P}", "use": "mobile"}],
    }


#: ``--create-type Observation``: a heart rate of one of the loaded Patients (``{N}``) with a
#: value (``{V}``) filled in per request by :data:`CREATE_LUA` (no EMPI hook runs on it)
OBSERVATION = {
    "resourceType": "Observation",
    "status": "final",
    "category": [
        {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                    "code": "vital-signs",
                }
            ]
        }
    ],
    "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
    "subject": {"reference": "Patient/bench-pat-{N}"},
    "effectiveDateTime": "2026-11-29T08:00:00+08:00",
    "valueQuantity": {
        "value": "{V}",
        "unit": "beats/minute",
        "system": "http://unitsofmeasure.org",
        "code": "/min",
    },
}


def create_body_template(create_type: str) -> str:
    """The JSON text :data:`CREATE_LUA` fills in for ``--create-type``."""
    if create_type == "Observation":
        # the value is a number: its placeholder loses its quotes
        return json.dumps(OBSERVATION).replace('"{V}"', "{V}")
    return json.dumps(create_template(), ensure_ascii=False)


def load(url: str, n: int) -> None:
    store = Store(url)
    store.migrate()
    t = time.perf_counter()
    for start in range(0, n, 1000):
        with store.write() as ctx:
            for i in range(start, min(n, start + 1000)):
                rid = f"bench-pat-{i}"
                ctx.update(
                    "Patient",
                    rid,
                    {
                        **PATIENT,
                        "id": rid,
                        "identifier": [{"system": "urn:bench", "value": str(i)}],
                    },
                )
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
    procs = [
        mp.Process(target=_raw_worker, args=(dsn, n, kind, seconds, concurrency // 2, q))
        for _ in range(2)
    ]
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


def _cpu_per_request(r: dict[str, float], meter: CpuMeter, seconds: int) -> None:
    n = max(1.0, r["rps"] * seconds)
    r["server_cpu_us"] = meter.server_s / n * 1e6
    r["db_cpu_us"] = meter.db_s / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=10_000)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--auth-disabled", action="store_true", help="EHR_AUTH_DISABLED=1 (comparison)")
    ap.add_argument(
        "--no-empi", action="store_true", help="EHR_EMPI=0: no EMPI matching on Patient writes"
    )
    ap.add_argument(
        "--create-type",
        choices=("Patient", "Observation"),
        default="Patient",
        help="what the create half POSTs: a new citizen (default; matched by the EMPI) or an "
        "Observation of a loaded Patient (no EMPI hook)",
    )
    ap.add_argument(
        "--only",
        choices=("read", "create"),
        help="run only the reads or only the creates (API and raw driver)",
    )
    args = ap.parse_args()
    kinds = ("read", "create") if args.only is None else (args.only,)
    load_before = os.getloadavg()

    url = fresh_pg_database("ehr_bench_rest")
    load(url, args.patients)
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    read_lua = f"""
math.randomseed(os.time())
request = function()
  return wrk.format("GET", "/fhir/Patient/bench-pat-" .. math.random(0, {args.patients - 1}))
end
"""
    create_lua = CREATE_LUA.replace("@TEMPLATE@", create_body_template(args.create_type))
    create_lua = create_lua.replace("@PATIENTS@", str(args.patients))
    extra_env = {
        "EHR_AUTH_DISABLED": "1" if args.auth_disabled else "0",
        "EHR_EMPI": "0" if args.no_empi else "1",
    }
    lua = {"read": read_lua, "create": create_lua}
    api: dict[str, dict[str, float]] = {}
    with server(url, workers=args.workers, extra_env=extra_env) as base:
        c, h = args.concurrency, base.headers
        wrk(f"{base}/Patient", read_lua, connections=c, seconds=2, headers=h)  # warm-up
        meter = CpuMeter(base.pid, url, base.helpers)
        paths = {"read": "Patient", "create": args.create_type}
        for kind in kinds:
            meter.start()
            r = wrk(
                f"{base}/{paths[kind]}", lua[kind], connections=c, seconds=args.seconds, headers=h
            )
            meter.stop()
            _cpu_per_request(r, meter, args.seconds)
            api[kind] = r
    for name, r in api.items():
        if r["non_2xx"] or r["socket_errors"] or r["timeouts"]:
            raise SystemExit(f"API {name}: {r['non_2xx']:.0f} non-2xx answers / socket errors: {r}")
    raws = {kind: raw(dsn, args.patients, kind, args.seconds, args.concurrency) for kind in kinds}

    result: dict[str, object] = {
        "machine": machine(),
        "patients": args.patients,
        "concurrency": args.concurrency,
        "server_workers": args.workers,
        "secured": not args.auth_disabled,
        "empi": not args.no_empi,
        "create_type": args.create_type,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
    }
    for kind in kinds:
        result[f"api_{kind}"] = api[kind]
        result[f"raw_{kind}"] = raws[kind]
        result[f"{kind}_ratio"] = api[kind]["rps"] / raws[kind]["rps"]
    print(json.dumps(result, indent=2))
    print()
    mode = ("secured" if not args.auth_disabled else "EHR_AUTH_DISABLED=1") + (
        ", EHR_EMPI=0" if args.no_empi else ""
    )
    mode += f", creates of {args.create_type}"
    print(
        f"| measure (c{args.concurrency}, {args.workers} workers, {args.patients} patients, {mode}) | API | raw psycopg | API/raw |"
    )
    print("|---|---|---|---|")
    labels = {"read": "reads by id", "create": "creates"}
    for kind in kinds:
        k, a, r = labels[kind], api[kind], raws[kind]
        print(f"| {k} /s | {a['rps']:.0f} | {r['rps']:.0f} | {a['rps'] / r['rps']:.2f} |")
        print(
            f"| {k} p50 / p99 ms | {a['p50_ms']:.2f} / {a['p99_ms']:.2f} | {r['p50_ms']:.2f} / {r['p99_ms']:.2f} | |"
        )
    print()
    for kind in kinds:
        a = api[kind]
        print(
            f"CPU per {kind}: server {a['server_cpu_us']:.0f} µs + PostgreSQL {a['db_cpu_us']:.0f} µs"
        )
    out = Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    name = (
        "bench_rest" + ("_open" if args.auth_disabled else "") + ("_noempi" if args.no_empi else "")
    )
    name += "_observation" if args.create_type == "Observation" else ""
    name += f"_{args.only}" if args.only else ""
    name += ".json"
    (out / name).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
