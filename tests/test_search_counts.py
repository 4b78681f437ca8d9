"""Totals counted from the index tables alone, and keyset pages whose lookups start at the
cursor (the two search shortcuts of ``ehr.search.sql.index_pks`` / ``pk_bounded``): the same
answers as the plain queries, after deletes and updates too. Both databases."""

from __future__ import annotations

from typing import Any

import pytest

from ehr.store import Store


def person(family: str, gender: str, born: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        # two family names starting alike: a resource has several matching index rows
        "name": [{"family": family, "given": ["明"]}, {"use": "old", "family": family + "氏"}],
        "gender": gender,
        "birthDate": born,
    }


@pytest.fixture
def people(store: Store) -> dict[str, dict[str, Any]]:
    """40 patients; then 5 deleted and 4 renamed, so index rows come and go."""
    out: dict[str, dict[str, Any]] = {}
    with store.write() as ctx:
        for i in range(40):
            body = person(
                "李" if i % 3 else "王", "female" if i % 2 else "male", f"{1950 + i}-06-01"
            )
            out[ctx.create(body).rid] = body
    rids = list(out)
    for rid in rids[:5]:
        store.delete("Patient", rid)
        del out[rid]
    for rid in rids[5:9]:
        out[rid] = {**out[rid], "name": [{"family": "张"}, {"use": "old", "family": "张氏"}]}
        store.update("Patient", rid, {**out[rid], "id": rid})
    return out


def expected(people: dict[str, dict[str, Any]], family: str, gender: str | None = None) -> set[str]:
    return {
        rid
        for rid, p in people.items()
        if p["name"][0]["family"] == family and (gender is None or p["gender"] == gender)
    }


@pytest.mark.parametrize("total", ["accurate", "estimate"])
def test_totals_match_the_resources(
    store: Store, people: dict[str, dict[str, Any]], total: str
) -> None:
    for query, want in [
        ([("family", "李")], expected(people, "李")),
        ([("family", "李"), ("gender", "female")], expected(people, "李", "female")),
        (
            [("family", "张"), ("birthdate", "ge1950"), ("birthdate", "lt2000")],
            expected(people, "张"),
        ),
        ([("family", "赵")], set()),
    ]:
        page = store.search("Patient", [*query, ("_count", "3"), ("_total", total)])
        assert page.total == len(want), query
        count = store.search("Patient", [*query, ("_summary", "count")])
        assert count.total == len(want), query


def test_pages_forward_and_back_from_the_cursor(
    store: Store, people: dict[str, dict[str, Any]]
) -> None:
    want = expected(people, "李")
    page = store.search("Patient", [("family", "李"), ("_count", "4")])
    seen, pages = [h.rid for h in page.matches], [page]
    while page.next_params:
        page = store.search("Patient", page.next_params)
        seen += [h.rid for h in page.matches]
        pages.append(page)
    assert len(seen) == len(set(seen)) and set(seen) == want
    assert seen == sorted(seen, key=list(people).index)  # creation (pk) order
    back = [h.rid for h in pages[-1].matches]
    while page.previous_params:
        page = store.search("Patient", page.previous_params)
        back = [h.rid for h in page.matches] + back
    assert back == seen
