"""Who is asking: the principal behind a request, from a verified SMART access token.

SMART App Launch 2 (https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html):
a token carries its scopes (``patient/…``, ``user/…``, ``system/…``), the launch context
(``patient``) and, for a person, ``fhirUser``. Our authorization server adds the user's ``role``
(citizen | practitioner | nurse | admin), ``organization`` and ``practitioner_role``
(:mod:`ehr.accounts.tokens`). A backend service (client credentials) has no user: its ``sub`` is
its client id and it has no role.

:class:`Principal` is framework-free and duck-compatible with
:class:`ehr.accounts.tokens.TokenInfo` (:meth:`Principal.from_token`); references are kept
relative (``Practitioner/p1``) whatever form the token used (absolute ``fhirUser`` URLs, bare ids).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ehr.accounts.scopes import ScopeSet, parse_scopes

__all__ = ["ANONYMOUS", "CLINICAL_ROLES", "Principal", "relative_ref"]

#: roles that treat patients (and may break the glass)
CLINICAL_ROLES = frozenset({"practitioner", "nurse"})

_REF = re.compile(r"(?:^|/)([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?/?$")


def relative_ref(value: str | None, default_type: str | None = None) -> str | None:
    """``Type/id`` from a relative or absolute reference (``http://x/fhir/Practitioner/p1`` ->
    ``Practitioner/p1``); a bare id gets ``default_type``; None when it is not a reference."""
    if not value:
        return None
    m = _REF.search(value)
    if m:
        return f"{m[1]}/{m[2]}"
    if default_type and re.fullmatch(r"[A-Za-z0-9\-.]{1,64}", value):
        return f"{default_type}/{value}"
    return None


@dataclass(frozen=True)
class Principal:
    """The requester. ``roles`` is empty for a backend service (no user)."""

    subject: str
    client_id: str
    scopes: ScopeSet
    fhir_user: str | None = None  # Patient/x, Practitioner/y (relative)
    patient: str | None = None  # launch context: the Patient id
    organizations: tuple[str, ...] = ()  # Organization/o
    roles: tuple[str, ...] = ()
    practitioner_role: str | None = None  # PractitionerRole/r
    break_glass: str | None = None  # the emergency reason asserted (header or token claim)
    ip: str | None = None
    token_id: str | None = None  # jti
    issuer: str | None = None
    anonymous: bool = False
    claims: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    # -- constructors --------------------------------------------------------------------------
    @classmethod
    def from_token(
        cls, info: Any, *, break_glass: str | None = None, ip: str | None = None
    ) -> Principal:
        """From a :class:`~ehr.accounts.tokens.TokenInfo` (or anything with its attributes). A
        ``break_glass`` claim in the token counts like the header."""
        claims: Mapping[str, Any] = getattr(info, "claims", {}) or {}
        org = relative_ref(getattr(info, "organization", None), "Organization")
        role = getattr(info, "role", None)
        claimed_btg = claims.get("break_glass")
        reason = break_glass or (claimed_btg if isinstance(claimed_btg, str) else None)
        return cls(
            subject=info.subject,
            client_id=info.client_id,
            scopes=parse_scopes(info.scope),
            fhir_user=relative_ref(getattr(info, "fhir_user", None)),
            patient=getattr(info, "patient", None),
            organizations=(org,) if org else (),
            roles=(role,) if role else (),
            practitioner_role=relative_ref(
                getattr(info, "practitioner_role", None), "PractitionerRole"
            ),
            break_glass=reason.strip()[:500] if reason and reason.strip() else None,
            ip=ip,
            token_id=getattr(info, "jti", None),
            issuer=getattr(info, "issuer", None),
            claims=claims,
        )

    # -- what kind of requester ----------------------------------------------------------------
    @property
    def is_user(self) -> bool:
        """A person (a token issued to a user), as opposed to a backend service, whose token's
        subject is its own client id. Any other token (an external issuer's without a role
        included) counts as a user's, so it never gets a backend's reach."""
        return bool(self.roles) or (not self.anonymous and self.subject != self.client_id)

    @property
    def is_clinician(self) -> bool:
        return bool(CLINICAL_ROLES.intersection(self.roles))

    @property
    def is_citizen(self) -> bool:
        return "citizen" in self.roles

    @property
    def own_patient(self) -> str | None:
        """The Patient id a citizen is (``fhirUser`` ``Patient/x``)."""
        if self.fhir_user and self.fhir_user.startswith("Patient/"):
            return self.fhir_user.split("/", 1)[1]
        return None

    @property
    def practitioner(self) -> str | None:
        if self.fhir_user and self.fhir_user.startswith("Practitioner/"):
            return self.fhir_user
        return None

    def actor_refs(self) -> tuple[str, ...]:
        """Every reference that names this requester (person, role, organizations): what a
        Consent's ``provision.actor`` is compared with."""
        refs = [r for r in (self.fhir_user, self.practitioner_role) if r]
        return tuple(dict.fromkeys([*refs, *self.organizations]))


#: the requester without a token (only public routes; every other request is a 401)
ANONYMOUS = Principal(subject="", client_id="", scopes=parse_scopes(""), anonymous=True)
