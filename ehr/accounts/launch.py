"""EHR launch contexts (https://hl7.org/fhir/smart-app-launch/app-launch.html#launch-app-ehr-launch).

The EHR (a clinician's workstation) records the context it launches an app in and passes the
app an opaque ``launch`` id; the app sends it back on the authorization request with the
``launch`` scope, and the token response carries the context (``patient``, ``encounter``, ...).
A launch id is short-lived; it may be bound to the launching user and to one client.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, insert, select

from ._db import US, dump_json, load_json, now_us, read_tx, write_tx
from .crypto import new_secret
from .tables import launch_contexts

__all__ = ["LaunchContext", "Launches"]


@dataclass(frozen=True)
class LaunchContext:
    launch_id: str
    patient: str | None = None
    encounter: str | None = None
    user_id: str | None = None
    client_id: str | None = None
    #: more token-response context: need_patient_banner, smart_style_url, intent, fhirContext
    extra: dict[str, Any] = field(default_factory=dict)


class Launches:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(
        self,
        *,
        patient: str | None = None,
        encounter: str | None = None,
        user_id: str | None = None,
        client_id: str | None = None,
        extra: dict[str, Any] | None = None,
        ttl_s: int = 600,
    ) -> str:
        launch_id = new_secret(24)
        now = now_us()
        with write_tx(self.engine) as conn:
            conn.execute(
                insert(launch_contexts).values(
                    launch_id=launch_id,
                    patient=patient,
                    encounter=encounter,
                    user_id=user_id,
                    client_id=client_id,
                    context=dump_json(extra or {}),
                    created=now,
                    expires=now + ttl_s * US,
                )
            )
        return launch_id

    def resolve(self, launch_id: str) -> LaunchContext | None:
        """The context of an unexpired launch id, or None."""
        with read_tx(self.engine) as conn:
            row = conn.execute(
                select(launch_contexts).where(launch_contexts.c.launch_id == launch_id)
            ).first()
        if row is None or row.expires <= now_us():
            return None
        return LaunchContext(
            launch_id=row.launch_id,
            patient=row.patient,
            encounter=row.encounter,
            user_id=row.user_id,
            client_id=row.client_id,
            extra=load_json(row.context, {}),
        )
