"""Keep the card namespace of Patient.identifier in step with the card registry.

A store :class:`~ehr.store.WriteHook` (Patient.identifier:
http://hl7.org/fhir/R4/datatypes.html#Identifier). A card id is issued only by
:func:`ehr.cards.issuing.issue_card`, which writes the ``cards`` row and the identifier in one
transaction. A plain FHIR create, update or patch of a Patient may keep its card identifiers,
but it may not give the Patient a current (``use`` other than ``old``) identifier in
:data:`~ehr.identifiers.HEALTH_CARD_SYSTEM` whose value is a registered card of *another*
Patient, nor make the identifier of a *revoked* card current again: such a write is refused
(409) and nothing is written. Values that are not registered cards are left alone (data loaded
from elsewhere); the tap resolves patients through the registry, never through them.
"""

from __future__ import annotations

from sqlalchemy import select

from ehr.errors import Conflict
from ehr.identifiers import HEALTH_CARD_SYSTEM
from ehr.store import PendingWrite, Store, WriteContext

from .db_stores import REVOKED
from .tables import cards

__all__ = ["CardIdentifierGuard"]


class CardIdentifierGuard:
    def before_write(self, ctx: WriteContext, write: PendingWrite) -> None:
        if write.rtype != "Patient" or not write.resource:
            return
        current = {
            str(i.get("value"))
            for i in write.resource.get("identifier") or ()
            if isinstance(i, dict)
            and i.get("system") == HEALTH_CARD_SYSTEM
            and i.get("use") != "old"
            and i.get("value")
        }
        if not current:
            return
        rows = ctx.conn.execute(
            select(cards.c.cid, cards.c.patient_id, cards.c.status).where(
                cards.c.cid.in_(sorted(current))
            )
        ).all()
        for cid, patient_id, status in rows:
            if patient_id != write.rid:
                raise Conflict(
                    f"Health card {cid} belongs to another patient: a card identifier is "
                    "issued with the card ($issue-card), never copied",
                    "business-rule",
                )
            if status == REVOKED:
                raise Conflict(
                    f"Health card {cid} is revoked: its identifier must keep use 'old'",
                    "business-rule",
                )

    @classmethod
    def install(cls, store: Store) -> CardIdentifierGuard:
        """Register the hook on ``store`` (once)."""
        for hook in store.hooks:
            if isinstance(hook, cls):
                return hook
        guard = cls()
        store.hooks.append(guard)
        return guard
