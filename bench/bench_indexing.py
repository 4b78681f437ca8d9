"""Search-indexing cost per resource (issue: write-time search indexer).

    .venv/bin/python bench/bench_indexing.py [--n 3000] [--repeat 5]

How: for each resource kind (Patient, Observation, Encounter) it builds N distinct resources
from the official R4 examples (new ids, names, identifiers, displays and values in each, as on a
real write path), then times
``ehr.search.indexer.extract(resource)`` over all N with ``time.perf_counter_ns``, ``--repeat``
times, after one warm-up pass (expressions are compiled and cached on first use; that one-off
cost is printed apart). It prints the median µs per resource and the rows per resource. For
scale it also times evaluating the same parameters' expressions with fhirpathpy alone (no row
building), on a smaller sample. Single process, no database.
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import machine  # noqa: E402
from ehr.definitions import search_parameters  # noqa: E402
from ehr.search.fhirpath import compile_path  # noqa: E402
from ehr.search.indexer import extract  # noqa: E402
from ehr.search.indexers.base import normalized  # noqa: E402

EXAMPLES = ROOT.parent / "shared" / "fhir-r4" / "examples"
SURNAMES = ["Chalmers", "Müller", "王", "Nguyễn", "O'Brien", "Smith", "张", "García", "Kowalski"]
GIVEN = ["Peter", "Zoë", "秀英", "Ana", "Li", "James", "三丰", "Olga", "Ravi"]


def _load(name: str) -> dict[str, Any]:
    return json.loads((EXAMPLES / f"{name}.json").read_text())


def variants(kind: str, n: int, rnd: random.Random) -> list[dict[str, Any]]:
    out = []
    if kind == "Patient":
        base = _load("Patient-example")
        for i in range(n):
            r = copy.deepcopy(base)
            r["id"] = f"p{i}"
            r["identifier"][0]["value"] = str(100000 + i)
            r["name"][0]["family"] = f"{rnd.choice(SURNAMES)}{i}"
            r["name"][0]["given"] = [f"{rnd.choice(GIVEN)}{i}", rnd.choice(GIVEN)]
            r["birthDate"] = (
                f"{rnd.randint(1930, 2020)}-{rnd.randint(1, 12):02d}-{rnd.randint(1, 28):02d}"
            )
            r["telecom"][1]["value"] = f"+86 138 {i:08d}"
            r["address"][0]["city"] = f"City {i % 500}"
            out.append(r)
    elif kind == "Observation":
        # a vital sign with a value and a blood pressure with two components, alternating
        weight, glucose = _load("Observation-example"), _load("Observation-f001")
        for i in range(n):
            if i % 2:
                r = copy.deepcopy(weight)
                r["valueQuantity"]["value"] = round(rnd.uniform(40, 300), 1)
            else:
                r = copy.deepcopy(glucose)
                r["valueQuantity"]["value"] = round(rnd.uniform(2, 20), 2)
                r["component"] = [
                    {
                        "code": {"coding": [{"system": "http://loinc.org", "code": c, "display": f"{d} {i}"}]},
                        "valueQuantity": {"value": rnd.randint(50, 200), "unit": "mmHg",
                                          "system": "http://unitsofmeasure.org", "code": "mm[Hg]"},
                    }
                    for c, d in (("8480-6", "Systolic"), ("8462-4", "Diastolic"))
                ]  # fmt: skip
            r["id"] = f"o{i}"
            r["subject"] = {"reference": f"Patient/p{i}"}
            out.append(r)
    else:
        base = _load("Encounter-example")
        for i in range(n):
            r = copy.deepcopy(base)
            r["id"] = f"e{i}"
            r["subject"] = {"reference": f"Patient/p{i}"}
            r["period"] = {
                "start": f"2024-01-{1 + i % 28:02d}T08:00:00Z",
                "end": f"2024-01-{1 + i % 28:02d}T09:00:00Z",
            }
            r["participant"] = [{"individual": {"reference": f"Practitioner/dr{i % 40}"}}]
            r["type"] = [
                {
                    "coding": [
                        {
                            "system": "http://snomed.info/sct",
                            "code": "11429006",
                            "display": f"Consultation {i}",
                        }
                    ]
                }
            ]
            out.append(r)
    return out


def time_extract(resources: list[dict[str, Any]], repeat: int) -> tuple[float, float]:
    per = []
    for _ in range(repeat):
        normalized.cache_clear()  # each pass sees its names as new text
        t0 = time.perf_counter_ns()
        for r in resources:
            extract(r)
        per.append((time.perf_counter_ns() - t0) / len(resources) / 1000)
    rows = sum(sum(len(v) for v in extract(r).values()) for r in resources) / len(resources)
    return statistics.median(per), rows


def time_fhirpathpy(resources: list[dict[str, Any]]) -> float:
    import fhirpathpy
    from fhirpathpy.models import models

    rtype = resources[0]["resourceType"]
    exprs = [
        re.sub(r"(?<![\w.])(?:Resource|DomainResource)\.", f"{rtype}.", sp.expression)
        for code, sp in search_parameters().for_type(rtype).items()
        if sp.expression
        and "resolve()" not in sp.expression
        and code not in ("_id", "_lastUpdated")
    ]
    fns = [fhirpathpy.compile(e, models["r4"]) for e in exprs]
    t0 = time.perf_counter_ns()
    for r in resources:
        for fn in fns:
            fn(r, {})
    return (time.perf_counter_ns() - t0) / len(resources) / 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    rnd = random.Random(42)
    print(f"machine: {machine()}")
    print(f"extract(): median of {args.repeat} passes over {args.n} distinct resources each\n")
    print(
        f"{'resource':<12} {'µs/resource':>12} {'rows':>6} {'first call (compile) ms':>24} {'fhirpathpy only µs':>19}"
    )
    for kind in ("Patient", "Observation", "Encounter"):
        res = variants(kind, args.n, rnd)
        compile_path.cache_clear()
        t0 = time.perf_counter_ns()
        extract(res[0])
        first_ms = (time.perf_counter_ns() - t0) / 1e6
        for r in res:  # warm-up pass
            extract(r)
        us, rows = time_extract(res, args.repeat)
        fp = time_fhirpathpy(res[:200])
        print(f"{kind:<12} {us:>12.1f} {rows:>6.1f} {first_ms:>24.1f} {fp:>19.1f}")


if __name__ == "__main__":
    main()
