"""Who is acting: a citizen linked to a Patient, a clinician, or the system itself.

SMART on FHIR does not exist yet, so every service function takes the acting user explicitly.
While a service writes, the actor is also published in a context variable
(:func:`acting_as`) so that the booking rules, which run as a store
:class:`~ehr.store.WriteHook` on every write, know who asked. A plain FHIR write with no actor
set is judged as an anonymous citizen would be (every patient rule applies, but there is no
booker to check): ``fhir_api`` should wrap its writes in ``acting_as(actor)`` once SMART gives it
one.

Real-name booking: a citizen may book for their own Patient, or for a Patient they may act for:
one with an active RelatedPerson (http://hl7.org/fhir/R4/relatedperson.html) that carries the
citizen's protected citizen-ID identifier (the demo city's parents of minors) and whose period
covers today.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

from ehr.errors import Forbidden
from ehr.identifiers import CITIZEN_ID_HASH_SYSTEM

from .fhirdata import Reader, ref

__all__ = ["Actor", "acting_as", "current_actor", "proxy_for", "require_may_act_for"]


@dataclass(frozen=True)
class Actor:
    """The acting user. ``patient`` is the Patient a citizen is linked to; ``practitioner`` /
    ``role`` name a clinician (Practitioner, PractitionerRole ids)."""

    kind: Literal["citizen", "clinician", "system"]
    patient: str | None = None
    practitioner: str | None = None
    role: str | None = None
    organization: str | None = None

    @classmethod
    def citizen(cls, patient: str) -> Actor:
        return cls("citizen", patient=patient)

    @classmethod
    def clinician(
        cls, practitioner: str, role: str | None = None, organization: str | None = None
    ) -> Actor:
        return cls("clinician", practitioner=practitioner, role=role, organization=organization)

    @classmethod
    def system(cls) -> Actor:
        return cls("system")

    @property
    def is_staff(self) -> bool:
        return self.kind in ("clinician", "system")

    def reference(self) -> dict[str, Any] | None:
        if self.kind == "citizen" and self.patient:
            return ref("Patient", self.patient)
        if self.role:
            return ref("PractitionerRole", self.role)
        if self.practitioner:
            return ref("Practitioner", self.practitioner)
        return None


_current: ContextVar[Actor | None] = ContextVar("appointments_actor", default=None)


def current_actor() -> Actor | None:
    """The actor of the write in progress (None: a plain, anonymous FHIR write)."""
    return _current.get()


@contextmanager
def acting_as(actor: Actor | None) -> Iterator[Actor | None]:
    token = _current.set(actor)
    try:
        yield actor
    finally:
        _current.reset(token)


def _citizen_hash(patient: dict[str, Any]) -> str | None:
    for ident in patient.get("identifier") or ():
        if ident.get("system") == CITIZEN_ID_HASH_SYSTEM and ident.get("value"):
            return str(ident["value"])
    return None


def _period_covers(period: dict[str, Any] | None, today: date) -> bool:
    if not period:
        return True
    start, end = period.get("start"), period.get("end")
    return (not start or start[:10] <= today.isoformat()) and (
        not end or end[:10] >= today.isoformat()
    )


def proxy_for(reader: Reader, actor: Actor, patient_id: str, today: date) -> dict[str, Any] | None:
    """The RelatedPerson through which citizen ``actor`` acts for ``patient_id`` (None: not
    allowed, or acting for themselves)."""
    if actor.patient is None:
        return None
    own = reader.get("Patient", actor.patient)
    value = _citizen_hash(own) if own else None
    if value is None:
        return None
    for rp in reader.find(
        "RelatedPerson",
        [("patient", f"Patient/{patient_id}"), ("identifier", f"{CITIZEN_ID_HASH_SYSTEM}|{value}")],
        limit=10,
    ):
        if rp.get("active", True) and _period_covers(rp.get("period"), today):
            return rp
    return None


def require_may_act_for(
    reader: Reader, actor: Actor | None, patient_id: str, today: date
) -> dict[str, Any] | None:
    """Refuse (403) a citizen acting for a Patient that is neither theirs nor one they may act
    for. Returns the RelatedPerson of a proxy, None otherwise (and for staff / anonymous)."""
    if actor is None or actor.kind != "citizen":
        return None
    if actor.patient == patient_id:
        return None
    rp = proxy_for(reader, actor, patient_id, today)
    if rp is None:
        raise Forbidden(
            f"Patient/{actor.patient} may not act for Patient/{patient_id}: no active RelatedPerson "
            "links them (real-name booking)"
        )
    return rp
