"""Error handling (http://hl7.org/fhir/R4/search.html#errors): strict vs lenient handling of
unknown parameters and modifiers, parse errors, OR limits, escaping, system-level search and
the exact conditions of conditional interactions."""

from __future__ import annotations

import pytest

from ehr.errors import BadRequest
from ehr.search.params import MAX_DEPTH
from ehr.store import Store


def rids(store: Store, rtype: str | None, params: list[tuple[str, str]], **kw: object) -> set[str]:
    return {h.rid for h in store.search(rtype, params, **kw).matches}


@pytest.fixture
def two(store: Store) -> dict[str, str]:
    with store.write() as ctx:
        a = ctx.create(
            {"resourceType": "Patient", "name": [{"family": "Doe, Jr"}], "gender": "male"}
        ).rid
        b = ctx.create(
            {"resourceType": "Patient", "name": [{"family": "Doe"}], "gender": "female"}
        ).rid
        o = ctx.create(
            {"resourceType": "Observation", "status": "final", "code": {"text": "x"}}
        ).rid
    return {"a": a, "b": b, "obs": o}


@pytest.mark.parametrize(
    "param",
    [("nonsense", "1"), ("family:fuzzy", "doe"), ("gender:below", "male"), ("_text", "doe"),
     ("_contained", "true"), ("_include", "Patient:nonsense"), ("_sort", "nonsense"), ("_total", "maybe")],
)  # fmt: skip
def test_unsupported_strict_400_lenient_ignored(
    store: Store, two: dict[str, str], param: tuple[str, str]
) -> None:
    with pytest.raises(BadRequest) as err:
        store.search("Patient", [("gender", "male"), param], strict=True)
    assert err.value.status == 400 and err.value.code == "not-supported"
    page = store.search("Patient", [("gender", "male"), param])
    assert {h.rid for h in page.matches} == {two["a"]}
    assert page.self_params == [("gender", "male")]
    assert page.issues and page.issues[0].severity == "warning"


@pytest.mark.parametrize(
    ("param", "message"),
    [(("birthdate", "1980-1"), "valid date"), (("birthdate", "zz1980"), "unknown prefix"),
     (("value-quantity", "12a"), "valid number"), (("_count", "-1"), "negative"),
     (("family:missing", "maybe"), "true or false"), (("_summary", "all"), "_summary")],
)  # fmt: skip
def test_parse_errors_are_400_in_both_modes(
    store: Store, two: dict[str, str], param: tuple[str, str], message: str
) -> None:
    rtype = "Observation" if param[0] == "value-quantity" else "Patient"
    for strict in (True, False):
        with pytest.raises(BadRequest, match=message):
            store.search(rtype, [param], strict=strict)


def test_or_limit_and_escaping(store: Store, two: dict[str, str]) -> None:
    many = ",".join(f"name{i}" for i in range(100))
    assert rids(store, "Patient", [("family", many + "")]) == set()  # 100 values are fine
    with pytest.raises(BadRequest, match=r"101 comma-separated values; at most 100") as err:
        store.search("Patient", [("family", many + ",doe")])
    assert err.value.code == "too-costly"
    assert rids(store, "Patient", [("family", "doe\\, jr")]) == {two["a"]}  # \, is a literal comma
    assert rids(store, "Patient", [("family:exact", "Doe\\, Jr,Doe")]) == {two["a"], two["b"]}
    assert rids(store, "Patient", [("family", "")]) == {two["a"], two["b"]}  # empty value: ignored


def test_number_of_parameters_is_bounded(store: Store, two: dict[str, str]) -> None:
    with pytest.raises(BadRequest, match="At most 100 search parameters"):
        store.search("Patient", [("family", "doe")] * 101)


def test_chain_depth_is_bounded(store: Store, two: dict[str, str]) -> None:
    deep = "subject:Patient." + ".".join(["link:Patient"] * (MAX_DEPTH + 1)) + ".name"
    with pytest.raises(BadRequest, match="deeper"):
        store.search("Observation", [(deep, "x")])


def test_system_search(store: Store, two: dict[str, str]) -> None:
    assert rids(store, None, [("_id", two["a"])]) == {two["a"]}
    assert rids(store, None, [("_type", "Observation")]) == {two["obs"]}
    assert rids(
        store, None, [("_type", "Patient,Observation"), ("_id", f"{two['a']},{two['obs']}")]
    ) == {two["a"], two["obs"]}
    assert rids(store, None, [("_type", "Patient"), ("gender", "female")]) == {two["b"]}
    with pytest.raises(BadRequest, match="unknown resource type"):
        store.search(None, [("_type", "Nope")])
    with pytest.raises(BadRequest, match="family"):  # not a parameter of every resource type
        store.search(None, [("family", "doe")], strict=True)


def test_conditional_interactions_are_exact(store: Store, two: dict[str, str]) -> None:
    existing = store.create(
        {"resourceType": "Patient", "gender": "male"}, if_none_exist=f"_id={two['a']}"
    )
    assert existing.outcome == "existing" and existing.rid == two["a"]
    for condition in ("nonsense=1", "family:fuzzy=doe", "_count=1", "gender="):
        with pytest.raises(BadRequest):
            store.create({"resourceType": "Patient"}, if_none_exist=condition)
    with store.read_conn() as conn:
        assert len(store.search_engine.match(conn, "Patient", [("family", "doe")], limit=5)) == 2
        assert len(store.search_engine.match(conn, "Patient", [("family", "doe")], limit=1)) == 1
