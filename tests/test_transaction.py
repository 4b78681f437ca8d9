"""Batch and transaction Bundles in the store (both databases)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from ehr.errors import Conflict, FhirError
from ehr.storage.tables import history, resources
from ehr.store import PendingWrite, Store, WriteContext
from ehr.transaction import process_bundle


def n_rows(store: Store) -> tuple[int, int]:
    with store.read_conn() as c:
        return (
            c.execute(select(func.count()).select_from(resources)).scalar_one(),
            c.execute(select(func.count()).select_from(history)).scalar_one(),
        )


def tx(*entries: dict[str, Any], kind: str = "transaction") -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def post(full_url: str, resource: dict[str, Any], **req: Any) -> dict[str, Any]:
    return {
        "fullUrl": full_url,
        "resource": resource,
        "request": {"method": "POST", "url": resource["resourceType"], **req},
    }


PAT = "urn:uuid:7f4a1b2c-0000-4000-8000-000000000001"
ENC = "urn:uuid:7f4a1b2c-0000-4000-8000-000000000002"


def encounter_bundle() -> dict[str, Any]:
    return tx(
        post(
            ENC,
            {
                "resourceType": "Encounter",
                "status": "finished",
                "class": {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                    "code": "AMB",
                },
                "subject": {"reference": PAT},
            },
        ),
        post(PAT, {"resourceType": "Patient", "name": [{"family": "陈", "given": ["静"]}]}),
        post(
            "urn:oid:1.2.3.4.5",
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                "subject": {"reference": PAT},
                "encounter": {"reference": ENC},
                "valueQuantity": {
                    "value": 72,
                    "unit": "/min",
                    "system": "http://unitsofmeasure.org",
                    "code": "/min",
                },
                "extension": [
                    {"url": "http://example.org/ext", "valueReference": {"reference": PAT}}
                ],
                "contained": [
                    {
                        "resourceType": "Provenance",
                        "id": "p1",
                        "recorded": "2026-01-01T00:00:00Z",
                        "target": [{"reference": ENC}],
                        "agent": [{"who": {"reference": PAT}}],
                    }
                ],
            },
        ),
    )


def test_transaction_resolves_every_reference(store: Store) -> None:
    out = process_bundle(store, encounter_bundle())
    assert out["type"] == "transaction-response"
    statuses = [e["response"]["status"] for e in out["entry"]]
    assert statuses == ["201 Created"] * 3
    enc_loc, pat_loc, obs_loc = (e["response"]["location"] for e in out["entry"])
    pat_ref = "/".join(pat_loc.split("/")[:2])
    enc_ref = "/".join(enc_loc.split("/")[:2])
    obs = store.read(*obs_loc.split("/")[:2]).resource()
    assert obs["subject"]["reference"] == pat_ref
    assert obs["encounter"]["reference"] == enc_ref
    assert obs["extension"][0]["valueReference"]["reference"] == pat_ref
    assert obs["contained"][0]["target"][0]["reference"] == enc_ref
    assert obs["contained"][0]["agent"][0]["who"]["reference"] == pat_ref
    enc = store.read(*enc_loc.split("/")[:2]).resource()
    assert enc["subject"]["reference"] == pat_ref


def test_transaction_is_all_or_nothing(store: Store) -> None:
    bad = encounter_bundle()
    bad["entry"][2]["resource"]["status"] = "banana"
    before = n_rows(store)
    with pytest.raises(FhirError) as err:
        process_bundle(store, bad)
    assert err.value.status == 422
    assert "Bundle.entry[2]" in err.value.issues[0].diagnostics
    assert n_rows(store) == before


class FailOnThird:
    def __init__(self) -> None:
        self.n = 0

    def before_write(self, ctx: WriteContext, write: PendingWrite) -> None:
        self.n += 1
        if self.n == 3:
            raise Conflict("injected failure mid-transaction")


def test_failure_injected_mid_transaction_rolls_back(db_url: str) -> None:
    store = Store(db_url, hooks=[FailOnThird()], pool_size=2)
    try:
        before = n_rows(store)
        with pytest.raises(Conflict):
            process_bundle(store, encounter_bundle())
        assert n_rows(store) == before
    finally:
        store.dispose()


@pytest.mark.parametrize("matches", [0, 1, 2])
def test_conditional_reference(store: Store, matches: int) -> None:
    for _ in range(matches):
        store.create(
            {"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "M1"}]}
        )
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "体温"},
        "subject": {"reference": "Patient?identifier=urn:mrn|M1"},
    }
    before = n_rows(store)
    if matches == 1:
        out = process_bundle(store, tx(post("urn:uuid:00000000-0000-4000-8000-00000000000a", obs)))
        loc = out["entry"][0]["response"]["location"]
        got = store.read(*loc.split("/")[:2]).resource()
        assert got["subject"]["reference"].startswith("Patient/")
        assert store.exists("Patient", got["subject"]["reference"].split("/")[1])
    else:
        with pytest.raises(FhirError) as err:
            process_bundle(store, tx(post("urn:uuid:00000000-0000-4000-8000-00000000000a", obs)))
        assert err.value.status == (404 if matches == 0 else 412)
        assert n_rows(store) == before


def test_conditional_create_in_transaction_reuses_match(store: Store) -> None:
    existing = store.create(
        {"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "X"}]}
    )
    bundle = tx(
        post(
            PAT,
            {"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "X"}]},
            ifNoneExist="identifier=urn:mrn|X",
        ),
        post(
            ENC,
            {
                "resourceType": "Encounter",
                "status": "planned",
                "class": {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                    "code": "AMB",
                },
                "subject": {"reference": PAT},
            },
        ),
    )
    out = process_bundle(store, bundle)
    assert out["entry"][0]["response"]["status"] == "200 OK"
    enc = store.read(*out["entry"][1]["response"]["location"].split("/")[:2]).resource()
    assert enc["subject"]["reference"] == f"Patient/{existing.rid}"


def test_processing_order_and_if_match(store: Store) -> None:
    a = store.update("Patient", "a", {"resourceType": "Patient", "id": "a"})
    bundle = tx(
        {"request": {"method": "GET", "url": "Patient/a"}},
        {
            "resource": {"resourceType": "Patient", "id": "a", "gender": "male"},
            "request": {"method": "PUT", "url": "Patient/a", "ifMatch": 'W/"1"'},
        },
        {"request": {"method": "DELETE", "url": "Patient/b"}},
    )
    seen: list[str] = []

    def read(ctx: WriteContext, e: Any) -> dict[str, Any]:
        seen.append(e.method)
        cur = ctx.repo.current(e.rtype, e.rid)
        return {"response": {"status": "200 OK", "etag": f'W/"{cur.version}"'}}

    out = process_bundle(store, bundle, read=read)
    assert out["entry"][0]["response"]["etag"] == 'W/"2"'  # GET ran after the PUT
    assert out["entry"][1]["response"]["status"] == "200 OK"
    assert a.version == 1
    stale = tx(
        {
            "resource": {"resourceType": "Patient", "id": "a"},
            "request": {"method": "PUT", "url": "Patient/a", "ifMatch": 'W/"1"'},
        }
    )
    with pytest.raises(FhirError) as err:
        process_bundle(store, stale)
    assert err.value.status == 412


def test_batch_answers_each_entry(store: Store) -> None:
    out = process_bundle(
        store,
        tx(
            {
                "resource": {"resourceType": "Patient", "gender": "female"},
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "resource": {"resourceType": "Patient", "gender": "banana"},
                "request": {"method": "POST", "url": "Patient"},
            },
            {"request": {"method": "DELETE", "url": "Patient/nope"}},
            kind="batch",
        ),
    )
    assert out["type"] == "batch-response"
    r = [e["response"] for e in out["entry"]]
    assert r[0]["status"] == "201 Created" and r[0]["location"].startswith("Patient/")
    assert r[1]["status"] == "422" and r[1]["outcome"]["resourceType"] == "OperationOutcome"
    assert r[2]["status"] == "204 No Content"
    assert n_rows(store)[0] == 1


def test_bundle_limits_and_shape(store: Store) -> None:
    with pytest.raises(FhirError) as err:
        process_bundle(
            store,
            tx(*[post(f"urn:uuid:{i}", {"resourceType": "Patient"}) for i in range(5)]),
            max_entries=4,
        )
    assert err.value.status == 413
    with pytest.raises(FhirError) as err:
        process_bundle(store, {"resourceType": "Bundle", "type": "collection"})
    assert err.value.status == 400
    with pytest.raises(FhirError) as err:
        process_bundle(store, tx({"resource": {"resourceType": "Patient"}}))
    assert err.value.status == 400


def test_conditional_put_that_matches_nothing_never_overwrites(store: Store) -> None:
    """A conditional update whose search matches nothing creates with the body's id only if
    that id is new (R5 made the 409 explicit); in a Bundle exactly as over plain HTTP."""
    store.update("Patient", "kept", {"resourceType": "Patient", "id": "kept", "gender": "female"})
    body = {"resourceType": "Patient", "id": "kept", "gender": "male"}
    with pytest.raises(FhirError) as err:
        store.conditional_update("Patient", "identifier=urn:mrn|none", body)
    assert err.value.status == 409
    cond_put = {"resource": body, "request": {"method": "PUT", "url": "Patient?identifier=x|y"}}
    with pytest.raises(FhirError) as err:
        process_bundle(store, tx(cond_put))
    assert err.value.status == 409
    kept = store.read("Patient", "kept")
    assert kept.version == 1 and kept.resource()["gender"] == "female"
    # a new id is update-as-create, in both
    made = store.conditional_update("Patient", "identifier=urn:mrn|none", {**body, "id": "fresh-1"})
    assert made.created and made.rid == "fresh-1"
    out = process_bundle(store, tx({**cond_put, "resource": {**body, "id": "fresh-2"}}))
    assert out["entry"][0]["response"]["status"].startswith("201")
    assert store.read("Patient", "fresh-2").version == 1
