"""The store as a library (no web server): versions, history, deletes, conditions, hooks.

Runs on SQLite and PostgreSQL (the ``store`` fixture)."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from ehr.errors import (
    BadRequest,
    Conflict,
    FhirError,
    Gone,
    NotFound,
    PreconditionFailed,
    Unprocessable,
)
from ehr.search.tables import INDEX_TABLES
from ehr.storage.tables import history, resources
from ehr.store import PendingWrite, Store, WriteContext


def patient(family: str = "张", given: str = "伟", **extra: object) -> dict:
    return {"resourceType": "Patient", "name": [{"family": family, "given": [given]}], **extra}


def counts(store: Store) -> tuple[int, int, int]:
    with store.read_conn() as c:
        n_res = c.execute(select(func.count()).select_from(resources)).scalar_one()
        n_hist = c.execute(select(func.count()).select_from(history)).scalar_one()
        n_idx = sum(
            c.execute(select(func.count()).select_from(t)).scalar_one()
            for t in INDEX_TABLES.values()
        )
    return n_res, n_hist, n_idx


def test_create_read_stamps_meta(store: Store) -> None:
    w = store.create(
        patient(meta={"tag": [{"system": "urn:t", "code": "demo"}], "versionId": "99"})
    )
    assert w.created and w.version == 1
    got = store.read("Patient", w.rid).resource()
    assert got["id"] == w.rid
    assert got["meta"]["versionId"] == "1"
    assert got["meta"]["tag"] == [{"system": "urn:t", "code": "demo"}]
    assert got["meta"]["lastUpdated"].endswith("Z")
    assert got["name"] == [{"family": "张", "given": ["伟"]}]


def test_read_current_of_many_ids(store: Store) -> None:
    """The current versions of the ids that exist, in one call: the deleted, the unknown and
    another type's ids are left out; more ids than one statement takes (500) are read too."""
    kept = store.create(patient(given="甲"))
    kept = store.update("Patient", kept.rid, {**patient(given="乙"), "id": kept.rid})
    gone = store.create(patient(given="丙"))
    store.delete("Patient", gone.rid)
    obs = store.create({"resourceType": "Observation", "status": "final",
                        "code": {"text": "体温"}})  # fmt: skip
    many = [store.create(patient(given=str(i))).rid for i in range(3)]
    unknown = [f"0-{i:03d}" for i in range(600)]  # (sorted first: the others in a 2nd statement)
    asked = [kept.rid, gone.rid, obs.rid, "no-such-id", *many, *unknown]
    got = store.read_current("Patient", asked)
    assert sorted(got) == sorted([kept.rid, *many])
    assert got[kept.rid].version == 2 and got[kept.rid].resource()["name"][0]["given"] == ["乙"]
    assert store.read_current("Patient", []) == {}


def test_update_versions_and_history(store: Store) -> None:
    w = store.create(patient())
    for i in range(3):
        w = store.update(
            "Patient", w.rid, {**patient(given=f"伟{i}"), "id": w.rid}, if_match=w.version
        )
    assert w.version == 4
    assert store.vread("Patient", w.rid, 2).resource()["name"][0]["given"] == ["伟0"]
    page = store.history(rtype="Patient", rid=w.rid, count=10)
    assert [e.version for e in page.entries] == [4, 3, 2, 1]
    assert page.total == 4
    stamps = [e.last_updated for e in page.entries]
    assert stamps == sorted(stamps, reverse=True) and len(set(stamps)) == 4


def test_stale_if_match_is_412_and_writes_nothing(store: Store) -> None:
    w = store.create(patient())
    store.update("Patient", w.rid, {**patient(given="二"), "id": w.rid}, if_match=1)
    before = counts(store)
    with pytest.raises(PreconditionFailed):
        store.update("Patient", w.rid, {**patient(given="三"), "id": w.rid}, if_match=1)
    assert counts(store) == before
    assert store.read("Patient", w.rid).version == 2


def test_update_as_create_with_client_id(store: Store) -> None:
    w = store.update("Patient", "pat-1", {**patient(), "id": "pat-1"})
    assert w.created and w.rid == "pat-1"
    assert store.read("Patient", "pat-1").version == 1


def test_delete_then_gone_then_recreate(store: Store) -> None:
    w = store.create(patient())
    d = store.delete("Patient", w.rid)
    assert d is not None and d.version == 2
    with pytest.raises(Gone):
        store.read("Patient", w.rid)
    assert store.delete("Patient", w.rid) is None  # idempotent
    with pytest.raises(Gone):
        store.vread("Patient", w.rid, 2)
    assert store.vread("Patient", w.rid, 1).version == 1
    again = store.update("Patient", w.rid, {**patient(), "id": w.rid})
    assert again.version == 3 and again.created


def test_unknown_things(store: Store) -> None:
    with pytest.raises(NotFound):
        store.read("Patient", "nope")
    with pytest.raises(NotFound):
        store.read("Banana", "x")
    with pytest.raises(BadRequest):
        store.read("Patient", "bad id!")
    with pytest.raises(NotFound):
        store.history(rtype="Patient", rid="nope")


def test_invalid_resource_writes_nothing(store: Store) -> None:
    before = counts(store)
    with pytest.raises(Unprocessable):
        store.create(patient(gender="banana"))
    with pytest.raises(BadRequest):
        store.update("Patient", "x1", {**patient(), "id": "x2"})
    with pytest.raises(FhirError):
        store.update("Observation", "x1", {**patient(), "id": "x1"})
    assert counts(store) == before


def test_index_rows_follow_the_resource(store: Store) -> None:
    w = store.create(patient(family="欧阳", given="娜娜", gender="female"))
    _, _, idx1 = counts(store)
    assert idx1 > 0
    store.delete("Patient", w.rid)
    assert counts(store)[2] == 0


def test_conditional_create(store: Store) -> None:
    ident = {"system": "urn:mrn", "value": "A1"}
    a = store.create(patient(identifier=[ident]), if_none_exist="identifier=urn:mrn|A1")
    b = store.create(patient(identifier=[ident]), if_none_exist="identifier=urn:mrn|A1")
    assert a.created and b.outcome == "existing" and a.rid == b.rid
    store.create(patient(identifier=[ident]))
    with pytest.raises(PreconditionFailed):
        store.create(patient(identifier=[ident]), if_none_exist="identifier=urn:mrn|A1")


def test_concurrent_conditional_create_makes_one(store: Store) -> None:
    ident = {"system": "urn:mrn", "value": "RACE"}
    results: list[str] = []
    errors: list[Exception] = []
    barrier = threading.Barrier(20)

    def go() -> None:
        barrier.wait()
        try:
            results.append(
                store.create(
                    patient(identifier=[ident]), if_none_exist="identifier=urn:mrn|RACE"
                ).rid
            )
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=go) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(set(results)) == 1
    assert counts(store)[0] == 1


def test_conditional_update_and_delete(store: Store) -> None:
    ident = {"system": "urn:mrn", "value": "C1"}
    created = store.conditional_update(
        "Patient", "identifier=urn:mrn|C1", patient(identifier=[ident])
    )
    assert created.created
    updated = store.conditional_update(
        "Patient", "identifier=urn:mrn|C1", patient(given="改", identifier=[ident])
    )
    assert updated.rid == created.rid and updated.version == 2
    store.create(patient(identifier=[{"system": "urn:mrn", "value": "D"}]))
    store.create(patient(identifier=[{"system": "urn:mrn", "value": "D"}]))
    with pytest.raises(PreconditionFailed):
        store.conditional_delete("Patient", "identifier=urn:mrn|D")
    deleted = store.conditional_delete("Patient", "identifier=urn:mrn|D", multiple=True)
    assert len(deleted) == 2


def test_patch_json_and_fhirpath(store: Store) -> None:
    w = store.create(patient())
    p = store.patch("Patient", w.rid, "json", [{"op": "add", "path": "/gender", "value": "male"}])
    assert p.version == 2 and store.read("Patient", w.rid).resource()["gender"] == "male"
    before = counts(store)
    with pytest.raises(Unprocessable):
        store.patch(
            "Patient", w.rid, "json", [{"op": "replace", "path": "/gender", "value": "banana"}]
        )
    assert counts(store) == before


class RefuseBusySlots:
    def before_write(self, ctx: WriteContext, write: PendingWrite) -> None:
        if write.rtype == "Slot" and write.resource and write.resource.get("comment") == "refuse":
            raise Conflict("slot refused by hook", "business-rule")


def test_write_hook_refuses_and_rolls_back(db_url: str) -> None:
    store = Store(db_url, hooks=[RefuseBusySlots()], pool_size=2)
    slot = {
        "resourceType": "Slot",
        "schedule": {"reference": "Schedule/s1"},
        "status": "free",
        "start": "2026-12-01T09:00:00+08:00",
        "end": "2026-12-01T09:15:00+08:00",
    }
    store.create(slot)
    before = counts(store)
    with pytest.raises(Conflict):
        store.create({**slot, "comment": "refuse"})
    assert counts(store) == before
    store.dispose()
