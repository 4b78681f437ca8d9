"""The search plans of revision 0009 and ehr.search.sql: ``_has`` from the index tables,
repeated parameters intersected, ``:contains`` narrowed by the index of characters. Each keeps the
result exactly what the spec says; on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from ehr.search.sql import contains_chars
from ehr.store import Store

ICD = "http://hl7.org/fhir/sid/icd-10"


def find(store: Store, rtype: str, query: str) -> set[str]:
    page = store.search(rtype, parse_qsl(query, keep_blank_values=True) + [("_count", "100")])
    return {h.rid for h in page.matches}


def total(store: Store, rtype: str, query: str) -> int | None:
    params = parse_qsl(query, keep_blank_values=True) + [("_summary", "count")]
    return store.search(rtype, params).total


def condition(pid: str, code: str) -> dict[str, Any]:
    return {
        "resourceType": "Condition", "subject": {"reference": f"Patient/{pid}"},
        "code": {"coding": [{"system": ICD, "code": code}]},
    }  # fmt: skip


def test_has_counts_only_current_sources_and_targets(store: Store) -> None:
    with store.write() as ctx:
        p = [ctx.create({"resourceType": "Patient", "gender": "other"}).rid for _ in range(4)]
        c0 = ctx.create(condition(p[0], "I10")).rid
        ctx.create(condition(p[1], "I10"))
        ctx.create(condition(p[1], "I10"))  # two sources, one target
        c2 = ctx.create(condition(p[2], "I10")).rid
        ctx.create(condition(p[3], "E11.9"))
    has = f"_has:Condition:patient:code={ICD}|I10"
    assert find(store, "Patient", has) == {p[0], p[1], p[2]}
    assert total(store, "Patient", has) == 3
    store.delete("Condition", c0)  # a deleted source no longer counts
    assert find(store, "Patient", has) == {p[1], p[2]}
    store.delete("Patient", p[2])  # nor a deleted target
    assert find(store, "Patient", has) == {p[1]}
    assert total(store, "Patient", has) == 1
    cond = store.read("Condition", c2).resource()
    store.update("Condition", c2, {**cond, "subject": {"reference": f"Patient/{p[3]}"}})
    assert find(store, "Patient", has) == {p[1], p[3]}  # the updated reference
    assert find(store, "Patient", f"{has}&gender=other&_id={p[3]}") == {p[3]}


def test_a_repeated_parameter_is_an_and_across_values(store: Store) -> None:
    with store.write() as ctx:

        def pat(given: list[str], birth: str | None = None) -> str:
            body: dict[str, Any] = {"resourceType": "Patient", "name": [{"given": given}]}
            if birth:
                body["birthDate"] = birth
            return ctx.create(body).rid

        both = pat(["Ann", "Bob"], "1990-06-01")
        ann = pat(["Ann"], "1990-12-31")
        bob = pat(["Bob"], "1991-01-01")
        annabel = pat(["Annabel", "Bobby"], "1989-12-31")
        nobody = pat(["Cy"])
    # each value may come from a different given name (a row of its own): AND per resource
    assert find(store, "Patient", "given=ann&given=bob") == {both, annabel}
    assert find(store, "Patient", "given:exact=Ann&given=bob") == {both}
    assert find(store, "Patient", "given=ann&given=bob&given=annab") == {annabel}
    in_1990 = "birthdate=ge1990-01-01&birthdate=lt1991-01-01"
    assert find(store, "Patient", in_1990) == {both, ann}
    assert total(store, "Patient", in_1990) == 2
    assert find(store, "Patient", f"{in_1990}&given=bob") == {both}
    assert find(store, "Patient", "birthdate=ge1990&birthdate=le1990&birthdate=ne1990-06-01") == {
        ann
    }
    assert find(store, "Patient", "birthdate=ge1991&birthdate=lt1990") == set()
    assert nobody not in find(store, "Patient", "birthdate=ge1900&birthdate=lt2100")
    assert find(store, "Patient", f"{in_1990}&_sort=-birthdate") == {both, ann}
    page = store.search("Patient", parse_qsl(f"{in_1990}&_count=1"))  # paging over the intersect
    seen = {h.rid for h in page.matches}
    assert page.next_params is not None and page.total == 2
    seen |= {h.rid for h in store.search("Patient", page.next_params).matches}
    assert seen == {both, ann} and bob not in seen


@pytest.mark.parametrize(
    ("pattern", "chars"),
    [
        ("王", ["王"]),
        ("秀英", ["秀", "英"]),
        ("英英 a", [" ", "a", "英"]),
        ("wang", []),
        ("%_", []),
    ],
)
def test_contains_chars(pattern: str, chars: list[str]) -> None:
    assert contains_chars(pattern) == chars


def test_contains_with_chinese_and_wildcard_characters(store: Store) -> None:
    names = ["王秀英", "李秀兰", "张英", "Xiuying Wang", "50%_off", "秀"]
    with store.write() as ctx:
        ids = {n: ctx.create({"resourceType": "Patient", "name": [{"text": n}]}).rid for n in names}

    def has(pattern: str) -> set[str]:
        return {
            n for n, rid in ids.items() if rid in find(store, "Patient", f"name:contains={pattern}")
        }

    assert has("秀英") == {"王秀英"}
    assert has("秀") == {"王秀英", "李秀兰", "秀"}
    assert has("英") == {"王秀英", "张英"}
    assert has("ying") == {"Xiuying Wang"}
    assert has("G WA") == {"Xiuying Wang"}
    assert has("%_") == {"50%_off"}  # LIKE wildcards are literal
    assert has("_") == {"50%_off"}
    assert has("英王") == set()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=st.text(alphabet="ab王秀英 %_é", min_size=1, max_size=8), data=st.data())
def test_the_index_condition_keeps_every_contained_pattern(
    store: Store, backend: str, value: str, data: st.DataObject
) -> None:
    """The index condition never drops a true match: the characters of every substring
    (Python) are among the value's characters as the indexed SQL expression splits them."""
    if backend != "postgresql":
        pytest.skip("the character index is PostgreSQL's")
    i = data.draw(st.integers(0, len(value) - 1))
    j = data.draw(st.integers(i + 1, len(value)))
    with store.read_conn() as conn:
        chars = conn.execute(text("SELECT string_to_array(:v, NULL)"), {"v": value}).scalar_one()
    assert set(contains_chars(value[i:j])) <= set(chars)
