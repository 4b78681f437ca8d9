"""Property tests through the HTTP API over generated Patients and Observations (Chinese names
included): what is created reads back equal apart from meta; every update adds exactly one
history version; vread of every version returns that version."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_api_support import api, without_meta

from ehr.store import Store

CHINESE_FAMILIES = ["张", "王", "李", "赵", "刘", "陈", "杨", "黄", "欧阳", "司马"]

cjk = st.text(st.characters(min_codepoint=0x4E00, max_codepoint=0x9FA5), min_size=1, max_size=3)
latin = st.text(st.characters(categories=("Lu", "Ll", "Nd")), min_size=1, max_size=12)
word = st.one_of(cjk, latin, st.sampled_from(["José", "Zoë", "Ærø", "Åsa-Marie", "O'Brien"]))
family = st.one_of(st.sampled_from(CHINESE_FAMILIES), word)
date = (
    st.dates()
    .map(lambda d: f"{d.year:04d}-{d.month:02d}-{d.day:02d}")
    .filter(lambda s: s >= "0001")
)


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


human_name = st.builds(
    lambda f, g, use: _drop_none({"family": f, "given": g or None, "use": use}),
    family,
    st.lists(word, max_size=2),
    st.none() | st.sampled_from(["official", "usual", "nickname"]),
)

patients = st.builds(
    lambda names, gender, birth, active, ident, phone: _drop_none(
        {
            "resourceType": "Patient",
            "name": names,
            "gender": gender,
            "birthDate": birth,
            "active": active,
            "identifier": [{"system": "urn:oid:2.16.840.1.113883.2.4.6.3", "value": ident}]
            if ident
            else None,
            "telecom": [{"system": "phone", "value": phone}] if phone else None,
        }
    ),
    st.lists(human_name, min_size=1, max_size=2),
    st.none() | st.sampled_from(["male", "female", "other", "unknown"]),
    st.none() | date,
    st.none() | st.booleans(),
    st.none() | st.from_regex(r"[A-Z0-9]{3,10}", fullmatch=True),
    st.none() | st.from_regex(r"\+86 1[0-9]{10}", fullmatch=True),
)

observations = st.builds(
    lambda status, text, value, unit, note: _drop_none(
        {
            "resourceType": "Observation",
            "status": status,
            "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}], "text": text},
            "valueQuantity": {"value": value, "unit": unit},
            "note": [{"text": note}] if note else None,
        }
    ),
    st.sampled_from(["registered", "preliminary", "final", "amended"]),
    word,
    st.one_of(
        st.integers(-1000, 100000),
        st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False).map(lambda f: round(f, 3)),
    ),
    st.sampled_from(["kg", "mmHg", "/min", "mg/dL", "公斤"]),
    st.none() | word,
)

resources = st.one_of(patients, observations)


@pytest.fixture
def client(store: Store) -> TestClient:
    return api(store)


SETTINGS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@SETTINGS
@given(resource=resources)
def test_created_resources_read_back_equal(client: TestClient, resource: dict[str, Any]) -> None:
    r = client.post(f"/{resource['resourceType']}", json=resource)
    assert r.status_code == 201, r.text
    rid = r.json()["id"]
    got = client.get(f"/{resource['resourceType']}/{rid}")
    assert got.status_code == 200
    body = got.json()
    assert body["id"] == rid and body["meta"]["versionId"] == "1"
    assert without_meta(body) == without_meta(resource)


@SETTINGS
@given(versions=st.lists(patients, min_size=1, max_size=4))
def test_history_grows_by_one_per_update_and_vread_returns_each(
    client: TestClient, versions: list[dict[str, Any]]
) -> None:
    rid = client.post("/Patient", json=versions[0]).json()["id"]
    for n, version in enumerate(versions[1:], start=2):
        r = client.put(f"/Patient/{rid}", json={**version, "id": rid})
        assert r.status_code == 200 and r.headers["etag"] == f'W/"{n}"'
        assert client.get(f"/Patient/{rid}/_history").json()["total"] == n
    history = client.get(f"/Patient/{rid}/_history").json()
    assert [e["response"]["etag"] for e in history["entry"]] == [
        f'W/"{n}"' for n in range(len(versions), 0, -1)
    ]
    for n, version in enumerate(versions, start=1):
        v = client.get(f"/Patient/{rid}/_history/{n}")
        assert v.status_code == 200 and v.json()["meta"]["versionId"] == str(n)
        assert without_meta(v.json()) == without_meta(version)
