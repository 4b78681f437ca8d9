"""String search (http://hl7.org/fhir/R4/search.html#string): starts-with, :exact, :contains,
Chinese names, accents, :missing; on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import pytest

from ehr.store import Store


def find(store: Store, rtype: str, query: str, **kw: object) -> set[str]:
    page = store.search(rtype, parse_qsl(query, keep_blank_values=True), **kw)
    return {h.rid for h in page.matches}


@pytest.fixture
def people(store: Store) -> dict[str, str]:
    data: dict[str, dict[str, Any]] = {
        "zhang": {"name": [{"family": "张", "given": ["三丰"]}]},
        "zhao": {"name": [{"family": "赵", "given": ["敏"]}]},
        "zhangwei": {"name": [{"family": "张伟", "given": ["小明"]}]},
        "nunez": {"name": [{"family": "Núñez", "given": ["José"]}]},
        "smith": {"name": [{"family": "Smith", "given": ["John", "Paul"]}]},
        "smithers": {"name": [{"family": "Smithers", "given": ["Waylon"]}]},
        "percent": {"name": [{"family": "100%_real", "given": ["A"]}]},
        "nameless": {"gender": "unknown"},
    }
    out = {}
    with store.write() as ctx:
        for key, body in data.items():
            out[key] = ctx.create({"resourceType": "Patient", **body}).rid
    return out


def test_default_is_case_and_accent_insensitive_starts_with(
    store: Store, people: dict[str, str]
) -> None:
    assert find(store, "Patient", "family=smith") == {people["smith"], people["smithers"]}
    assert find(store, "Patient", "family=SMITHE") == {people["smithers"]}
    assert find(store, "Patient", "family=nunez") == {people["nunez"]}
    assert find(store, "Patient", "given=jose") == {people["nunez"]}
    assert find(store, "Patient", "family=mith") == set()  # not a prefix


def test_exact_is_case_and_accent_sensitive(store: Store, people: dict[str, str]) -> None:
    assert find(store, "Patient", "family:exact=Smith") == {people["smith"]}
    assert find(store, "Patient", "family:exact=smith") == set()
    assert find(store, "Patient", "family:exact=Núñez") == {people["nunez"]}
    assert find(store, "Patient", "family:exact=Nunez") == set()


def test_contains(store: Store, people: dict[str, str]) -> None:
    assert find(store, "Patient", "family:contains=MITH") == {people["smith"], people["smithers"]}
    assert find(store, "Patient", "name:contains=ayl") == {people["smithers"]}
    assert find(store, "Patient", "family:contains=xyz") == set()


def test_like_wildcards_are_literal(store: Store, people: dict[str, str]) -> None:
    assert find(store, "Patient", "family=100%25_") == {people["percent"]}
    assert find(store, "Patient", "family=1_0") == set()
    assert find(store, "Patient", "family:contains=%25") == {people["percent"]}
    assert find(store, "Patient", "family:contains=_") == {people["percent"]}


def test_chinese_names(store: Store, people: dict[str, str]) -> None:
    assert find(store, "Patient", "family=张") == {people["zhang"], people["zhangwei"]}
    assert find(store, "Patient", "family:exact=张") == {people["zhang"]}
    assert find(store, "Patient", "name=张三") == {people["zhang"]}  # family+given, no space
    assert find(store, "Patient", "name=张三丰") == {people["zhang"]}
    assert find(store, "Patient", "name:contains=三") == {people["zhang"]}
    assert find(store, "Patient", "name:contains=伟") == {people["zhangwei"]}
    assert find(store, "Patient", "given=小") == {people["zhangwei"]}
    assert find(store, "Patient", "family=赵,张伟") == {people["zhao"], people["zhangwei"]}


def test_or_and_and(store: Store, people: dict[str, str]) -> None:
    assert find(store, "Patient", "family=smith,nunez") == {
        people["smith"],
        people["smithers"],
        people["nunez"],
    }
    assert find(store, "Patient", "family=smith&given=paul") == {people["smith"]}
    assert find(store, "Patient", "family=smith&given=waylon,john") == {
        people["smith"],
        people["smithers"],
    }


def test_missing(store: Store, people: dict[str, str]) -> None:
    assert find(store, "Patient", "family:missing=true") == {people["nameless"]}
    assert len(find(store, "Patient", "family:missing=false")) == len(people) - 1


def test_update_and_delete_reindex(store: Store, people: dict[str, str]) -> None:
    store.update(
        "Patient",
        people["smith"],
        {"resourceType": "Patient", "id": people["smith"], "name": [{"family": "Jones"}]},
    )
    assert find(store, "Patient", "family=smith") == {people["smithers"]}
    assert find(store, "Patient", "family=jones") == {people["smith"]}
    store.delete("Patient", people["smithers"])
    assert find(store, "Patient", "family=smith") == set()
    assert people["smithers"] not in find(store, "Patient", "family:missing=true")
