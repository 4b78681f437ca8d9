"""The domain ``$operations`` behind the same gate as the FHIR interactions.

The appointment services (``appointments.http``: booking, check-in and queues, nurse station,
doctor workstation) and the health one-card (``fhir_api.cards``) are mounted by
``create_app`` as routes of their own, which read the acting user from the token themselves.
:func:`gate_domain_routes` puts the app's authorizer (:class:`~.authorizer.SmartAuthorizer`) in
front of each of them, as a route dependency that runs before the route's own ones, so that
every call is

* **authenticated** by the same verifier as every FHIR route (signature, issuer, audience,
  expiry, revocation): 401 otherwise;
* **audited** by the request audit like any interaction (``operation`` with its name, the
  resource, the patients; refusals included);
* for the appointment operations, **authorized** by the policy
  (:meth:`ehr.security.Policy.plan`): the token's scopes must allow the operation on its type
  (:data:`ehr.security.policy.OPERATION_LETTERS`: ``$book`` needs ``c`` on Appointment,
  ``$cancel`` ``u``, ``$trend`` ``rs`` on Patient …), and an instance operation
  (``/Patient/{id}/$trend``, ``/Appointment/{id}/$cancel``) on a resource the requester may not
  see is a 404, as for one that does not exist (treatment, consent, the patient compartment;
  break-the-glass applies). The services then apply their own rules to the acting user
  (:mod:`appointments.actors`: a citizen books for themselves, only staff run a queue …) on the
  whole store: their searches and writes are not confined to the requester's records (a booking
  must see every booking of the slot), so the request's restriction is not handed down;
* for the card operations, authenticated only: their scopes are operation scopes
  (``system/health-card.tap``) that the routes check, and they write detailed AuditEvents of
  their own (tap verdicts, card alerts) through the same trail.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.routing import APIRoute
from starlette.requests import Request

from ..deps import Access

__all__ = ["appointment_routes", "card_routes", "gate_domain_routes"]


def _names(router: Any) -> frozenset[str]:
    return frozenset(r.name for r in router.routes if isinstance(r, APIRoute))


@cache
def appointment_routes() -> frozenset[str]:
    """The route names of the appointment services."""
    from appointments.http import router

    return _names(router())


@cache
def card_routes() -> frozenset[str]:
    """The route names of the health one-card."""
    from fhir_api.cards.routes import router

    return _names(router())


def _access(request: Request) -> Access:
    return Access("operation", None, request.path_params.get("rid"))


async def _authorize_appointment_operation(request: Request) -> None:
    await request.app.state.authorizer.authorize(request, _access(request), hand_down=False)


async def _authenticate_card_operation(request: Request) -> None:
    await request.app.state.authorizer.authorize(request, _access(request), policy=False)


def _gated(route: APIRoute, gate: Any) -> APIRoute:
    return APIRoute(
        route.path,
        route.endpoint,
        methods=sorted(route.methods or ()),
        name=route.name,
        response_class=route.response_class,
        dependencies=[Depends(gate), *route.dependencies],
        include_in_schema=route.include_in_schema,
        summary=route.summary,
        description=route.description,
        tags=route.tags,
    )


def gate_domain_routes(app: FastAPI) -> int:
    """Put the gate in front of every appointment and card route of ``app`` (in place, so the
    order of matching is kept); returns how many routes were gated. Idempotent."""
    gates = {
        **{name: _authorize_appointment_operation for name in appointment_routes()},
        **{name: _authenticate_card_operation for name in card_routes()},
    }
    routes = app.router.routes
    done = 0
    for i, route in enumerate(routes):
        if not isinstance(route, APIRoute) or route.name not in gates:
            continue
        gate = gates[route.name]
        if any(d.dependency is gate for d in route.dependencies):
            continue
        routes[i] = _gated(route, gate)
        done += 1
    return done
