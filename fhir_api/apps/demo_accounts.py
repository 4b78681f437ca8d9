"""Demo logins for the apps (``ehr demo``), linked to resources of the demo city, idempotently:

=================  ==================  =============================================================
user name          password            who
=================  ==================  =============================================================
``demo.citizen``   ``Citizen-2026``    a parent (role citizen, ``Patient/x``) who acts for a child
                                       (the child's RelatedPerson carries the parent's protected
                                       citizen-ID identifier); with a health card (SUN tag)
``demo.doctor``    ``Doctor-2026``     a hospital doctor who saw the citizen (Practitioner,
                                       PractitionerRole with a bookable Schedule, Organization)
``demo.nurse``     ``Nurse-2026``      a nurse of the same hospital
``demo.nurse2``    ``Nurse2-2026``     a second nurse of that hospital: she signs the double check
                                       of a high-alert drug (双人核对) on demo.nurse's tablet
=================  ==================  =============================================================

The people are chosen from what is in the store (deterministically: sorted ids), so any loaded
demo city works; when the hospital has only one nurse, a second one (``Practitioner/
prac-demo-nurse-2``, 周小红) is added. An account that exists already is left as it is.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ehr.accounts import AccountStore
from ehr.demo.vocab import HOSPITAL_GRADE_SYSTEM
from ehr.errors import FhirError
from ehr.identifiers import CITIZEN_ID_HASH_SYSTEM, HEALTH_CARD_SYSTEM
from ehr.model import loads
from ehr.store import Store

__all__ = [
    "DEMO_PASSWORDS",
    "SECOND_NURSE",
    "DemoAccount",
    "ensure_demo_accounts",
    "ensure_second_nurse",
    "second_nurse_role",
]

log = logging.getLogger("fhir_api.apps")

DEMO_PASSWORDS = {
    "demo.citizen": "Citizen-2026",
    "demo.doctor": "Doctor-2026",
    "demo.nurse": "Nurse-2026",
    "demo.nurse2": "Nurse2-2026",
}
#: the second nurse added to a hospital that has only one (Practitioner and PractitionerRole ids)
SECOND_NURSE = "prac-demo-nurse-2"
ROLE_CODE = "http://terminology.hl7.org/CodeSystem/practitioner-role"
#: the demo citizen's phone card (a SUN tag; any 7-byte uid will do for a demo)
DEMO_CARD_UID = "04D3E40A2B6C80"


@dataclass(frozen=True)
class DemoAccount:
    username: str
    password: str
    role: str
    fhir_user: str
    display_name: str
    note: str = ""
    practitioner_role: str | None = None
    organization: str | None = None
    acts_for: tuple[str, ...] = ()  #: Patient ids a citizen may act for (a child)


def _all(store: Store, rtype: str, params: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    page = store.search(rtype, [*params, ("_count", "1000")])
    return [loads(hit.data) for hit in page.matches]


def _read(store: Store, rtype: str, rid: str) -> dict[str, Any] | None:
    try:
        return loads(store.read(rtype, rid).data)  # type: ignore[no-any-return]
    except FhirError:
        return None


def _ref_id(ref: dict[str, Any] | None, rtype: str) -> str | None:
    value = str((ref or {}).get("reference") or "")
    return value.split("/", 1)[1] if value.startswith(f"{rtype}/") else None


def _name(res: dict[str, Any]) -> str:
    n = (res.get("name") or [{}])[0]
    return str(n.get("text") or (n.get("family", "") + "".join(n.get("given", []))))


def _hash_of(res: dict[str, Any]) -> str | None:
    for ident in res.get("identifier") or ():
        if ident.get("system") == CITIZEN_ID_HASH_SYSTEM and ident.get("value"):
            return str(ident["value"])
    return None


def _count(store: Store, rtype: str, params: Sequence[tuple[str, str]]) -> int:
    page = store.search(rtype, [*params, ("_summary", "count")])
    return int(page.total or 0)


def _parent_and_child(store: Store) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """An active parent-of-a-minor whose own Patient exists: the one with the most results
    (a fuller record to show), ties broken by id."""
    best: tuple[int, str, dict[str, Any], dict[str, Any]] | None = None
    for rp in sorted(_all(store, "RelatedPerson", [("active", "true")]), key=lambda r: r["id"]):
        value, child_id = _hash_of(rp), _ref_id(rp.get("patient"), "Patient")
        if not value or not child_id:
            continue
        parents = _all(store, "Patient", [("identifier", f"{CITIZEN_ID_HASH_SYSTEM}|{value}")])
        child = _read(store, "Patient", child_id)
        if not parents or child is None:
            continue
        parent = parents[0]
        n = _count(store, "Observation", [("subject", f"Patient/{parent['id']}")])
        if best is None or (-n, parent["id"]) < (-best[0], best[1]):
            best = (n, parent["id"], parent, child)
    return (best[2], best[3]) if best else None


def _roles(store: Store, params: Iterable[tuple[str, str]]) -> list[dict[str, Any]]:
    return sorted(_all(store, "PractitionerRole", list(params)), key=lambda r: r["id"])


def _is_nurse(role: dict[str, Any]) -> bool:
    return any(
        "nurse" in str(c.get("code", ""))
        for cc in role.get("code") or ()
        for c in cc.get("coding") or ()
    )


def _is_hospital(store: Store, org_id: str | None) -> bool:
    org = _read(store, "Organization", org_id) if org_id else None
    return org is not None and any(
        c.get("system") == HOSPITAL_GRADE_SYSTEM
        for cc in org.get("type") or ()
        for c in cc.get("coding") or ()
    )


def _doctor_for(store: Store, patients: Sequence[str]) -> dict[str, Any] | None:
    """A bookable hospital doctor who attended one of ``patients`` (else any bookable one)."""
    hospitals: dict[str, bool] = {}

    def at_hospital(role: dict[str, Any]) -> bool:
        org = _ref_id(role.get("organization"), "Organization") or ""
        if org not in hospitals:
            hospitals[org] = _is_hospital(store, org)
        return hospitals[org]

    scheduled = {
        _ref_id(actor, "PractitionerRole")
        for s in _all(store, "Schedule", [("active", "true")])
        for actor in s.get("actor") or ()
    }
    for pid in patients:
        encounters = sorted(
            _all(store, "Encounter", [("subject", f"Patient/{pid}")]), key=lambda e: e["id"]
        )
        for enc in encounters:
            for part in enc.get("participant") or ():
                prac = _ref_id(part.get("individual"), "Practitioner")
                if not prac:
                    continue
                for role in _roles(store, [("practitioner", f"Practitioner/{prac}")]):
                    if role["id"] in scheduled and not _is_nurse(role) and at_hospital(role):
                        return role
    for role in _roles(store, []):
        if role["id"] in scheduled and not _is_nurse(role) and at_hospital(role):
            return role
    return None


def _nurse_at(store: Store, org: str) -> dict[str, Any] | None:
    for role in _roles(store, [("organization", f"Organization/{org}")]):
        if _is_nurse(role):
            return role
    return None


def second_nurse_role(store: Store, org: str, me: str | None) -> dict[str, Any] | None:
    """Another nurse's role at ``Organization/org`` than ``Practitioner/me``'s (sorted ids)."""
    for role in _roles(store, [("organization", f"Organization/{org}")]):
        prac = _ref_id(role.get("practitioner"), "Practitioner")
        if _is_nurse(role) and prac and prac != me:
            return role
    return None


def ensure_second_nurse(store: Store, org: str, me: str | None, ward: str | None = None) -> str:
    """The Practitioner id of a second nurse at ``Organization/org`` (:func:`second_nurse_role`),
    adding :data:`SECOND_NURSE` (on ``Location/ward``, if given) when there is none."""
    role = second_nurse_role(store, org, me)
    prac = _ref_id(role.get("practitioner"), "Practitioner") if role else None
    if prac:
        return prac
    if not store.exists("Practitioner", SECOND_NURSE):
        store.update("Practitioner", SECOND_NURSE, {
            "resourceType": "Practitioner", "id": SECOND_NURSE, "active": True,
            "name": [{"text": "周小红", "family": "周", "given": ["小红"]}], "gender": "female",
        })  # fmt: skip
    rid = f"role-{SECOND_NURSE}"
    if not store.exists("PractitionerRole", rid):
        new: dict[str, Any] = {
            "resourceType": "PractitionerRole", "id": rid, "active": True,
            "practitioner": {"reference": f"Practitioner/{SECOND_NURSE}", "display": "周小红"},
            "organization": {"reference": f"Organization/{org}"},
            "code": [{"coding": [{"system": ROLE_CODE, "code": "nurse", "display": "Nurse"}]}],
        }  # fmt: skip
        if ward:
            new["location"] = [{"reference": f"Location/{ward}"}]
        store.update("PractitionerRole", rid, new)
    return SECOND_NURSE


def _staff_account(
    store: Store, username: str, role_name: str, role: dict[str, Any], note: str
) -> DemoAccount | None:
    prac = _ref_id(role.get("practitioner"), "Practitioner")
    org = _ref_id(role.get("organization"), "Organization")
    practitioner = _read(store, "Practitioner", prac) if prac else None
    if not prac or not org or practitioner is None:
        return None
    return DemoAccount(
        username,
        DEMO_PASSWORDS[username],
        role_name,
        f"Practitioner/{prac}",
        _name(practitioner),
        note,
        practitioner_role=f"PractitionerRole/{role['id']}",
        organization=f"Organization/{org}",
    )


def plan_demo_accounts(store: Store) -> list[DemoAccount]:
    """Whom the demo logins are, from the store's demo city (empty when it has none)."""
    out: list[DemoAccount] = []
    family = _parent_and_child(store)
    patients: list[str] = []
    if family is not None:
        parent, child = family
        patients = [parent["id"], child["id"]]
        out.append(
            DemoAccount(
                "demo.citizen",
                DEMO_PASSWORDS["demo.citizen"],
                "citizen",
                f"Patient/{parent['id']}",
                _name(parent),
                f"acts for Patient/{child['id']} ({_name(child)})",
                acts_for=(child["id"],),
            )
        )
    doctor = _doctor_for(store, patients)
    if doctor is not None:
        acct = _staff_account(store, "demo.doctor", "practitioner", doctor, "hospital doctor")
        if acct is not None:
            out.append(acct)
        org = _ref_id(doctor.get("organization"), "Organization")
        nurse = _nurse_at(store, org) if org else None
        if nurse is not None:
            acct = _staff_account(store, "demo.nurse", "nurse", nurse, "nurse, same hospital")
            if acct is not None:
                out.append(acct)
                second = second_nurse_role(
                    store, str(org), _ref_id(nurse.get("practitioner"), "Practitioner")
                )
                second_acct = (
                    _staff_account(store, "demo.nurse2", "nurse", second, "second nurse: 双人核对")
                    if second is not None
                    else None
                )
                if second_acct is not None:
                    out.append(second_acct)
    return out


def _ensure_card(store: Store, patient_id: str) -> str | None:
    """The citizen's active health-card id, issuing a demo card (a SUN tag) when there is none."""
    patient = _read(store, "Patient", patient_id) or {}
    for ident in patient.get("identifier") or ():
        if ident.get("system") == HEALTH_CARD_SYSTEM and ident.get("use") != "old":
            return str(ident.get("value"))
    try:
        from ehr.cards.issuing import KIND_SUN, issue_card

        return issue_card(store, patient_id, kind=KIND_SUN, uid=DEMO_CARD_UID).cid
    except Exception as exc:  # a demo nicety: the logins work without a card
        log.warning("no demo health card for Patient/%s: %s", patient_id, exc)
        return None


def ensure_demo_accounts(store: Store, accounts: AccountStore) -> list[DemoAccount]:
    """Create the demo logins that do not exist yet; returns every demo account (new or not)."""
    planned = plan_demo_accounts(store)
    nurse = next((a for a in planned if a.username == "demo.nurse"), None)
    if (
        nurse is not None
        and nurse.organization
        and all(a.username != "demo.nurse2" for a in planned)
    ):
        org = nurse.organization.split("/", 1)[1]
        ensure_second_nurse(store, org, nurse.fhir_user.split("/", 1)[1])
        planned = plan_demo_accounts(store)
    for acct in planned:
        if accounts.users.by_username(acct.username) is None:
            accounts.users.add(
                acct.username,
                role=acct.role,
                password=acct.password,
                fhir_user=acct.fhir_user,
                practitioner_role=acct.practitioner_role,
                organization=acct.organization,
                display_name=acct.display_name,
            )
        if acct.role == "citizen":
            _ensure_card(store, acct.fhir_user.split("/", 1)[1])
    return planned
