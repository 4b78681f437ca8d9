"""Patient privacy consent and break-the-glass, through the real API on both databases.

* a citizen's Consent denying an organization hides their whole record from its clinicians
  (reads answer like a missing resource, searches leave it out in SQL: totals and paging stay
  right), and withdrawing it restores access;
* a Consent hiding a sensitive category (mental health, ``v3-ActCode|PSY``) hides those
  resources from every clinician but the author's organization, in reads, searches and includes;
* break-the-glass: an emergency reason grants one request, is audited as BTG and notifies the
  patient with one Communication per clinician and day; only clinicians may assert it.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from test_security_support import (
    FHIR_JSON,
    PSY,
    SecureApp,
    _obs,
    bearer,
    build_world,
    secure_app,
    tokens,
)

from ehr.accounts.scopes import parse_scopes
from ehr.security.consent import notify_break_glass, rebuild_consent_rules, rules_of
from ehr.security.principal import Principal
from ehr.security.tables import consent_rules
from ehr.store import Store

PRIVACY = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                       "code": "patient-privacy"}]}  # fmt: skip


def consent(pid: str, provision: dict[str, Any], org: str | None = None) -> dict[str, Any]:
    c: dict[str, Any] = {
        "resourceType": "Consent",
        "status": "active",
        "scope": PRIVACY,
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": f"Patient/{pid}"},
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                                   "code": "OPTIN"}]},
        "provision": provision,
    }  # fmt: skip
    if org:
        c["organization"] = [{"reference": f"Organization/{org}"}]
    return c


def deny_actor(org: str) -> dict[str, Any]:
    return {"type": "deny", "actor": [{
        "role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                             "code": "PRCP"}]},
        "reference": {"reference": f"Organization/{org}"}}]}  # fmt: skip


def clinician(sa: SecureApp, p: str, org: str) -> str:
    return sa.token("user/*.cruds", sub=f"user-{p}", fhirUser=f"Practitioner/{p}",
                    role="practitioner", organization=f"Organization/{org}")  # fmt: skip


def post(sa: SecureApp, token: str | None, path: str, body: Any, **headers: str) -> Any:
    h = bearer(token, **headers)
    h["Content-Type"] = FHIR_JSON
    return sa.client.post(path, content=json.dumps(body), headers=h)


def ids(r: Any) -> list[str]:
    return ids_of(r.json())


def ids_of(bundle: dict[str, Any]) -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", []) if "resource" in e]


def test_rules_of_a_consent() -> None:
    c = consent("pa", {"type": "permit", "provision": [
        {"type": "deny", "securityLabel": [PSY],
         "class": [{"system": "http://hl7.org/fhir/resource-types", "code": "DocumentReference"}]},
    ]}, org="org3")  # fmt: skip
    rows = rules_of(c)
    assert {(r["kind"], r["actor"], r["rtype"], r["code"]) for r in rows} == {
        ("deny", None, None, "PSY"),
        ("deny", None, "DocumentReference", None),
        ("exempt", "Organization/org3", None, None),
    }
    assert rules_of({**c, "status": "inactive"}) == []
    assert rules_of({**c, "scope": {"coding": [{"code": "research"}]}}) == []
    # an actor we cannot recognise denies nobody rather than everybody
    odd = consent("pa", {"type": "deny", "actor": [{"reference": {"display": "somebody"}}]})
    assert rules_of(odd) == []


def test_deny_an_organization(store: Store, tmp_path: Path) -> None:
    w = build_world(store)
    with secure_app(store, tmp_path, audit=False) as sa:
        t = tokens(sa)
        c1, get = t["clinician_1"], sa.client.get
        assert get(f"/Observation/{w['obs-pa']}", headers=bearer(c1)).status_code == 200
        # clinician 3 at org3 also treats A
        store.create({"resourceType": "Encounter", "status": "finished",
                      "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                                "code": "AMB"},
                      "subject": {"reference": "Patient/pa"},
                      "serviceProvider": {"reference": "Organization/org3"}})  # fmt: skip
        c3 = clinician(sa, "p3", "org3")

        made = post(sa, t["citizen_a"], "/Consent", consent("pa", deny_actor("org1")))
        assert made.status_code == 201, made.text
        cid = made.json()["id"]

        missing = get("/Observation/nope", headers=bearer(c1))
        hidden = get(f"/Observation/{w['obs-pa']}", headers=bearer(c1))
        assert hidden.status_code == 404 == missing.status_code
        assert hidden.text.replace(w["obs-pa"], "nope") == missing.text
        assert get("/Patient/pa", headers=bearer(c1)).status_code == 404
        found = get("/Observation?_total=accurate", headers=bearer(c1))
        assert w["obs-pa"] not in found.text and found.json()["total"] == 0
        assert (
            get("/Patient?_id=pa&_revinclude=Observation:subject", headers=bearer(c1)).json()[
                "total"
            ]
            == 0
        )
        # other organizations are not bound; nor is the patient
        assert get(f"/Observation/{w['obs-pa']}", headers=bearer(c3)).status_code == 200
        assert get(f"/Observation/{w['obs-pa']}", headers=bearer(t["citizen_a"])).status_code == 200
        # the table follows the Consent: withdrawing it restores access
        h = bearer(t["citizen_a"])
        assert sa.client.delete(f"/Consent/{cid}", headers=h).status_code == 200
        assert get(f"/Observation/{w['obs-pa']}", headers=bearer(c1)).status_code == 200
        with store.read_conn() as conn:
            assert conn.execute(consent_rules.select()).all() == []


def test_denied_organization_cannot_touch_what_it_cannot_see(store: Store, tmp_path: Path) -> None:
    """Every write or history interaction on a hidden resource answers as for a missing one,
    conditional updates and Bundle entries included; nothing hidden is changed. New documents
    about the patient may still be written (consent governs disclosure), but not read back."""
    w = build_world(store)
    with secure_app(store, tmp_path, audit=False) as sa:
        t = tokens(sa)
        c1, cl, o = t["clinician_1"], sa.client, w["obs-pa"]
        assert (
            post(sa, t["citizen_a"], "/Consent", consent("pa", deny_actor("org1"))).status_code
            == 201
        )
        body = cl.get(f"/Observation/{o}", headers=bearer(t["citizen_a"])).json()
        changed = json.dumps({**body, "status": "amended"})
        h = {**bearer(c1), "Content-Type": FHIR_JSON}
        jp = {**bearer(c1), "Content-Type": "application/json-patch+json"}
        patch = json.dumps([{"op": "replace", "path": "/status", "value": "amended"}])

        def same_as_missing(hidden: Any, missing: Any, missing_id: str = "nope") -> None:
            assert hidden.status_code == 404 == missing.status_code, hidden.text
            assert hidden.text.replace(o, missing_id) == missing.text

        for how in ("vread", "history", "update", "patch", "delete", "conditional update"):
            if how == "vread":
                pair = [
                    cl.get(f"/Observation/{i}/_history/1", headers=bearer(c1)) for i in (o, "nope")
                ]
            elif how == "history":
                pair = [
                    cl.get(f"/Observation/{i}/_history", headers=bearer(c1)) for i in (o, "nope")
                ]
            elif how == "update":
                pair = [
                    cl.put(f"/Observation/{i}", content=changed.replace(o, i), headers=h)
                    for i in (o, "nope")
                ]
            elif how == "patch":
                pair = [
                    cl.patch(f"/Observation/{i}", content=patch, headers=jp) for i in (o, "nope")
                ]
            elif how == "delete":
                pair = [cl.delete(f"/Observation/{i}", headers=bearer(c1)) for i in (o, "nope")]
            else:  # matches nothing the clinician can see; the body names the hidden id
                pair = [
                    cl.put(f"/Observation?_id={i}", content=changed.replace(o, i), headers=h)
                    for i in (o, "nope")
                ]
            same_as_missing(*pair)
        entry = {
            "resource": {**body, "status": "amended"},
            "request": {"method": "PUT", "url": "Observation?identifier=no|match"},
        }
        r = post(sa, c1, "/", {"resourceType": "Bundle", "type": "transaction", "entry": [entry]})
        assert r.status_code == 404 and "not found" in r.text
        kept = cl.get(f"/Observation/{o}", headers=bearer(t["citizen_a"])).json()
        assert kept["meta"]["versionId"] == "1" and kept["status"] == body["status"]
        # documenting new care is not disclosure: allowed, but hidden from org1 once written
        made = post(sa, c1, "/Observation", _obs("pa"))
        assert made.status_code == 201
        assert cl.get(f"/Observation/{made.json()['id']}", headers=bearer(c1)).status_code == 404


def test_sensitive_category_hidden_except_author_org(store: Store, tmp_path: Path) -> None:
    w = build_world(store)
    with secure_app(store, tmp_path, audit=False) as sa:
        t = tokens(sa)
        store.create({"resourceType": "Encounter", "status": "finished",
                      "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                                "code": "AMB"},
                      "subject": {"reference": "Patient/pa"},
                      "serviceProvider": {"reference": "Organization/org3"}})  # fmt: skip
        psy = [store.create(_obs("pa", code="72166-2", meta={"security": [PSY]})).rid
               for _ in range(3)]  # fmt: skip
        psy_cond = (store.create(
            {"resourceType": "Condition", "meta": {"security": [PSY]},
             "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                            "code": "active"}]},
             "subject": {"reference": "Patient/pa"}, "code": {"text": "精神分裂症"}}).rid)  # fmt: skip
        hidden = {*psy, psy_cond}
        c1, c3, get = t["clinician_1"], clinician(sa, "p3", "org3"), sa.client.get
        plain = {w["obs-pa"]}
        before = ids(get("/Observation?subject=Patient/pa", headers=bearer(c1)))
        assert set(before) == plain | set(psy)

        c = consent("pa", {"type": "deny", "securityLabel": [PSY]}, org="org3")
        assert post(sa, t["citizen_a"], "/Consent", c).status_code == 201

        # clinician 1 (org1): the PSY Observations are gone from reads, searches and includes
        assert get(f"/Observation/{psy[0]}", headers=bearer(c1)).status_code == 404
        r = get("/Observation?subject=Patient/pa&_total=accurate", headers=bearer(c1))
        assert set(ids(r)) == plain and r.json()["total"] == 1
        pages = get("/Observation?subject=Patient/pa&_count=1", headers=bearer(c1)).json()
        assert [lk["relation"] for lk in pages["link"]] == [
            "self"
        ]  # one page: nothing hidden behind
        rev = get("/Patient?_id=pa&_revinclude=Observation:subject", headers=bearer(c1))
        assert not set(psy) & set(ids(rev)) and "pa" in ids(rev)
        everything = get("/Patient/pa/*", headers=bearer(c1))
        assert not set(psy) & set(ids(everything))
        # $everything and $summary too, totals included
        whole_1 = get("/Patient/pa/$everything", headers=bearer(c1)).json()
        whole_3 = get("/Patient/pa/$everything", headers=bearer(c3)).json()
        assert w["obs-pa"] in ids_of(whole_1) and not hidden & set(ids_of(whole_1))
        assert hidden <= set(ids_of(whole_3)) and whole_1["total"] == whole_3["total"] - 4
        summary_1 = get("/Patient/pa/$summary", headers=bearer(c1))
        summary_3 = get("/Patient/pa/$summary", headers=bearer(c3))
        assert summary_1.status_code == 200 == summary_3.status_code
        assert "精神分裂" in summary_3.text and "精神分裂" not in summary_1.text
        # the author's organization, and the patient, still see them
        assert set(psy) <= set(ids(get("/Observation?subject=Patient/pa", headers=bearer(c3))))
        assert set(psy) <= set(ids(get("/Observation", headers=bearer(t["citizen_a"]))))
        assert get(f"/Observation/{psy[0]}", headers=bearer(c3)).status_code == 200
        # the rules can be rebuilt from the Consents (after a bulk load without hooks)
        with store.read_conn() as conn:
            before_rows = len(conn.execute(consent_rules.select()).all())
        assert rebuild_consent_rules(store) == before_rows == 2


def test_break_the_glass(store: Store, tmp_path: Path) -> None:
    w = build_world(store)
    with secure_app(store, tmp_path) as sa:
        t = tokens(sa)
        c2, get = t["clinician_2"], sa.client.get  # org2 does not treat A
        obs = f"/Observation/{w['obs-pa']}"
        assert get(obs, headers=bearer(c2)).status_code == 404
        reason = "患者昏迷，急诊抢救 / unconscious in the emergency room"
        btg = bearer(c2, **{"X-Break-Glass": quote(reason)})
        r = get(obs, headers=btg)
        assert r.status_code == 200, r.text
        assert get(obs, headers=btg).status_code == 200
        assert get("/Patient/pa/Observation", headers=btg).json()["total"] == 1
        # temporary: the next request without the header is refused again
        assert get(obs, headers=bearer(c2)).status_code == 404
        # consent is lifted too
        c = consent("pa", deny_actor("org1"))
        assert post(sa, t["citizen_a"], "/Consent", c).status_code == 201
        assert get(obs, headers=bearer(t["clinician_1"])).status_code == 404
        assert (
            get(obs, headers=bearer(t["clinician_1"], **{"X-Break-Glass": "stroke"})).status_code
            == 200
        )
        # only clinicians may break the glass
        for role in ("citizen_b", "backend", "terminal"):
            assert get(obs, headers=bearer(t[role], **{"X-Break-Glass": "x"})).status_code == 403
        # the patient was told, once per clinician and day
        notes = store.search("Communication", [("recipient", "Patient/pa")])
        senders = sorted(json.loads(h.data)["sender"]["reference"] for h in notes.matches)
        assert senders == ["Practitioner/p1", "Practitioner/p2"]
        note = json.loads(notes.matches[0].data)
        assert note["category"][0]["coding"][0]["code"] == "BTG"
        # ... and sees it under their own token
        mine = get("/Communication", headers=bearer(t["citizen_a"]))
        assert len(ids(mine)) == 2
        # audited as break-the-glass, visible to the patient
        sa.trail.sync()
        events = get("/AuditEvent?patient=pa&_count=200", headers=bearer(t["citizen_a"])).json()
        btg_events = [
            e["resource"] for e in events["entry"]
            if any(c.get("code") == "BTG" for p in e["resource"].get("purposeOfEvent", [])
                   for c in p["coding"])
        ]  # fmt: skip
        assert len(btg_events) >= 4
        assert any(e["purposeOfEvent"][0]["text"] == reason for e in btg_events)
        assert {a["who"].get("reference") for e in btg_events for a in e["agent"]} >= {
            "Practitioner/p2", "Organization/org2"}  # fmt: skip


def test_break_the_glass_notices_count_by_the_local_day(store: Store) -> None:
    """One notice per clinician, patient and day of the local (China) calendar: its day begins
    at 16:00 UTC, not at 00:00 UTC (08:00 in China)."""
    build_world(store)
    doctor = Principal(subject="user-p2", client_id="app", scopes=parse_scopes("user/*.rs"),
                       fhir_user="Practitioner/p2", organizations=("Organization/org2",))  # fmt: skip

    def notify(utc: str) -> list[str]:
        return notify_break_glass(store, doctor, ["pa"], "急诊", now=datetime.fromisoformat(utc))

    assert notify("2026-03-01T23:59:59+00:00") == ["pa"]  # 07:59:59 on 2 March in China
    assert notify("2026-03-02T00:00:01+00:00") == []  # 08:00:01, the same day there
    assert notify("2026-03-02T15:59:59+00:00") == []  # 23:59:59
    assert notify("2026-03-02T16:00:01+00:00") == ["pa"]  # 00:00:01 on 3 March: a new day
    notes = store.search("Communication", [("recipient", "Patient/pa")])
    days = sorted(json.loads(h.data)["identifier"][0]["value"] for h in notes.matches)
    assert days == ["Practitioner/p2:pa:2026-03-02", "Practitioner/p2:pa:2026-03-03"]


def test_break_the_glass_by_token_claim(store: Store, tmp_path: Path) -> None:
    """The emergency reason may come as a ``break_glass`` claim of the token (an EHR that
    asserts it at launch) instead of the header: same access, same audit, same notice."""
    w = build_world(store)
    with secure_app(store, tmp_path) as sa:
        t = tokens(sa)
        obs = f"/Observation/{w['obs-pa']}"
        assert sa.client.get(obs, headers=bearer(t["clinician_2"])).status_code == 404
        emergency = sa.token("user/*.rs", sub="user-p2", fhirUser="Practitioner/p2",
                             role="practitioner", organization="Organization/org2",
                             break_glass="急诊 emergency")  # fmt: skip
        assert sa.client.get(obs, headers=bearer(emergency)).status_code == 200
        # the claim does not open what the request does not name
        assert w["obs-pa"] not in sa.client.get("/Observation", headers=bearer(emergency)).text
        citizen = sa.token("patient/*.rs", sub="user-b", patient="pb", fhirUser="Patient/pb",
                           role="citizen", break_glass="x")  # fmt: skip
        assert sa.client.get(obs, headers=bearer(citizen)).status_code == 403
        sa.trail.sync()
        (notice,) = store.search("Communication", [("recipient", "Patient/pa")]).matches
        assert json.loads(notice.data)["reasonCode"][0]["text"] == "急诊 emergency"
        events = sa.client.get("/AuditEvent?patient=pa", headers=bearer(t["citizen_a"])).json()
        btg = [e["resource"] for e in events["entry"]
               if e["resource"].get("purposeOfEvent", [{}])[0].get("text") == "急诊 emergency"]  # fmt: skip
        assert len(btg) == 1 and btg[0]["outcome"] == "0"
