"""The domain ``$operations`` on the secured app (``ehr serve``'s), both databases: the appointment
services and the health one-card sit behind the SMART authorizer like every FHIR route (token
verified, scopes checked, an instance operation on a record out of reach answered as for one
that does not exist) and every call, refusals included, leaves an AuditEvent."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from test_appointments_support import ORG, build_world, plus
from test_security_support import SecureApp, bearer, secure_app

from ehr.security.audit import chain_events
from ehr.store import Store

BOOKING = "launch/patient patient/*.rs patient/Appointment.cru"


def params(**kw: Any) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": [
        {"name": k, "valueReference": v} if isinstance(v, dict) else {"name": k, "valueString": v}
        for k, v in kw.items()]}  # fmt: skip


def citizen(sa: SecureApp, pid: str, scope: str = BOOKING) -> str:
    return sa.token(scope, sub=f"user-{pid}", patient=pid, fhirUser=f"Patient/{pid}",
                    role="citizen", client_id="booking-app")  # fmt: skip


def doctor(sa: SecureApp, prac: str, role: str, org: str) -> str:
    return sa.token("user/*.crus", sub=f"user-{prac}", fhirUser=f"Practitioner/{prac}",
                    role="practitioner", practitioner_role=f"PractitionerRole/{role}",
                    organization=f"Organization/{org}", client_id="workstation-app")  # fmt: skip


def post(sa: SecureApp, token: str | None, url: str, body: Any) -> Any:
    h = bearer(token, **{"Content-Type": "application/fhir+json"})
    return sa.client.post(url, content=json.dumps(body), headers=h)


def operation(e: dict[str, Any]) -> str | None:
    return next((s["code"] for s in e["subtype"] if s["system"] == "urn:ehr:audit-subtype"), None)


def test_appointment_operations_are_authorized_and_audited(store: Store, tmp_path: Path) -> None:
    world = build_world(store, days=3, schedules=("sch-a",))
    with secure_app(store, tmp_path) as sa:
        sa.app.state.appointments = world.svc
        pat1, pat2 = citizen(sa, "pat-1"), citizen(sa, "pat-2")
        slot = {"reference": f"Slot/{world.slot('sch-a', plus(1), 'am', 1)}"}
        # no token: 401 from the gate, before the service
        r = sa.client.get("/Appointment/$find", params={"service": "hs-endo"})
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
        # a read-only app may look for slots, not book (scopes checked before any work)
        reader = citizen(sa, "pat-1", "launch/patient patient/*.rs")
        found = sa.client.get("/Appointment/$find", params={"service": "hs-endo", "_count": "2"},
                              headers=bearer(reader))  # fmt: skip
        assert found.status_code == 200 and len(found.json()["entry"]) == 2
        refused = post(
            sa,
            reader,
            "/Appointment/$book",
            params(slot=slot, patient={"reference": "Patient/pat-1"}),
        )
        assert refused.status_code == 403, refused.text
        assert store.search("Appointment", [("patient", "Patient/pat-1")]).total in (0, None)
        booked = post(
            sa,
            pat1,
            "/Appointment/$book",
            params(slot=slot, patient={"reference": "Patient/pat-1"}),
        )
        assert booked.status_code == 201, booked.text
        aid = booked.json()["id"]
        # another citizen cannot even learn that the appointment exists
        theirs = post(sa, pat2, f"/Appointment/{aid}/$cancel", params())
        missing = post(sa, pat2, "/Appointment/no-such/$cancel", params())
        assert theirs.status_code == 404 == missing.status_code
        assert theirs.text.replace(aid, "no-such") == missing.text
        assert store.read("Appointment", aid).resource()["status"] == "booked"
        # the treating doctor (the booking names their role) sees the trend; a doctor of
        # another hospital gets the answer for a patient that does not exist
        mine = doctor(sa, "prac-1", "role-a", ORG)
        stranger = doctor(sa, "prac-9", "role-9", "org-elsewhere")
        trend = "/Patient/{}/$trend?code=http://loinc.org|2339-0"
        assert sa.client.get(trend.format("pat-1"), headers=bearer(mine)).status_code == 200
        hidden = sa.client.get(trend.format("pat-1"), headers=bearer(stranger))
        nobody = sa.client.get(trend.format("no-such"), headers=bearer(stranger))
        assert hidden.status_code == 404 == nobody.status_code
        assert hidden.text.replace("pat-1", "no-such") == nobody.text
        # the citizen cancels their own booking
        done = post(sa, pat1, f"/Appointment/{aid}/$cancel", params(reason="另有安排"))
        assert done.status_code == 200 and done.json()["status"] == "cancelled"
        sa.trail.sync()
        events = chain_events(store)
        # every call above, refusals included, in order
        assert [(operation(e), e["outcome"]) for e in events] == [
            ("find", "4"), ("find", "0"), ("book", "4"), ("book", "0"), ("cancel", "4"),
            ("cancel", "4"), ("trend", "0"), ("trend", "4"), ("trend", "4"), ("cancel", "0"),
        ]  # fmt: skip
        # ... and pat-1 sees, under their own token, who touched their record
        log = sa.client.get("/AuditEvent?patient=pat-1&_sort=date", headers=bearer(pat1)).json()
        seen = [(operation(e["resource"]), e["resource"]["agent"][0]["who"].get("reference"),
                 e["resource"]["outcome"]) for e in log["entry"]]  # fmt: skip
        assert ("trend", "Practitioner/prac-1", "0") in seen
        assert ("cancel", "Patient/pat-1", "0") in seen
        assert ("trend", "Practitioner/prac-9", "4") in seen  # an attempt on their Patient
        # a refused request is never tied to the patient of the resource it named (pat-2 may
        # read their own log and must not learn from it whose appointment it was)
        assert not [s for s in seen if s[1] == "Patient/pat-2"]
        theirs = sa.client.get("/AuditEvent?patient=pat-2", headers=bearer(pat2)).json()
        assert "pat-1" not in json.dumps(theirs) and aid in json.dumps(theirs)


def test_card_operations_are_authenticated_and_audited(store: Store, tmp_path: Path) -> None:
    with secure_app(store, tmp_path) as sa:
        r = sa.client.post("/$card-nonce")
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
        bad = sa.client.post("/$card-nonce", headers=bearer("not-a-token"))
        assert bad.status_code == 401 and 'error="invalid_token"' in bad.headers["www-authenticate"]
        terminal = sa.token("system/health-card.tap", client_id="counter-7")
        ok = sa.client.post("/$card-nonce", headers=bearer(terminal))
        assert ok.status_code == 200 and ok.json()["nonce"]
        wrong = sa.token("system/Patient.rs", client_id="analytics")
        assert sa.client.post("/$card-nonce", headers=bearer(wrong)).status_code == 403
        sa.trail.sync()
    got = [(operation(e), e["outcome"], [a["who"].get("display") for a in e["agent"]])
           for e in chain_events(store)]  # fmt: skip
    assert ("card-nonce", "4", ["anonymous"]) in got
    assert ("card-nonce", "0", ["counter-7"]) in got
    assert [g for g in got if g[1] == "4" and g[2] == ["analytics"]]
