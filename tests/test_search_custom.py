"""Custom search parameters (http://hl7.org/fhir/R4/search.html#custom): a SearchParameter a
client writes takes effect for new writes and searches, existing resources after a reindex,
and leaves again when retired or deleted; bad definitions are refused before anything is
stored. Both databases."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl

import pytest
from sqlalchemy import func, select

from ehr.definitions import search_parameters
from ehr.errors import BadRequest, Conflict, Unprocessable
from ehr.search.reindex import reindex
from ehr.search.tables import idx_date, idx_token
from ehr.store import Store

EYE = "http://example.org/fhir/StructureDefinition/eye-colour"
REG = "http://example.org/fhir/StructureDefinition/registered"


def eye_param(**over: Any) -> dict[str, Any]:
    return {
        "resourceType": "SearchParameter",
        "url": "http://example.org/fhir/SearchParameter/patient-eye-colour",
        "name": "EyeColour",
        "status": "active",
        "description": "The patient's eye colour",
        "code": "eye-colour",
        "base": ["Patient"],
        "type": "token",
        "expression": f"Patient.extension.where(url='{EYE}').value",
        **over,
    }


def patient(
    colour: str | None = None, registered: str | None = None, **extra: Any
) -> dict[str, Any]:
    ext = []
    if colour:
        ext.append({"url": EYE, "valueCode": colour})
    if registered:
        ext.append({"url": REG, "valueDate": registered})
    return {"resourceType": "Patient", **({"extension": ext} if ext else {}), **extra}


def find(store: Store, rtype: str, query: str, **kw: Any) -> set[str]:
    page = store.search(rtype, parse_qsl(query), **kw)
    return {h.rid for h in page.matches}


def count_sp(store: Store) -> int:
    return len(find(store, "SearchParameter", "_count=100"))


@pytest.fixture
def fast(store: Store) -> Iterator[Store]:
    """The store, with the cross-process refresh interval shortened so the test runs quickly."""
    store.custom.refresh_interval = 0.05
    yield store


def test_custom_token_param_lifecycle(fast: Store) -> None:
    store = fast
    old = store.create(patient("brown")).rid  # before the parameter exists
    sp = store.create(eye_param())
    new_blue = store.create(patient("blue")).rid
    new_brown = store.create(patient("brown")).rid
    store.create(patient())

    # new writes are indexed and searchable at once, with the token forms and modifiers
    assert find(store, "Patient", "eye-colour=blue") == {new_blue}
    assert find(store, "Patient", "eye-colour=brown,blue") == {new_blue, new_brown}
    assert find(store, "Patient", "eye-colour:missing=false") == {new_blue, new_brown}
    # the resource written before the parameter is not indexed yet ...
    assert old not in find(store, "Patient", "eye-colour=brown")
    # ... until a reindex
    job = reindex(store, param_url=eye_param()["url"])
    assert job.status == "done" and job.rtypes == ("Patient",) and job.done == 4
    assert find(store, "Patient", "eye-colour=brown") == {old, new_brown}
    # strict mode knows it; _sort works on it
    assert find(store, "Patient", "eye-colour=blue", strict=True) == {new_blue}
    page = store.search("Patient", [("eye-colour:missing", "false"), ("_sort", "-eye-colour")])
    assert [h.rid for h in page.matches] == [old, new_brown, new_blue]  # brown > blue, then pk

    # retired: the parameter is gone, its rows too
    store.update("SearchParameter", sp.rid, {**eye_param(), "id": sp.rid, "status": "retired"})
    with pytest.raises(BadRequest, match="eye-colour"):
        store.search("Patient", [("eye-colour", "blue")], strict=True)
    lenient = store.search("Patient", [("eye-colour", "blue")])
    assert any("eye-colour" in i.diagnostics for i in lenient.issues)
    with store.read_conn() as conn:
        left = conn.execute(select(func.count()).where(idx_token.c.param == "eye-colour")).scalar()
    assert left == 0

    # active again, then deleted: gone again
    store.update("SearchParameter", sp.rid, {**eye_param(), "id": sp.rid})
    assert find(store, "Patient", "eye-colour=blue") == set()  # rows were dropped: reindex needed
    reindex(store, rtype="Patient")
    assert find(store, "Patient", "eye-colour=blue") == {new_blue}
    store.delete("SearchParameter", sp.rid)
    with pytest.raises(BadRequest):
        store.search("Patient", [("eye-colour", "blue")], strict=True)


def test_custom_date_param_with_prefixes_and_reindex_of_type(fast: Store) -> None:
    store = fast
    a = store.create(patient(registered="2019-05-02")).rid
    b = store.create(patient(registered="2023-11")).rid
    store.create({
        "resourceType": "SearchParameter", "url": "http://example.org/sp/registered",
        "name": "Registered", "status": "active", "description": "registration date",
        "code": "registered", "base": ["Patient"], "type": "date",
        "expression": f"Patient.extension('{REG}').value",
    })  # fmt: skip
    c = store.create(patient(registered="2024-02-29")).rid
    assert find(store, "Patient", "registered=ge2020") == {c}
    reindex(store, rtype="Patient", chunk=2)
    assert find(store, "Patient", "registered=ge2020") == {b, c}
    assert find(store, "Patient", "registered=lt2020-01-01") == {a}
    assert find(store, "Patient", "registered=2023") == {b}
    with store.read_conn() as conn:
        rows = conn.execute(select(func.count()).where(idx_date.c.param == "registered")).scalar()
    assert rows == 3  # one row each: the reindex replaced rows, it did not add a second copy


def test_other_store_on_the_same_database_learns_the_parameter(fast: Store, db_url: str) -> None:
    """A second Store is what a second server worker has: it picks the change up on its own."""
    store = fast
    other = Store(db_url, pool_size=2)
    other.custom.refresh_interval = 0.05
    try:
        assert other.search("Patient", [("eye-colour", "blue")]).issues  # unknown there yet
        sp = store.create(eye_param())
        import time

        time.sleep(0.06)
        rid = other.create(patient("blue")).rid  # the other worker indexes new writes with it
        assert find(store, "Patient", "eye-colour=blue") == {rid}
        assert find(other, "Patient", "eye-colour=blue", strict=True) == {rid}
        store.update("SearchParameter", sp.rid, {**eye_param(), "id": sp.rid, "status": "retired"})
        time.sleep(0.06)
        with pytest.raises(BadRequest):
            other.search("Patient", [("eye-colour", "blue")], strict=True)
    finally:
        other.dispose()
    # the process-wide standard registry never sees a store's custom parameters
    assert search_parameters().get("Patient", "eye-colour") is None


def test_a_store_loads_active_parameters_on_start(store: Store, db_url: str) -> None:
    store.create(eye_param())
    store.create(eye_param(url="http://example.org/sp/draft", code="draft-one", status="draft"))
    rid = store.create(patient("green")).rid
    fresh = Store(db_url, pool_size=2)
    try:
        assert find(fresh, "Patient", "eye-colour=green", strict=True) == {rid}
        assert fresh.registry.get("Patient", "draft-one") is None
        assert set(fresh.custom.active()) == {eye_param()["url"]}
    finally:
        fresh.dispose()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"expression": "Patient.extension.where(url='x').value)("}, "not valid FHIRPath"),
        ({"expression": "Patient.eyeColour"}, "does not have"),
        ({"expression": "Observation.code"}, "can select nothing on base Patient"),
        ({"type": "date", "expression": "Patient.name"}, "cannot index"),
        ({"type": "special"}, "not supported"),
        ({"code": "_eyes"}, "not usable"),
        ({"code": "eye.colour"}, "not usable"),
        ({"expression": None}, "expression is required"),
    ],
)
def test_bad_definitions_are_refused_with_422(
    store: Store, change: dict[str, Any], message: str
) -> None:
    body = {k: v for k, v in {**eye_param(), **change}.items() if v is not None}
    with pytest.raises(Unprocessable, match=message) as err:
        store.create(body)
    assert err.value.status == 422
    assert count_sp(store) == 0  # nothing was written


def test_draft_parameters_are_stored_but_not_checked_or_used(store: Store) -> None:
    store.create(eye_param(status="draft", expression="Patient.eyeColour"))
    assert count_sp(store) == 1
    assert store.search("Patient", [("eye-colour", "blue")]).issues


def test_conflicts_with_standard_and_other_custom_parameters(store: Store) -> None:
    with pytest.raises(Conflict, match="standard search parameter") as err:
        store.create(eye_param(code="family", type="string", expression="Patient.name.family"))
    assert err.value.status == 409
    with pytest.raises(Conflict, match="standard search parameter of Account, AllergyIntolerance"):
        store.create(eye_param(code="patient", base=["Resource"], expression="Resource.meta.tag"))
    store.create(eye_param())
    with pytest.raises(Conflict, match="already defines 'eye-colour'"):
        store.create(eye_param(url="http://example.org/sp/other"))
    with pytest.raises(Conflict, match="already defines the active parameter"):
        store.create(eye_param(code="eye-color"))
    # a different base is no conflict; a Resource-wide one with the same code is
    store.create(eye_param(url="http://example.org/sp/pr-eyes", base=["Practitioner"],
                           expression=f"Practitioner.extension('{EYE}').value"))  # fmt: skip
    with pytest.raises(Conflict):
        store.create(eye_param(url="http://example.org/sp/any-eyes", base=["Resource"],
                               expression="Resource.meta.tag"))  # fmt: skip
    assert count_sp(store) == 2


def test_changing_the_expression_drops_old_rows(fast: Store) -> None:
    store = fast
    sp = store.create(eye_param())
    store.create(patient("blue", gender="female"))
    assert len(find(store, "Patient", "eye-colour=blue")) == 1
    store.update(
        "SearchParameter", sp.rid, {**eye_param(), "id": sp.rid, "expression": "Patient.gender"}
    )
    assert find(store, "Patient", "eye-colour=blue") == set()  # no stale rows of the old meaning
    reindex(store, param_url=eye_param()["url"])
    assert len(find(store, "Patient", "eye-colour=female")) == 1


def test_transaction_bundle_with_a_parameter_applies_after_commit(fast: Store) -> None:
    store = fast
    with store.write() as ctx:
        ctx.create(eye_param())
        ctx.create(patient("grey"))
    assert find(store, "Patient", "eye-colour=grey") == set()  # indexed before the commit
    grey = store.create(patient("grey")).rid
    assert find(store, "Patient", "eye-colour=grey") == {grey}


def test_failed_write_does_not_change_the_registry(store: Store) -> None:
    with pytest.raises(Conflict), store.write() as ctx:
        ctx.create(eye_param())
        raise Conflict("something else failed")
    assert store.registry.get("Patient", "eye-colour") is None
    assert count_sp(store) == 0
