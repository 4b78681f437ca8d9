"""Ingest speed of Synthea-like transaction Bundles into PostgreSQL (issue 4: ≥ 1,000 resources/s
at concurrency 4, server and loader on the same box), with the raw-driver ceiling of the same rows
measured in the same run.

    .venv/bin/python bench/bench_ingest.py [--bundles 120] [--encounters 8] [--modes auto]
                                           [--profile] [--output bench/RESULTS-ingest.md]

How it is measured:

1. **Data.** ``--bundles`` transaction Bundles, one per synthetic patient, made like Synthea's:
   every entry is ``POST`` with a ``urn:uuid:`` fullUrl, resources refer to each other by those
   urns (Encounter -> Patient, Observation -> Patient + Encounter, MedicationRequest ->
   Condition, ...), and to the practitioners and hospitals by conditional references
   (``Practitioner?identifier=…``, ``Organization?identifier=…``) as Synthea does. Per patient:
   1 Patient and ``--encounters`` encounters, each with 7 vital-sign Observations (the R4
   vital-signs profiles, blood pressure as a panel), 3 laboratory Observations, a
   MedicationRequest, and every other encounter a Condition and a Procedure, every fourth an
   Immunization: 107 entries and ~100 KB per Bundle at 8 encounters. The practitioners and
   organizations are loaded before timing starts.
2. **Our path.** Each mode starts from a fresh, migrated database (``ehr_bench_ingest``) and
   posts every Bundle once; resources/s = resources written / wall time from the first Bundle
   to the last commit. Modes:

   * ``threads``: ``ehr.transaction.process_bundle`` from 4 threads in one process (one Store);
   * ``procs``: 2 processes x 2 threads, each process with its own Store (the GIL is per
     process, as with ``ehr serve --workers 2``);
   * ``http``: ``ehr serve --workers 2`` in a subprocess and 4 client threads posting the
     Bundles (``POST {base}``, httpx, keep-alive). Enabled automatically when the server answers
     a transaction at the base (``--modes auto``); skipped, and said so, when it does not.
     The server runs with ``EHR_EMPI=0``; ``http-empi`` (only when named) keeps the EMPI on,
     as ``ehr serve`` does by default (its golden records are written on top).

   Validation (fhir.resources model + required bindings) runs for every resource, as in
   production; nothing is turned off.
3. **Raw-driver ceiling, in the same run.** Right after each mode, every row it wrote
   (``resources``, ``resource_history`` and the eight index tables) is read back and written
   again into a fresh database with the same schema and indexes (``ehr_bench_ingest_raw``) with
   psycopg 3 alone: one transaction per Bundle's rows, ``COPY`` per table, 4 threads. It is the
   cost of the database work alone (no JSON, validation, indexing or reference resolution).
   ratio = raw time / our time (wall), and raw CPU / our CPU.
   **CPU**: the CPU seconds spent in the timed part by this process and its descendants (loader
   threads, worker processes, the server) and by the PostgreSQL client backends of the bench
   database, read from ``/proc``; per resource, and as the bound ``cores / CPU per resource``.
   The box may be shared (``--quiet-load`` waits for a low load average before each mode; the
   load average is printed with every figure).
4. ``--profile``: one process, one thread, cProfile of ``process_bundle`` over 20 Bundles; the
   top functions by cumulative and by own time are printed.

Everything (PostgreSQL, server, loader) runs on the same machine.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import multiprocessing as mp
import os
import pstats
import queue
import random
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import orjson  # noqa: E402
import psycopg  # noqa: E402

from bench._common import fresh_pg_database, machine, server  # noqa: E402
from ehr.search.tables import INDEX_TABLES  # noqa: E402
from ehr.store import Store  # noqa: E402
from ehr.transaction import process_bundle  # noqa: E402

DB = "ehr_bench_ingest"
RAW_DB = "ehr_bench_ingest_raw"
CONCURRENCY = 4

# ------------------------------------------------------------------------------ the data

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
OBS_CAT = "http://terminology.hl7.org/CodeSystem/observation-category"
NPI = "urn:oid:2.16.156.10011.1.4"  # practitioner licence numbers (bench)
ORG_ID = "urn:oid:2.16.156.10011.1.5"  # organization codes (bench)
VS = "http://hl7.org/fhir/StructureDefinition/"
N_PRACTITIONERS = 40
N_ORGS = 6

VITALS = [  # code, display, profile, unit, low, high
    ("8867-4", "Heart rate", "heartrate", "/min", 55, 110),
    ("9279-1", "Respiratory rate", "resprate", "/min", 12, 22),
    ("8310-5", "Body temperature", "bodytemp", "Cel", 36.0, 38.5),
    ("29463-7", "Body weight", "bodyweight", "kg", 45, 95),
    ("8302-2", "Body height", "bodyheight", "cm", 150, 185),
    ("39156-5", "Body mass index (BMI) [Ratio]", "bmi", "kg/m2", 18, 32),
]
LABS = [  # code, display, unit, low, high (reference range)
    ("14771-0", "Fasting glucose [Moles/volume] in Serum or Plasma", "mmol/L", 3.9, 6.1),
    ("14647-2", "Cholesterol [Moles/volume] in Serum or Plasma", "mmol/L", 2.8, 5.2),
    ("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "mg/dL", 0.6, 1.2),
    ("718-7", "Hemoglobin [Mass/volume] in Blood", "g/dL", 12, 17),
    ("6690-2", "Leukocytes [#/volume] in Blood by Automated count", "10*3/uL", 4, 10),
]
CONDITIONS = [("38341003", "Hypertensive disorder"), ("44054006", "Diabetes mellitus type 2"),
              ("195662009", "Acute viral pharyngitis"), ("10509002", "Acute bronchitis"),
              ("55822004", "Hyperlipidemia"), ("40055000", "Chronic sinusitis")]  # fmt: skip
DRUGS = [("314076", "lisinopril 10 MG Oral Tablet"), ("860975", "metformin 500 MG Oral Tablet"),
         ("308182", "amoxicillin 250 MG Oral Capsule"), ("617312", "atorvastatin 10 MG Oral Tablet")]  # fmt: skip
PROCEDURES = [("430193006", "Medication reconciliation"), ("710824005", "Assessment of health"),
              ("171207006", "Depression screening"), ("428191000124101", "Documentation of medications")]  # fmt: skip
VACCINES = [("140", "Influenza, seasonal, injectable"), ("08", "Hep B, adolescent or pediatric")]
FAMILY = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = ["伟", "芳", "娜", "秀英", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟"]


def _cc(system: str, code: str, display: str, text: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"coding": [{"system": system, "code": code, "display": display}]}
    out["text"] = text or display
    return out


def _qty(value: float, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


def _instant(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S+08:00", time.gmtime(t + 8 * 3600))


def reference_bundle() -> dict[str, Any]:
    """The practitioners and hospitals the patient Bundles refer to (loaded before timing)."""
    entries = []
    for i in range(N_ORGS):
        org = {"resourceType": "Organization", "active": True, "name": f"市第{i + 1}人民医院",
               "identifier": [{"system": ORG_ID, "value": f"org-{i}"}],
               "type": [_cc("http://terminology.hl7.org/CodeSystem/organization-type", "prov", "Healthcare Provider")]}  # fmt: skip
        entries.append({"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": org,
                        "request": {"method": "POST", "url": "Organization", "ifNoneExist": f"identifier={ORG_ID}|org-{i}"}})  # fmt: skip
    for i in range(N_PRACTITIONERS):
        prac = {"resourceType": "Practitioner", "active": True,
                "identifier": [{"system": NPI, "value": f"prac-{i}"}],
                "name": [{"text": f"{FAMILY[i % 20]}{GIVEN[i % 15]}", "family": FAMILY[i % 20], "given": [GIVEN[i % 15]]}],
                "gender": "male" if i % 2 else "female"}  # fmt: skip
        entries.append({"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": prac,
                        "request": {"method": "POST", "url": "Practitioner", "ifNoneExist": f"identifier={NPI}|prac-{i}"}})  # fmt: skip
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def patient_bundle(i: int, encounters: int) -> dict[str, Any]:
    """One synthetic patient's history as a Synthea-style transaction Bundle (deterministic)."""
    rng = random.Random(f"ingest/{i}")
    entries: list[dict[str, Any]] = []

    def add(resource: dict[str, Any]) -> str:
        urn = f"urn:uuid:{uuid.UUID(int=rng.getrandbits(128), version=4)}"
        entries.append({"fullUrl": urn, "resource": resource,
                        "request": {"method": "POST", "url": resource["resourceType"]}})  # fmt: skip
        return urn

    fam, given = FAMILY[rng.randrange(20)], rng.choice(GIVEN)
    born = rng.randint(1940, 2015)
    pat = add({
        "resourceType": "Patient",
        "identifier": [
            {"system": "urn:oid:2.16.156.10011.1.1", "value": f"bench-{i:08d}"},
            {"type": _cc("http://terminology.hl7.org/CodeSystem/v2-0203", "MR", "Medical record number"),
             "system": "urn:oid:2.16.156.10011.1.2", "value": f"MRN{i:010d}"},
        ],
        "name": [{"use": "official", "text": f"{fam}{given}", "family": fam, "given": [given]}],
        "telecom": [{"system": "phone", "value": f"138{rng.randrange(10**8):08d}", "use": "mobile"}],
        "gender": rng.choice(["male", "female"]),
        "birthDate": f"{born}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        "address": [{"use": "home", "text": "浙江省杭州市西湖区文三路100号", "city": "杭州市",
                     "district": "西湖区", "state": "浙江省", "postalCode": "310012", "country": "CN"}],
        "maritalStatus": _cc("http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "M", "Married"),
        "communication": [{"language": _cc("urn:ietf:bcp:47", "zh-CN", "Chinese (China)")}],
    })  # fmt: skip
    subject = {"reference": pat}
    t = 1_600_000_000.0 + rng.randrange(10**7)
    cond_urn: str | None = None
    for e in range(encounters):
        t += rng.randrange(30, 200) * 86400
        prac = f"Practitioner?identifier={NPI}|prac-{rng.randrange(N_PRACTITIONERS)}"
        org = f"Organization?identifier={ORG_ID}|org-{rng.randrange(N_ORGS)}"
        start, end = _instant(t), _instant(t + 1800)
        enc = add({
            "resourceType": "Encounter", "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB", "display": "ambulatory"},
            "type": [_cc(SNOMED, "185349003", "Encounter for check up (procedure)")],
            "subject": subject,
            "participant": [{"type": [_cc("http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "PPRF", "primary performer")],
                             "period": {"start": start, "end": end}, "individual": {"reference": prac}}],
            "period": {"start": start, "end": end},
            "serviceProvider": {"reference": org},
        })  # fmt: skip
        ctx = {
            "subject": subject,
            "encounter": {"reference": enc},
            "effectiveDateTime": start,
            "issued": end,
        }
        bp = {"resourceType": "Observation", "status": "final", "meta": {"profile": [VS + "bp"]},
              "category": [_cc(OBS_CAT, "vital-signs", "Vital Signs")],
              "code": _cc(LOINC, "85354-9", "Blood pressure panel with all children optional"), **ctx,
              "component": [
                  {"code": _cc(LOINC, "8480-6", "Systolic blood pressure"), "valueQuantity": _qty(rng.randint(100, 160), "mm[Hg]")},
                  {"code": _cc(LOINC, "8462-4", "Diastolic blood pressure"), "valueQuantity": _qty(rng.randint(60, 100), "mm[Hg]")}]}  # fmt: skip
        add(bp)
        for code, display, profile, unit, lo, hi in VITALS:
            add({"resourceType": "Observation", "status": "final", "meta": {"profile": [VS + profile]},
                 "category": [_cc(OBS_CAT, "vital-signs", "Vital Signs")], "code": _cc(LOINC, code, display),
                 **ctx, "valueQuantity": _qty(round(rng.uniform(lo, hi), 1), unit)})  # fmt: skip
        for code, display, unit, lo, hi in rng.sample(LABS, 3):
            value = round(rng.uniform(lo * 0.8, hi * 1.3), 2)
            interp = "H" if value > hi else "L" if value < lo else "N"
            add({"resourceType": "Observation", "status": "final",
                 "category": [_cc(OBS_CAT, "laboratory", "Laboratory")], "code": _cc(LOINC, code, display),
                 **ctx, "valueQuantity": _qty(value, unit),
                 "interpretation": [_cc("http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", interp, interp)],
                 "referenceRange": [{"low": _qty(lo, unit), "high": _qty(hi, unit)}]})  # fmt: skip
        if e % 2 == 0:
            code, display = rng.choice(CONDITIONS)
            cond_urn = add({
                "resourceType": "Condition",
                "clinicalStatus": _cc("http://terminology.hl7.org/CodeSystem/condition-clinical", "active", "Active"),
                "verificationStatus": _cc("http://terminology.hl7.org/CodeSystem/condition-ver-status", "confirmed", "Confirmed"),
                "category": [_cc("http://terminology.hl7.org/CodeSystem/condition-category", "encounter-diagnosis", "Encounter Diagnosis")],
                "code": _cc(SNOMED, code, display), "subject": subject, "encounter": {"reference": enc},
                "onsetDateTime": start, "recordedDate": start, "recorder": {"reference": prac},
            })  # fmt: skip
            pcode, pdisplay = rng.choice(PROCEDURES)
            add({"resourceType": "Procedure", "status": "completed", "code": _cc(SNOMED, pcode, pdisplay),
                 "subject": subject, "encounter": {"reference": enc},
                 "performedPeriod": {"start": start, "end": end},
                 "performer": [{"actor": {"reference": prac}}],
                 "reasonReference": [{"reference": cond_urn}]})  # fmt: skip
        dcode, ddisplay = rng.choice(DRUGS)
        add({"resourceType": "MedicationRequest", "status": "active", "intent": "order",
             "medicationCodeableConcept": _cc("http://www.nlm.nih.gov/research/umls/rxnorm", dcode, ddisplay),
             "subject": subject, "encounter": {"reference": enc}, "authoredOn": start,
             "requester": {"reference": prac},
             **({"reasonReference": [{"reference": cond_urn}]} if cond_urn else {}),
             "dosageInstruction": [{"sequence": 1, "text": "每日一次，口服",
                                    "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
                                    "doseAndRate": [{"doseQuantity": _qty(1, "{tbl}")}]}]})  # fmt: skip
        if e % 4 == 0:
            vcode, vdisplay = rng.choice(VACCINES)
            add({"resourceType": "Immunization", "status": "completed",
                 "vaccineCode": _cc("http://hl7.org/fhir/sid/cvx", vcode, vdisplay),
                 "patient": subject, "encounter": {"reference": enc}, "occurrenceDateTime": start,
                 "primarySource": True, "location": {"display": "社区卫生服务中心"}})  # fmt: skip
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


# ------------------------------------------------------------------------------ drivers


def _fresh_store(name: str = DB) -> tuple[str, Store]:
    url = fresh_pg_database(name)
    store = Store(url, pool_size=CONCURRENCY + 2)
    store.migrate()
    # sessions opened before the migration keep the server's plan_cache_mode (the migration
    # sets force_custom_plan on the database: see ehr.search.query_indexes); the timed work
    # must run on sessions opened after it, as a server's do
    store.dispose()
    store = Store(url, pool_size=CONCURRENCY + 2)
    process_bundle(store, reference_bundle())
    warm_up(store)
    return url, store


@dataclass(frozen=True)
class Run:
    """One timed ingest: wall seconds, the ``pk`` range and count of what it wrote, and the CPU
    seconds spent meanwhile by our processes (this one and its descendants: loader, server
    workers) and by the PostgreSQL backends serving the bench database."""

    seconds: float
    pk_after: int  # rows with pk > pk_after and <= pk_last were written by the timed part
    pk_last: int
    written: int
    cpu_app: float = 0.0
    cpu_pg: float = 0.0
    load: float = 0.0  # 1-minute load average at the end (other work on the box)


_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, utime + stime seconds) of a live process, from /proc."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICK


def _app_cpu() -> dict[int, float]:
    """CPU seconds of this process and every live descendant."""
    parents: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and (st := _stat(int(d.name))) is not None:
            parents.setdefault(st[0], []).append(int(d.name))
    out: dict[int, float] = {}
    todo = [os.getpid()]
    while todo:
        pid = todo.pop()
        if (st := _stat(pid)) is not None:
            out[pid] = st[1]
        todo += parents.get(pid, [])
    return out


def _pg_cpu(url: str) -> dict[int, float]:
    """CPU seconds of the live PostgreSQL client backends connected to ``url``'s database (same
    box; autovacuum workers are left out: they run whenever they like)."""
    with psycopg.connect(_dsn(url), autocommit=True) as c:
        pids = [r[0] for r in c.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        )]  # fmt: skip
    return {p: st[1] for p in pids if (st := _stat(p)) is not None}


def _spent(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU spent between two snapshots (a process born in between counts whole)."""
    return sum(v - before.get(p, 0.0) for p, v in after.items())


#: written by the server on its own (the audit trail's AuditEvent resources, materialized when a
#: worker is idle, perhaps during a timed run): not counted, not copied by the raw ceiling
_NOT_OURS = "AuditEvent"


def _pk_and_count(url: str) -> tuple[int, int]:
    with psycopg.connect(_dsn(url)) as c:
        row = c.execute(
            "SELECT coalesce(max(pk), 0), count(*) FILTER (WHERE rtype <> %s) FROM resources",
            (_NOT_OURS,),
        ).fetchone()
        assert row is not None
        return int(row[0]), int(row[1])


def _dsn(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def _timed(url: str, go: Callable[[], None]) -> Run:
    pk0, n0 = _pk_and_count(url)
    app0, pg0 = _app_cpu(), _pg_cpu(url)
    t = time.perf_counter()
    go()
    dt = time.perf_counter() - t
    app1, pg1 = _app_cpu(), _pg_cpu(url)
    pk1, n1 = _pk_and_count(url)
    return Run(dt, pk0, pk1, n1 - n0, _spent(app0, app1), _spent(pg0, pg1), os.getloadavg()[0])


def _threads(work: Sequence[Any], fn: Callable[[Any], object], n: int) -> None:
    """Run ``fn`` over ``work`` from ``n`` threads (each takes the next item); re-raise errors."""
    it = iter(list(work))
    lock = threading.Lock()
    errors: list[BaseException] = []

    def run() -> None:
        while True:
            with lock:
                item = next(it, None)
            if item is None or errors:
                return
            try:
                fn(item)
            except BaseException as exc:  # noqa: BLE001 - reported by the caller
                errors.append(exc)
                return

    ts = [threading.Thread(target=run) for _ in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise errors[0]


def warm_up(store: Store) -> None:
    """Load what a first Bundle would (models, search parameters, compiled SQL) without
    writing: validate and index a Bundle's resources, run a conditional-reference search."""
    for e in patient_bundle(10**6, 4)["entry"]:
        store.validator(e["resource"])
        store.index(e["resource"])
    with store.read_conn() as conn:
        store.search_engine.match(conn, "Practitioner", [("identifier", f"{NPI}|prac-0")], limit=2)


def _proc_child(url: str, payloads: list[bytes], threads: int, q: Any, go: Any, bye: Any) -> None:
    store = Store(url, pool_size=threads + 1)
    warm_up(store)
    q.put("ready")
    go.wait()
    _threads(payloads, lambda b: process_bundle(store, orjson.loads(b)), threads)
    q.put("done")
    bye.wait()  # stay alive (and connected) until the parent has read our CPU time
    store.dispose()


def run_threads(bundles: list[bytes]) -> tuple[str, Run]:
    """4 threads, one process: ``process_bundle`` on a parsed Bundle (parsing counted)."""
    url, store = _fresh_store()
    run = _timed(
        url,
        lambda: _threads(bundles, lambda b: process_bundle(store, orjson.loads(b)), CONCURRENCY),
    )
    store.dispose()
    return url, run


def run_procs(bundles: list[bytes]) -> tuple[str, Run]:
    """2 processes x 2 threads."""
    url, store = _fresh_store()
    store.dispose()
    ctx = mp.get_context("spawn")
    qs = [ctx.Queue() for _ in range(2)]
    go, bye = ctx.Event(), ctx.Event()
    procs = [
        ctx.Process(target=_proc_child, args=(url, bundles[k::2], 2, qs[k], go, bye))
        for k in range(2)
    ]
    for p in procs:
        p.start()
    for q in qs:
        assert q.get(timeout=120) == "ready"

    def start_and_wait() -> None:
        go.set()
        for q in qs:
            assert q.get(timeout=3600) == "done"

    run = _timed(url, start_and_wait)
    bye.set()
    for p in procs:
        p.join()
    return url, run


def http_supported(base: str, auth: dict[str, str] | None = None) -> bool:
    """Does the server process a transaction at ``POST {base}``? (``auth``: token headers)"""
    probe = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:2b1c8bde-0000-4000-8000-000000000001",
         "resource": {"resourceType": "Basic", "code": {"text": "bench probe"}},
         "request": {"method": "POST", "url": "Basic"}}]}  # fmt: skip
    r = httpx.post(
        base,
        content=orjson.dumps(probe),
        headers={"Content-Type": "application/fhir+json", **(auth or {})},
        timeout=30,
    )
    return r.status_code == 200 and r.json().get("type") == "transaction-response"


def run_http(bundles: list[bytes], empi: bool = False) -> tuple[str, Run]:
    """``ehr serve --workers 2`` and 4 client threads posting the Bundles. By default without
    EMPI matching (its golden records add resources): the same work as the in-process modes,
    whose store has no EMPI hook; ``empi``: as ``ehr serve`` runs by default."""
    url, store = _fresh_store()
    store.dispose()
    with server(url, workers=2, extra_env={"EHR_EMPI": "1" if empi else "0"}) as base:
        auth = base.headers  # the secured server: a backend token on every request
        if not http_supported(base, auth):
            raise _Skip("the server does not answer POST {base} with a transaction-response yet")
        warm = [orjson.dumps(patient_bundle(10**6 + k, 2)) for k in range(8)]
        _threads(warm, lambda b: httpx.post(base, content=b, timeout=600,
                                            headers={"Content-Type": "application/fhir+json", **auth}).raise_for_status(),
                 CONCURRENCY)  # fmt: skip
        clients = threading.local()

        def post(b: bytes) -> None:
            if not hasattr(clients, "c"):
                # a new connection per Bundle (~0.1 ms against ~100 ms of work per Bundle): the
                # workers share one listening socket and a connection stays with the worker that
                # accepted it, so 4 kept-alive connections could all land on one worker (seen:
                # one worker did 97 % of the work, the other core idle)
                clients.c = httpx.Client(
                    timeout=600,
                    headers={"Content-Type": "application/fhir+json", **auth},
                    limits=httpx.Limits(max_keepalive_connections=0),
                )
            r = clients.c.post(base, content=b)
            if r.status_code != 200:
                raise RuntimeError(f"POST {base}: {r.status_code} {r.text[:500]}")

        return url, _timed(url, lambda: _threads(bundles, post, CONCURRENCY))


class _Skip(Exception):
    pass


MODES: dict[str, Callable[[list[bytes]], tuple[str, Run]]] = {
    "threads": run_threads,
    "procs": run_procs,
    "http": run_http,
    "http-empi": lambda bundles: run_http(bundles, empi=True),
}


# ------------------------------------------------------------------------------ raw ceiling

_TABLES = ["resources", "resource_history", *(t.name for t in INDEX_TABLES.values())]


def _dump_rows(
    url: str, run: Run, n_chunks: int
) -> tuple[list[str], list[list[list[tuple[Any, ...]]]], int]:
    """Every row the timed run wrote, split by ``pk`` into ``n_chunks`` groups of about one
    Bundle each: (columns per table, chunks[chunk][table] = rows, resources)."""
    with psycopg.connect(_dsn(url)) as conn:
        first, last = run.pk_after + 1, run.pk_last
        pks = [
            r[0]
            for r in conn.execute(
                "SELECT pk FROM resources WHERE pk BETWEEN %s AND %s AND rtype <> %s ORDER BY pk",
                (first, last, _NOT_OURS),
            )
        ]
        ours = set(pks)
        bounds = [pks[len(pks) * k // n_chunks] for k in range(n_chunks)] + [pks[-1] + 1]
        cols: list[str] = []
        chunks: list[list[list[tuple[Any, ...]]]] = [[] for _ in range(n_chunks)]
        for table in _TABLES:
            cur = conn.execute(
                f'SELECT * FROM "{table}" WHERE pk BETWEEN %s AND %s ORDER BY pk', (first, last)
            )
            cols.append(", ".join(f'"{d.name}"' for d in cur.description or ()))
            rows = cur.fetchall()
            k = 0
            per: list[list[tuple[Any, ...]]] = [[] for _ in range(n_chunks)]
            for row in rows:
                if row[0] not in ours:
                    continue
                while row[0] >= bounds[k + 1]:
                    k += 1
                per[k].append(row)
            for k2 in range(n_chunks):
                chunks[k2].append(per[k2])
    return cols, chunks, len(pks)


def run_raw(url: str, run: Run, n_bundles: int) -> Run:
    """COPY the same rows into a fresh database from 4 threads, one transaction per Bundle."""
    cols, chunks, _ = _dump_rows(url, run, n_bundles)
    raw_url, raw_store = _fresh_store(RAW_DB)
    raw_store.dispose()
    dsn = _dsn(raw_url)
    with psycopg.connect(dsn, autocommit=True) as c:  # the copied rows keep their pks
        c.execute("TRUNCATE " + ", ".join(f'"{t}"' for t in _TABLES))
    conns: queue.Queue[psycopg.Connection[Any]] = queue.Queue()
    for _ in range(CONCURRENCY):
        conns.put(psycopg.connect(dsn))

    def copy(chunk: list[list[tuple[Any, ...]]]) -> None:
        conn = conns.get()
        with conn.transaction():
            for table, columns, rows in zip(_TABLES, cols, chunk, strict=True):
                if rows:
                    with conn.cursor().copy(f'COPY "{table}" ({columns}) FROM STDIN') as cp:
                        for row in rows:
                            cp.write_row(row)
        conns.put(conn)

    raw = _timed(raw_url, lambda: _threads(chunks, copy, CONCURRENCY))
    while not conns.empty():
        conns.get().close()
    return raw


# ------------------------------------------------------------------------------ profile


def profile(bundles: list[bytes]) -> str:
    _, store = _fresh_store()
    process_bundle(store, orjson.loads(bundles[0]))  # warm caches (models, registry)
    prof = cProfile.Profile()
    t = time.perf_counter()
    prof.enable()
    for b in bundles[1:21]:
        process_bundle(store, orjson.loads(b))
    prof.disable()
    dt = time.perf_counter() - t
    n = sum(len(orjson.loads(b)["entry"]) for b in bundles[1:21])
    store.dispose()
    out = io.StringIO()
    out.write(f"single thread, 20 Bundles, {n} resources in {dt:.2f}s = {n / dt:.0f} resources/s "
              "(under cProfile)\n")  # fmt: skip
    stats = pstats.Stats(prof, stream=out)
    stats.sort_stats("cumulative").print_stats(35)
    stats.sort_stats("tottime").print_stats(25)
    return out.getvalue()


# ------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundles", type=int, default=120)
    ap.add_argument("--encounters", type=int, default=8)
    ap.add_argument(
        "--modes",
        default="auto",
        help="comma list of threads,procs,http,http-empi (auto: threads,procs,http; http if "
        "mounted)",
    )
    ap.add_argument("--profile", action="store_true")
    ap.add_argument(
        "--quiet-load",
        type=float,
        default=0.0,
        help="before each mode, wait (up to --quiet-timeout s) for the 1-minute load "
        "average to fall below this (the box is shared)",
    )
    ap.add_argument("--quiet-timeout", type=float, default=900)
    ap.add_argument("--output", help="write the markdown section here")
    args = ap.parse_args(argv)

    bundles = [orjson.dumps(patient_bundle(i, args.encounters)) for i in range(args.bundles)]
    n_res = sum(len(orjson.loads(b)["entry"]) for b in bundles)
    size = sum(len(b) for b in bundles)
    print(f"{args.bundles} Bundles, {n_res} resources, {size / 2**20:.1f} MiB; {machine()}")
    if args.profile:
        print(profile(bundles))
        return 0

    modes = ["threads", "procs", "http"] if args.modes == "auto" else args.modes.split(",")
    results: dict[str, Run] = {}
    notes: list[str] = []
    raws: dict[str, Run] = {}
    for mode in modes:
        if args.quiet_load:
            _wait_quiet(args.quiet_load, args.quiet_timeout)
        try:
            url, run = MODES[mode](bundles)
        except _Skip as exc:
            print(f"{mode}: skipped ({exc})")
            notes.append(f"`{mode}` skipped: {exc}.")
            continue
        # with the EMPI on, the golden records it makes come on top of the Bundles' resources
        assert run.written == n_res or (mode == "http-empi" and run.written > n_res), (
            mode,
            run.written,
            n_res,
        )
        if run.written != n_res:
            print(f"{mode}: {run.written - n_res} resources written besides the Bundles'")
        results[mode] = run
        print(_line(mode, run, n_res))
        # the raw ceiling, right after: the same rows, under the same conditions
        raws[mode] = raw = run_raw(url, run, args.bundles)
        assert raw.written == run.written, (raw.written, run.written)
        print(_line("  raw COPY of the same rows", raw, n_res))
        print(f"  ratio to raw: {raw.seconds / run.seconds:.2f} (wall), "
              f"{(raw.cpu_app + raw.cpu_pg) / (run.cpu_app + run.cpu_pg):.2f} (CPU)")  # fmt: skip
    if not results:
        return 1
    if args.output:
        write_markdown(Path(args.output), args, n_res, size, results, raws, notes)
    return 0


def _wait_quiet(below: float, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while os.getloadavg()[0] >= below and time.monotonic() < deadline:
        time.sleep(5)
    print(f"load average {os.getloadavg()[0]:.1f} (waited for < {below})")


def _line(mode: str, run: Run, n: int) -> str:
    cpu = (run.cpu_app + run.cpu_pg) / n * 1e3
    return (
        f"{mode}: {n} resources in {run.seconds:.2f}s = {n / run.seconds:.0f} resources/s; CPU per "
        f"resource {run.cpu_app / n * 1e3:.2f} ms ours + {run.cpu_pg / n * 1e3:.2f} ms PostgreSQL = "
        f"{cpu:.2f} ms (bound on {os.cpu_count()} idle cores: {(os.cpu_count() or 1) / cpu * 1e3:.0f}/s"
        f"); load average {run.load:.1f}"
    )


def write_markdown(path: Path, args: argparse.Namespace, n_res: int, size: int, results: dict[str, Run],
                   raws: dict[str, Run], notes: list[str]) -> None:  # fmt: skip
    cores = os.cpu_count() or 1

    def ms(r: Run) -> float:
        return (r.cpu_app + r.cpu_pg) / n_res * 1e3

    def row(name: str, r: Run) -> str:
        raw = raws[name]
        return (
            f"| {name} | {n_res / r.seconds:,.0f} | {n_res / raw.seconds:,.0f} | "
            f"{raw.seconds / r.seconds:.2f} | {r.cpu_app / n_res * 1e3:.2f} | "
            f"{r.cpu_pg / n_res * 1e3:.2f} | {ms(r):.2f} | {ms(raw):.2f} | {ms(raw) / ms(r):.2f} | "
            f"{cores / ms(r) * 1e3:,.0f} | {r.load:.1f} |"
        )

    rows = "\n".join(row(m, r) for m, r in results.items())
    md = f"""
### Run of {time.strftime("%Y-%m-%d %H:%M")}

`{" ".join(["bench/bench_ingest.py", *sys.argv[1:]])}`: {args.bundles} Bundles, {n_res:,} resources,
{size / 2**20:.1f} MiB of JSON; {machine()}; PostgreSQL {_pg_version()} on the same machine.

| mode (concurrency 4) | resources/s | raw COPY, resources/s | ratio (wall) | CPU ms/res ours | PostgreSQL | total | raw total | ratio (CPU) | {cores}-core bound | load avg |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|
{rows}

{" ".join(notes)}
"""
    path.write_text(path.read_text() + md if path.exists() else md)
    print(f"appended to {path}")


def _pg_version() -> str:
    from bench._common import PG_ADMIN

    with psycopg.connect(_dsn(PG_ADMIN)) as c:
        row = c.execute("SHOW server_version").fetchone()
    return str(row[0]).split()[0] if row else "?"


if __name__ == "__main__":
    raise SystemExit(main())
