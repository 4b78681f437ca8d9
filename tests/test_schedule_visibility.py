"""Directory resources that the Patient compartment lists only because they *may* name a patient
(``Schedule.actor``): one that names no patient (a doctor's Schedule) is directory data that a
clinician sees, as the workstation's call-next needs; one that names a patient stays within that
patient's compartment. On SQLite and PostgreSQL (the ``store`` fixture)."""

from __future__ import annotations

from pathlib import Path

from test_security_support import bearer, build_world, secure_app, tokens

from ehr.store import Store


def _schedule(sid: str, actor: str) -> dict[str, object]:
    return {"resourceType": "Schedule", "id": sid, "active": True,
            "actor": [{"reference": actor}]}  # fmt: skip


def test_a_schedule_naming_no_patient_is_directory_data(store: Store, tmp_path: Path) -> None:
    build_world(store)
    store.update("Schedule", "s-doctor", _schedule("s-doctor", "PractitionerRole/role-p2"))
    store.update("Schedule", "s-pa", _schedule("s-pa", "Patient/pa"))  # treated by clinic 1
    store.update("Schedule", "s-pb", _schedule("s-pb", "Patient/pb"))  # treated by clinic 2
    with secure_app(store, tmp_path, audit=False) as sa:
        t = tokens(sa)
        c1, get = t["clinician_1"], sa.client.get
        assert get("/Schedule/s-doctor", headers=bearer(c1)).status_code == 200
        assert get("/Schedule/s-pa", headers=bearer(c1)).status_code == 200
        assert get("/Schedule/s-pb", headers=bearer(c1)).status_code == 404
        found = get("/Schedule?_count=50", headers=bearer(c1)).json()
        assert sorted(e["resource"]["id"] for e in found.get("entry", [])) == ["s-doctor", "s-pa"]
        # a patient-context token sees the directory Schedule and its own, not another's
        ca = t["citizen_a"]
        assert get("/Schedule/s-doctor", headers=bearer(ca)).status_code == 200
        assert get("/Schedule/s-pb", headers=bearer(ca)).status_code == 404
