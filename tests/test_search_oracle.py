"""Oracle property test: for random Patients / Observations and random queries over a subset
of parameters (family, given, gender, birthdate with prefixes, identifier, code, value-quantity
with prefixes and units), the engine returns exactly what a brute-force Python evaluation of
the search rules (http://hl7.org/fhir/R4/search.html) over the same resources returns."""

from __future__ import annotations

import calendar
import os
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete

from ehr.search.normalize import normalize_string
from ehr.search.tables import INDEX_TABLES
from ehr.search.ucum import UCUM, canonical, canonical_unit
from ehr.storage.tables import history, resources
from ehr.store import Store

FAMILIES = ["Smith", "Smythe", "smith", "Sm", "张", "张伟", "Núñez", "Nunez", "Lee", "O'Neil"]
GIVENS = ["John", "Jo", "José", "三", "三丰", "Ann"]
GENDERS = ["male", "female", "other", "unknown"]
SYSTEMS = ["urn:a", "urn:b"]
CODE_SYSTEMS = ["http://loinc.org", "http://snomed.info/sct"]
UNITS = ["mg", "g", "kg", "mmol/L"]
PREFIXES = ["", "eq", "ne", "gt", "lt", "ge", "le", "sa", "eb"]


# ------------------------------------------------------------------------------ data


def partial_dates() -> st.SearchStrategy[str]:
    years = st.integers(1978, 1982)
    return st.one_of(
        years.map(str),
        st.tuples(years, st.integers(1, 12)).map(lambda t: f"{t[0]}-{t[1]:02d}"),
        st.tuples(years, st.integers(1, 12), st.integers(1, 28)).map(
            lambda t: f"{t[0]}-{t[1]:02d}-{t[2]:02d}"
        ),
    )


decimals = st.one_of(
    st.integers(0, 30).map(str),
    st.tuples(st.integers(0, 30), st.integers(0, 9)).map(lambda t: f"{t[0]}.{t[1]}"),
    st.tuples(st.integers(0, 3), st.integers(0, 99)).map(lambda t: f"{t[0]}.{t[1]:02d}"),
    st.sampled_from(["1000", "1500", "2000", "0.5", "1.5"]),  # g <-> mg <-> kg neighbours
)

patients = st.fixed_dictionaries(
    {"resourceType": st.just("Patient")},
    optional={
        "name": st.lists(
            st.fixed_dictionaries({}, optional={"family": st.sampled_from(FAMILIES),
                                                "given": st.lists(st.sampled_from(GIVENS), min_size=1, max_size=2)}),
            min_size=1, max_size=2,
        ).map(lambda names: [n for n in names if n] or [{"family": "Lee"}]),
        "gender": st.sampled_from(GENDERS),
        "birthDate": partial_dates(),
        "identifier": st.lists(
            st.fixed_dictionaries({"system": st.sampled_from(SYSTEMS), "value": st.sampled_from(["1", "2", "3"])}),
            min_size=1, max_size=2,
        ),
    },
)  # fmt: skip


@st.composite
def observations(draw: st.DrawFn) -> dict[str, Any]:
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "code": {
            "coding": [
                {
                    "system": draw(st.sampled_from(CODE_SYSTEMS)),
                    "code": draw(st.sampled_from("123")),
                }
            ]
        },
    }
    if draw(st.booleans()):
        text = draw(decimals)  # JSON has no trailing zeros: 1.50 is sent and stored as 1.5
        q: dict[str, Any] = {"value": float(text) if "." in text else int(text)}
        unit = draw(st.sampled_from([*UNITS, None]))
        if unit:
            q.update(system=UCUM, code=unit, unit=unit)
        obs["valueQuantity"] = q
    return obs


# ------------------------------------------------------------------------------ queries


@dataclass(frozen=True)
class Query:
    rtype: str
    name: str
    value: str


def _prefixes_of(words: list[str]) -> st.SearchStrategy[str]:
    return st.sampled_from(words).flatmap(lambda w: st.integers(1, len(w)).map(lambda n: w[:n]))


def queries(pats: list[dict[str, Any]], obs: list[dict[str, Any]]) -> st.SearchStrategy[Query]:
    """Queries over the parameters under test, their values often taken from the data."""
    births = [p["birthDate"] for p in pats if "birthDate" in p] or ["1980"]
    numbers = [repr(o["valueQuantity"]["value"]) for o in obs if "valueQuantity" in o] or ["1"]
    near = st.one_of(
        decimals,
        st.sampled_from(numbers),
        st.sampled_from(numbers).map(lambda n: n + "0" if "." in n else n + ".0"),  # more precise
        st.sampled_from(numbers).map(lambda n: n.split(".")[0]),  # less precise
    )
    units = st.sampled_from(
        ["", f"|{UCUM}|g", f"|{UCUM}|mg", f"|{UCUM}|kg", "||mg", f"|{UCUM}|mmol/L"]
    )
    patient_q = st.one_of(
        st.tuples(
            st.sampled_from(["family", "family:exact", "family:contains"]),
            _prefixes_of(FAMILIES + ["smi", "nun", "ith"]),
        ).map(lambda t: Query("Patient", t[0], t[1])),
        _prefixes_of(GIVENS).map(lambda v: Query("Patient", "given", v)),
        st.tuples(
            st.sampled_from(["gender", "gender:not"]),
            st.lists(st.sampled_from(GENDERS), min_size=1, max_size=2),
        ).map(lambda t: Query("Patient", t[0], ",".join(t[1]))),
        st.sampled_from(["true", "false"]).map(lambda v: Query("Patient", "birthdate:missing", v)),
        st.tuples(
            st.sampled_from(PREFIXES), st.one_of(partial_dates(), st.sampled_from(births))
        ).map(lambda t: Query("Patient", "birthdate", t[0] + t[1])),
        st.tuples(
            st.sampled_from(["", "urn:a|", "urn:b|"]), st.sampled_from(["1", "2", "3", ""])
        ).map(lambda t: Query("Patient", "identifier", t[0] + t[1] if t[0] + t[1] else "1")),
    )
    obs_q = st.one_of(
        st.tuples(
            st.sampled_from(["", *(s + "|" for s in CODE_SYSTEMS)]), st.sampled_from("123")
        ).map(lambda t: Query("Observation", "code", t[0] + t[1])),
        st.tuples(st.sampled_from(PREFIXES), near, units).map(
            lambda t: Query("Observation", "value-quantity", "".join(t))
        ),
    )
    return st.one_of(patient_q, obs_q)


# ------------------------------------------------------------------------------ the oracle


def day_range(text: str) -> tuple[date, date]:
    parts = [int(p) for p in text.split("-")]
    if len(parts) == 1:
        return date(parts[0], 1, 1), date(parts[0], 12, 31)
    if len(parts) == 2:
        return date(parts[0], parts[1], 1), date(
            parts[0], parts[1], calendar.monthrange(parts[0], parts[1])[1]
        )
    d = date(*parts)
    return d, d


def number_range(text: str) -> tuple[float, float]:
    d = Decimal(text)
    half = Decimal(5).scaleb(d.as_tuple().exponent - 1)  # type: ignore[operator]
    return float(d - half), float(d + half)


def split_prefix(value: str) -> tuple[str, str]:
    if value[:2].isalpha():
        return value[:2], value[2:]
    return "eq", value


def range_match(prefix: str, lo: Any, hi: Any, qlo: Any, qhi: Any, half_open: bool) -> bool:
    eq = lo >= qlo and hi <= qhi
    return {
        "eq": eq,
        "ne": not eq,
        "gt": hi > qhi,
        "lt": lo < qlo,
        "ge": hi > qhi or eq,
        "le": lo < qlo or eq,
        "sa": lo >= qhi if half_open else lo > qhi,
        "eb": hi <= qlo if half_open else hi < qlo,
    }[prefix]


def point_match(prefix: str, p: float, lo: float, hi: float) -> bool:
    return {
        "eq": lo <= p < hi, "ne": not lo <= p < hi, "gt": p >= hi, "sa": p >= hi, "lt": p < lo,
        "eb": p < lo, "ge": p >= lo, "le": p < hi,
    }[prefix]  # fmt: skip


def quantity_match(q: Query, quantity: dict[str, Any] | None) -> bool:
    if quantity is None:
        return False
    parts = q.value.split("|")
    prefix, number = split_prefix(parts[0])
    system, code = (parts[1] or None, parts[2] or None) if len(parts) == 3 else (None, None)
    qlo, qhi = number_range(number)
    lo, hi = number_range(repr(quantity["value"]))
    direct = range_match(prefix, lo, hi, qlo, qhi, True)
    if code is None:
        return direct
    if system is None:
        return (quantity.get("code") == code or quantity.get("unit") == code) and direct
    if quantity.get("system") == system and quantity.get("code") == code:
        return direct
    if quantity.get("system") != UCUM or not quantity.get("code"):
        return False
    if canonical_unit(quantity["code"]) != canonical_unit(code):
        return False
    p, _ = canonical(float(quantity["value"]), quantity["code"])
    clo, chi = canonical(qlo, code)[0], canonical(qhi, code)[0]
    return point_match(prefix, p, clo, chi)


def oracle(q: Query, r: dict[str, Any]) -> bool:
    name, _, modifier = q.name.partition(":")
    values = q.value.split(",")
    if name in ("family", "given"):
        texts: list[str] = []
        for n in r.get("name", []):
            v = n.get(name)
            texts += v if isinstance(v, list) else [v] if v else []
        if modifier == "exact":
            return any(t == v for t in texts for v in values)
        norm = [normalize_string(t) for t in texts]
        if modifier == "contains":
            return any(normalize_string(v) in t for t in norm for v in values)
        return any(t.startswith(normalize_string(v)) for t in norm for v in values)
    if name == "gender":
        hit = r.get("gender") in values
        return not hit if modifier == "not" else hit
    if name == "birthdate":
        if modifier == "missing":
            return ("birthDate" not in r) == (q.value == "true")
        if "birthDate" not in r:
            return False
        lo, hi = day_range(r["birthDate"])
        prefix, text = split_prefix(q.value)
        qlo, qhi = day_range(text)
        return range_match(prefix, lo, hi, qlo, qhi, False)
    if name == "identifier":
        system, _, value = q.value.rpartition("|")
        for ident in r.get("identifier", []):
            if "|" not in q.value and ident["value"] == value:
                return True
            if (
                "|" in q.value
                and ident["system"] == system
                and (not value or ident["value"] == value)
            ):
                return True
        return False
    if name == "code":
        system, _, code = q.value.rpartition("|")
        return any(
            c["code"] == code and (not system or c["system"] == system) for c in r["code"]["coding"]
        )
    if name == "value-quantity":
        return quantity_match(q, r.get("valueQuantity"))
    raise AssertionError(q)


# ------------------------------------------------------------------------------ the property


def _wipe(store: Store) -> None:
    with store.engine.begin() as conn:
        for table in (*INDEX_TABLES.values(), history, resources):
            conn.execute(delete(table))


@settings(
    max_examples=int(os.environ.get("EHR_ORACLE_EXAMPLES", "30")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    pats=st.lists(patients, min_size=1, max_size=8),
    obs=st.lists(observations(), min_size=1, max_size=8),
    data=st.data(),
)
def test_engine_agrees_with_brute_force(
    store: Store, pats: list[dict[str, Any]], obs: list[dict[str, Any]], data: st.DataObject
) -> None:
    qs = data.draw(
        st.lists(st.lists(queries(pats, obs), min_size=1, max_size=2), min_size=1, max_size=8)
    )
    _wipe(store)
    stored: dict[str, dict[str, Any]] = {}
    with store.write() as ctx:
        for body in [*pats, *obs]:
            stored[ctx.create(body).rid] = body
    for conj in qs:
        rtypes = {q.rtype for q in conj}
        if len(rtypes) > 1:
            conj = [q for q in conj if q.rtype == conj[0].rtype]
        rtype = conj[0].rtype
        expected = {
            rid
            for rid, r in stored.items()
            if r["resourceType"] == rtype and all(oracle(q, r) for q in conj)
        }
        page = store.search(
            rtype, [(q.name, q.value) for q in conj] + [("_count", "100")], strict=True
        )
        got = {h.rid for h in page.matches}
        assert got == expected, (conj, {rid: stored[rid] for rid in got ^ expected})
        assert page.total == len(expected)
