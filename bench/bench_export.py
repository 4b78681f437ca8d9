"""Bulk Data $export speed and memory from PostgreSQL (issue 4: ≥ 10,000 resources/s, peak RSS
< 300 MB for 1,000,000 resources).

    .venv/bin/python bench/bench_export.py [--n 200000] [--levels system,patient,group] [--chunk 2000]

How it is measured:

1. A fresh PostgreSQL database (``ehr_bench_export``) is migrated, then N resources are written
   **directly into the ``resources`` table with COPY** (not through the Store: loading is not
   what is measured, and the Store's write path costs ~1 ms per resource). The mix is 10 %
   Patient, 60 % Observation, 15 % Encounter, 15 % Condition, each stamped with ``id``/``meta``
   as the Store stores it (~0.5–0.8 KB of JSON each). For the Patient-level export the
   ``idx_reference`` rows of ``subject`` / ``patient`` (and Observation ``performer`` to a
   Practitioner) are COPYed too, as the indexer would write them, and a Group of 1,000 of the
   patients (with its ``member`` index rows) for the Group-level export. Then ``VACUUM ANALYZE``.
2. Each export runs in a **fresh child process** (``--child``): ``kick_off`` + ``BulkWorker
   .run_pending()`` (fsync after every chunk, as in production) until the job is completed. The
   child reports wall time from kick-off to completion, the resources and bytes in the manifest,
   and its peak RSS, plus its peak RSS before the
   export started (imports, SQLAlchemy, definitions) for reference.
3. resources/s = exported resources / wall seconds. PostgreSQL runs on the same machine.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

from bench._common import PG_ADMIN, fresh_pg_database, machine  # noqa: E402

DB = "ehr_bench_export"
T0 = 1_700_000_000_000_000  # µs: a fixed base instant for last_updated
GROUP_SIZE = 1000  # patients in the Group of the Group-level export


def _instant(us: int) -> str:
    s, frac = divmod(us, 1_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s)) + f".{frac:06d}Z"


def _resource(
    i: int, n_patients: int
) -> tuple[str, str, dict[str, object], list[tuple[str, str, str]]]:
    """(rtype, rid, body, [(param, target_type, target_id)]) of the i-th resource."""
    slot = i % 20
    pid = f"pat-{(i * 2654435761) % 2**32 % n_patients}"  # spread evenly (Knuth hash)
    if slot < 2:
        rid = f"pat-{(i // 20) * 2 + slot}"
        return (
            "Patient",
            rid,
            {
                "identifier": [{"system": "urn:oid:2.16.156.10011.1.1", "value": f"1101{i:014d}"}],
                "name": [{"family": f"王{i % 997}", "given": [f"秀英{i % 31}"]}],
                "gender": "female" if i % 2 else "male",
                "birthDate": f"{1930 + i % 90}-{1 + i % 12:02d}-{1 + i % 28:02d}",
                "address": [{"city": f"City {i % 500}", "line": [f"{i % 999} Long Road"]}],
                "telecom": [{"system": "phone", "value": f"+86 138 {i % 10**8:08d}"}],
            },
            [],
        )
    if slot < 14:
        return (
            "Observation",
            f"obs-{i}",
            {
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
                "code": {
                    "coding": [
                        {"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}
                    ]
                },
                "subject": {"reference": f"Patient/{pid}"},
                "encounter": {"reference": f"Encounter/enc-{i - 1}"},
                "effectiveDateTime": f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}T08:{i % 60:02d}:00+08:00",
                "performer": [{"reference": f"Practitioner/doc-{i % 50}"}],
                "valueQuantity": {
                    "value": 60 + i % 40,
                    "unit": "beats/minute",
                    "system": "http://unitsofmeasure.org",
                    "code": "/min",
                },
            },
            [
                ("subject", "Patient", pid),
                ("patient", "Patient", pid),
                ("performer", "Practitioner", f"doc-{i % 50}"),
            ],
        )
    if slot < 17:
        return (
            "Encounter",
            f"enc-{i}",
            {
                "status": "finished",
                "class": {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                    "code": "AMB",
                },
                "subject": {"reference": f"Patient/{pid}"},
                "period": {
                    "start": "2024-03-01T08:00:00+08:00",
                    "end": "2024-03-01T08:30:00+08:00",
                },
                "serviceProvider": {"reference": "Organization/hosp-1"},
            },
            [("subject", "Patient", pid)],
        )
    return (
        "Condition",
        f"cond-{i}",
        {
            "clinicalStatus": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                        "code": "active",
                    }
                ]
            },
            "code": {
                "coding": [
                    {
                        "system": "http://snomed.info/sct",
                        "code": "38341003",
                        "display": "Hypertension",
                    }
                ]
            },
            "subject": {"reference": f"Patient/{pid}"},
            "onsetDateTime": f"{2000 + i % 24}-05-01",
        },
        [("subject", "Patient", pid), ("patient", "Patient", pid)],
    )


def load(url: str, n: int) -> float:
    """COPY n resources (and their subject/performer reference index rows); returns seconds."""
    import psycopg

    from ehr.store import Store

    Store(url).migrate()
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    n_patients = max(1, n // 10)
    t = time.perf_counter()
    with psycopg.connect(dsn) as conn, conn.cursor() as cur, tempfile.TemporaryFile("w+") as refs:
        with cur.copy(
            "COPY resources (pk, rtype, rid, version, last_updated, deleted, data) FROM STDIN"
        ) as cp:
            for i in range(n):
                pk = i + 1
                rtype, rid, body, ref_rows = _resource(i, n_patients)
                lu = T0 + i * 1000
                data = orjson.dumps(
                    {
                        "resourceType": rtype,
                        "id": rid,
                        "meta": {"versionId": "1", "lastUpdated": _instant(lu)},
                        **body,
                    }
                )
                cp.write_row((pk, rtype, rid, 1, lu, False, data))
                for param, ttype, tid in ref_rows:
                    refs.write(f"{pk}\t{rtype}\t{param}\t{ttype}\t{tid}\n")
        members = [f"pat-{k}" for k in range(0, n_patients, max(1, n_patients // GROUP_SIZE))][
            :GROUP_SIZE
        ]
        group = {"resourceType": "Group", "id": "bench-group", "meta": {"versionId": "1", "lastUpdated": _instant(T0)},
                 "type": "person", "actual": True,
                 "member": [{"entity": {"reference": f"Patient/{m}"}} for m in members]}  # fmt: skip
        cur.execute(
            "INSERT INTO resources (pk, rtype, rid, version, last_updated, deleted, data) "
            "VALUES (%s, 'Group', 'bench-group', 1, %s, false, %s)",
            (n + 1, T0, orjson.dumps(group)),
        )
        for m in members:
            refs.write(f"{n + 1}\tGroup\tmember\tPatient\t{m}\n")
        refs.seek(0)
        with cur.copy(
            "COPY idx_reference (pk, rtype, param, target_type, target_id) FROM STDIN"
        ) as cp2:
            while block := refs.read(1 << 20):
                cp2.write(block)
        cur.execute("SELECT setval('resources_pk_seq', %s)", (n + 1,))
        conn.commit()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return time.perf_counter() - t


def peak_rss_kb() -> int:
    """Peak RSS of this process image: ``VmHWM`` (``ru_maxrss`` is no good here: Linux carries
    the parent's peak over ``fork``/``exec``, so the child would report the loader's)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def child(url: str, level: str, data_dir: str, chunk: int) -> None:
    """One export, measured in this (fresh) process; prints a JSON line."""
    from ehr.bulk import BulkWorker, kick_off, status
    from ehr.store import Store

    store = Store(url)
    rss_before = peak_rss_kb()
    t = time.perf_counter()
    job = kick_off(store, level, group_id="bench-group" if level == "group" else None)
    BulkWorker(store, Path(data_dir), chunk_size=chunk).run_pending()
    seconds = time.perf_counter() - t
    st = status(store, job, base_url="b")
    assert st.status == "completed", st
    files = list((Path(data_dir) / "bulk" / job).iterdir())
    print(json.dumps({
        "seconds": seconds,
        "count": sum(e["count"] for e in st.manifest["output"]),  # type: ignore[index]
        "files": len(files),
        "bytes": sum(f.stat().st_size for f in files),
        "rss_before_kb": rss_before,
        "peak_rss_kb": peak_rss_kb(),
    }))  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--levels", default="system,patient,group")
    ap.add_argument("--chunk", type=int, default=2000)
    ap.add_argument(
        "--keep", action="store_true", help="keep the database (and reuse it with --no-load)"
    )
    ap.add_argument("--no-load", action="store_true")
    ap.add_argument(
        "--child", nargs=4, metavar=("URL", "LEVEL", "DIR", "CHUNK"), help=argparse.SUPPRESS
    )
    args = ap.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.child[2], int(args.child[3]))
        return

    print(f"machine: {machine()}")
    if args.no_load:
        url = PG_ADMIN.rsplit("/", 1)[0] + f"/{DB}"
    else:
        url = fresh_pg_database(DB)
        secs = load(url, args.n)
        print(
            f"loaded {args.n:,} resources with COPY (direct to the resources table) in {secs:.1f} s"
        )
    data_dir = tempfile.mkdtemp(prefix="ehr-bench-export-")
    try:
        for level in args.levels.split(","):
            out = subprocess.run(
                [sys.executable, __file__, "--child", url, level, data_dir, str(args.chunk)],
                capture_output=True, text=True, cwd=ROOT,
            )  # fmt: skip
            if out.returncode:
                sys.exit(f"{level}-level export failed:\n{out.stderr}")
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(
                f"{level:>7}-level export: {r['count']:,} resources in {r['seconds']:.1f} s = "
                f"{r['count'] / r['seconds']:,.0f} resources/s, {r['bytes'] / 2**20:,.0f} MiB in "
                f"{r['files']} files; peak RSS {r['peak_rss_kb'] / 1024:.0f} MB "
                f"({r['rss_before_kb'] / 1024:.0f} MB before the export); chunk {args.chunk}"
            )
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
        if not args.keep:
            from sqlalchemy import create_engine, text

            admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
            with admin.connect() as c:
                c.execute(text(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)'))
            admin.dispose()


if __name__ == "__main__":
    main()
