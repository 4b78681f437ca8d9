"""Matching on every Patient write: the EMPI's :class:`~ehr.store.WriteHook`.

Patient/$match (grades): http://hl7.org/fhir/R4/patient-operation-match.html ; HAPI FHIR MDM
(the same flow): https://hapifhir.io/hapi-fhir/docs/server_jpa_mdm/mdm_rules.html

:func:`install` registers one :class:`Empi` on a store. From then on, inside the transaction of
every create or update of a *source* Patient (golden records are skipped):

1. its features are extracted (:func:`ehr.empi.features.extract`) and its blocking keys locked
   (PostgreSQL transaction-scoped advisory locks, the ids ``ctx.lock_condition`` would use, all
   in one statement in ascending order, for a new Patient in the round trip of its candidate
   query; SQLite's single writer serializes anyway). Two registrations that could match each other
   share a blocking key, so they run one after the other and the second sees the first's golden
   record: concurrent registrations of one citizen end with one golden record;
2. candidates are scored and graded per golden record (:class:`ehr.empi.candidates.Matcher`),
   then its blocking rows are replaced (``empi_blocking``);
3. the decision:

   - one ``certain`` golden record (an identifier rule), or else exactly one ``probable`` one:
     the Patient is linked to it automatically (link-source AUTO, audited);
   - otherwise a new golden record is created for it;
   - ``possible`` candidates (and ``probable`` ones that were not linked, and two ``certain``
     golden records sharing an identifier) open a review Task (:mod:`ehr.empi.review`).

On **update**, nothing is re-decided when the identity features did not change (only the golden
record's demographics are refreshed), nor when a person linked the record (MANUAL). Otherwise an
automatic link is re-examined: a record alone in its golden record that now matches another one
moves there; a record whose citizen ID now differs from another source of its golden record is
split off into a golden record of its own (audited ``unlink``); any other doubt is a review Task.
A **delete** removes the record's blocking rows and its link (an emptied golden record is
deleted) and cancels its open review Task.

Writes of golden records by anyone but the EMPI are refused (403), as HAPI MDM does.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection

from ehr.empi.audit import _audit
from ehr.empi.blocking import blocking_keys
from ehr.empi.candidates import Candidate, Matcher
from ehr.empi.features import DEFAULT_IDENTITY, IdentityConfig
from ehr.empi.golden import (
    create_golden,
    detach,
    golden_of,
    is_internal,
    move,
    read_golden,
    refresh,
    system_view,
)
from ehr.empi.links import is_golden, link_entry, link_info, load_patients
from ehr.empi.review import OPEN_STATUSES, raise_review
from ehr.empi.scoring import DEFAULT_CONFIG, MatchConfig, score
from ehr.errors import Forbidden, NotFound
from ehr.model import loads
from ehr.storage.db import is_postgres
from ehr.store import PendingWrite, Store, WriteContext

__all__ = ["Empi", "get_empi", "install"]


@dataclass(eq=False)
class Empi:
    """The EMPI of one store: thresholds, identifier systems, blocking limits, and the hook.

    ``identity`` defaults to the standard systems with the exchange's citizen-ID key from
    settings (so a clear citizen ID given to ``$match`` is hashed before it is compared)."""

    store: Store
    config: MatchConfig = DEFAULT_CONFIG
    identity: IdentityConfig | None = None
    max_block: int = 500
    max_candidates: int = 1000
    min_population: int = 10_000
    matcher: Matcher = field(init=False)

    def __post_init__(self) -> None:
        if self.identity is None:
            from ehr.settings import get_settings

            key = get_settings().citizen_id_key.encode()
            self.identity = replace(DEFAULT_IDENTITY, hmac_key=key or None)
        self.matcher = Matcher(
            self.config,
            self.identity,
            max_block=self.max_block,
            max_candidates=self.max_candidates,
            min_population=self.min_population,
        )

    def install(self) -> Empi:
        """Register this EMPI's hook on its store, replacing any other EMPI hook."""
        self.store.hooks[:] = [h for h in self.store.hooks if not isinstance(h, Empi)]
        self.store.hooks.append(self)
        return self

    # -- the hook ------------------------------------------------------------------------------
    def before_write(self, ctx: WriteContext, write: PendingWrite) -> None:
        if write.rtype != "Patient":
            return
        new, old = write.resource, write.previous
        if is_golden(new) or is_golden(old):
            if not is_internal(ctx):
                raise Forbidden(
                    f"Patient/{write.rid} is an EMPI golden record: it changes only through "
                    "link, unlink, merge and the review queue",
                )
            return
        with system_view():
            if new is None:
                self._deleted(ctx, write.rid)
            elif is_internal(ctx):
                self.matcher.index(ctx, write.rid, self.matcher.extract(new))
            else:
                self.match_source(
                    ctx,
                    write.rid,
                    new,
                    old,
                    created=write.kind == "create",
                    new_id=write.kind == "create" and not write.client_id,
                )

    # -- steps ---------------------------------------------------------------------------------
    def lock(self, ctx: WriteContext, keys: frozenset[str]) -> None:
        """Take the transaction-scoped advisory locks of ``keys`` on PostgreSQL, in one
        statement and in ascending lock-id order (so two registrations never wait on each
        other in a cycle). The lock ids are those ``ctx.lock_condition("Patient",
        [("empi-block", key)])`` takes; SQLite's single writer needs none. (A new Patient's
        locks are taken in the round trip of its candidate query instead, see
        :meth:`match_source`.)"""
        conn = ctx.conn
        ids = _lock_ids(conn, keys)
        if ids:
            conn.execute(
                text(
                    "SELECT count(pg_advisory_xact_lock(k))"
                    " FROM unnest(CAST(:ids AS bigint[])) AS t(k)"
                ),
                {"ids": ids},
            )

    def match_source(
        self,
        ctx: WriteContext,
        rid: str,
        new: dict[str, Any],
        old: dict[str, Any] | None,
        *,
        created: bool = False,
        new_id: bool = False,
    ) -> None:
        """Index and (re)match source Patient ``rid`` whose next content is ``new``
        (``created``: a brand-new resource, which has no golden record nor blocking rows;
        ``new_id``: and its id was just assigned by the server, so no Task is about it yet)."""
        f = self.matcher.extract(new)
        conn = ctx.conn
        lock_ids: list[int] = []
        if created:  # nothing to read first: the locks join the candidate query's round trip
            lock_ids = _lock_ids(conn, blocking_keys(f))
        else:
            self.lock(ctx, blocking_keys(f))
        current = None if created else golden_of(ctx, rid)
        if current is not None and old is not None and self.matcher.extract(old) == f:
            refresh(ctx, current, {rid: new})
            return
        found = self.matcher.candidates(
            ctx.conn, f, exclude={rid}, source_id=rid, lock_ids=lock_ids
        )
        cands = [c for c in found if c.golden_id is not None]
        # indexed after scoring: name frequencies count the population without this record,
        # exactly as ``$match`` of the same Patient would
        self.matcher.index(ctx, rid, f, replace=not created)
        certain = [c for c in cands if c.grade == "certain"]
        probable = [c for c in cands if c.grade == "probable"]
        review = [c for c in cands if c.grade == "possible"]
        target: Candidate | None = None
        if len(certain) == 1:
            target = certain[0]
            review += probable
        elif certain:
            review = certain + probable + review  # two golden records share an identifier
        elif len(probable) == 1:
            target = probable[0]
        if current is None:
            self._place_new(ctx, rid, new, target, review, created=created, new_id=new_id)
        else:
            self._recheck(ctx, rid, new, f, current, target, review)

    def _auto_link(self, rid: str, c: Candidate) -> dict[str, Any]:
        return link_entry(
            rid,
            grade=c.grade,
            manual=False,
            score=c.score.probability,
            explanation=c.score.explain(),
        )

    def _place_new(
        self,
        ctx: WriteContext,
        rid: str,
        new: dict[str, Any],
        target: Candidate | None,
        review: list[Candidate],
        *,
        created: bool,
        new_id: bool = False,
    ) -> None:
        review = [c for c in review if c is not target]
        linked = False
        if target is not None:
            assert target.golden_id is not None
            try:
                move(
                    ctx, rid, target.golden_id, self._auto_link(rid, target), new, unlinked=created
                )
                linked = True
            except NotFound:
                # a person merged or unlinked that golden record since it was read: the record
                # starts a golden record of its own, and the candidate goes to review
                review.insert(0, target)
            else:
                _audit(
                    ctx, "link", [rid, target.golden_id],
                    description=f"Automatic link ({target.score.explain()})",
                )  # fmt: skip
        if not linked:
            create_golden(ctx, rid, new, link_entry(rid, grade="certain", manual=False))
        if review:
            raise_review(
                ctx,
                rid,
                review,
                reason=f"Patient/{rid} possibly matches an existing citizen",
                new_id=new_id,
            )

    def _recheck(
        self,
        ctx: WriteContext,
        rid: str,
        new: dict[str, Any],
        f: Any,
        current: str,
        target: Candidate | None,
        review: list[Candidate],
    ) -> None:
        g = read_golden(ctx, current)
        assert g is not None
        review = [c for c in review if c.golden_id != current]
        if (link_info(g.data, rid) or {}).get("link-source") == "MANUAL":
            refresh(ctx, current, {rid: new})
            return
        if target is not None and target.golden_id != current:
            moved = False
            if g.sources == [rid]:
                assert target.golden_id is not None
                try:
                    move(ctx, rid, target.golden_id, self._auto_link(rid, target), new)
                    moved = True
                except NotFound:
                    pass  # merged or unlinked meanwhile: a person looks at it
                else:
                    _audit(
                        ctx, "link", [rid, target.golden_id, current],
                        description=f"Automatic link after an update ({target.score.explain()})",
                    )  # fmt: skip
                    current = target.golden_id
            if not moved:
                review.insert(0, target)
        elif self._contradicted(ctx, rid, f, g.sources):
            detach(ctx, rid, current, no_match=True)
            gid = create_golden(ctx, rid, new, link_entry(rid, grade="certain", manual=False))
            _audit(
                ctx, "unlink", [rid, current, gid],
                description="Automatic unlink: the citizen ID now differs from another source's",
            )  # fmt: skip
            current = gid
        refresh(ctx, current, {rid: new})
        if review:
            raise_review(
                ctx,
                rid,
                review,
                reason=f"Patient/{rid} was updated and possibly matches another citizen",
            )

    def _contradicted(self, ctx: WriteContext, rid: str, f: Any, sources: list[str]) -> bool:
        """Another source of the same golden record is certainly someone else (citizen IDs)."""
        mates = load_patients(ctx.conn, [s for s in sources if s != rid])
        for mid, (version, ts, data) in mates.items():
            s = score(f, self.matcher.features(mid, version, ts, data), self.config)
            if s.rule == "citizen-id-differs":
                return True
        return False

    def _deleted(self, ctx: WriteContext, rid: str) -> None:
        self.matcher.unindex(ctx.conn, rid)
        current = golden_of(ctx, rid)
        if current is not None:
            detach(ctx, rid, current)
            _audit(ctx, "unlink", [rid, current], description=f"Patient/{rid} was deleted")
        for row in ctx.match(
            "Task",
            [
                ("focus", f"Patient/{rid}"),
                ("code", "empi-review"),
                ("status", ",".join(OPEN_STATUSES)),
            ],
            limit=10,
        ):
            if row.data is not None:
                task = loads(row.data)
                task["status"] = "cancelled"
                task["statusReason"] = {"text": f"Patient/{rid} was deleted"}
                ctx.update("Task", row.rid, task, if_match=row.version, validate=False)


def _lock_ids(conn: Connection, keys: frozenset[str]) -> list[int]:
    """The advisory lock ids of blocking keys ``keys``, ascending (none on SQLite)."""
    if not keys or not is_postgres(conn):
        return []
    return sorted({_lock_id(k) for k in keys})


def _lock_id(key: str) -> int:
    canon = f"Patient?empi-block={key}"  # as WriteContext.lock_condition builds it
    return int.from_bytes(hashlib.sha256(canon.encode()).digest()[:8], "big", signed=True)


def install(store: Store, **kwargs: Any) -> Empi:
    """Install the EMPI on ``store`` (replacing an earlier installation); ``kwargs`` configure
    :class:`Empi` (``config``, ``identity``, ``max_block`` ...)."""
    return Empi(store, **kwargs).install()


def get_empi(store: Store) -> Empi:
    """The EMPI installed on ``store``, or a default one (not installed) for read operations."""
    for h in store.hooks:
        if isinstance(h, Empi):
            return h
    return Empi(store)
