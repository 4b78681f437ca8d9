"""The API on a real socket (uvicorn in a thread, one server per backend for the session), driven
by third-party FHIR clients (fhirpy, fhirclient) as a user would, and by concurrent raw HTTP
clients: 50 identical conditional creates make one resource; If-Match updates never lose one."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fhirclient import client as fhirclient_client
from fhirclient.models.fhirreference import FHIRReference
from fhirclient.models.humanname import HumanName
from fhirclient.models.identifier import Identifier
from fhirclient.models.observation import Observation as ClientObservation
from fhirclient.models.patient import Patient as ClientPatient
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import OperationOutcome, ResourceNotFound
from test_api_support import live_server, patient

from ehr.store import Store


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def live(request: pytest.FixtureRequest) -> Iterator[str]:
    """The FHIR base URL of a uvicorn server on the backend's session database."""
    url: str = request.getfixturevalue(
        "pg_database" if request.param == "postgresql" else "sqlite_database"
    )
    store = Store(url, pool_size=10)
    with live_server(store) as base:
        yield base
    store.dispose()


def _system() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def test_fhirpy_as_a_user(live: str) -> None:
    client = SyncFHIRClient(live)
    system = _system()
    pat = client.resource(
        "Patient",
        name=[{"family": "李", "given": ["雷"]}],
        gender="male",
        identifier=[{"system": system, "value": "1"}],
    )
    pat.save()
    assert pat.id and pat["meta"]["versionId"] == "1"

    got = client.reference("Patient", pat.id).to_resource()
    assert got["name"][0]["family"] == "李" and got["gender"] == "male"

    pat["birthDate"] = "1990-05-06"
    pat.save()
    assert pat["meta"]["versionId"] == "2"
    assert client.reference("Patient", pat.id).to_resource()["birthDate"] == "1990-05-06"

    obs = client.resource(
        "Observation",
        status="final",
        code={"text": "weight"},
        subject=pat.to_reference(),
        valueQuantity={"value": 70, "unit": "kg"},
    )
    obs.save()
    found = client.resources("Patient").search(identifier=f"{system}|1").fetch()
    assert [p.id for p in found] == [pat.id]
    assert client.resources("Patient").search(family="李", identifier=f"{system}|1").count() == 1
    by_subject = client.resources("Observation").search(subject=f"Patient/{pat.id}").fetch_all()
    assert [o.id for o in by_subject] == [obs.id]
    for i in range(5):
        client.resource(
            "Patient", identifier=[{"system": system, "value": "many"}], name=[{"text": str(i)}]
        ).save()
    paged = client.resources("Patient").search(identifier=f"{system}|many").limit(2).fetch_all()
    assert len(paged) == 5

    with pytest.raises(OperationOutcome):  # fhirpy sends a merge-style patch; FHIR R4 has none
        client.patch("Patient", pat.id, gender="female")

    obs.delete()
    pat.delete()
    with pytest.raises(ResourceNotFound):
        client.reference("Patient", pat.id).to_resource()
    assert client.resources("Patient").search(identifier=f"{system}|1").fetch() == []


def test_fhirclient_as_a_user(live: str) -> None:
    smart = fhirclient_client.FHIRClient(settings={"app_id": "tests", "api_base": live})
    smart.server.get_capability()  # parses our CapabilityStatement with its models
    assert smart.server.capabilityStatement.fhirVersion == "4.0.1"

    system = _system()
    pat = ClientPatient()
    pat.name = [HumanName({"family": "周", "given": ["杰伦"]})]
    pat.identifier = [Identifier({"system": system, "value": "7"})]
    pat.gender = "male"
    created = pat.create(smart.server)
    assert created is not None and created["resourceType"] == "Patient"
    rid = created["id"]

    read = ClientPatient.read(rid, smart.server)
    assert read.name[0].family == "周" and read.name[0].given == ["杰伦"]
    read.birthDate = None
    read.gender = "female"
    updated = read.update(smart.server)
    assert updated is not None and updated["meta"]["versionId"] == "2"
    assert ClientPatient.read(rid, smart.server).gender == "female"

    obs = ClientObservation(
        {
            "status": "final",
            "code": {"text": "pulse"},
            "valueQuantity": {"value": 60, "unit": "/min"},
        }
    )
    obs.subject = FHIRReference({"reference": f"Patient/{rid}"})
    obs_id = obs.create(smart.server)["id"]

    hits = ClientPatient.where(struct={"identifier": f"{system}|7"}).perform_resources(smart.server)
    assert [p.id for p in hits] == [rid]
    obs_hits = ClientObservation.where(struct={"subject": f"Patient/{rid}"}).perform_resources(
        smart.server
    )
    assert [o.id for o in obs_hits] == [obs_id]

    ClientObservation.read(obs_id, smart.server).delete(smart.server)
    outcome = ClientPatient.read(rid, smart.server).delete(smart.server)
    assert outcome is not None and outcome["resourceType"] == "OperationOutcome"
    with pytest.raises(Exception) as gone:
        ClientPatient.read(rid, smart.server)
    assert "410" in str(gone.value)


def _concurrently(
    base_url: str, n: int, request: Callable[[httpx.Client, int], httpx.Response]
) -> list[httpx.Response]:
    """Send ``n`` requests at once, each from its own thread and connection."""
    barrier = threading.Barrier(n)
    responses: list[httpx.Response] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        with httpx.Client(base_url=base_url, timeout=60) as c:
            barrier.wait()
            r = request(c, i)
            with lock:
                responses.append(r)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(responses) == n
    return responses


def test_50_concurrent_conditional_creates_make_one(live: str) -> None:
    system = _system()
    body = patient(identifier=[{"system": system, "value": "once"}])
    responses = _concurrently(
        live,
        50,
        lambda c, _: c.post(
            "/Patient", json=body, headers={"If-None-Exist": f"identifier={system}|once"}
        ),
    )
    assert sorted(r.status_code for r in responses) == [200] * 49 + [201], [
        r.text for r in responses
    ]
    assert len({r.json()["id"] for r in responses}) == 1
    found = httpx.get(f"{live}/Patient", params={"identifier": f"{system}|once"}).json()
    assert found["total"] == 1


def test_concurrent_if_match_updates_lose_nothing(live: str) -> None:
    rid = f"race-{uuid.uuid4().hex[:12]}"
    assert httpx.put(f"{live}/Patient/{rid}", json=patient(id=rid)).status_code == 201
    rounds, writers = 4, 10
    winners: list[str] = []
    for v in range(1, rounds + 1):
        responses = _concurrently(
            live,
            writers,
            lambda c, i, v=v: c.put(  # type: ignore[misc]
                f"/Patient/{rid}",
                json=patient(given=f"v{v}-w{i}", id=rid),
                headers={"If-Match": f'W/"{v}"'},
            ),
        )
        assert sorted(r.status_code for r in responses) == [200] + [412] * (writers - 1)
        winners += [r.json()["name"][0]["given"][0] for r in responses if r.status_code == 200]
    history: dict[str, Any] = httpx.get(f"{live}/Patient/{rid}/_history").json()
    assert history["total"] == rounds + 1
    given = [e["resource"]["name"][0]["given"][0] for e in reversed(history["entry"])][1:]
    assert given == winners  # each winner's write is a version, in order: nothing was lost
    current = httpx.get(f"{live}/Patient/{rid}").json()
    assert current["meta"]["versionId"] == str(rounds + 1)
