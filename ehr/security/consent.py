"""Patient privacy consent (http://hl7.org/fhir/R4/consent.html) and break-the-glass.

**What a Consent can say.** The baseline is to share with those entitled (the patient, the
clinicians treating them): a Consent takes away. It counts when ``status`` is ``active`` and
``scope`` is ``patient-privacy`` (http://terminology.hl7.org/CodeSystem/consentscope); every
``provision`` (nested ones too) whose ``type`` is ``deny`` becomes rules of the table
``consent_rules`` (:func:`rules_of`):

* ``provision.actor.reference`` (an Organization, Practitioner or PractitionerRole): deny *that*
  actor, e.g. "do not share with the clinic of Organization/o2";
* no actor: deny everyone except the Consent's own ``organization`` (the author's
  organization, e.g. the psychiatric clinic that keeps the notes) and the patient;
* ``provision.securityLabel`` / ``provision.code`` (Codings) restrict the rule to resources
  carrying that code in ``meta.security``, ``meta.tag``, ``category`` or ``code``, e.g.
  ``http://terminology.hl7.org/CodeSystem/v3-ActCode|PSY`` (psychiatry), ``ETH`` (substance
  abuse), ``HIV``, ``SDV`` (sexual and domestic violence); ``provision.class`` with the system
  ``http://hl7.org/fhir/resource-types`` restricts it to a resource type. With none of these the
  rule covers the whole record;
* ``provision.period`` bounds the rule in time.

**Who is bound.** Every user who is not the patient (clinicians, administrators, apps acting for
them), including under a patient-context launch. Backend services (system scopes) are not:
they are the exchange's own infrastructure, governed by contract, and their reach is the
scopes they were registered with. The patient's own access is never limited.

**Enforcement.** :func:`hidden_condition` is a SQL predicate ("a Consent hides this resource
from this requester") in the visibility predicate (:mod:`ehr.security.visibility`): reads of a
hidden resource answer 404, as for one that does not exist; searches leave hidden resources out
in SQL (so paging, totals and includes stay right), ``_include``/``_revinclude``, chains and
``_has`` included. The rules table is kept in step by :class:`ConsentRulesHook` in the same
transaction as the Consent write; :func:`rebuild_consent_rules` rebuilds it (after a bulk load
made without the hook).

**Writes.** What a Consent hides cannot be changed either: update, patch, delete, vread and
history of a hidden resource answer 404 like a missing one, and a conditional update (plain or
in a Bundle) can never reach it (:meth:`ehr.security.policy.Guard.check_write`). A Consent
governs disclosure, not the documentation of care: a denied organization's clinicians may still
write new resources about the patient (an emergency visit is recorded), which are then hidden
from them like the rest of the record.

**Break-the-glass.** A clinician may assert an emergency reason (``X-Break-Glass: <reason>`` or
a ``break_glass`` token claim). For the patient(s) the request names, treatment and consent
rules are lifted for that request only; the access is audited with purpose of use ``BTG``, and
the patient is told by a Communication (:func:`notify_break_glass`; at most one per clinician,
patient and day).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import FromClause, and_, delete, exists, false, insert, or_, select, true, tuple_
from sqlalchemy.engine import Connection

from ehr.definitions import patient_compartment
from ehr.errors import FhirError
from ehr.model import loads
from ehr.search.dates import date_range, now_us
from ehr.search.sql import Cond
from ehr.search.tables import idx_reference, idx_token
from ehr.sitetime import local_day
from ehr.storage.tables import resources
from ehr.store import PendingWrite, Store, WriteContext

from .context import unguarded
from .principal import Principal, relative_ref
from .tables import consent_rules

__all__ = [
    "BTG",
    "CONSENT_SCOPE",
    "LABEL_PARAMS",
    "RESOURCE_TYPES_SYSTEM",
    "ConsentRulesHook",
    "hidden_condition",
    "notify_break_glass",
    "rebuild_consent_rules",
    "rules_of",
]

log = logging.getLogger("ehr.security.consent")

CONSENT_SCOPE = ("http://terminology.hl7.org/CodeSystem/consentscope", "patient-privacy")
RESOURCE_TYPES_SYSTEM = "http://hl7.org/fhir/resource-types"
#: the v3 ActReason "break the glass" purpose of use
BTG = ("http://terminology.hl7.org/CodeSystem/v3-ActReason", "BTG", "break the glass")
#: the token parameters a sensitivity rule is matched against
LABEL_PARAMS = ("_security", "_tag", "category", "code")
#: identifier system of break-glass notices (one per clinician, patient and day)
BTG_NOTICE_SYSTEM = "urn:ehr:break-glass-notice"
_ACTOR_TYPES = ("Organization", "Practitioner", "PractitionerRole")


def _codings(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, dict):
        if "coding" in value:
            return [c for c in value.get("coding") or [] if isinstance(c, dict)]
        return [value]
    if isinstance(value, list):
        return [c for v in value for c in _codings(v)]
    return []


def _is_privacy(consent: dict[str, Any]) -> bool:
    return any(
        c.get("system") == CONSENT_SCOPE[0] and c.get("code") == CONSENT_SCOPE[1]
        for c in _codings(consent.get("scope"))
    )


def _period(p: Any) -> tuple[int | None, int | None]:
    if not isinstance(p, dict):
        return None, None
    lo = hi = None
    try:
        if isinstance(p.get("start"), str):
            lo = date_range(p["start"])[0]
        if isinstance(p.get("end"), str):
            hi = date_range(p["end"])[1]
    except ValueError:
        return None, None
    return lo, hi


def _provisions(p: Any) -> Iterable[dict[str, Any]]:
    if isinstance(p, dict):
        yield p
        for child in p.get("provision") or []:
            yield from _provisions(child)


def rules_of(consent: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``consent_rules`` rows (without ``consent_id``/``n``) of one Consent resource; none
    unless it is an active patient-privacy Consent about a local Patient."""
    if consent.get("resourceType") != "Consent" or consent.get("status") != "active":
        return []
    if not _is_privacy(consent):
        return []
    patient = relative_ref((consent.get("patient") or {}).get("reference"))
    if not patient or not patient.startswith("Patient/"):
        return []
    pid = patient.split("/", 1)[1]
    rows: list[dict[str, Any]] = []
    for prov in _provisions(consent.get("provision")):
        if prov.get("type") != "deny":
            continue
        actors: list[str | None] = []
        for a in prov.get("actor") or []:
            ref = relative_ref(((a or {}).get("reference") or {}).get("reference"))
            if ref and ref.split("/", 1)[0] in _ACTOR_TYPES:
                actors.append(ref)
        if prov.get("actor") and not actors:
            continue  # an actor we cannot recognise: deny nobody rather than everybody
        what: list[tuple[str | None, str | None, str | None]] = []
        for c in _codings(prov.get("securityLabel")) + _codings(prov.get("code")):
            if isinstance(c.get("code"), str):
                what.append((None, c.get("system"), c["code"]))
        for c in _codings(prov.get("class")):
            if c.get("system") == RESOURCE_TYPES_SYSTEM and isinstance(c.get("code"), str):
                what.append((c["code"], None, None))
            elif isinstance(c.get("code"), str):
                what.append((None, c.get("system"), c["code"]))
        lo, hi = _period(prov.get("period"))
        for actor in actors or [None]:
            for rtype, system, code in what or [(None, None, None)]:
                rows.append(
                    {"patient_id": pid, "kind": "deny", "actor": actor, "rtype": rtype,
                     "system": system, "code": code, "not_before": lo, "not_after": hi}
                )  # fmt: skip
    if rows:
        for org in consent.get("organization") or []:
            ref = relative_ref((org or {}).get("reference"), "Organization")
            if ref:
                rows.append(
                    {"patient_id": pid, "kind": "exempt", "actor": ref, "rtype": None,
                     "system": None, "code": None, "not_before": None, "not_after": None}
                )  # fmt: skip
    return rows


def _write_rules(conn: Connection, consent_id: str, resource: dict[str, Any] | None) -> None:
    conn.execute(delete(consent_rules).where(consent_rules.c.consent_id == consent_id))
    rows = rules_of(resource) if resource is not None else []
    if rows:
        conn.execute(
            insert(consent_rules),
            [{"consent_id": consent_id, "n": i, **row} for i, row in enumerate(rows)],
        )


class ConsentRulesHook:
    """A store write hook: keeps ``consent_rules`` in step with Consent writes (same
    transaction, so a Consent and its rules commit or roll back together)."""

    def before_write(self, ctx: WriteContext, write: PendingWrite) -> None:
        if write.rtype == "Consent":
            _write_rules(ctx.conn, write.rid, write.resource)

    @staticmethod
    def install(store: Store) -> ConsentRulesHook:
        for h in store.hooks:
            if isinstance(h, ConsentRulesHook):
                return h
        hook = ConsentRulesHook()
        store.hooks.append(hook)
        return hook


def rebuild_consent_rules(store: Store) -> int:
    """Rebuild ``consent_rules`` from every current Consent; returns the number of rules."""
    count = 0
    with store.write() as ctx:
        conn = ctx.conn
        conn.execute(delete(consent_rules))
        rows = conn.execute(
            select(resources.c.rid, resources.c.data).where(
                resources.c.rtype == "Consent", resources.c.deleted == false()
            )
        ).all()
        for rid, data in rows:
            if data is None:
                continue
            resource = loads(bytes(data))
            _write_rules(conn, rid, resource)
            count += len(rules_of(resource))
    return count


def _pairs() -> list[tuple[str, str]]:
    return sorted((t, p) for t, ps in patient_compartment().items() for p in ps)


def hidden_condition(
    principal: Principal, lifted: Iterable[str] = (), at: int | None = None
) -> Callable[[FromClause], Cond]:
    """A predicate on a ``resources`` alias: "an active Consent hides this resource from
    ``principal``". ``lifted``: patients whose consents do not apply (break-the-glass)."""
    actors = sorted(principal.actor_refs())
    orgs = sorted(principal.organizations)
    lifted_ids = sorted(set(lifted))
    now = at if at is not None else now_us()
    pairs = _pairs()

    def hidden(r: FromClause) -> Cond:
        cr, ex = consent_rules.alias("cr"), consent_rules.alias("ex")
        mem, tok = idx_reference.alias("mem"), idx_token.alias("tok")
        audience = [and_(cr.c.actor.is_(None), true())]
        if orgs:
            audience = [
                and_(
                    cr.c.actor.is_(None),
                    ~exists(
                        select(ex.c.n).where(
                            ex.c.consent_id == cr.c.consent_id,
                            ex.c.kind == "exempt",
                            ex.c.actor.in_(orgs),
                        )
                    ),
                )
            ]
        if actors:
            audience.append(cr.c.actor.in_(actors))
        applies = [
            cr.c.kind == "deny",
            or_(cr.c.not_before.is_(None), cr.c.not_before <= now),
            or_(cr.c.not_after.is_(None), cr.c.not_after >= now),
            or_(*audience),
        ]
        if lifted_ids:
            applies.append(cr.c.patient_id.not_in(lifted_ids))
        # explicit correlation: ``r`` belongs to the query this predicate is embedded in,
        # two levels up (auto-correlation only looks at the enclosing SELECT)
        whose = or_(
            cr.c.patient_id.in_(
                select(mem.c.target_id)
                .where(
                    mem.c.pk == r.c.pk,
                    mem.c.target_type == "Patient",
                    tuple_(mem.c.rtype, mem.c.param).in_(pairs),
                )
                .correlate(r)
            ),
            and_(r.c.rtype == "Patient", r.c.rid == cr.c.patient_id),
        )
        what = and_(
            or_(cr.c.rtype.is_(None), cr.c.rtype == r.c.rtype),
            or_(
                cr.c.code.is_(None),
                exists(
                    select(tok.c.pk)
                    .where(
                        tok.c.pk == r.c.pk,
                        tok.c.param.in_(LABEL_PARAMS),
                        tok.c.code == cr.c.code,
                        or_(cr.c.system.is_(None), tok.c.system == cr.c.system),
                    )
                    .correlate(r, cr)
                ),
            ),
        )
        return exists(select(cr.c.n).where(*applies, whose, what).correlate(r))

    return hidden


# ------------------------------------------------------------------------------ break-the-glass


def _notice(principal: Principal, pid: str, reason: str, day: str, when: str) -> dict[str, Any]:
    who = principal.fhir_user or principal.subject
    org = principal.organizations[0] if principal.organizations else None
    text = (
        f"您的健康档案于 {when} 被 {who}{'（' + org + '）' if org else ''} 以紧急情况（打破常规）"
        f"方式访问。理由：{reason}\n"
        f"Your health record was opened in an emergency (break-the-glass) by {who}"
        f"{' of ' + org if org else ''} at {when}. Reason given: {reason}"
    )
    notice: dict[str, Any] = {
        "resourceType": "Communication",
        "identifier": [{"system": BTG_NOTICE_SYSTEM, "value": f"{who}:{pid}:{day}"}],
        "status": "completed",
        "category": [{"coding": [{"system": BTG[0], "code": BTG[1], "display": BTG[2]}]}],
        "priority": "urgent",
        "subject": {"reference": f"Patient/{pid}"},
        "recipient": [{"reference": f"Patient/{pid}"}],
        "sent": when,
        "reasonCode": [{"text": reason}],
        "payload": [{"contentString": text}],
    }
    if principal.fhir_user:
        notice["sender"] = {"reference": principal.fhir_user}
    return notice


def notify_break_glass(
    store: Store,
    principal: Principal,
    patient_ids: Sequence[str],
    reason: str,
    now: datetime | None = None,
) -> list[str]:
    """Tell each patient that ``principal`` broke the glass on their record: a Communication
    (category BTG, recipient the Patient), at most one per clinician, patient and local day
    (:func:`~ehr.sitetime.local_day`; a conditional create on its identifier, so repeated and
    concurrent requests make one). Returns the ids of the patients notified now (not already
    notified that day). ``now``: the time of the access (default: the clock's)."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    day, when = local_day(now), now.strftime("%Y-%m-%dT%H:%M:%SZ")
    who = principal.fhir_user or principal.subject
    done: list[str] = []
    for pid in dict.fromkeys(patient_ids):
        notice = _notice(principal, pid, reason, day, when)
        try:
            with unguarded():
                result = store.create(
                    notice, if_none_exist=f"identifier={BTG_NOTICE_SYSTEM}|{who}:{pid}:{day}"
                )
        except FhirError:
            log.exception("break-glass notice to Patient/%s failed", pid)
            raise
        if result.created:
            done.append(pid)
    return done
