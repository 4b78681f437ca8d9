"""EMPI expansion and the security layer, on both databases (issue 9): searches and
``$everything`` on a golden record, and the ``:mdm`` qualifier, span a citizen's records only
as far as the requester may see them. The EMPI widens the query, never the access."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

from test_api_empi import KEY, registration
from test_security_support import FHIR_JSON, bearer, secure_app

from ehr.empi.features import DEFAULT_IDENTITY
from ehr.empi.service import golden_record_id, install
from ehr.identifiers import make_citizen_id
from ehr.store import Store


def _citizen(store: Store) -> dict[str, str]:
    """One citizen at hospitals 1 and 2 (one golden record), a stranger at hospital 2, and the
    two hospitals' organizations; one Observation per Patient."""
    install(store, identity=replace(DEFAULT_IDENTITY, hmac_key=KEY))
    for org in ("org1", "org2"):
        store.update("Organization", org, {"resourceType": "Organization", "id": org})
    cid = make_citizen_id("330106", date(1979, 5, 2), 8, True)
    ids: dict[str, str] = {}
    for key, org, mrn, citizen, name in (("a", "org1", "A-1", cid, "林晓燕"),
                                         ("b", "org2", "B-7", cid, "林晓燕"),
                                         ("s", "org2", "B-9", None, "欧阳娜娜")):  # fmt: skip
        body = {**registration(org, mrn, citizen, name),
                "managingOrganization": {"reference": f"Organization/{org}"}}  # fmt: skip
        ids[key] = store.create(body).rid
        store.create({"resourceType": "Observation", "status": "final", "code": {"text": mrn},
                      "subject": {"reference": f"Patient/{ids[key]}"}})  # fmt: skip
    golden = golden_record_id(store, ids["a"])
    assert golden is not None and golden == golden_record_id(store, ids["b"])
    ids["g"] = golden
    return ids


def _codes(r: Any) -> set[str]:
    assert r.status_code == 200, r.text
    return {e["resource"]["code"]["text"] for e in r.json().get("entry", ())
            if e["resource"]["resourceType"] == "Observation"}  # fmt: skip


def test_expansion_never_widens_what_a_token_may_see(store: Store, tmp_path: Path) -> None:
    ids = _citizen(store)
    a, b, g = ids["a"], ids["b"], ids["g"]
    with secure_app(store, tmp_path, audit=False) as sa:
        c = sa.client
        citizen_a = sa.token("patient/*.rs", sub="user-a", patient=a, fhirUser=f"Patient/{a}",
                             role="citizen")  # fmt: skip
        app_a = sa.token("patient/*.rs", client_id="hospital-1-app", patient=a)
        clinician_1 = sa.token("user/*.rs", sub="user-p1", fhirUser="Practitioner/p1",
                               role="practitioner", organization="Organization/org1")  # fmt: skip
        backend = sa.token("system/*.rs", client_id="exchange")
        searches = [
            ("/Observation", {"subject:mdm": f"Patient/{a}"}),
            ("/Observation", {"subject": f"Patient/{g}"}),
            ("/Observation", {"patient:mdm": a}),
            (f"/Patient/{g}/Observation", {}),
        ]
        for token in (citizen_a, app_a, clinician_1):
            for path, params in searches:
                # hospital 1's record only: hospital 2's record of the same citizen stays out
                got = _codes(c.get(path, params=params, headers=bearer(token)))
                assert got == {"A-1"}, (path, params, got)
            r = c.get("/Patient", params={"_id": b}, headers=bearer(token))
            assert r.status_code == 200 and r.json()["total"] == 0
        for path, params in searches:  # a backend service sees the citizen's whole record
            assert _codes(c.get(path, params=params, headers=bearer(backend))) == {"A-1", "B-7"}

        # $everything on the golden record: within reach only (the golden record is in A's
        # compartment, its link names A; B is not)
        for token in (citizen_a, app_a):
            r = c.get(f"/Patient/{g}/$everything", headers=bearer(token))
            assert _codes(r) == {"A-1"}
            got = {e["resource"]["id"] for e in r.json()["entry"]}
            assert b not in got and ids["s"] not in got
        assert _codes(c.get(f"/Patient/{g}/$everything", headers=bearer(backend))) == {
            "A-1",
            "B-7",
        }
        # HAPI's _mdm=true on a hospital's record: the citizen's whole record, within reach
        for token in (citizen_a, app_a, clinician_1):
            r = c.get(f"/Patient/{a}/$everything", params={"_mdm": "true"}, headers=bearer(token))
            assert _codes(r) == {"A-1"}
        mdm = c.get(f"/Patient/{a}/$everything", params={"_mdm": "true"}, headers=bearer(backend))
        assert _codes(mdm) == {"A-1", "B-7"}
        assert "_mdm=true" in next(
            lk["url"] for lk in mdm.json()["link"] if lk["relation"] == "self"
        )
        assert _codes(c.get(f"/Patient/{a}/$everything", headers=bearer(backend))) == {"A-1"}
        bad = c.get(f"/Patient/{a}/$everything", params={"_mdm": "yes"}, headers=bearer(backend))
        assert bad.status_code == 400
        missing = c.get("/Patient/nobody/$everything?_mdm=true", headers=bearer(backend))
        assert missing.status_code == 404
        # the links are Patient data: a token that may not read Patients gets no expansion
        obs_only = sa.token("system/Observation.rs", client_id="lab-feed")
        r = c.get("/Observation", params={"subject": f"Patient/{g}"}, headers=bearer(obs_only))
        assert r.status_code == 200 and r.json()["total"] == 0
        assert _codes(c.get("/Observation", params={"subject": f"Patient/{a}"},
                            headers=bearer(obs_only))) == {"A-1"}  # fmt: skip
        # the stranger's token learns nothing about the citizen through :mdm
        stranger = sa.token("patient/*.rs", client_id="hospital-2-app", patient=ids["s"])
        r = c.get("/Observation", params={"subject:mdm": f"Patient/{a}"},
                  headers=bearer(stranger))  # fmt: skip
        assert r.status_code == 200 and r.json()["total"] == 0
        assert c.get(f"/Patient/{g}/$everything", headers=bearer(stranger)).status_code == 404
        assert r.headers["content-type"].startswith(FHIR_JSON)


def test_linked_records_are_narrowed_to_what_the_request_may_see(store: Store) -> None:
    from ehr.empi.service import expand_search_params, linked_patient_ids, person_patient_ids
    from ehr.search.engine import ambient_restriction

    ids = _citizen(store)
    a, b, g = ids["a"], ids["b"], ids["g"]
    assert set(linked_patient_ids(store, g)) == {g, a, b}
    token = ambient_restriction.set(lambda r, ctx: r.c.rid != b)  # b is out of reach
    try:
        assert set(linked_patient_ids(store, g)) == {g, a}
        assert set(person_patient_ids(store, a)) == {g, a}
        (expanded,) = expand_search_params(store, [("subject:mdm", f"Patient/{a}")])
        assert expanded[0] == "subject" and b not in expanded[1]
    finally:
        ambient_restriction.reset(token)
