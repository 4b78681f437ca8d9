"""Booking benchmark (issue 6): ``$find`` latency over a month of slots for 200 practitioners,
and a booking race over real HTTP against PostgreSQL.

    .venv/bin/python -m bench.bench_booking [--practitioners 200] [--days 30] [--finds 400]
        [--attempts 500] [--slots 50] [--workers 4] [--sqlite]

1. Seeds a scratch database (``ehr_bench_booking`` on PostgreSQL, or a temporary SQLite file
   with ``--sqlite``): one hospital, 10 departments, ``--practitioners`` doctors, each with a
   Schedule (mornings Mon-Sat and afternoons Mon-Fri, 15-minute slots) and ``--days`` days of
   Slots generated from it; 1,000 patients; a policy that releases the whole month.
2. ``$find`` in process (the service function, no HTTP): a mix of the queries a booking app
   makes (a doctor's month, a department's week, a specialty's day, a doctor's day for a given
   patient), p50/p95/max over ``--finds`` queries after a warm-up.
3. The race (PostgreSQL only): a uvicorn server (``--workers`` processes) running
   ``fhir_api.create_app`` with the appointment router mounted and the booking hook installed;
   ``--attempts`` concurrent clients (half ``POST /Appointment/$book``, half plain
   ``POST /Appointment``) against ``--slots`` slots, every patient different. Reports successes
   (must equal the slot count), errors by status and the p50/p95 latency; then ``$find`` over
   HTTP.

Prints a Markdown section for ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import date, datetime, timedelta
from datetime import time as dtime
from typing import Any

import httpx

from bench._common import (
    PG_ADMIN,
    ROOT,
    free_port,
    fresh_pg_database,
    machine,
    percentile,
    wait_serving,
)

DEPARTMENTS = [("d01", "394583002"), ("d02", "394579002"), ("d03", "419192003"), ("d04", "394609007"),
               ("d05", "394801008"), ("d06", "394586005"), ("d07", "394537008"), ("d08", "394594003"),
               ("d09", "418960008"), ("d10", "394812008")]  # fmt: skip
FIRST_DAY = date(2025, 9, 1)  # a Monday
NOW = datetime(2025, 8, 31, 20, 0)  # the evening before (CST)


def seed(url: str, practitioners: int, days: int, patients: int = 1000) -> dict[str, float]:
    from appointments import Availability, BookingPolicy, Session, availability_extension, install
    from appointments.fhirdata import CST
    from appointments.policy import policy_resource
    from appointments.slots import generate_slots
    from ehr.demo import DEMO_CITIZEN_ID_KEY
    from ehr.identifiers import citizen_id_identifier, make_citizen_id
    from ehr.store import Store

    store = Store(url)
    store.migrate()
    av = Availability("org-b", (
        Session("am", ("mon", "tue", "wed", "thu", "fri", "sat"), dtime(8), dtime(11, 30), slot_minutes=15,
                visit_type="general"),
        Session("pm", ("mon", "tue", "wed", "thu", "fri"), dtime(13, 30), dtime(17), slot_minutes=15,
                visit_type="expert"),
    ))  # fmt: skip
    t0 = time.perf_counter()
    with store.write() as ctx:
        ctx.update(
            "Organization",
            "org-b",
            {"resourceType": "Organization", "id": "org-b", "name": "基准医院"},
        )
        ctx.update(
            "Basic",
            "policy-b",
            {
                **policy_resource(
                    "org-b",
                    BookingPolicy(
                        release_days_ahead=days + 1,
                        max_active_bookings=50,
                        max_per_department_per_day=10,
                    ),
                ),
                "id": "policy-b",
            },
        )
        for d, _ in DEPARTMENTS:
            ctx.update("HealthcareService", f"hs-{d}", {"resourceType": "HealthcareService", "id": f"hs-{d}",
                                                        "active": True, "name": d})  # fmt: skip
        for i in range(practitioners):
            d, spec = DEPARTMENTS[i % len(DEPARTMENTS)]
            ctx.update(
                "Practitioner",
                f"p{i:03d}",
                {"resourceType": "Practitioner", "id": f"p{i:03d}", "active": True},
            )
            ctx.update("PractitionerRole", f"r{i:03d}", {
                "resourceType": "PractitionerRole", "id": f"r{i:03d}", "active": True,
                "practitioner": {"reference": f"Practitioner/p{i:03d}"},
                "healthcareService": [{"reference": f"HealthcareService/hs-{d}"}]}, validate=False)  # fmt: skip
            ctx.update("Schedule", f"s{i:03d}", {
                "resourceType": "Schedule", "id": f"s{i:03d}", "active": True,
                "extension": [availability_extension(av)],
                "specialty": [{"coding": [{"system": "http://snomed.info/sct", "code": spec}]}],
                "actor": [{"reference": f"PractitionerRole/r{i:03d}"}, {"reference": f"HealthcareService/hs-{d}"}],
            }, validate=False)  # fmt: skip
        for i in range(patients):
            born = date(1950 + i % 60, 1 + i % 12, 1 + i % 28)
            female = i % 2 == 0
            cid = make_citizen_id("329902", born, (i % 400) * 2 + (0 if female else 1), female)
            ctx.update("Patient", f"bp{i:04d}", {
                "resourceType": "Patient", "id": f"bp{i:04d}", "active": True, "gender": "female" if female else "male",
                "birthDate": born.isoformat(), "name": [{"text": f"患者{i}"}],
                "identifier": [citizen_id_identifier(cid, DEMO_CITIZEN_ID_KEY, today=FIRST_DAY)]}, validate=False)  # fmt: skip
    t1 = time.perf_counter()
    svc = install(store, clock=lambda: NOW.replace(tzinfo=CST))
    slots = 0
    for i in range(practitioners):
        slots += generate_slots(svc, f"s{i:03d}", FIRST_DAY, days).created
    t2 = time.perf_counter()
    store.dispose()
    print(f"seeded {practitioners} schedules, {patients} patients in {t1 - t0:.1f}s; "
          f"{slots} slots in {t2 - t1:.1f}s ({(t2 - t1) / max(slots, 1) * 1000:.2f} ms/slot)")  # fmt: skip
    return {"slots": slots, "slot_seconds": t2 - t1}


def find_mix(practitioners: int, days: int, rng: random.Random) -> list[tuple[str, Any]]:
    from appointments import FindRequest

    out: list[tuple[str, Any]] = []
    last = FIRST_DAY + timedelta(days=days - 1)
    for _ in range(100):
        i = rng.randrange(practitioners)
        d = DEPARTMENTS[rng.randrange(len(DEPARTMENTS))]
        day = FIRST_DAY + timedelta(days=rng.randrange(days))
        out.append(
            (
                "doctor, month",
                FindRequest(
                    practitioner=f"PractitionerRole/r{i:03d}", start=FIRST_DAY, end=last, count=50
                ),
            )
        )
        out.append(
            (
                "department, week",
                FindRequest(service=f"hs-{d[0]}", start=day, end=day + timedelta(days=6), count=50),
            )
        )
        out.append(("specialty, day", FindRequest(specialty=d[1], start=day, end=day, count=50)))
        out.append(("doctor, day, patient", FindRequest(practitioner=f"Practitioner/p{i:03d}", start=day, end=day,
                                                         patient=f"bp{rng.randrange(1000):04d}", count=50)))  # fmt: skip
    rng.shuffle(out)
    return out


def bench_find(url: str, practitioners: int, days: int, n: int) -> dict[str, Any]:
    from appointments import Actor, find_slots, install
    from appointments.fhirdata import CST
    from ehr.store import Store

    store = Store(url)
    svc = install(store, clock=lambda: NOW.replace(tzinfo=CST))
    rng = random.Random(6)
    mix = find_mix(practitioners, days, rng)
    for _, req in mix[:40]:  # warm-up
        find_slots(svc, req, Actor.citizen(req.patient or "bp0001"))
    times: dict[str, list[float]] = {}
    found: dict[str, list[int]] = {}
    for k in range(n):
        label, req = mix[k % len(mix)]
        actor = Actor.citizen(req.patient) if req.patient else Actor.citizen("bp0001")
        t = time.perf_counter()
        got = find_slots(svc, req, actor)
        times.setdefault(label, []).append((time.perf_counter() - t) * 1000)
        found.setdefault(label, []).append(len(got))
    store.dispose()
    every = [x for v in times.values() for x in v]
    counts = [x for v in found.values() for x in v]
    out: dict[str, tuple[float, float, float, float]] = {
        "all": (percentile(every, 50), percentile(every, 95), max(every), statistics.mean(counts))
    }
    for label, v in times.items():
        out[label] = (percentile(v, 50), percentile(v, 95), max(v), statistics.mean(found[label]))
    return out


def make_app() -> Any:
    """uvicorn factory for the race: the FHIR API with the appointment router and the hook."""
    from starlette.requests import Request

    from appointments import Actor, install
    from appointments.fhirdata import CST
    from appointments.http import router
    from ehr.store import Store
    from fhir_api.app import create_app, include_before_interactions

    store = Store(os.environ["EHR_DATABASE_URL"], pool_size=int(os.environ.get("BENCH_POOL", "8")))
    app = create_app(store)
    app.state.appointments = install(store, clock=lambda: NOW.replace(tzinfo=CST))

    async def bench_actor(request: Request) -> Actor | None:
        who = request.headers.get("x-bench-patient")
        return Actor.citizen(who) if who else None

    include_before_interactions(app, router(resolve_actor=bench_actor))
    return app


async def _race(
    base: str, attempts: int, slots: list[str]
) -> tuple[Counter[int], list[float], Counter[str]]:
    statuses: Counter[int] = Counter()
    reasons: Counter[str] = Counter()
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=attempts, max_keepalive_connections=attempts)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:
        go = asyncio.Event()

        async def one(i: int) -> None:
            slot, pid = slots[i % len(slots)], f"bp{i:04d}"
            await go.wait()
            t = time.perf_counter()
            if i % 2:
                body = {"resourceType": "Parameters", "parameter": [
                    {"name": "slot", "valueReference": {"reference": f"Slot/{slot}"}},
                    {"name": "patient", "valueReference": {"reference": f"Patient/{pid}"}}]}  # fmt: skip
                r = await client.post(
                    "/Appointment/$book", json=body, headers={"x-bench-patient": pid}
                )
            else:
                body = {"resourceType": "Appointment", "status": "booked", "slot": [{"reference": f"Slot/{slot}"}],
                        "participant": [{"actor": {"reference": f"Patient/{pid}"}, "status": "accepted"}]}  # fmt: skip
                r = await client.post(
                    "/Appointment", json=body, headers={"content-type": "application/fhir+json"}
                )
            latencies.append((time.perf_counter() - t) * 1000)
            statuses[r.status_code] += 1
            if r.status_code >= 400:
                diag = r.json().get("issue", [{}])[0].get("diagnostics", "")
                reasons["already booked" if "already booked" in diag else diag[:60]] += 1

        tasks = [asyncio.create_task(one(i)) for i in range(attempts)]
        await asyncio.sleep(0.2)
        go.set()
        await asyncio.gather(*tasks)
    return statuses, latencies, reasons


def bench_race(
    url: str,
    attempts: int,
    n_slots: int,
    workers: int,
    practitioners: int,
    pool: int,
    race_day: int,
) -> dict[str, Any]:
    port = free_port()
    env = {**os.environ, "EHR_DATABASE_URL": url, "PYTHONPATH": str(ROOT), "BENCH_POOL": str(pool)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "bench.bench_booking:make_app", "--factory", "--host", "127.0.0.1",
         "--port", str(port), "--workers", str(workers), "--log-level", "warning", "--no-access-log"],
        env=env, cwd=ROOT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}/fhir"
    try:
        wait_serving(base, proc)
        day = FIRST_DAY + timedelta(days=race_day)
        slots = [
            f"s{i:03d}-{day:%Y%m%d}-am-{n:02d}" for i in range(practitioners) for n in range(1, 15)
        ][:n_slots]
        t = time.perf_counter()
        statuses, latencies, reasons = asyncio.run(_race(base, attempts, slots))
        wall = time.perf_counter() - t
        # $find over HTTP, sequential
        rng = random.Random(7)
        http_find: list[float] = []
        with httpx.Client(base_url=base, timeout=30) as client:
            for k in range(200):
                i = rng.randrange(practitioners)
                params = {"practitioner": f"PractitionerRole/r{i:03d}", "start": FIRST_DAY.isoformat(),
                          "end": (FIRST_DAY + timedelta(days=29)).isoformat(), "_count": "50"}  # fmt: skip
                t1 = time.perf_counter()
                r = client.get(
                    "/Appointment/$find", params=params, headers={"x-bench-patient": "bp0999"}
                )
                if k >= 20:
                    http_find.append((time.perf_counter() - t1) * 1000)
                assert r.status_code == 200, r.text
        from ehr.store import Store

        store = Store(url)
        booked = store.search("Appointment", [("status", "booked"), ("_summary", "count")]).total
        busy = store.search("Slot", [("status", "busy"), ("_summary", "count")]).total
        store.dispose()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return {
        "statuses": dict(statuses), "reasons": dict(reasons), "p50": percentile(latencies, 50),
        "p95": percentile(latencies, 95), "max": max(latencies), "wall": wall, "booked": booked, "busy": busy,
        "http_find": (percentile(http_find, 50), percentile(http_find, 95)),
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--practitioners", type=int, default=200)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--finds", type=int, default=400)
    ap.add_argument("--attempts", type=int, default=500)
    ap.add_argument("--slots", type=int, default=50)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--pool", type=int, default=8, help="connections per worker (PostgreSQL)")
    ap.add_argument("--race-day", type=int, default=1, help="day (from the first) whose slots race")
    ap.add_argument(
        "--no-seed", action="store_true", help="reuse ehr_bench_booking as seeded before"
    )
    ap.add_argument(
        "--sqlite", action="store_true", help="seed and measure $find on SQLite (no race)"
    )
    args = ap.parse_args()
    if args.sqlite:
        url = f"sqlite:///{tempfile.mkdtemp()}/bench_booking.sqlite"
    elif args.no_seed:
        url = PG_ADMIN.rsplit("/", 1)[0] + "/ehr_bench_booking"
    else:
        url = fresh_pg_database("ehr_bench_booking")
    db = "SQLite" if args.sqlite else "PostgreSQL"
    if args.no_seed:
        from ehr.store import Store

        store = Store(url)
        n = store.search("Slot", [("_summary", "count")]).total
        store.dispose()
        info = {"slots": float(n), "slot_seconds": float("nan")}
    else:
        info = seed(url, args.practitioners, args.days)
    finds = bench_find(url, args.practitioners, args.days, args.finds)
    print(f"\n### Booking (issue 6), {db}\n\n{machine()}\n")
    print(f"{args.practitioners} practitioners, {args.days} days, {info['slots']:.0f} slots "
          f"(generated at {info['slot_seconds'] / max(info['slots'], 1) * 1000:.2f} ms/slot).\n")  # fmt: skip
    print(
        "`$find` in process (ms):\n\n| query | p50 | p95 | max | slots found (mean) |\n|---|---|---|---|---|"
    )
    for label, (p50, p95, mx, n) in finds.items():
        print(f"| {label} | {p50:.1f} | {p95:.1f} | {mx:.1f} | {n:.0f} |")
    if args.sqlite:
        return
    race = bench_race(
        url, args.attempts, args.slots, args.workers, args.practitioners, args.pool, args.race_day
    )
    wins = race["statuses"].get(201, 0)
    print(f"\nRace over HTTP: {args.attempts} concurrent attempts (half `$book`, half plain `POST Appointment`) "
          f"on {args.slots} slots, {args.workers} server workers x {args.pool} connections.\n")  # fmt: skip
    print(
        f"- successes: **{wins}** (store: {race['booked']} booked Appointments, {race['busy']} busy Slots)"
    )
    print(f"- by status: {race['statuses']}; refusals: {race['reasons']}")
    print(f"- latency p50 {race['p50']:.0f} ms, p95 {race['p95']:.0f} ms, max {race['max']:.0f} ms; "
          f"wall {race['wall']:.1f} s")  # fmt: skip
    print(f"- `GET /Appointment/$find` (doctor, month) over HTTP: p50 {race['http_find'][0]:.1f} ms, "
          f"p95 {race['http_find'][1]:.1f} ms")  # fmt: skip
    if wins != args.slots:
        raise SystemExit(f"expected exactly {args.slots} successes, got {wins}")


if __name__ == "__main__":
    main()
