"""Date search (http://hl7.org/fhir/R4/search.html#date, #prefix): every prefix against partial
dates, periods and time zones; _lastUpdated; :missing; parse errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ehr.errors import BadRequest
from ehr.search.dates import us_to_instant
from ehr.store import Store


def find(store: Store, rtype: str, *params: tuple[str, str], **kw: object) -> set[str]:
    return {h.rid for h in store.search(rtype, list(params), **kw).matches}


@pytest.fixture
def births(store: Store) -> dict[str, str]:
    out = {}
    with store.write() as ctx:
        for key in ("1979-12-31", "1980", "1980-05", "1980-05-05", "1981-01-01"):
            out[key] = ctx.create({"resourceType": "Patient", "birthDate": key}).rid
        out["none"] = ctx.create({"resourceType": "Patient"}).rid
    return out


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("1980", {"1980", "1980-05", "1980-05-05"}),
        ("eq1980", {"1980", "1980-05", "1980-05-05"}),
        ("1980-05", {"1980-05", "1980-05-05"}),
        ("1980-05-05", {"1980-05-05"}),
        ("ne1980", {"1979-12-31", "1981-01-01"}),
        ("gt1980", {"1981-01-01"}),
        ("ge1980", {"1980", "1980-05", "1980-05-05", "1981-01-01"}),
        ("lt1980-05", {"1979-12-31", "1980"}),  # the year 1980 starts before May 1980
        ("le1980-05", {"1979-12-31", "1980", "1980-05", "1980-05-05"}),
        ("sa1980", {"1981-01-01"}),
        ("eb1980", {"1979-12-31"}),
        (
            "gt1980-05-05",
            {"1980", "1981-01-01", "1980-05"},
        ),  # the ranges of 1980 and 1980-05 reach past it
        ("1980-05-05T10:00:00Z", set()),  # a day is not within a second
    ],
)
def test_birthdate_prefixes(
    store: Store, births: dict[str, str], query: str, expected: set[str]
) -> None:
    assert find(store, "Patient", ("birthdate", query)) == {births[k] for k in expected}


def test_and_or_and_missing(store: Store, births: dict[str, str]) -> None:
    both = find(store, "Patient", ("birthdate", "ge1980-01-01"), ("birthdate", "le1980-12-31"))
    assert both == {births["1980"], births["1980-05"], births["1980-05-05"]}
    assert find(store, "Patient", ("birthdate", "1979,1981")) == {
        births["1979-12-31"],
        births["1981-01-01"],
    }
    assert find(store, "Patient", ("birthdate:missing", "true")) == {births["none"]}


def test_time_zones(store: Store) -> None:
    o = store.create({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                      "effectiveDateTime": "2013-01-14T10:00:00+10:00"}).rid  # fmt: skip
    assert find(store, "Observation", ("date", "2013-01-14T00:00:00Z")) == {o}
    assert find(store, "Observation", ("date", "2013-01-14T09:00:00+09:00")) == {o}
    assert find(store, "Observation", ("date", "2013-01-14T10:00:00+10:00")) == {o}
    assert find(store, "Observation", ("date", "2013-01-14T10:00:00 10:00")) == {
        o
    }  # '+' decoded to ' '
    assert find(store, "Observation", ("date", "2013-01-14")) == {o}
    assert find(store, "Observation", ("date", "2013-01-13")) == set()
    assert find(store, "Observation", ("date", "2013-01-13T20:00:00-04:00")) == {o}
    assert find(store, "Observation", ("date", "gt2013-01-14T00:00:00Z")) == set()
    assert find(store, "Observation", ("date", "ge2013-01-14T00:00:00Z")) == {o}
    assert find(store, "Observation", ("date", "2013-01-14T00:00Z")) == {o}  # minute precision


def test_periods(store: Store) -> None:
    with store.write() as ctx:
        closed = ctx.create({"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"},
                             "period": {"start": "2020-01-01", "end": "2020-01-10"}}).rid  # fmt: skip
        ongoing = ctx.create({"resourceType": "Encounter", "status": "in-progress", "class": {"code": "AMB"},
                              "period": {"start": "2020-01-05T08:00:00Z"}}).rid  # fmt: skip
    assert find(store, "Encounter", ("date", "2020-01")) == {closed}
    assert find(store, "Encounter", ("date", "2020-01-05")) == set()  # neither lies within the day
    assert find(store, "Encounter", ("date", "ap2020-01-05")) == {closed, ongoing}
    assert find(store, "Encounter", ("date", "gt2030")) == {ongoing}
    assert find(store, "Encounter", ("date", "lt2020-01-03")) == {closed}
    assert find(store, "Encounter", ("date", "sa2019")) == {closed, ongoing}
    assert find(store, "Encounter", ("date", "eb2020-01-11")) == {closed}
    assert find(store, "Encounter", ("date", "eb2020-01-10")) == set()


def test_ap_is_ten_percent_of_the_distance_from_now(store: Store) -> None:
    today = datetime.now(UTC).date()
    q = today - timedelta(days=100)  # margin about ten days
    with store.write() as ctx:
        near = ctx.create(
            {"resourceType": "Patient", "birthDate": (q + timedelta(days=5)).isoformat()}
        ).rid
        ctx.create({"resourceType": "Patient", "birthDate": (q + timedelta(days=25)).isoformat()})
    assert find(store, "Patient", ("birthdate", f"ap{q.isoformat()}")) == {near}


def test_last_updated(store: Store) -> None:
    a = store.create({"resourceType": "Patient"})
    b = store.create({"resourceType": "Patient"})
    assert find(store, "Patient", ("_lastUpdated", f"gt{us_to_instant(a.last_updated)}")) == {b.rid}
    assert find(store, "Patient", ("_lastUpdated", f"le{us_to_instant(a.last_updated)}")) == {a.rid}
    assert find(store, "Patient", ("_lastUpdated", us_to_instant(b.last_updated))) == {b.rid}
    assert find(store, "Patient", ("_lastUpdated", f"ge{us_to_instant(a.last_updated)[:4]}")) == {
        a.rid,
        b.rid,
    }


@pytest.mark.parametrize(
    "bad", ["1980-13", "19800", "xx1980", "ge", "1980-02-30", "1980-05-05T25:00"]
)
def test_bad_dates_are_400(store: Store, bad: str) -> None:
    with pytest.raises(BadRequest) as err:
        store.search("Patient", [("birthdate", bad)])
    assert "birthdate" in err.value.diagnostics
