"""FHIR search at city scale on PostgreSQL (issue 3): latency at c1, throughput at c16.

    .venv/bin/python bench/bench_search.py                       # 10k and 100k scales
    .venv/bin/python bench/bench_search.py --scales 10k --reuse  # keep a loaded database
    .venv/bin/python bench/bench_search.py --http                # also HTTP + wrk
    .venv/bin/python bench/bench_search.py --scales 10k --reuse --only _has --only birthdate
    .venv/bin/python bench/bench_search.py --write-cost          # what revision 0009 costs writes
    .venv/bin/python bench/bench_search.py --scales 10k --reuse --compare-with /tmp/old  # 0009 A/B

Data (our own generator, deterministic, :func:`patient_block`): per scale N patients with Chinese
names (hanzi ``official`` + pinyin ``usual``, surnames drawn with their real frequencies, so
``family=王`` matches ~7%), a hashed citizen-ID identifier, a health-record number and an MRN,
birth dates 1930-2024, address, GP and managing organization; exactly 10 Observations per
patient on average (vital signs incl. a blood-pressure panel with components, and labs with
LOINC codes, UCUM quantities and dates spread over 2019-2025), 3 Encounters and 1.5 Conditions
(ICD-10) per patient, 40 Organizations and 800 Practitioners. Scales: ``10k`` = 10,000 patients /
100,000 observations, ``100k`` = 100,000 patients / 1,000,000 observations.

Loading (fast path, **no per-resource validation and no hooks**, unlike ``ehr load``): two
worker processes generate patient blocks, stamp them (id, versionId 1, lastUpdated), compute the
index rows with :func:`ehr.search.indexer.extract` (the write path's function) and ``COPY`` the
resources, history and index rows into PostgreSQL; secondary indexes are dropped before and
rebuilt after, then ``VACUUM ANALYZE``. ``pk`` = creation order (a block of 64 pks per patient).

Measured through :meth:`ehr.Store.search` (parse, SQL, page read; no HTTP, no Bundle
rendering): for each query, ``--iterations`` sequential searches with fresh random values
(p50/p95/p99 in ms) after a warm-up, then 16 processes issuing the same mix for ``--seconds``
(searches/s). ``--http`` adds the same queries through ``ehr serve --workers 2`` with wrk
(16 connections). Figures go to ``--out`` as a markdown section, with the EXPLAIN ANALYZE of
the slowest query.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import sys
import time
import uuid
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import PG_ADMIN, fresh_pg_database, machine, percentile  # noqa: E402
from ehr.identifiers import (  # noqa: E402
    CITIZEN_ID_HASH_SYSTEM,
    HEALTH_RECORD_SYSTEM,
    citizen_id_identifier,
    make_citizen_id,
)
from ehr.sitetime import CST  # noqa: E402

SEED = 2026
ID_KEY = b"bench-search-key"
PKS_PER_PATIENT = 64
FIRST_PATIENT_PK = 10_000
N_ORGS, N_PRACTITIONERS = 40, 800
T0 = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z in µs: lastUpdated = T0 + pk ms
SCALES = {"1k": 1_000, "10k": 10_000, "100k": 100_000}  # 1k: a smoke test
LOINC, UCUM, ICD10 = (
    "http://loinc.org",
    "http://unitsofmeasure.org",
    "http://hl7.org/fhir/sid/icd-10",
)
OBS_CAT = "http://terminology.hl7.org/CodeSystem/observation-category"

# fmt: off
SURNAMES = [  # (hanzi, pinyin, per mille of the population)
    ("王", "Wang", 71), ("李", "Li", 70), ("张", "Zhang", 67), ("刘", "Liu", 54), ("陈", "Chen", 46),
    ("杨", "Yang", 31), ("黄", "Huang", 24), ("赵", "Zhao", 23), ("吴", "Wu", 20), ("周", "Zhou", 19),
    ("徐", "Xu", 15), ("孙", "Sun", 14), ("马", "Ma", 13), ("朱", "Zhu", 12), ("胡", "Hu", 11),
    ("郭", "Guo", 11), ("何", "He", 10), ("高", "Gao", 9), ("林", "Lin", 9), ("罗", "Luo", 8),
    ("郑", "Zheng", 8), ("梁", "Liang", 7), ("谢", "Xie", 6), ("宋", "Song", 6), ("唐", "Tang", 6),
    ("许", "Xu", 5), ("韩", "Han", 5), ("冯", "Feng", 5), ("邓", "Deng", 5), ("曹", "Cao", 5),
    ("彭", "Peng", 4), ("曾", "Zeng", 4), ("肖", "Xiao", 4), ("田", "Tian", 4), ("董", "Dong", 4),
    ("袁", "Yuan", 4), ("潘", "Pan", 3), ("于", "Yu", 3), ("蒋", "Jiang", 3), ("蔡", "Cai", 3),
    ("余", "Yu", 3), ("杜", "Du", 3), ("叶", "Ye", 3), ("程", "Cheng", 3), ("苏", "Su", 3),
    ("魏", "Wei", 3), ("吕", "Lyu", 3), ("丁", "Ding", 3), ("任", "Ren", 3), ("沈", "Shen", 2),
    ("姚", "Yao", 2), ("卢", "Lu", 2), ("姜", "Jiang", 2), ("崔", "Cui", 2), ("钟", "Zhong", 2),
    ("谭", "Tan", 2), ("陆", "Lu", 2), ("汪", "Wang", 2), ("范", "Fan", 2), ("金", "Jin", 2),
    ("石", "Shi", 2), ("廖", "Liao", 2), ("贾", "Jia", 2), ("夏", "Xia", 2), ("韦", "Wei", 2),
    ("付", "Fu", 2), ("方", "Fang", 2), ("白", "Bai", 2), ("邹", "Zou", 2), ("孟", "Meng", 2),
    ("熊", "Xiong", 2), ("秦", "Qin", 2), ("邱", "Qiu", 2), ("江", "Jiang", 2), ("尹", "Yin", 2),
    ("薛", "Xue", 2), ("闫", "Yan", 2), ("段", "Duan", 2), ("雷", "Lei", 2), ("侯", "Hou", 1),
    ("龙", "Long", 1), ("史", "Shi", 1), ("陶", "Tao", 1), ("黎", "Li", 1), ("贺", "He", 1),
    ("顾", "Gu", 1), ("毛", "Mao", 1), ("郝", "Hao", 1), ("龚", "Gong", 1), ("邵", "Shao", 1),
    ("万", "Wan", 1), ("钱", "Qian", 1), ("严", "Yan", 1), ("覃", "Qin", 1), ("武", "Wu", 1),
    ("戴", "Dai", 1), ("莫", "Mo", 1), ("孔", "Kong", 1), ("向", "Xiang", 1), ("欧阳", "Ouyang", 1),
]
GIVEN = [
    ("伟", "wei"), ("芳", "fang"), ("娜", "na"), ("秀", "xiu"), ("英", "ying"), ("敏", "min"),
    ("静", "jing"), ("丽", "li"), ("强", "qiang"), ("磊", "lei"), ("军", "jun"), ("洋", "yang"),
    ("勇", "yong"), ("艳", "yan"), ("杰", "jie"), ("娟", "juan"), ("涛", "tao"), ("明", "ming"),
    ("超", "chao"), ("霞", "xia"), ("平", "ping"), ("刚", "gang"), ("桂", "gui"), ("兰", "lan"),
    ("玉", "yu"), ("华", "hua"), ("建", "jian"), ("国", "guo"), ("文", "wen"), ("红", "hong"),
    ("梅", "mei"), ("志", "zhi"), ("海", "hai"), ("燕", "yan"), ("鹏", "peng"), ("辉", "hui"),
    ("婷", "ting"), ("雪", "xue"), ("慧", "hui"), ("晨", "chen"), ("欣", "xin"), ("宇", "yu"),
    ("浩", "hao"), ("轩", "xuan"), ("子", "zi"), ("涵", "han"), ("梓", "zi"), ("萱", "xuan"),
    ("博", "bo"), ("睿", "rui"), ("嘉", "jia"), ("怡", "yi"), ("佳", "jia"), ("俊", "jun"),
    ("琳", "lin"), ("颖", "ying"), ("晓", "xiao"), ("东", "dong"), ("春", "chun"), ("雨", "yu"),
    ("思", "si"), ("诗", "shi"), ("峰", "feng"), ("斌", "bin"), ("波", "bo"), ("宁", "ning"),
    ("飞", "fei"), ("云", "yun"), ("凤", "feng"), ("福", "fu"), ("德", "de"), ("成", "cheng"),
    ("瑞", "rui"), ("安", "an"), ("康", "kang"), ("淑", "shu"), ("珍", "zhen"), ("荣", "rong"),
]
DISTRICTS = [("330102", "上城区"), ("330105", "拱墅区"), ("330106", "西湖区"), ("330108", "滨江区"),
             ("330109", "萧山区"), ("330110", "余杭区"), ("330111", "富阳区"), ("330112", "临安区")]
STREETS = ["解放路", "延安路", "中山路", "文三路", "学院路", "建国路", "庆春路", "凤起路", "江南大道", "人民路"]
#: code, display, category, unit, mean, sd, decimals
VITALS = [
    ("8867-4", "Heart rate", "/min", 75, 12, 0), ("9279-1", "Respiratory rate", "/min", 16, 3, 0),
    ("8310-5", "Body temperature", "Cel", 36.7, 0.4, 1), ("29463-7", "Body weight", "kg", 64, 12, 1),
    ("8302-2", "Body height", "cm", 165, 9, 0), ("59408-5", "Oxygen saturation", "%", 97, 2, 0),
    ("39156-5", "Body mass index", "kg/m2", 23, 3.5, 1),
]
LABS = [
    ("2345-7", "Glucose [Mass/volume] in Serum or Plasma", "mg/dL", 100, 25, 0),
    ("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%", 5.9, 0.9, 1),
    ("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "mg/dL", 0.9, 0.25, 2),
    ("2093-3", "Cholesterol [Mass/volume] in Serum or Plasma", "mg/dL", 190, 35, 0),
    ("718-7", "Hemoglobin [Mass/volume] in Blood", "g/dL", 13.8, 1.6, 1),
    ("6690-2", "Leukocytes [#/volume] in Blood", "10*3/uL", 6.8, 1.8, 1),
    ("2823-3", "Potassium [Moles/volume] in Serum or Plasma", "mmol/L", 4.2, 0.4, 1),
    ("2951-2", "Sodium [Moles/volume] in Serum or Plasma", "mmol/L", 140, 3, 0),
    ("1742-6", "Alanine aminotransferase [Enzymatic activity/volume] in Serum or Plasma", "U/L", 28, 12, 0),
]
CONDITIONS = [("E11.9", "2型糖尿病"), ("I10", "原发性高血压"), ("J06.9", "急性上呼吸道感染"),
              ("K29.7", "胃炎"), ("M54.5", "腰痛"), ("E78.5", "高脂血症"), ("J45.9", "哮喘"),
              ("N39.0", "尿路感染"), ("I25.1", "冠状动脉粥样硬化性心脏病"), ("F32.9", "抑郁发作"),
              ("C34.9", "肺恶性肿瘤"), ("G43.9", "偏头痛")]
CONDITION_WEIGHTS = [14, 22, 18, 10, 9, 12, 4, 4, 4, 2, 0.5, 0.5]
# fmt: on


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def org_ids() -> list[str]:
    rng = random.Random(SEED * 7)
    return [_uuid(rng) for _ in range(N_ORGS)]


def practitioner_ids() -> list[str]:
    rng = random.Random(SEED * 11)
    return [_uuid(rng) for _ in range(N_PRACTITIONERS)]


def _ref(rtype: str, rid: str) -> dict[str, str]:
    return {"reference": f"{rtype}/{rid}"}


def _surname(rng: random.Random) -> tuple[str, str]:
    h, p, _ = rng.choices(SURNAMES, weights=[w for *_, w in SURNAMES])[0]
    return h, p


def _given(rng: random.Random) -> tuple[str, str]:
    parts = rng.sample(GIVEN, 2 if rng.random() < 0.7 else 1)
    return "".join(h for h, _ in parts), "".join(p for _, p in parts).capitalize()


def _dt(rng: random.Random, start: date, end: date) -> datetime:
    days = (end - start).days
    d = start + timedelta(days=rng.randrange(days))
    return datetime(
        d.year,
        d.month,
        d.day,
        rng.randrange(7, 20),
        rng.randrange(60),
        rng.randrange(60),
        tzinfo=CST,
    )


def _iso(dt: datetime) -> str:
    return dt.isoformat(timespec="seconds")


def organizations() -> list[dict[str, Any]]:
    out = []
    for i, oid in enumerate(org_ids()):
        d = DISTRICTS[i % len(DISTRICTS)]
        kind = "人民医院" if i < 8 else "社区卫生服务中心"
        out.append({
            "resourceType": "Organization", "id": oid, "active": True,
            "identifier": [{"system": "urn:oid:2.16.156.10011.1.5", "value": f"4700{i:05d}"}],
            "type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/organization-type", "code": "prov"}]}],
            "name": f"江州市{d[1]}第{i + 1}{kind}",
            "address": [{"city": "江州市", "district": d[1], "country": "CN"}],
        })  # fmt: skip
    return out


def practitioners() -> list[dict[str, Any]]:
    rng = random.Random(SEED * 13)
    out = []
    for pid in practitioner_ids():
        (fh, fp), (gh, gp) = _surname(rng), _given(rng)
        out.append({
            "resourceType": "Practitioner", "id": pid, "active": True,
            "name": [{"use": "official", "text": fh + gh, "family": fh, "given": [gh]},
                     {"use": "usual", "family": fp, "given": [gp]}],
            "gender": rng.choice(["male", "female"]),
        })  # fmt: skip
    return out


def patient_block(i: int, orgs: list[str], pracs: list[str]) -> list[dict[str, Any]]:
    """Patient ``i`` and its encounters, observations and conditions (deterministic)."""
    rng = random.Random(SEED * 1_000_003 + i)
    pid = _uuid(rng)
    female = rng.random() < 0.51
    born = date(1930, 1, 1) + timedelta(days=rng.randrange(95 * 365))
    district = rng.choice(DISTRICTS)
    seq = rng.randrange(500) * 2 + (0 if female else 1)
    cid = make_citizen_id(district[0], born, seq, female)
    (fh, fp), (gh, gp) = _surname(rng), _given(rng)
    org = orgs[rng.randrange(N_ORGS)]
    gp_ref = pracs[rng.randrange(N_PRACTITIONERS)]
    patient = {
        "resourceType": "Patient", "id": pid,
        "identifier": [
            citizen_id_identifier(cid, ID_KEY, today=date(2026, 1, 1)),
            {"system": HEALTH_RECORD_SYSTEM, "value": f"{district[0]}001002{i:05d}"[:17]},
            {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]},
             "system": f"https://ehr.example.cn/sid/mrn/{org}", "value": f"MRN{i:08d}"},
        ],
        "active": True,
        "name": [{"use": "official", "text": fh + gh, "family": fh, "given": [gh]},
                 {"use": "usual", "family": fp, "given": [gp]}],
        "telecom": [{"system": "phone", "value": f"13{rng.randrange(10**9):09d}", "use": "mobile"}],
        "gender": "female" if female else "male",
        "birthDate": born.isoformat(),
        "address": [{"use": "home", "line": [f"{rng.choice(STREETS)}{rng.randrange(1, 400)}号"],
                     "city": "江州市", "district": district[1], "postalCode": "310000", "country": "CN"}],
        "generalPractitioner": [_ref("Practitioner", gp_ref)],
        "managingOrganization": _ref("Organization", org),
    }  # fmt: skip
    out: list[dict[str, Any]] = [patient]
    subject = _ref("Patient", pid)
    encounters = []
    for _ in range(3):
        start = _dt(rng, date(2019, 1, 1), date(2025, 12, 31))
        cls = rng.choices(["AMB", "IMP", "EMER"], weights=[80, 12, 8])[0]
        end = start + (
            timedelta(days=rng.randrange(1, 10))
            if cls == "IMP"
            else timedelta(minutes=rng.randrange(10, 90))
        )
        eid = _uuid(rng)
        encounters.append((eid, start))
        out.append({
            "resourceType": "Encounter", "id": eid, "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": cls},
            "type": [{"coding": [{"system": "http://snomed.info/sct", "code": "11429006", "display": "Consultation"}]}],
            "subject": subject,
            "participant": [{"individual": _ref("Practitioner", pracs[rng.randrange(N_PRACTITIONERS)])}],
            "period": {"start": _iso(start), "end": _iso(end)},
            "serviceProvider": _ref("Organization", rng.choice([org, orgs[rng.randrange(N_ORGS)]])),
        })  # fmt: skip
    for _ in range(1 + i % 2):
        code, text = rng.choices(CONDITIONS, weights=CONDITION_WEIGHTS)[0]
        eid, when = rng.choice(encounters)
        out.append({
            "resourceType": "Condition", "id": _uuid(rng),
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                           "code": rng.choice(["active", "active", "resolved"])}]},
            "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                                               "code": "confirmed"}]},
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category",
                                      "code": "encounter-diagnosis"}]}],
            "code": {"coding": [{"system": ICD10, "code": code, "display": text}], "text": text},
            "subject": subject, "encounter": _ref("Encounter", eid),
            "onsetDateTime": _iso(when - timedelta(days=rng.randrange(0, 400))),
            "recordedDate": _iso(when),
        })  # fmt: skip
    # exactly 10 per patient on average: pairs of patients get 10 - d and 10 + d
    d = random.Random(SEED * 97 + i // 2).randrange(0, 8)
    n_obs = 10 - d if i % 2 == 0 else 10 + d
    for _ in range(n_obs):
        eid, when = rng.choice(encounters)
        when = when + timedelta(minutes=rng.randrange(0, 120))
        performer = [_ref("Practitioner", pracs[rng.randrange(N_PRACTITIONERS)])]
        base = {
            "resourceType": "Observation", "id": _uuid(rng), "status": "final",
            "subject": subject, "encounter": _ref("Encounter", eid),
            "effectiveDateTime": _iso(when), "issued": _iso(when + timedelta(hours=2)),
            "performer": performer,
        }  # fmt: skip
        r = rng.random()
        if r < 0.12:  # blood pressure panel
            sys_bp, dia_bp = round(rng.gauss(125, 15)), round(rng.gauss(80, 10))
            obs = {
                **base,
                "category": [{"coding": [{"system": OBS_CAT, "code": "vital-signs", "display": "Vital Signs"}]}],
                "code": {"coding": [{"system": LOINC, "code": "85354-9", "display": "Blood pressure panel"}], "text": "血压"},
                "component": [
                    {"code": {"coding": [{"system": LOINC, "code": "8480-6", "display": "Systolic blood pressure"}]},
                     "valueQuantity": {"value": sys_bp, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"}},
                    {"code": {"coding": [{"system": LOINC, "code": "8462-4", "display": "Diastolic blood pressure"}]},
                     "valueQuantity": {"value": dia_bp, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"}},
                ],
            }  # fmt: skip
        else:
            vital = r < 0.55
            code, display, unit, mean, sd, dec = rng.choice(VITALS if vital else LABS)
            value = round(max(rng.gauss(mean, sd), 0.01), dec)
            cat = ("vital-signs", "Vital Signs") if vital else ("laboratory", "Laboratory")
            obs = {
                **base,
                "category": [{"coding": [{"system": OBS_CAT, "code": cat[0], "display": cat[1]}]}],
                "code": {"coding": [{"system": LOINC, "code": code, "display": display}], "text": display},
                "valueQuantity": {"value": int(value) if dec == 0 else value, "unit": unit, "system": UCUM, "code": unit},
            }  # fmt: skip
        out.append(obs)
    return out


# ------------------------------------------------------------------------------ loading

_INDEX_TABLES = ("string", "token", "reference", "date", "number", "quantity", "uri", "composite")
_worker_conn: Any = None


def _pg_dsn(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def _init_worker(url: str) -> None:
    global _worker_conn
    import psycopg

    _worker_conn = psycopg.connect(_pg_dsn(url))


def _copy_resources(items: list[tuple[int, dict[str, Any]]]) -> tuple[int, int]:
    """Stamp, index and COPY ``(pk, resource)`` pairs; (resources, index rows)."""
    from ehr.definitions import search_parameters
    from ehr.model import dumps, stamp
    from ehr.search.indexer import extract
    from ehr.search.indexers.base import columns_of

    reg = search_parameters()
    cols = {k: columns_of(k) for k in _INDEX_TABLES}
    res_rows: list[tuple[Any, ...]] = []
    idx_rows: dict[str, list[tuple[Any, ...]]] = {k: [] for k in _INDEX_TABLES}
    for pk, r in items:
        ts = T0 + pk * 1000
        body = stamp(r, r["id"], 1, ts)
        res_rows.append((pk, r["resourceType"], r["id"], 1, ts, False, dumps(body)))
        for kind, rows in extract(body, reg).items():
            c = cols[kind]
            idx_rows[kind].extend((pk, r["resourceType"], *(row[x] for x in c)) for row in rows)
    conn = _worker_conn
    with conn.cursor() as cur:
        with cur.copy(
            "COPY resources (pk, rtype, rid, version, last_updated, deleted, data) FROM STDIN"
        ) as cp:
            for row in res_rows:
                cp.write_row(row)
        with cur.copy(
            "COPY resource_history (pk, version, rtype, rid, last_updated, method, deleted, data) FROM STDIN"
        ) as cp:
            for pk, t, rid, v, ts, dl, data in res_rows:
                cp.write_row((pk, v, t, rid, ts, "create", dl, data))
        n_idx = 0
        for kind, kind_rows in idx_rows.items():
            if not kind_rows:
                continue
            names = ", ".join(("pk", "rtype", *cols[kind]))
            with cur.copy(f"COPY idx_{kind} ({names}) FROM STDIN") as cp:
                for idx_row in kind_rows:
                    cp.write_row(idx_row)
            n_idx += len(kind_rows)
    conn.commit()
    return len(res_rows), n_idx


def _load_block(span: tuple[int, int]) -> tuple[int, int]:
    orgs, pracs = org_ids(), practitioner_ids()
    items: list[tuple[int, dict[str, Any]]] = []
    for i in range(*span):
        base = FIRST_PATIENT_PK + i * PKS_PER_PATIENT
        block = patient_block(i, orgs, pracs)
        assert len(block) < PKS_PER_PATIENT
        items.extend((base + k, r) for k, r in enumerate(block))
    return _copy_resources(items)


def _load_shared(_: int) -> tuple[int, int]:
    items = list(enumerate([*organizations(), *practitioners()], start=1))
    return _copy_resources(items)


def load(url: str, n_patients: int, workers: int = 2) -> dict[str, float]:
    """Generate and load one scale into the (migrated, empty) database at ``url``."""
    from sqlalchemy import text
    from tqdm import tqdm

    from ehr.storage.db import make_engine

    eng = make_engine(url)
    tables = ["resources", "resource_history", *(f"idx_{k}" for k in _INDEX_TABLES)]
    with eng.begin() as c:
        defs = c.execute(
            text(
                "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' "
                "AND tablename = ANY(:t) AND indexname NOT LIKE 'pk\\_%' AND indexname NOT LIKE 'uq\\_%'"
            ),
            {"t": tables},
        ).all()
        for name, _ in defs:
            c.execute(text(f'DROP INDEX "{name}"'))
    t0 = time.perf_counter()
    spans = [(s, min(s + 250, n_patients)) for s in range(0, n_patients, 250)]
    n_res = n_idx = 0
    with (
        mp.get_context("fork").Pool(workers, _init_worker, (url,)) as pool,
        tqdm(total=n_patients, desc=f"load {n_patients} patients", unit=" pat") as bar,
    ):
        a, b = pool.apply(_load_shared, (0,))
        n_res, n_idx = n_res + a, n_idx + b
        for (a, b), span in zip(pool.imap(_load_block, spans), spans, strict=True):
            n_res, n_idx = n_res + a, n_idx + b
            bar.update(span[1] - span[0])
    t_copy = time.perf_counter() - t0
    with eng.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.execute(text("SET statement_timeout = 0"))
        c.execute(text("SET maintenance_work_mem = '1GB'"))
        c.execute(text("SET max_parallel_maintenance_workers = 2"))
        for _name, ddl in tqdm(defs, desc="indexes", unit=" idx"):
            c.execute(text(ddl))
        c.execute(text("SELECT setval('resources_pk_seq', (SELECT max(pk) FROM resources))"))
        c.execute(text("VACUUM ANALYZE"))
        c.execute(
            text(
                "INSERT INTO sequence_counters (name, value) VALUES ('bench_search_patients', :n)"
            ),
            {"n": n_patients},
        )
    total = time.perf_counter() - t0
    eng.dispose()
    return {"resources": n_res, "index_rows": n_idx, "copy_s": t_copy, "total_s": total}


def loaded_patients(url: str) -> int | None:
    from sqlalchemy import text

    from ehr.storage.db import make_engine

    eng = make_engine(url)
    try:
        with eng.connect() as c:
            v = c.execute(
                text("SELECT value FROM sequence_counters WHERE name = 'bench_search_patients'")
            ).scalar()
    except Exception:
        v = None
    eng.dispose()
    return int(v) if v is not None else None


def database(scale: str, reuse: bool) -> tuple[str, dict[str, float] | None]:
    """The loaded database of ``scale`` (loaded now unless ``reuse`` finds it complete)."""
    from ehr.storage.db import make_engine
    from ehr.storage.migrate import upgrade

    name = f"ehr_bench_search_{scale}"
    url = PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    if reuse and loaded_patients(url) == SCALES[scale]:
        eng = make_engine(url)
        upgrade(eng)  # later revisions (indexes) apply to a reused database too
        eng.dispose()
        return url, None
    url = fresh_pg_database(name)
    eng = make_engine(url)
    upgrade(eng)
    eng.dispose()
    return url, load(url, SCALES[scale])


# ------------------------------------------------------------------------------ queries

Query = Callable[[random.Random], tuple[str, list[tuple[str, str]]]]


class Samples:
    """Real values from the loaded data to search for."""

    def __init__(self, url: str, n: int = 400) -> None:
        from sqlalchemy import text

        from ehr.storage.db import make_engine

        eng = make_engine(url)
        with eng.connect() as c:
            c.execute(text("SELECT setseed(0.42)"))
            pats = (
                c.execute(
                    text(
                        "SELECT data FROM resources WHERE rtype = 'Patient' ORDER BY random() LIMIT :n"
                    ),
                    {"n": n},
                )
                .scalars()
                .all()
            )
            obs = (
                c.execute(
                    text(
                        "SELECT data FROM resources WHERE rtype = 'Observation' "
                        "AND pk IN (SELECT pk FROM resources WHERE rtype = 'Observation' ORDER BY random() LIMIT :n)"
                    ),
                    {"n": n},
                )
                .scalars()
                .all()
            )
        eng.dispose()
        self.patients = [json.loads(p) for p in pats]
        self.observations = [json.loads(o) for o in obs]

    def patient(self, rng: random.Random) -> dict[str, Any]:
        return rng.choice(self.patients)

    def citizen(self, rng: random.Random) -> str:
        p = self.patient(rng)
        ident = next(i for i in p["identifier"] if i["system"] == CITIZEN_ID_HASH_SYSTEM)
        return f"{CITIZEN_ID_HASH_SYSTEM}|{ident['value']}"


def queries(s: Samples) -> dict[str, Query]:
    codes = [c for c, *_ in VITALS + LABS] + ["85354-9"]

    def family(rng: random.Random) -> tuple[str, list[tuple[str, str]]]:
        return "Patient", [("family", s.patient(rng)["name"][0]["family"])]

    def identifier(rng: random.Random) -> tuple[str, list[tuple[str, str]]]:
        return "Patient", [("identifier", s.citizen(rng))]

    def contains(rng: random.Random) -> tuple[str, list[tuple[str, str]]]:
        return "Patient", [("name:contains", s.patient(rng)["name"][0]["given"][0])]

    def birthdate(rng: random.Random) -> tuple[str, list[tuple[str, str]]]:
        y = rng.randrange(1935, 2020)
        return "Patient", [("birthdate", f"ge{y}-01-01"), ("birthdate", f"lt{y + 1}-01-01")]

    def obs(rng: random.Random) -> tuple[str, list[tuple[str, str]]]:
        o = rng.choice(s.observations)
        code = o["code"]["coding"][0]["code"]
        return "Observation", [
            ("subject", o["subject"]["reference"]), ("code", f"{LOINC}|{code}"),
            ("date", "ge2021-01-01"), ("_sort", "-date"),
        ]  # fmt: skip

    def chained(rng: random.Random) -> tuple[str, list[tuple[str, str]]]:
        return "Observation", [("subject:Patient.identifier", s.citizen(rng))]

    def has(rng: random.Random) -> tuple[str, list[tuple[str, str]]]:
        code = rng.choices(CONDITIONS, weights=CONDITION_WEIGHTS)[0][0]
        return "Patient", [("_has:Condition:patient:code", f"{ICD10}|{code}")]

    def count(rng: random.Random) -> tuple[str, list[tuple[str, str]]]:
        return "Observation", [("_summary", "count")]

    def code_page1(rng: random.Random) -> tuple[str, list[tuple[str, str]]]:
        return "Observation", [("code", f"{LOINC}|{rng.choice(codes)}"), ("_count", "50")]

    return {
        "Patient?family=": family,
        "Patient?identifier=": identifier,
        "Patient?name:contains=": contains,
        "Patient?birthdate=ge…&birthdate=lt…": birthdate,
        "Observation?subject&code&date=ge&_sort=-date": obs,
        "Observation?subject:Patient.identifier=": chained,
        "Patient?_has:Condition:patient:code=": has,
        "Observation?_summary=count": count,
        "Observation?code= page 1": code_page1,
    }


def page50_cursors(store: Any, n: int, seed: int = 5) -> list[tuple[str, list[tuple[str, str]]]]:
    """``Observation?code=…&_count=50`` queries positioned at page 50 (following next links)."""
    rng = random.Random(seed)
    codes = [c for c, *_ in VITALS + LABS]
    out = []
    for _ in range(n):
        params = [("code", f"{LOINC}|{rng.choice(codes)}"), ("_count", "50")]
        for _page in range(49):
            page = store.search("Observation", params)
            assert page.next_params, "fewer than 50 pages"
            params = page.next_params
        out.append(("Observation", params))
    return out


def time_c1(store: Any, q: Query, iterations: int, seed: int = 1) -> list[float]:
    rng = random.Random(seed)
    for _ in range(5):
        store.search(*q(rng))
    out = []
    for _ in range(iterations):
        rtype, params = q(rng)
        t0 = time.perf_counter()
        store.search(rtype, params)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def _c16_worker(args: tuple[str, str, list[tuple[str, list[tuple[str, str]]]], float, Any]) -> int:
    url, _name, work, seconds, barrier = args
    from ehr.store import Store

    store = Store(url, pool_size=1)
    store.search(*work[0])
    barrier.wait()
    end = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < end:
        store.search(*work[n % len(work)])
        n += 1
    store.dispose()
    return n


def throughput(url: str, name: str, work: list[tuple[str, list[tuple[str, str]]]], seconds: float,
               clients: int = 16) -> float:  # fmt: skip
    ctx = mp.get_context("fork")
    with ctx.Manager() as m:
        barrier = m.Barrier(clients)
        with ctx.Pool(clients) as pool:
            t0 = time.perf_counter()
            counts = pool.map(
                _c16_worker,
                [(url, name, work[i::clients] or work, seconds, barrier) for i in range(clients)],
            )
            _ = t0
    return sum(counts) / seconds


def explain(url: str, store: Any, rtype: str, params: list[tuple[str, str]]) -> str:
    """EXPLAIN ANALYZE of the statements the engine runs for a search: the page query and, when
    there is one, the count (not ``max(pk)`` nor the read of the page's rows by pk)."""
    from sqlalchemy import event

    captured: list[tuple[str, Any]] = []

    def grab(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
    ) -> None:
        captured.append((statement, parameters))

    engines = {id(e): e for e in (store.engine, getattr(store, "_read_engine", store.engine))}
    for e in engines.values():
        event.listen(e, "before_cursor_execute", grab)
    try:
        store.search(rtype, params)
    finally:
        for e in engines.values():
            event.remove(e, "before_cursor_execute", grab)
    main = [
        c
        for c in captured
        if "max(resources.pk)" not in c[0] and "WHERE resources.pk IN" not in c[0]
    ]
    plans = []
    with store.engine.connect() as c:
        raw = c.connection.driver_connection
        for statement, parameters in main:
            with raw.cursor() as cur:
                cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)
                kind = "count" if "count(*)" in statement else "page"
                plans.append(f"-- {kind} query\n" + "\n".join(r[0] for r in cur.fetchall()))
    return "\n\n".join(plans)


# ------------------------------------------------------------------------------ HTTP


def _wrk(base: str, lua: str, seconds: int) -> dict[str, float | None]:
    """wrk with 16 connections and a 30 s request timeout (slow searches queue behind two
    workers); requests/s, p50/p99 in ms (None when no request completed), errors."""
    import re
    import subprocess
    import tempfile

    from bench._common import _ms

    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(lua)
    cmd = ["wrk", "-t", "2", "-c", "16", "-d", f"{seconds}s", "--timeout", "30s", "--latency"]
    out = subprocess.run([*cmd, "-s", f.name, base], capture_output=True, text=True).stdout
    os.unlink(f.name)

    def grab(pattern: str) -> str | None:
        m = re.search(pattern, out)
        return m[1] if m else None

    rps, p50, p99 = (
        grab(r"Requests/sec:\s+([\d.]+)"),
        grab(r"50%\s+([\d.]+\w+)"),
        grab(r"99%\s+([\d.]+\w+)"),
    )
    non2xx, timeouts = grab(r"Non-2xx or 3xx responses:\s+(\d+)"), grab(r"timeout (\d+)")
    return {
        "rps": float(rps) if rps else 0.0,
        "p50_ms": _ms(p50) if p50 else None,
        "p99_ms": _ms(p99) if p99 else None,
        "non_2xx": float(non2xx or 0),
        "timeouts": float(timeouts or 0),
    }


def http_figures(
    url: str, s: Samples, qs: dict[str, Query], seconds: int
) -> dict[str, dict[str, float | None]]:
    from bench._common import server

    out: dict[str, dict[str, float | None]] = {}
    with server(url, workers=2) as base:
        for name, q in qs.items():
            rng = random.Random(3)
            paths = []
            for _ in range(200):
                rtype, params = q(rng)
                paths.append(f"/fhir/{rtype}?" + urlencode(params, quote_via=quote))
            lua = (
                "paths = {" + ",".join(json.dumps(p) for p in paths) + "}\n"
                "i = 0\nrequest = function()\n  i = i % #paths + 1\n"
                "  return wrk.format('GET', paths[i], {Accept='application/fhir+json', "
                f"Authorization='Bearer {base.token}'}})\nend\n"
            )
            out[name] = _wrk(base.rsplit("/fhir", 1)[0], lua, seconds)
            print(f"[http] {name:<48} {out[name]}")
    return out


# ------------------------------------------------------------------------------ main


def measure(scale: str, url: str, args: argparse.Namespace) -> dict[str, Any]:
    from ehr.store import Store

    store = Store(url, pool_size=4, custom_search_parameters=False)
    s = Samples(url)
    qs = queries(s)
    results: dict[str, Any] = {"c1": {}, "c16": {}, "explain": {}}
    for name, q in qs.items():
        n = max(20, args.iterations // 10) if "count" in name else args.iterations
        results["c1"][name] = time_c1(store, q, n)
        print(f"[{scale}] {name:<48} p50 {percentile(results['c1'][name], 50):8.2f} ms  "
              f"p95 {percentile(results['c1'][name], 95):8.2f}  p99 {percentile(results['c1'][name], 99):8.2f}")  # fmt: skip
    p50_work = page50_cursors(store, args.page_samples)
    name = "Observation?code= page 50"
    lat = []
    for _ in range(max(1, args.iterations // len(p50_work))):
        for rtype, params in p50_work:
            t0 = time.perf_counter()
            store.search(rtype, params)
            lat.append((time.perf_counter() - t0) * 1000)
    results["c1"][name] = lat
    print(
        f"[{scale}] {name:<48} p50 {percentile(lat, 50):8.2f} ms  p95 {percentile(lat, 95):8.2f}  p99 {percentile(lat, 99):8.2f}"
    )
    if not args.no_c16:
        mixes: list[tuple[str, Query | None]] = [*qs.items(), (name, None)]
        for qname, qmaybe in mixes:
            if qmaybe is None:
                work = p50_work
            else:
                rng = random.Random(9)
                work = [qmaybe(rng) for _ in range(400 if "count" not in qname else 4)]
            results["c16"][qname] = throughput(url, qname, work, args.seconds)
            print(f"[{scale}] c16 {qname:<44} {results['c16'][qname]:8.1f} searches/s")
    slowest = max(
        (k for k in qs if "count" not in k), key=lambda k: percentile(results["c1"][k], 95)
    )
    rng = random.Random(11)
    for k in dict.fromkeys([slowest, *args.explain]):
        if k in qs:
            results["explain"][k] = explain(url, store, *qs[k](rng))
    results["slowest"] = slowest
    if args.http:
        results["http"] = http_figures(url, s, qs, args.http_seconds)
    store.dispose()
    return results


def only_c1(scale: str, url: str, args: argparse.Namespace) -> None:
    """``--only``: c1 latency (min, p50, p95, p99) of the chosen queries, printed."""
    from ehr.store import Store

    store = Store(url, pool_size=4, custom_search_parameters=False)
    qs = queries(Samples(url))
    print(f"[{scale}] load average {os.getloadavg()[0]:.1f}")
    for name, q in qs.items():
        if not any(o in name for o in args.only):
            continue
        lat = time_c1(store, q, args.iterations)
        print(f"[{scale}] {name:<48} min {min(lat):7.2f}  p50 {percentile(lat, 50):7.2f}  "
              f"p95 {percentile(lat, 95):7.2f}  p99 {percentile(lat, 99):7.2f} ms")  # fmt: skip
    store.dispose()


def counts(url: str) -> dict[str, int]:
    from sqlalchemy import text

    from ehr.storage.db import make_engine

    eng = make_engine(url)
    with eng.connect() as c:
        rows = c.execute(
            text("SELECT rtype, count(*) FROM resources GROUP BY rtype ORDER BY 2 DESC")
        ).all()
        idx = {
            k: int(c.execute(text(f"SELECT count(*) FROM idx_{k}")).scalar_one())
            for k in _INDEX_TABLES
        }
        size = c.execute(
            text("SELECT pg_size_pretty(pg_database_size(current_database()))")
        ).scalar_one()
    eng.dispose()
    return {**{r: int(n) for r, n in rows}, **{f"idx_{k}": v for k, v in idx.items()}, "size": size}  # type: ignore[dict-item]


def report(all_results: dict[str, dict[str, Any]], args: argparse.Namespace) -> str:
    lines = ["## Search (issue 3)", ""]
    lines += [f"Machine: {machine()}; PostgreSQL {args.pg_version}; default PostgreSQL settings "
              "(shared_buffers 128MB, work_mem 4MB). Other benchmarks may share the machine.", ""]  # fmt: skip
    command = getattr(args, "measured_with", None) or " ".join(sys.argv[1:])
    lines += [f"Command: `.venv/bin/python bench/bench_search.py {command}`", ""]
    if args.note:
        lines += [args.note, ""]
    scales = list(all_results)
    for scale in scales:
        r = all_results[scale]
        c = r["counts"]
        lines.append(
            f"* **{scale}**: {c.get('Patient', 0):,} Patients, {c.get('Observation', 0):,} Observations, "
            f"{c.get('Encounter', 0):,} Encounters, {c.get('Condition', 0):,} Conditions; "
            f"{sum(v for k, v in c.items() if k.startswith('idx_')):,} index rows; database {c['size']}"
            + (f"; loaded in {r['load']['total_s']:.0f} s ({r['load']['copy_s']:.0f} s generate+index+COPY "
               f"with 2 processes, rest index build + VACUUM ANALYZE)" if r.get("load") else "")
        )  # fmt: skip
    lines += [
        "",
        "Latency through `Store.search` at c1 (ms) and throughput at c16 (16 processes, searches/s):",
        "",
    ]
    head = (
        "| query | " + " | ".join(f"{s} p50 | {s} p95 | {s} p99 | {s} c16/s" for s in scales) + " |"
    )
    lines += [head, "|" + "---|" * (1 + 4 * len(scales))]
    names = list(all_results[scales[0]]["c1"])
    for name in names:
        cells = []
        for s in scales:
            lat = all_results[s]["c1"][name]
            c16 = all_results[s]["c16"].get(name)
            cells += [f"{percentile(lat, 50):.1f}", f"{percentile(lat, 95):.1f}", f"{percentile(lat, 99):.1f}",
                      f"{c16:.0f}" if c16 else "–"]  # fmt: skip
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    for s in scales:
        if "http" in all_results[s]:
            lines += ["", f"HTTP at {s} (`ehr serve --workers 2`, wrk 16 connections, {args.http_seconds} s):", "",
                      "| query | req/s | p50 ms | p99 ms | errors |", "|---|---|---|---|---|"]  # fmt: skip
            for name, f in all_results[s]["http"].items():
                p50 = "–" if f["p50_ms"] is None else f"{f['p50_ms']:.1f}"
                p99 = "–" if f["p99_ms"] is None else f"{f['p99_ms']:.1f}"
                errors = f"{f['non_2xx']:.0f}" + (
                    f" (+{f['timeouts']:.0f} timeouts)" if f.get("timeouts") else ""
                )
                lines.append(f"| `{name}` | {f['rps']:.1f} | {p50} | {p99} | {errors} |")
    big = scales[-1]
    for name, plan in all_results[big]["explain"].items():
        tag = " (slowest p95)" if name == all_results[big]["slowest"] else ""
        lines += ["", f"EXPLAIN ANALYZE at {big}, `{name}`{tag}:", "", "```", plan, "```"]
    return "\n".join(lines) + "\n"


def report_from_json(args: argparse.Namespace) -> int:
    from ehr.store import Store

    all_results: dict[str, dict[str, Any]] = json.loads(Path(args.from_json).read_text())
    for scale, r in all_results.items():
        args.measured_with = r.get("command")
        url = PG_ADMIN.rsplit("/", 1)[0] + f"/ehr_bench_search_{scale}"
        store = Store(url, pool_size=2, custom_search_parameters=False)
        qs = queries(Samples(url))
        rng = random.Random(11)
        r["explain"] = {
            k: explain(url, store, *qs[k](rng))
            for k in dict.fromkeys([r["slowest"], *args.explain])
            if k in qs
        }
        store.dispose()
    md = report(all_results, args)
    Path(args.out).write_text(md, encoding="utf-8")
    print(md)
    return 0


def write_cost(args: argparse.Namespace) -> int:
    """What revision 0009's indexes (``ix_resources_rid_live``, ``ix_idx_reference_source``,
    the GIN ``ix_idx_string_grams``) cost on the write path: the same generated patient blocks
    written through :meth:`ehr.Store.write` (one block = a patient with its ~15 resources per
    transaction; indexed, not validated) into two empty databases, one migrated to
    ``0005`` (the revision before) and one to ``head``, alternating blocks of
    ``--write-batch`` patients between them so both see the same machine load."""
    from sqlalchemy import text

    from ehr.storage.db import make_engine
    from ehr.storage.migrate import upgrade
    from ehr.store import Store

    stores: dict[str, Any] = {}
    for rev in ("0005", "head"):
        url = fresh_pg_database(f"ehr_bench_search_write_{rev}")
        eng = make_engine(url)
        upgrade(eng, rev)
        if rev == "head" and args.write_drop:  # which index costs what
            with eng.begin() as c:
                for name in args.write_drop:
                    c.execute(text(f'DROP INDEX "{name}"'))
        eng.dispose()
        stores[rev] = Store(url, pool_size=2, custom_search_parameters=False)
    orgs, pracs = org_ids(), practitioner_ids()
    for st in stores.values():  # the references' targets, outside the timing
        with st.write() as ctx:
            for res in organizations() + practitioners():
                ctx.insert_with_id(res["resourceType"], res["id"], res)
    spent = {rev: 0.0 for rev in stores}
    written = {rev: 0 for rev in stores}
    n = args.write_patients
    for start in range(0, n, args.write_batch):
        blocks = [
            patient_block(i, orgs, pracs) for i in range(start, min(n, start + args.write_batch))
        ]
        order = list(stores) if (start // args.write_batch) % 2 == 0 else list(reversed(stores))
        for rev in order:
            t0 = time.perf_counter()
            for block in blocks:
                with stores[rev].write() as ctx:
                    for res in block:
                        ctx.insert_with_id(res["resourceType"], res["id"], res)
            spent[rev] += time.perf_counter() - t0
            written[rev] += sum(len(b) for b in blocks)
    dropped = f" (head without {', '.join(args.write_drop)})" if args.write_drop else ""
    print(f"write cost{dropped}, {n} patients ({written['head']} resources) per database, "
          f"load average {os.getloadavg()[0]:.1f} at the end:")  # fmt: skip
    for rev in stores:
        print(f"  revision {rev:<5} {written[rev] / spent[rev]:8.1f} resources/s "
              f"({spent[rev]:.1f} s)")  # fmt: skip
    print(f"  head / 0005: {spent['head'] / spent['0005']:.3f} of the time")
    for st in stores.values():
        st.dispose()
    return 0


#: searches whose plans revision 0009 changed (``--compare-with``)
COMPARED = {
    "_has, common code": ("Patient", [("_has:Condition:patient:code", f"{ICD10}|I10")]),
    "_has, rarer code": ("Patient", [("_has:Condition:patient:code", f"{ICD10}|N39.0")]),
    "birthdate range": ("Patient", [("birthdate", "ge1976-01-01"), ("birthdate", "lt1977-01-01")]),
    "name:contains=秀英": ("Patient", [("name:contains", "秀英")]),
}
_CAPTURE = """
import json, sys
sys.path.insert(0, sys.argv[1])
from sqlalchemy import event
from ehr.store import Store
store = Store(sys.argv[2], pool_size=1, custom_search_parameters=False)
engines = {id(e): e for e in (store.engine, getattr(store, "_read_engine", store.engine))}
out = {}
for name, (rtype, params) in json.loads(sys.argv[3]).items():
    got = []
    def grab(conn, cursor, statement, parameters, context, executemany):
        if "max(resources.pk)" not in statement and "WHERE resources.pk IN" not in statement:
            got.append((statement, parameters))
    for e in engines.values():
        event.listen(e, "before_cursor_execute", grab)
    store.search(rtype, params)
    for e in engines.values():
        event.remove(e, "before_cursor_execute", grab)
    out[name] = got
print(json.dumps(out, default=str))
"""
#: the indexes of revision 0009, dropped (in a rolled-back transaction) for the old code
INDEXES_0009 = ("ix_resources_rid_live", "ix_idx_reference_source", "ix_idx_string_chars")


def compare_sql(url: str, old_tree: str, rounds: int) -> None:
    """``--compare-with OLD``: the server-side time (EXPLAIN ANALYZE, page + count) of the SQL
    that the code in ``OLD`` (a tree with ``ehr/``, e.g. ``git archive <rev> ehr | tar -x -C
    OLD``) and this code run for :data:`COMPARED`, alternating round by round; the old SQL runs
    in a transaction that dropped the 0009 indexes and is rolled back."""
    import statistics
    import subprocess

    import psycopg

    def capture(tree: str) -> dict[str, list[tuple[str, Any]]]:
        run = subprocess.run(
            [sys.executable, "-c", _CAPTURE, tree, url, json.dumps(COMPARED)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        return dict(json.loads(run.stdout.strip().splitlines()[-1]))

    stmts = {"old": capture(old_tree), "new": capture(str(ROOT))}
    times: dict[str, dict[str, list[float]]] = {k: {"old": [], "new": []} for k in COMPARED}
    with psycopg.connect(_pg_dsn(url)) as conn:

        def run(kind: str, name: str) -> float:
            total = 0.0
            for sql, params in stmts[kind][name]:
                with conn.cursor() as cur:
                    cur.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params)
                    row = cur.fetchone()
                    assert row is not None
                    total += float(row[0][0]["Execution Time"])
            return total

        for _ in range(rounds):
            for kind in ("old", "new"):
                if kind == "old":
                    with conn.cursor() as cur:
                        for name in INDEXES_0009:
                            cur.execute(f'DROP INDEX IF EXISTS "{name}"')
                for name in COMPARED:
                    times[name][kind].append(run(kind, name))
                conn.rollback()
    print(f"server time (ms) of old ({old_tree}) and new SQL, {rounds} rounds, load average "
          f"{os.getloadavg()[0]:.1f}:")  # fmt: skip
    print("| query | old min | old median | new min | new median |\n|---|---|---|---|---|")
    for name, t in times.items():
        o, n = t["old"], t["new"]
        print(f"| {name} | {min(o):.1f} | {statistics.median(o):.1f} | {min(n):.1f} | "
              f"{statistics.median(n):.1f} |")  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--scales", default="10k,100k")
    ap.add_argument("--reuse", action="store_true", help="reuse a completely loaded database")
    ap.add_argument("--load-only", action="store_true")
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--page-samples", type=int, default=6)
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--no-c16", action="store_true")
    ap.add_argument("--http", action="store_true")
    ap.add_argument("--http-seconds", type=int, default=8)
    ap.add_argument("--explain", action="append", default=[], help="also EXPLAIN this query name")
    ap.add_argument("--out", default=str(ROOT / "bench" / "RESULTS-search.md"))
    ap.add_argument("--json", default=None, help="also write the raw figures here")
    ap.add_argument(
        "--from-json", default=None, help="report these saved figures (EXPLAINs are run again)"
    )
    ap.add_argument("--note", default="", help="a line added to the report (e.g. machine load)")
    ap.add_argument(
        "--only", action="append", default=[],
        help="measure only the queries whose name contains this (repeatable; c1 only, no report)",
    )  # fmt: skip
    ap.add_argument(
        "--write-cost", action="store_true", help="measure what revision 0009 costs on writes"
    )
    ap.add_argument("--write-patients", type=int, default=400)
    ap.add_argument("--write-batch", type=int, default=20)
    ap.add_argument("--write-drop", action="append", default=[], help="drop this 0009 index first")
    ap.add_argument(
        "--compare-with", metavar="OLD_TREE",
        help="compare the SQL of the code in OLD_TREE with this code's (server time, 0009)",
    )  # fmt: skip
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args()
    if args.write_cost:
        return write_cost(args)
    from sqlalchemy import create_engine, text

    eng = create_engine(PG_ADMIN)
    with eng.connect() as c:
        args.pg_version = c.execute(text("SHOW server_version")).scalar_one()
    eng.dispose()
    if args.from_json:
        return report_from_json(args)
    all_results: dict[str, dict[str, Any]] = {}
    for scale in args.scales.split(","):
        url, load_figures = database(scale, args.reuse)
        if load_figures:
            print(f"[{scale}] loaded: {load_figures}")
        if args.load_only:
            continue
        if args.compare_with:
            compare_sql(url, args.compare_with, args.rounds)
            continue
        if args.only:
            only_c1(scale, url, args)
            continue
        r = measure(scale, url, args)
        r["load"] = load_figures
        r["counts"] = counts(url)
        r["command"] = " ".join(sys.argv[1:])
        all_results[scale] = r
        if args.json:  # after each scale, so a later failure keeps the figures
            Path(args.json).write_text(json.dumps(all_results, default=str), encoding="utf-8")
    if all_results:
        md = report(all_results, args)
        Path(args.out).write_text(md, encoding="utf-8")
        print(md)
        if args.json:
            Path(args.json).write_text(json.dumps(all_results, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("EHR_LOG_LEVEL", "warning")
    sys.exit(main())
