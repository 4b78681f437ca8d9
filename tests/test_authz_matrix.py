"""The authorization matrix: every role x every interaction x (own patient, another's), on the
real app with real tokens, on both databases.

Roles: citizen A and B (patient-context tokens, ``patient/*.cruds``), clinician 1 (org 1, treats
A) and clinician 2 (org 2, treats B) with ``user/*.cruds``, a counter terminal
(``system/Patient.rs system/Appointment.rus``), a backend service (``system/*.rs``), anonymous.

Every cell states what must happen, and every denied cell also proves that the denial leaks
nothing: an instance request for something the requester may not see answers exactly like one
for an id that does not exist (same status, same body but for the id the client sent), and a
search never shows the other patient's resources (not as match, include or total).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from test_security_support import (
    FHIR_JSON,
    SecureApp,
    World,
    _obs,
    bearer,
    build_world,
    secure_app,
    tokens,
)

from ehr.errors import Gone
from ehr.store import Store

ROLES = ["citizen_a", "citizen_b", "clinician_1", "clinician_2", "terminal", "backend", "anonymous"]
#: the patient a role may see ("own"); terminal/backend see both, anonymous none
MINE = {"citizen_a": "pa", "citizen_b": "pb", "clinician_1": "pa", "clinician_2": "pb"}
FAMILY = {"pa": "张", "pb": "李"}
CONFINED = set(MINE)


def other(pid: str) -> str:
    return "pb" if pid == "pa" else "pa"


def can_see(role: str, pid: str) -> bool:
    return role in ("terminal", "backend") or MINE.get(role) == pid


def type_allowed(role: str, rtype: str, letter: str) -> bool:
    if role == "anonymous":
        return False
    if role in CONFINED:
        return True
    if role == "backend":
        return letter in "rs"
    return (rtype, letter) in {("Patient", "r"), ("Patient", "s"), ("Appointment", "r"),
                               ("Appointment", "u"), ("Appointment", "s")}  # fmt: skip


@dataclass
class Call:
    method: str
    url: str
    body: Any = None
    headers: dict[str, str] | None = None


@dataclass
class Cell:
    """An interaction: how to call it for a target patient, and what a role must get."""

    name: str
    make: Callable[[Store, World, str, str], Call]  # (store, world, target pid, id) -> call
    rtype: str
    letter: str
    kind: str  # instance | search | create | bundle-get | bundle-tx | type-history
    #: for "instance" cells: the id to use, made fresh per cell when ``fresh``
    fresh: bool = False


def obs_id(store: Store, w: World, pid: str, fresh: bool) -> str:
    return store.create(_obs(pid)).rid if fresh else w[f"obs-{pid}"]


PATCH = [{"op": "replace", "path": "/status", "value": "amended"}]


def _put_body(rid: str, pid: str) -> dict[str, Any]:
    return {**_obs(pid), "id": rid, "status": "amended"}


CELLS = [
    Cell("read", lambda s, w, p, i: Call("GET", f"/Observation/{i}"), "Observation", "r", "instance"),
    Cell("vread", lambda s, w, p, i: Call("GET", f"/Observation/{i}/_history/1"), "Observation", "r", "instance"),
    Cell("history", lambda s, w, p, i: Call("GET", f"/Observation/{i}/_history"), "Observation", "r", "instance"),
    Cell("update", lambda s, w, p, i: Call("PUT", f"/Observation/{i}", _put_body(i, p)), "Observation", "u", "instance", True),
    Cell("patch", lambda s, w, p, i: Call("PATCH", f"/Observation/{i}", PATCH, {"Content-Type": "application/json-patch+json"}), "Observation", "u", "instance", True),
    Cell("delete", lambda s, w, p, i: Call("DELETE", f"/Observation/{i}"), "Observation", "d", "instance", True),
    Cell("search", lambda s, w, p, i: Call("GET", f"/Observation?subject=Patient/{p}"), "Observation", "s", "search"),
    Cell("compartment", lambda s, w, p, i: Call("GET", f"/Patient/{p}/Observation"), "Observation", "s", "search"),
    Cell("include", lambda s, w, p, i: Call("GET", f"/Observation?_id={i}&_include=Observation:subject"), "Observation", "s", "search"),
    Cell("revinclude", lambda s, w, p, i: Call("GET", f"/Patient?_id={p}&_revinclude=Observation:subject"), "Patient", "s", "search"),
    Cell("chain", lambda s, w, p, i: Call("GET", f"/Observation?subject:Patient.name={FAMILY[p]}"), "Observation", "s", "search"),
    Cell("has", lambda s, w, p, i: Call("GET", f"/Patient?_id={p}&_has:Observation:subject:code=29463-7"), "Patient", "s", "search"),
    Cell("conditional-delete", lambda s, w, p, i: Call("DELETE", f"/Observation?_id={i}"), "Observation", "d", "conditional", True),
    Cell("create", lambda s, w, p, i: Call("POST", "/Observation", _obs(p)), "Observation", "c", "create"),
    Cell("batch", lambda s, w, p, i: Call("POST", "", {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": f"Observation/{i}"}}]}), "Observation", "r", "bundle-get"),
    Cell("transaction", lambda s, w, p, i: Call("POST", "", {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": _obs(p), "request": {"method": "POST", "url": "Observation"}}]}),
        "Observation", "c", "bundle-tx"),
    Cell("history-type", lambda s, w, p, i: Call("GET", "/Observation/_history"), "Observation", "s", "type-history"),
    Cell("$validate", lambda s, w, p, i: Call("POST", f"/Observation/{i}/$validate?mode=delete"), "Observation", "r", "instance"),
    Cell("$export", lambda s, w, p, i: Call("GET", "/Patient/$export?_type=Patient,Observation", headers={"Prefer": "respond-async"}), "*", "s", "bulk"),
    Cell("$export-group", lambda s, w, p, i: Call("GET", f"/Group/{w['group']}/$export", headers={"Prefer": "respond-async"}), "*", "s", "bulk"),
    Cell("$export-system", lambda s, w, p, i: Call("GET", "/$export?_type=Observation", headers={"Prefer": "respond-async"}), "*", "s", "bulk"),
    Cell("history-system", lambda s, w, p, i: Call("GET", "/_history"), "*", "s", "type-history"),
    Cell("search-system", lambda s, w, p, i: Call("GET", f"/?_type=Observation&_id={i}"), "Observation", "s", "search"),
    Cell("search-post", lambda s, w, p, i: Call("POST", "/Observation/_search", f"subject=Patient/{p}", {"Content-Type": "application/x-www-form-urlencoded"}), "Observation", "s", "search"),
    # the whole record: ``i`` is the Patient id here
    Cell("$everything", lambda s, w, p, i: Call("GET", f"/Patient/{i}/$everything"), "Patient", "r", "whole-record"),
    Cell("$summary", lambda s, w, p, i: Call("GET", f"/Patient/{i}/$summary"), "Patient", "r", "whole-record"),
    # bundles: a write entry in a batch, a read entry in a transaction
    Cell("batch-update", lambda s, w, p, i: Call("POST", "", {"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": _put_body(i, p), "request": {"method": "PUT", "url": f"Observation/{i}"}}]}), "Observation", "u", "bundle-put", True),
    Cell("transaction-read", lambda s, w, p, i: Call("POST", "", {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "GET", "url": f"Observation/{i}"}}]}), "Observation", "r", "tx-get"),
    # conditional interactions whose condition names the target: another patient's resource
    # must be answered exactly as an id that does not exist (no match), and never be touched
    Cell("conditional-create", lambda s, w, p, i: Call("POST", "/Observation", _obs(p), {"If-None-Exist": f"_id={i}"}), "Observation", "c", "cond-same"),
    Cell("conditional-update", lambda s, w, p, i: Call("PUT", f"/Observation?_id={i}", {**_obs(p), "status": "amended"}), "Observation", "u", "cond-same", True),
    Cell("conditional-patch", lambda s, w, p, i: Call("PATCH", f"/Observation?_id={i}", PATCH, {"Content-Type": "application/json-patch+json"}), "Observation", "u", "cond-same", True),
]  # fmt: skip


def send(sa: SecureApp, token: str | None, call: Call) -> Any:
    headers = bearer(token, **(call.headers or {}))
    content = None
    if isinstance(call.body, str):  # a form
        content = call.body
    elif call.body is not None:
        headers.setdefault("Content-Type", FHIR_JSON)
        content = json.dumps(call.body)
    return sa.client.request(call.method, call.url, content=content, headers=headers)


def expected(role: str, cell: Cell, pid: str) -> str:
    """ok | hidden | forbidden | unauth | empty | untouched (conditional delete saw nothing) |
    partial (revinclude without the Observations the scopes do not allow)."""
    if role == "anonymous":
        return "unauth"
    if cell.kind in ("type-history", "bulk"):  # backend services only
        return "ok" if role == "backend" else "forbidden"
    if not type_allowed(role, cell.rtype, cell.letter) or (
        cell.kind in ("conditional", "cond-same", "whole-record")
        and not type_allowed(role, cell.rtype, "s")
    ):
        return "forbidden"
    if cell.name in ("revinclude", "has") and not type_allowed(role, "Observation", "s"):
        return "partial" if cell.name == "revinclude" else "empty"
    if can_see(role, pid):
        return "ok"
    return {"instance": "hidden", "search": "empty", "conditional": "untouched",
            "create": "forbidden", "bundle-get": "hidden", "bundle-tx": "forbidden",
            "bundle-put": "hidden", "tx-get": "hidden", "whole-record": "hidden",
            "cond-same": "same"}[cell.kind]  # fmt: skip


def _scrub(text: str, rid: str) -> str:
    return text.replace(rid, "<id>")


def _entry_response(r: Any) -> dict[str, Any]:
    return r.json()["entry"][0]["response"]  # type: ignore[no-any-return]


def _observations(store: Store, pid: str) -> list[tuple[str, int]]:
    page = store.search("Observation", [("subject", f"Patient/{pid}"), ("_count", "1000")])
    return sorted((h.rid, h.version) for h in page.matches)


def check_cell(sa: SecureApp, w: World, role: str, tok: str | None, cell: Cell, pid: str) -> None:
    store = sa.store
    rid = pid if cell.kind == "whole-record" else obs_id(store, w, pid, cell.fresh)
    before = {p: _observations(store, p) for p in ("pa", "pb")}
    call = cell.make(store, w, pid, rid)
    r = send(sa, tok, call)
    want = expected(role, cell, pid)
    where = f"{role} {cell.name} on {pid}'s data: {r.status_code} {r.text[:300]}"
    theirs = {w[f"obs-{other(pid)}"], w[f"cond-{other(pid)}"], other(pid)}
    if want == "unauth":
        assert r.status_code == 401, where
        assert r.headers["www-authenticate"].startswith("Bearer"), where
        assert rid not in r.text and pid not in r.text.replace("/" + pid, ""), where
        return
    if want == "forbidden":
        assert r.status_code == 403 or (
            cell.kind.startswith("bundle") and r.status_code in (200, 403)
        ), where
        if cell.kind in ("bundle-get", "bundle-put"):
            assert _entry_response(r)["status"].startswith("403"), where
            assert "resource" not in r.json()["entry"][0], where
        if cell.kind in ("instance", "conditional", "cond-same", "whole-record"):
            missing = cell.make(store, w, pid, f"missing-{uuid.uuid4().hex[:8]}")
            m = send(sa, tok, missing)  # the same for an id that does not exist
            assert m.status_code == 403, where
        assert "entry" not in r.json() or cell.kind.startswith("bundle"), where
        assert {p: _observations(store, p) for p in ("pa", "pb")} == before, where
        return
    if want == "hidden":
        missing_id = f"missing-{uuid.uuid4().hex[:8]}"
        m = send(sa, tok, cell.make(store, w, pid, missing_id))
        if cell.kind in ("bundle-get", "bundle-put"):
            got, ref = _entry_response(r), _entry_response(m)
            assert got["status"].startswith("404"), where
            assert _scrub(json.dumps(got), rid) == _scrub(json.dumps(ref), missing_id), where
            assert "resource" not in r.json()["entry"][0], where
        else:
            assert r.status_code == 404 == m.status_code, where
            assert _scrub(r.text, rid) == _scrub(m.text, missing_id), where
        assert {p: _observations(store, p) for p in ("pa", "pb")} == before, where  # no write
        return
    if want == "same":  # answered exactly as for an id that does not exist; nothing touched
        missing_id = f"missing-{uuid.uuid4().hex[:8]}"
        m = send(sa, tok, cell.make(store, w, pid, missing_id))
        assert r.status_code == m.status_code and r.status_code >= 400, where
        assert _scrub(r.text, rid) == _scrub(m.text, missing_id), where
        assert {p: _observations(store, p) for p in ("pa", "pb")} == before, where
        return
    if want == "untouched":  # answered as if nothing matched, and nothing was deleted
        missing_id = f"missing-{uuid.uuid4().hex[:8]}"
        m = send(sa, tok, cell.make(store, w, pid, missing_id))
        assert r.status_code == 200 == m.status_code, where
        assert _scrub(r.text, rid) == _scrub(m.text, missing_id), where
        assert store.read("Observation", rid).version == 1, where
        return
    if want in ("empty", "partial"):
        assert r.status_code == 200, where
        body = r.json()
        ids = [e["resource"]["id"] for e in body.get("entry", []) if "resource" in e]
        if want == "empty":
            assert not [i for i in ids if i in theirs or i in (rid, pid)], where
            assert body.get("total", 0) == 0, where
        else:  # the Patient, never an Observation
            assert ids == [pid], where
        return
    # ok
    assert r.status_code < 300, where
    if cell.kind in ("search", "whole-record"):
        body = r.json()
        ids = [e["resource"]["id"] for e in body.get("entry", []) if "resource" in e]
        assert (rid in ids) or (pid in ids), where
        assert not theirs.intersection(ids), where
        if cell.name == "$everything":  # only the types the token may read, all of them
            types = {e["resource"]["resourceType"] for e in body["entry"]}
            assert all(type_allowed(role, t, "r") for t in types), where
            assert ("Observation" in types) == type_allowed(role, "Observation", "r"), where
    if cell.kind in ("bundle-get", "bundle-put", "tx-get"):
        assert _entry_response(r)["status"].startswith("200"), where
    if cell.name in ("delete", "conditional-delete"):
        with pytest.raises(Gone):
            store.read("Observation", rid)
    if cell.name in ("update", "patch", "batch-update", "conditional-update", "conditional-patch"):
        assert store.read("Observation", rid).resource()["status"] == "amended", where
    if cell.name == "conditional-create":  # it exists: nothing created
        assert _observations(store, pid) == before[pid], where
    if cell.kind == "bulk":  # kicked off: a job to poll
        assert r.status_code == 202 and "$bulk-status/" in r.headers["content-location"], where


@pytest.mark.parametrize("role", ROLES)
def test_authorization_matrix(store: Store, tmp_path: Any, role: str) -> None:
    """One role, every interaction, on its own patient's data and on the other's."""
    w = build_world(store)
    w.ids["group"] = store.create(
        {"resourceType": "Group", "type": "person", "actual": True,
         "member": [{"entity": {"reference": "Patient/pa"}},
                    {"entity": {"reference": "Patient/pb"}}]}
    ).rid  # fmt: skip
    with secure_app(store, tmp_path, audit=False) as sa:
        token = tokens(sa)[role]
        for cell in CELLS:
            for pid in ("pa", "pb"):
                check_cell(sa, w, role, token, cell, pid)


def test_matrix_covers_every_cell() -> None:
    """Each role gets a definite answer for each interaction and target."""
    table = {(r, c.name, p): expected(r, c, p) for r in ROLES for c in CELLS for p in ("pa", "pb")}
    assert len(table) == len(ROLES) * len(CELLS) * 2 == 434
    assert table[("citizen_a", "read", "pa")] == "ok"
    assert table[("citizen_a", "read", "pb")] == "hidden"
    assert table[("clinician_1", "search", "pb")] == "empty"
    assert table[("terminal", "read", "pa")] == "forbidden"
    assert table[("backend", "create", "pa")] == "forbidden"
    assert table[("backend", "history-type", "pb")] == "ok"
    assert table[("citizen_a", "$export", "pa")] == "forbidden"
    assert table[("backend", "$export", "pa")] == "ok"
    assert table[("clinician_2", "$everything", "pa")] == "hidden"
    assert table[("terminal", "$everything", "pb")] == "ok"  # its Patient and Appointments only
    assert table[("citizen_b", "conditional-update", "pa")] == "same"
    assert table[("clinician_1", "batch-update", "pb")] == "hidden"
    assert table[("citizen_a", "history-system", "pa")] == "forbidden"
    assert {v for (r, _, _), v in table.items() if r == "anonymous"} == {"unauth"}


# ------------------------------------------------------------------------------ beyond the grid


def test_tokens_at_the_gate(store: Store, tmp_path: Any) -> None:
    """Only a valid, unexpired, unrevoked token of our issuer for this API opens the door; the
    401 says why in ``WWW-Authenticate`` (RFC 6750)."""
    w = build_world(store)
    with secure_app(store, tmp_path, audit=False, revocation_ttl_s=0) as sa:
        url = f"/Observation/{w['obs-pa']}"
        good = sa.token("system/*.rs", client_id="svc")
        assert sa.client.get(url, headers=bearer(good)).status_code == 200
        bad = {
            "expired": sa.token("system/*.rs", client_id="svc", lifetime=-120),
            "wrong audience": sa.token("system/*.rs", client_id="svc", aud="http://elsewhere/fhir"),
            "wrong issuer": sa.token("system/*.rs", client_id="svc", iss="http://evil/auth"),
            "bad signature": good[:-6] + ("AAAAAA" if not good.endswith("AAAAAA") else "BBBBBB"),
            "not a jwt": "abc.def",
        }
        for why, token in bad.items():
            r = sa.client.get(url, headers=bearer(token))
            assert r.status_code == 401, why
            assert 'error="invalid_token"' in r.headers["www-authenticate"], why
            assert w["obs-pa"] not in r.text
        r = sa.client.get(url, headers={"Authorization": f"Basic {good}"})
        assert r.status_code == 401
        # revocation takes effect at once here (the default trusts a check for 5 s)
        info = sa.app.state.auth.verify_token(good, _urls(sa))
        sa.accounts.revocations.revoke_token(info.jti, (info.expires_at + 60) * 10**6, "test")
        assert sa.client.get(url, headers=bearer(good)).status_code == 401
        # the public routes need no token
        meta = sa.client.get("/metadata").json()
        security = meta["rest"][0]["security"]
        assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
        uris = {e["url"]: e["valueUri"] for e in security["extension"][0]["extension"]}
        assert uris["token"] == "http://localhost/auth/token"
        assert sa.client.get("/.well-known/smart-configuration").status_code == 200


def _urls(sa: SecureApp) -> Any:
    from fhir_api.auth import Urls

    return Urls.build("http://localhost/fhir", "/fhir")


def test_constrained_scope(store: Store, tmp_path: Any) -> None:
    """``patient/Observation.rs?category=laboratory``: only laboratory Observations, in reads,
    searches and includes; other types not at all."""
    build_world(store)
    lab = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                       "code": "laboratory"}]}  # fmt: skip
    lab_id = store.create(_obs("pa", category=[lab])).rid
    vital_id = store.create(_obs("pa")).rid
    with secure_app(store, tmp_path, audit=False) as sa:
        scope = (
            "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/"
            "observation-category|laboratory patient/Patient.r"
        )
        t = sa.token(scope, sub="user-a", patient="pa", fhirUser="Patient/pa", role="citizen")
        get = sa.client.get
        assert get(f"/Observation/{lab_id}", headers=bearer(t)).status_code == 200
        missing = get("/Observation/nope", headers=bearer(t))
        hidden = get(f"/Observation/{vital_id}", headers=bearer(t))
        assert hidden.status_code == 404 and hidden.text.replace(vital_id, "nope") == missing.text
        found = get("/Observation?_total=accurate", headers=bearer(t)).json()
        assert [e["resource"]["id"] for e in found["entry"]] == [lab_id] and found["total"] == 1
        assert get("/Condition", headers=bearer(t)).status_code == 403
        assert get("/Patient/pa", headers=bearer(t)).status_code == 200
        assert get("/Patient?_id=pa", headers=bearer(t)).status_code == 403  # r, not s
        inc = get(f"/Observation?_id={lab_id}&_include=Observation:subject", headers=bearer(t))
        assert [e["resource"]["resourceType"] for e in inc.json()["entry"]] == [
            "Observation",
            "Patient",
        ]


def test_clinicians_start_care_and_launch_context(store: Store, tmp_path: Any) -> None:
    """A clinician opens a record by starting care (an Encounter at their organization); a
    patient-context launch never widens what they may see."""
    w = build_world(store)
    with secure_app(store, tmp_path, audit=False) as sa:
        t = tokens(sa)
        c2 = t["clinician_2"]
        obs = f"/Observation/{w['obs-pa']}"
        assert sa.client.get(obs, headers=bearer(c2)).status_code == 404
        enc = {"resourceType": "Encounter", "status": "arrived",
               "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                         "code": "AMB"},
               "subject": {"reference": "Patient/pa"},
               "serviceProvider": {"reference": "Organization/org2"}}  # fmt: skip
        elsewhere = {**enc, "serviceProvider": {"reference": "Organization/org1"}}
        assert send(sa, c2, Call("POST", "/Encounter", elsewhere)).status_code == 403
        assert send(sa, c2, Call("POST", "/Encounter", enc)).status_code == 201
        assert sa.client.get(obs, headers=bearer(c2)).status_code == 200
        # a launch with a patient they do not treat shows nothing of that patient
        launch = sa.token("patient/*.rs", sub="user-p1", patient="pb",
                          fhirUser="Practitioner/p1", role="practitioner",
                          organization="Organization/org1")  # fmt: skip
        assert (
            sa.client.get(f"/Observation/{w['obs-pb']}", headers=bearer(launch)).status_code == 404
        )
        assert sa.client.get("/Patient/pb", headers=bearer(launch)).status_code == 404
        # ... nor of the ones they do treat, outside the launch context
        assert sa.client.get(obs, headers=bearer(launch)).status_code == 404
        # system-wide search only within reach, and only the types asked for
        r = sa.client.get("/?_type=Observation,Condition", headers=bearer(t["citizen_a"]))
        got = {(e["resource"]["resourceType"], e["resource"]["subject"]["reference"])
               for e in r.json()["entry"]}  # fmt: skip
        assert got == {("Observation", "Patient/pa"), ("Condition", "Patient/pa")}
        r = sa.client.get("/?_type=Observation", headers=bearer(t["terminal"]))
        assert r.status_code == 403


def test_auth_disabled_for_demos(store: Store, tmp_path: Any) -> None:
    """``EHR_AUTH_DISABLED=1``: no token needed, nothing restricted, still audited."""
    w = build_world(store)
    with secure_app(store, tmp_path, auth_disabled=True) as sa:
        r = sa.client.get(f"/Observation/{w['obs-pa']}")
        assert r.status_code == 200
        sa.trail.sync()
        from ehr.security.audit import chain_events

        (event,) = chain_events(store)
        assert event["agent"][0]["who"] == {"display": "anonymous"}


def test_search_engine_confinement(store: Store) -> None:
    """The engine's additions the policy builds on: a compartment of several patients (a list
    or a subquery), and the ambient restriction, which also binds conditional matches."""
    from sqlalchemy import literal, select

    from ehr.search.engine import ambient_restriction

    w = build_world(store)
    both = store.search("Observation", [], compartment=("Patient", ["pa", "pb"]))
    assert {h.rid for h in both.matches} == {w["obs-pa"], w["obs-pb"]}
    sub = select(literal("pb").label("patient_id"))
    only_b = store.search("Observation", [("_include", "Observation:subject")],
                          compartment=("Patient", sub))  # fmt: skip
    assert [h.rid for h in only_b.matches] == [w["obs-pb"]]
    assert [h.rid for h in only_b.includes] == ["pb"]
    token = ambient_restriction.set(lambda r, ctx: r.c.rid != w["obs-pa"])
    try:
        assert [h.rid for h in store.search("Observation", []).matches] == [w["obs-pb"]]
        with store.write() as ctx:  # a conditional interaction sees only what may be seen
            assert ctx.match("Observation", [("_id", w["obs-pa"])]) == []
    finally:
        ambient_restriction.reset(token)
    assert len(store.search("Observation", []).matches) == 2
