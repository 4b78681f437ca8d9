"""Crash test (issue 4): ``kill -9`` the server while it ingests transaction Bundles, restart it,
and every Bundle is either wholly present or wholly absent — on PostgreSQL and on SQLite.

``ehr serve`` runs as a subprocess in its own process group on the test database. A thread
posts transaction Bundles (``POST /fhir``, 125 entries each) one after another; every resource
of Bundle ``k`` carries the tag ``urn:ehr:test:crash|<run>-<k>``. While a Bundle is in flight,
SIGKILL goes to the whole process group (as in a power cut: no shutdown code runs).
The server is started again on the same database, and then:

* every Bundle has 0 or all of its resources (read straight from the ``resources`` table and
  parsed, not through the search index), and the search index agrees with the table;
* every Bundle the server acknowledged (200) is wholly present;
* the restarted server ingests a new Bundle.

Two crashes per backend: one a little after ingest starts, one later.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import select
from test_api_support import service_token

from ehr.storage.db import make_engine
from ehr.storage.tables import resources

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
TAG = "urn:ehr:test:crash"
OBSERVATIONS = 120  # per Bundle: 1 Patient, 4 Encounters, 120 Observations
ENCOUNTERS = 4
PER_BUNDLE = 1 + ENCOUNTERS + OBSERVATIONS


def bundle(code: str, rng: random.Random) -> dict[str, Any]:
    """A transaction of POSTs with urn:uuid references, every resource tagged ``code``."""
    meta = {"tag": [{"system": TAG, "code": code}]}
    entries: list[dict[str, Any]] = []

    def add(resource: dict[str, Any]) -> str:
        urn = f"urn:uuid:{uuid.UUID(int=rng.getrandbits(128), version=4)}"
        entries.append({"fullUrl": urn, "resource": {**resource, "meta": meta},
                        "request": {"method": "POST", "url": resource["resourceType"]}})  # fmt: skip
        return urn

    pat = add({"resourceType": "Patient", "name": [{"family": "陈", "given": ["静"]}],
               "identifier": [{"system": TAG, "value": code}]})  # fmt: skip
    encs = [
        add({"resourceType": "Encounter", "status": "finished", "subject": {"reference": pat},
             "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}})
        for _ in range(ENCOUNTERS)
    ]  # fmt: skip
    for i in range(OBSERVATIONS):
        add({"resourceType": "Observation", "status": "final",
             "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
             "subject": {"reference": pat}, "encounter": {"reference": encs[i % ENCOUNTERS]},
             "effectiveDateTime": f"2025-0{1 + i % 9}-1{i % 10}T08:00:00+08:00",
             "valueQuantity": {"value": 60 + rng.randrange(40), "unit": "/min",
                               "system": "http://unitsofmeasure.org", "code": "/min"}})  # fmt: skip
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve(
    db_url: str, log: Path, *, workers: int = 1, extra_env: dict[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen[bytes], str, dict[str, str]]]:
    """``ehr serve`` (secured) in its own process group; yields (process, FHIR base, headers
    with a backend service's token)."""
    port = _free_port()
    env = {**os.environ, "EHR_DATABASE_URL": db_url, "EHR_BASE_URL": "", **(extra_env or {})}
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fhir_api.cli", "serve", "--port", str(port), "--workers", str(workers),
             "--log-level", "warning", "--no-access-log"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}/fhir"
    try:
        deadline = time.monotonic() + 40
        while True:
            try:
                if httpx.get(f"{base}/metadata", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.1)
        token = service_token(db_url, base)
        yield proc, base, {"Authorization": f"Bearer {token}"}
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


class Poster(threading.Thread):
    """Posts Bundles until told to stop or the server goes away; remembers what was sent and
    what was acknowledged, and whether a request is in flight."""

    def __init__(self, base: str, headers: dict[str, str], run: str, seed: int) -> None:
        super().__init__(daemon=True)
        self.base, self.run_id, self.rng = base, run, random.Random(seed)
        self.headers = {"Content-Type": "application/fhir+json", **headers}
        self.sent: list[str] = []
        self.acked: list[str] = []
        self.in_flight = threading.Event()
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=60, headers=self.headers) as c:
            k = 0
            while not self.stop.is_set():
                code = f"{self.run_id}-{k}"
                body = orjson.dumps(bundle(code, self.rng))
                self.sent.append(code)
                self.in_flight.set()
                try:
                    r = c.post(self.base, content=body)
                except httpx.HTTPError:
                    return  # the server died under us
                finally:
                    self.in_flight.clear()
                if r.status_code == 200:
                    self.acked.append(code)
                k += 1


def crash_while_ingesting(db_url: str, log: Path, run: str, after_acked: int, seed: int) -> Poster:
    rng = random.Random(seed)
    with serve(db_url, log) as (proc, base, headers):
        poster = Poster(base, headers, run, seed)
        poster.start()
        deadline = time.monotonic() + 60
        while len(poster.acked) < after_acked and poster.is_alive():
            assert time.monotonic() < deadline, "ingest too slow"
            time.sleep(0.02)
        assert poster.in_flight.wait(10), "no Bundle in flight"
        time.sleep(rng.uniform(0.02, 0.25))  # somewhere inside the next transaction
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        poster.stop.set()
        poster.join(timeout=70)
        assert not poster.is_alive()
    return poster


def tagged_counts(db_url: str) -> Counter[str]:
    """Resources per Bundle tag, read from the stored JSON (not through the search index)."""
    engine = make_engine(db_url)
    stored: Counter[str] = Counter()
    with engine.connect() as c:
        for (data,) in c.execute(select(resources.c.data).where(resources.c.deleted.is_(False))):
            for tag in orjson.loads(data).get("meta", {}).get("tag", []):
                if tag.get("system") == TAG:
                    stored[tag["code"]] += 1
    engine.dispose()
    return stored


def indexed_count(base: str, headers: dict[str, str], code: str) -> int:
    """Resources per Bundle tag, as the restarted server's ``_tag`` search counts them."""
    total = 0
    for rtype in ("Patient", "Encounter", "Observation"):
        r = httpx.get(
            f"{base}/{rtype}",
            params={"_tag": f"{TAG}|{code}", "_summary": "count"},
            headers=headers,
            timeout=30,
        )
        r.raise_for_status()
        total += int(r.json()["total"])
    return total


def test_kill_9_mid_ingest_leaves_every_bundle_whole_or_absent(db_url: str, tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    posters = [
        crash_while_ingesting(db_url, log, "a", after_acked=2, seed=1),
        crash_while_ingesting(db_url, log, "b", after_acked=4, seed=2),
    ]
    stored = tagged_counts(db_url)
    sent = [code for p in posters for code in p.sent]
    acked = {code for p in posters for code in p.acked}
    assert set(stored) <= set(sent)
    for code in sent:
        assert stored[code] in (0, PER_BUNDLE), (
            f"Bundle {code}: {stored[code]} of {PER_BUNDLE} resources"
        )
    for code in acked:
        assert stored[code] == PER_BUNDLE, f"acknowledged Bundle {code} is not all there"
    assert len(acked) >= 6
    unacked = [c for c in sent if c not in acked]
    assert unacked  # each crash cut a Bundle in flight (which may or may not have committed)

    with serve(db_url, log) as (
        _,
        base,
        headers,
    ):  # the restarted server sees the same, and ingests
        for code in sorted(stored):
            assert indexed_count(base, headers, code) == stored[code]
        for code in unacked:
            assert indexed_count(base, headers, code) == stored[code]
        r = httpx.post(base, content=orjson.dumps(bundle("after", random.Random(3))),
                       headers={"Content-Type": "application/fhir+json", **headers}, timeout=60)  # fmt: skip
        assert r.status_code == 200, r.text[:500]
        assert indexed_count(base, headers, "after") == PER_BUNDLE
