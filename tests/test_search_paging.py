"""Keyset paging (http://hl7.org/fhir/R4/http.html#paging): next/previous links, sort orders
with ties and missing values, and writes by others between page reads."""

from __future__ import annotations

from typing import Any

import pytest

from ehr.errors import BadRequest
from ehr.search.engine import SearchPage
from ehr.store import Store

Params = list[tuple[str, str]]


def walk(store: Store, rtype: str, params: Params, between: Any = None) -> list[tuple[str, int]]:
    """Follow ``next`` links to the end: (id, version) of every match, in order."""
    seen: list[tuple[str, int]] = []
    page: SearchPage = store.search(rtype, params)
    n = 0
    while True:
        seen += [(h.rid, h.version) for h in page.matches]
        if page.next_params is None:
            return seen
        if between is not None:
            between(n)
        n += 1
        page = store.search(rtype, page.next_params)


def walk_back(store: Store, rtype: str, page: SearchPage) -> list[str]:
    out: list[str] = []
    while page.previous_params is not None:
        page = store.search(rtype, page.previous_params)
        out = [h.rid for h in page.matches] + out
    return out


@pytest.fixture
def patients(store: Store) -> list[str]:
    families = [
        "Kim",
        "Lee",
        None,
        "Kim",
        "Park",
        "Choi",
        None,
        "Lee",
        "Kim",
        "Yoon",
        "Park",
        "Han",
        "Lee",
    ]
    out = []
    with store.write() as ctx:
        for i, fam in enumerate(families):
            body: dict[str, Any] = {"resourceType": "Patient", "birthDate": f"19{50 + i % 4}"}
            if fam:
                body["name"] = [{"family": fam}]
            out.append(ctx.create(body).rid)
    return out


@pytest.mark.parametrize(
    "sort",
    [None, "family", "-family", "family,-birthdate", "-birthdate,family", "_id", "-_lastUpdated"],
)
def test_pages_concatenate_to_the_whole_result(
    store: Store, patients: list[str], sort: str | None
) -> None:
    params: Params = [("_sort", sort)] if sort else []
    whole = [h.rid for h in store.search("Patient", params).matches]
    assert sorted(whole) == sorted(patients)
    paged = walk(store, "Patient", [*params, ("_count", "3")])
    assert [rid for rid, _ in paged] == whole
    # and backwards from the last page
    page = store.search("Patient", [*params, ("_count", "3")])
    while page.next_params is not None:
        page = store.search("Patient", page.next_params)
    assert walk_back(store, "Patient", page) + [h.rid for h in page.matches] == whole


def test_links_carry_params_and_total(store: Store, patients: list[str]) -> None:
    page = store.search("Patient", [("family", "kim,lee"), ("_count", "2")])
    assert page.total == 6 and page.previous_params is None
    assert page.next_params is not None and page.next_params[:2] == [
        ("family", "kim,lee"),
        ("_count", "2"),
    ]
    page2 = store.search("Patient", page.next_params)
    assert page2.total == 6 and page2.previous_params is not None
    assert page2.self_params == page.next_params


def test_writes_between_pages_neither_repeat_nor_skip(store: Store, patients: list[str]) -> None:
    created: list[str] = []

    def meddle(n: int) -> None:
        created.append(store.create({"resourceType": "Patient", "name": [{"family": "Kim"}]}).rid)
        rid = patients[-1 - n]  # not read yet: updated, it is still shown once (new version)
        store.update(
            "Patient", rid, {"resourceType": "Patient", "id": rid, "name": [{"family": "Zzz"}]}
        )
        rid = patients[n]  # already read: its update must not show it again
        store.update("Patient", rid, {"resourceType": "Patient", "id": rid, "active": True})

    seen = walk(store, "Patient", [("_count", "2")], meddle)
    ids = [rid for rid, _ in seen]
    assert len(ids) == len(set(ids)) == len(patients)
    assert set(ids) == set(patients) and not set(created) & set(ids)
    assert any(v > 1 for _, v in seen)


def test_sorted_by_last_updated_updates_do_not_move(store: Store, patients: list[str]) -> None:
    for sort in ("_lastUpdated", "-_lastUpdated"):

        def touch(n: int) -> None:
            for rid in patients[n * 2 : n * 2 + 3]:  # read and unread ones alike
                store.update(
                    "Patient", rid, {"resourceType": "Patient", "id": rid, "gender": "other"}
                )

        ids = [rid for rid, _ in walk(store, "Patient", [("_sort", sort), ("_count", "3")], touch)]
        assert sorted(ids) == sorted(patients) and len(ids) == len(patients)


def test_deleted_between_pages_drops_out(store: Store, patients: list[str]) -> None:
    def drop(n: int) -> None:
        if n == 0:
            store.delete("Patient", patients[-1])

    ids = [rid for rid, _ in walk(store, "Patient", [("_count", "4")], drop)]
    assert ids == patients[:-1]


def test_bad_cursors(store: Store, patients: list[str]) -> None:
    with pytest.raises(BadRequest, match="cursor"):
        store.search("Patient", [("_cursor", "not-a-cursor")])
    page = store.search("Patient", [("_count", "2")])
    assert page.next_params is not None
    cursor = dict(page.next_params)["_cursor"]
    with pytest.raises(BadRequest, match="cursor"):  # a cursor of another sort order
        store.search("Patient", [("_sort", "family"), ("_cursor", cursor)])
