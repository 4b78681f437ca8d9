"""Who is acting, for the appointment services: the verified SMART token mapped to an
:class:`appointments.Actor` (citizen linked to a Patient, clinician, or a backend system)."""

from __future__ import annotations

from starlette.requests import Request

from appointments.actors import Actor
from ehr.security.principal import relative_ref

from .auth import token_info

__all__ = ["actor_from_token"]


def _id(reference: str | None, rtype: str) -> str | None:
    """The id in a ``Type/id`` reference, relative or absolute (the ``fhirUser`` claim is the
    absolute URL ``https://host/fhir/Practitioner/p1``)."""
    rel = relative_ref(reference)
    if rel and rel.startswith(f"{rtype}/"):
        return rel.split("/", 1)[1]
    return None


async def actor_from_token(request: Request) -> Actor | None:
    """``request.state.actor`` if the security layer set one, else derived from the token:
    role citizen -> the ``fhirUser`` Patient (else the token's patient); practitioner / nurse ->
    a clinician; a client-credentials token without a user -> the system actor."""
    actor = getattr(request.state, "actor", None)
    if isinstance(actor, Actor):
        return actor
    info = await token_info(request)
    if info is None:
        return None
    if info.role == "citizen":
        # the person signed in (their fhirUser), who may be acting for the token's patient (a
        # parent for a child): the booking rules check that relation (real-name booking)
        patient = _id(info.fhir_user, "Patient") or info.patient
        return Actor.citizen(patient) if patient else None
    if info.role in ("practitioner", "nurse", "admin"):
        practitioner = _id(info.fhir_user, "Practitioner")
        role = _id(info.practitioner_role, "PractitionerRole")
        org = _id(info.organization, "Organization")
        return Actor.clinician(practitioner or info.subject, role, org)
    if info.subject == info.client_id:  # client credentials: a backend service or terminal
        return Actor.system()
    return None
