"""Number, quantity and composite search (http://hl7.org/fhir/R4/search.html#number,
#quantity, #composite): precision ranges, prefixes, units and UCUM conversion."""

from __future__ import annotations

from urllib.parse import parse_qsl

import pytest

from ehr.errors import BadRequest
from ehr.store import Store

UCUM = "http://unitsofmeasure.org"
LOINC = "http://loinc.org"


def find(store: Store, rtype: str, query: str, **kw: object) -> set[str]:
    return {h.rid for h in store.search(rtype, parse_qsl(query), **kw).matches}


def quantity(
    value: float, code: str | None = None, system: str | None = UCUM, unit: str | None = None
) -> dict[str, object]:
    q: dict[str, object] = {"value": value}
    if code:
        q["code"] = code
        q["system"] = system
    if unit:
        q["unit"] = unit
    return q


@pytest.fixture
def values(store: Store) -> dict[str, str]:
    data = {
        "bp120": quantity(120, "mm[Hg]"),
        "glucose": quantity(5.4, "mmol/L"),
        "lb185": quantity(185, "[lb_av]"),
        "kg84": quantity(84, "kg"),
        "mg100": quantity(100, unit="mg"),
    }
    out = {}
    with store.write() as ctx:
        for key, q in data.items():
            out[key] = ctx.create(
                {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"text": key},
                    "valueQuantity": q,
                }
            ).rid
        out["none"] = ctx.create(
            {"resourceType": "Observation", "status": "final", "code": {"text": "none"}}
        ).rid
    return out


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("120", {"bp120"}),
        (f"120|{UCUM}|mm[Hg]", {"bp120"}),
        ("120||mm[Hg]", {"bp120"}),
        ("120|http://other|mm[Hg]", set()),
        ("100||mg", {"mg100"}),  # the unit as written
        ("5.4", {"glucose"}),
        ("5.40", set()),  # 5.4 is not known to 5.40's precision
        ("gt100", {"bp120", "lb185"}),
        ("ge120", {"bp120", "lb185"}),
        ("lt100", {"glucose", "kg84"}),
        ("le100", {"glucose", "kg84", "mg100"}),
        ("sa120", {"lb185"}),
        ("eb84", {"glucose"}),
        (f"ap110|{UCUM}|mm[Hg]", {"bp120"}),  # 10%: [99, 121]
        (f"ap100|{UCUM}|mm[Hg]", set()),
        (f"ne120|{UCUM}|mm[Hg]", set()),  # ne with a unit: only mm[Hg] values, and 120 is equal
        ("ne120", {"glucose", "lb185", "kg84", "mg100"}),
        # UCUM: other units of the same dimension through the canonical value
        (f"84|{UCUM}|kg", {"kg84", "lb185"}),  # 185 lb = 83.9 kg, within [83.5, 84.5)
        (f"84000|{UCUM}|g", {"kg84"}),
        (f"gt80|{UCUM}|kg", {"kg84", "lb185"}),
        (f"lt185|{UCUM}|[lb_av]", set()),  # 185 lb is not below 185; 84 kg = 185.2 lb
        (f"lt186|{UCUM}|[lb_av]", {"kg84", "lb185"}),
        (f"le190|{UCUM}|[lb_av]", {"kg84", "lb185"}),
        (f"5400|{UCUM}|umol/L", {"glucose"}),
    ],
)
def test_value_quantity(
    store: Store, values: dict[str, str], query: str, expected: set[str]
) -> None:
    assert find(store, "Observation", f"value-quantity={query}") == {values[k] for k in expected}


def test_missing_and_errors(store: Store, values: dict[str, str]) -> None:
    assert find(store, "Observation", "value-quantity:missing=true") == {values["none"]}
    for bad in ("abc", "1..2", "gx5", "5|a", "5|a|b|c"):
        with pytest.raises(BadRequest, match="value-quantity"):
            find(store, "Observation", f"value-quantity={bad}")


def test_numbers_with_precision_and_ranges(store: Store) -> None:
    subject = {"reference": "Patient/p1"}
    out = {}
    with store.write() as ctx:
        for key, pred in {
            "0.2": {"probabilityDecimal": 0.2},
            "0.25": {"probabilityDecimal": 0.25},
            "0.5": {"probabilityDecimal": 0.5},
            "range": {"probabilityRange": {"low": {"value": 0.1}, "high": {"value": 0.3}}},
        }.items():
            out[key] = ctx.create(
                {
                    "resourceType": "RiskAssessment",
                    "status": "final",
                    "subject": subject,
                    "prediction": [pred],
                }
            ).rid

    def q(v: str) -> set[str]:
        rids = find(store, "RiskAssessment", f"probability={v}")
        return {k for k, rid in out.items() if rid in rids}

    assert q("0.2") == {"0.2"}  # [0.15, 0.25) does not hold 0.25 ([0.245, 0.255))
    assert q("0.20") == set()
    assert q("0.25") == {"0.25"}
    assert q("gt0.2") == {"0.25", "0.5", "range"}
    assert q("lt0.3") == {"0.2", "0.25", "range"}
    assert q("0.2,0.5") == {"0.2", "0.5"}
    assert q("sa0.3") == {"0.5"}
    assert q("eb0.4") == {"0.2", "0.25", "range"}
    with pytest.raises(BadRequest, match="not a valid number"):
        q("0.2.5")


def test_composite(store: Store) -> None:
    def bp(sys: float, dia: float) -> dict[str, object]:
        def comp(code: str, v: float) -> dict[str, object]:
            return {
                "code": {"coding": [{"system": LOINC, "code": code}]},
                "valueQuantity": quantity(v, "mm[Hg]"),
            }

        return {"resourceType": "Observation", "status": "final",
                "code": {"coding": [{"system": LOINC, "code": "85354-9"}]},
                "component": [comp("8480-6", sys), comp("8462-4", dia)]}  # fmt: skip

    with store.write() as ctx:
        high = ctx.create(bp(150, 95)).rid
        normal = ctx.create(bp(118, 76)).rid
    assert find(store, "Observation", f"component-code-value-quantity={LOINC}|8480-6$gt140") == {
        high
    }
    assert find(store, "Observation", "component-code-value-quantity=8480-6$gt100") == {
        high,
        normal,
    }
    assert find(
        store, "Observation", f"component-code-value-quantity=8480-6$118|{UCUM}|mm[Hg]"
    ) == {normal}
    # the value pairs with its own component's code: 95 is diastolic, not systolic
    assert find(store, "Observation", "component-code-value-quantity=8480-6$95") == set()
    assert find(store, "Observation", "component-code-value-quantity=8462-4$95") == {high}
    assert find(store, "Observation", "component-code-value-quantity=8462-4$95,8480-6$118") == {
        high,
        normal,
    }
    with pytest.raises(BadRequest, match=r"separated by '\$'"):
        find(store, "Observation", "component-code-value-quantity=8480-6")


def test_sort_by_number_and_quantity(store: Store, values: dict[str, str]) -> None:
    order = [h.rid for h in store.search("Observation", [("_sort", "value-quantity")]).matches]
    # canonical values where UCUM converts (kg and lb in grams), missing last
    assert order == [values[k] for k in ("glucose", "mg100", "bp120", "lb185", "kg84", "none")]
    with store.write() as ctx:
        a = ctx.create({"resourceType": "RiskAssessment", "status": "final", "subject": {"reference": "Patient/p"},
                        "prediction": [{"probabilityDecimal": 0.7}, {"probabilityDecimal": 0.1}]}).rid  # fmt: skip
        b = ctx.create({"resourceType": "RiskAssessment", "status": "final", "subject": {"reference": "Patient/p"},
                        "prediction": [{"probabilityDecimal": 0.5}]}).rid  # fmt: skip
    asc = [h.rid for h in store.search("RiskAssessment", [("_sort", "probability")]).matches]
    desc = [h.rid for h in store.search("RiskAssessment", [("_sort", "-probability")]).matches]
    assert asc == [a, b] and desc == [a, b]  # lowest value ascending, highest descending
