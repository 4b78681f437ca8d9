"""Bad input is never a 500: generated requests (methods, paths, headers, query parameters and
bodies, valid and broken) always get a 2xx-4xx answer, and every error is an OperationOutcome."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_api_support import api, patient

from ehr.store import Store

segment = st.one_of(
    st.sampled_from(
        [
            "Patient",
            "Observation",
            "metadata",
            "_history",
            "_search",
            "Nope",
            "p1",
            "*",
            "$everything",
        ]
    ),
    st.sampled_from(["1", "bad_id!", "x" * 65, "..", "%00", "%E5%BC%A0", "_history", "Patient"]),
    st.text(
        st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="/?#%"),
        min_size=1,
        max_size=8,
    ),
)
paths = st.lists(segment, min_size=0, max_size=5).map(lambda parts: "/" + "/".join(parts))
query = st.lists(
    st.tuples(
        st.sampled_from(["_count", "_since", "_at", "_cursor", "_format", "_pretty", "_type", "family",
                         "identifier", "_sort", "_include", "birthdate", "_multiple", "name:exact", "foo"]),
        st.one_of(st.sampled_from(["", "-1", "0", "10", "xml", "json", "true", "2020", "2020-13-01",
                                   "urn:x|1", "Patient:link", "ge2020", "%%%"]), st.text(max_size=6)),
    ),
    max_size=3,
)  # fmt: skip
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)
bodies = st.one_of(
    st.none(),
    st.binary(max_size=40),
    json_values.map(orjson.dumps),
    st.builds(
        lambda extra: orjson.dumps({**patient(), **extra}),
        st.dictionaries(
            st.sampled_from(["id", "gender", "birthDate", "name", "resourceType", "meta"]),
            json_values,
            max_size=2,
        ),
    ),
    st.just(orjson.dumps([{"op": "replace", "path": "/gender", "value": "female"}])),
    st.just(b"[" * 5000),
    st.just(b'{"resourceType": "Patient", "multipleBirthInteger": 123456789012345678901234567890}'),
    st.just(b'{"resourceType": "Patient", "gender": NaN}'),
    st.just('{"resourceType": "Patient", "name": [{"family": "张"}]}'.encode("utf-16")),
)
headers = st.fixed_dictionaries(
    {},
    optional={
        "Content-Type": st.sampled_from(["application/fhir+json", "application/json", "application/json-patch+json",
                                         "application/x-www-form-urlencoded", "text/plain", "application/json; charset=latin-1", ""]),
        "Accept": st.sampled_from(["application/fhir+json", "application/xml", "*/*", "", "text/html;q=0"]),
        "If-Match": st.sampled_from(['W/"1"', "1", "*", "W/", "garbage", 'W/"99999999999999999999"']),
        "If-None-Match": st.sampled_from(['W/"1"', "*", ""]),
        "If-Modified-Since": st.sampled_from(["Sat, 01 Jan 2000 00:00:00 GMT", "never"]),
        "If-None-Exist": st.sampled_from(["identifier=urn:x|1", "", "?", "nonsense=1", "_count=1", "Patient?family=x"]),
        "Prefer": st.sampled_from(["return=minimal", "return=OperationOutcome", "handling=strict", "garbage"]),
    },
)  # fmt: skip


@pytest.fixture
def client(store: Store) -> TestClient:
    client = api(store)
    client.put("/Patient/p1", json=patient(id="p1"))
    return client


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]),
    path=paths,
    params=query,
    body=bodies,
    hdrs=headers,
)
def test_no_input_makes_a_500(
    client: TestClient,
    method: str,
    path: str,
    params: list[tuple[str, str]],
    body: bytes | None,
    hdrs: dict[str, str],
) -> None:
    r = client.request(
        method, path, params=tuple(params), content=body, headers=hdrs, follow_redirects=False
    )
    assert r.status_code < 500, (method, path, params, body, hdrs, r.text)
    if r.status_code >= 400:
        outcome: Any = r.json()
        assert outcome["resourceType"] == "OperationOutcome", r.text
