"""Authorization decisions, taken before any work: SMART on FHIR scopes, the patient
compartment, the care relationship and consent.

Specs: SMART App Launch 2 scopes
(https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html), the Patient compartment
(http://hl7.org/fhir/R4/compartmentdefinition-patient.html).

:meth:`Policy.plan` turns (principal, :class:`Target`) into a :class:`Guard` or refuses:

1. **Scopes (403).** Each interaction needs SMART v2 letters on its type (v1 ``read``/``write``
   are mapped by :mod:`ehr.accounts.scopes`): ``r`` read, vread, history of an instance;
   ``s`` search, history of a type or the system; ``c`` create; ``u`` update and patch;
   ``d`` delete. A conditional interaction also needs ``s`` (it searches). A system-wide search
   needs ``s`` on every ``_type`` (or ``*``). A type the scopes do not allow is a 403 whether or
   not the resource exists: the check runs before the store is touched. AuditEvents are never
   written through the API (403). The first scope context that allows the interaction decides
   whose records are in reach: ``system`` (backend services only), then ``user``, then
   ``patient``.
2. **Reach** (:class:`~ehr.security.visibility.Reach`): a backend service (``system/`` scopes)
   reaches every record; a citizen their own; a clinician (``user/`` scopes, role practitioner
   or nurse) the patients they treat (:mod:`ehr.security.treatment`) and non-compartment types;
   other users (administrators, users of an external issuer without a role) only
   non-compartment types. A ``patient/`` scope narrows that to the token's patient context
   (a clinician's launch patient must still be one they treat; a citizen's is their own, or
   one they act for: the token's ``acting_for`` claim, set by our authorization server).
3. **Consent** binds users other than the patient (:mod:`ehr.security.consent`).
4. **Break-the-glass**: a clinician's asserted reason lifts treatment and consent rules for the
   patient(s) the request names (the resource's patients, the compartment, the operation's
   Patient, ``patient``/``subject`` search parameters), notifies them and marks the audit.

Then :meth:`Guard.precheck` (which may query the database; the HTTP layer runs it in a worker
thread) refuses what needs the database to decide:

* an instance interaction (read, vread, history, update, patch, delete, an instance operation)
  on a resource the requester cannot see is a **404 with the same body as for a resource that
  does not exist**: no denied response tells whether a resource exists. A confined requester
  cannot update-as-create (PUT to an id that is not visible is a 404 either way; POST creates);
* history of a type or of the system is for unconfined requesters only (403 otherwise: the
  history index cannot apply the restriction; search instead).

Bulk Data (``$export``, ``$import``, a job's status and files) is for backend services with
``system/`` scopes only: its output is neither compartment- nor consent-filtered, and a job
belongs to a client, not to a user. ``$everything`` and ``$summary`` apply the request's
restriction in their queries (compartment, consent, per-type and constrained scopes), so they
are open to whoever may read the Patient; EMPI operations (``$match``, ``$merge``…) are refused
to confined requesters.

The :class:`Guard` then carries the SQL restriction for searches and conditional matches
(:data:`ehr.search.engine.ambient_restriction`) and checks every write body before it is stored
(:mod:`ehr.security.hooks`): a confined requester may only write resources of patients in reach
(or that start a care relationship), a patient-context token only its patient's records.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from sqlalchemy import false, select
from sqlalchemy.engine import Connection

from ehr.errors import BadRequest, Forbidden, NotFound
from ehr.storage.tables import resources
from ehr.store import PendingWrite, Store, WriteContext

from .consent import hidden_condition, notify_break_glass
from .principal import Principal, relative_ref
from .treatment import establishes_treatment, is_treated, treated_patients
from .visibility import (
    Reach,
    Restrict,
    TypeRules,
    compartment_types,
    patients_of,
    restriction,
    sql_context,
    stored_patients,
    type_rules,
    visible,
)

__all__ = ["INSTANCE", "LETTERS", "Guard", "Policy", "Target", "letters_for"]

#: interaction -> the SMART v2 letters it needs
LETTERS = {
    "read": "r",
    "vread": "r",
    "history-instance": "r",
    "search-type": "s",
    "search-system": "s",
    "history-type": "s",
    "history-system": "s",
    "create": "c",
    "update": "u",
    "patch": "u",
    "delete": "d",
}
#: interactions on one resource (checked against what the requester can see)
INSTANCE = frozenset({"read", "vread", "history-instance", "update", "patch", "delete"})
#: $operation name -> letters needed on the operation's type (unknown operations: "rs")
OPERATION_LETTERS = {
    "everything": "rs",
    "summary": "rs",
    "export": "s",
    "validate": "",
    "match": "s",
    "merge": "u",
    "unmerge": "u",
    "empi-link": "u",
    "empi-unlink": "u",
    "empi-resolve": "u",
    "meta": "r",
    "lastn": "s",
    "stats": "s",
    # the appointment services (appointments.http): letters on the operation's type; an
    # instance operation also needs "r" (added by letters_for)
    "find": "s",
    "hold": "c",
    "book": "c",
    "waitlist": "c",
    "checkin": "u",
    "cancel": "u",
    "reschedule": "u",
    "noshow": "u",
    "generate-slots": "u",
    "cancel-session": "u",
    "queue": "r",
    "call-next": "u",
    "finish": "u",
    "ward-worklist": "r",
    "identify": "s",
    "record-vitals": "c",
    "administer": "u",
    "clinic-list": "r",
    "trend": "rs",
    "note": "u",
    "orders": "u",
}
#: operations whose output is built outside the search engine without the request's restriction
#: (consent, scope constraints, types): a requester whose restriction would filter more than the
#: patient compartment may not run them (403). An operation leaves this set once its query ANDs
#: :data:`ehr.search.engine.ambient_restriction` (as ``$everything`` and ``$summary`` do) or
#: filters with :meth:`Guard.filter_pks`.
UNFILTERED_OUTPUT: frozenset[str] = frozenset()
#: identity administration (EMPI): backend services and unconfined requesters only
ADMINISTRATIVE = frozenset(
    {"match", "merge", "unmerge", "empi-link", "empi-unlink", "empi-resolve"}
)
PUBLIC = frozenset({"capabilities"})
BUNDLES = frozenset({"batch", "transaction"})
#: Bulk Data (kick-off, status, files): backend services only -> letters on every type asked
BULK = {"export": "s", "import": "cu"}


@dataclass(frozen=True)
class Target:
    """What a request is about to do (the framework-free twin of ``fhir_api.deps.Access``).

    ``interaction``: a CapabilityStatement code (read, vread, history-instance, history-type,
    history-system, search-type, search-system, create, update, patch, delete, capabilities,
    batch, transaction) or ``operation`` with ``operation`` its name (``everything``).
    ``params``: the query (search parameters, operation parameters)."""

    interaction: str
    rtype: str | None = None
    rid: str | None = None
    compartment: tuple[str, str] | None = None
    conditional: bool = False
    operation: str | None = None
    params: tuple[tuple[str, str], ...] = ()
    version: str | None = None


def letters_for(target: Target) -> str:
    if target.interaction == "operation":
        name = (target.operation or "").lstrip("$")
        op_letters = OPERATION_LETTERS.get(name, "rs")
        if target.rid and "r" not in op_letters:  # an instance operation reads the instance
            op_letters = "r" + op_letters
        return op_letters
    letters = LETTERS.get(target.interaction)
    if letters is None:
        raise Forbidden(f"Unknown interaction {target.interaction!r}")
    if target.conditional and "s" not in letters:
        letters += "s"
    return letters


def _types_of(target: Target) -> list[str]:
    """The types the scopes must allow ("*" for every type)."""
    if target.rtype:
        return [target.rtype]
    if target.interaction == "search-system":
        wanted = [t for k, v in target.params if k == "_type" for t in v.split(",") if t.strip()]
        return sorted({t.strip() for t in wanted}) or ["*"]
    return ["*"]


def _allows(principal: Principal, context: str, rtype: str, letter: str) -> bool:
    if rtype == "*":
        return any(
            s.context == context and s.rtype == "*" and letter in s.interactions
            for s in principal.scopes.resources
        )
    return principal.scopes.allows(context, rtype, letter)


def _denied(target: Target) -> NotFound:
    """The 404 of an instance that is not visible: word for word the store's for a missing one."""
    ref = f"{target.rtype}/{target.rid}"
    if target.interaction == "vread" and target.version is not None:
        return NotFound(f"Version {target.version} of {ref} not found")
    return NotFound(f"{ref} not found")


@dataclass
class Guard:
    """The decision for one request: what its searches may see (:attr:`restrict`), what it
    may write (:meth:`check_write`), and the audit facts (patients, purpose)."""

    policy: Policy
    principal: Principal
    target: Target
    context: str | None
    reach: Reach
    rules: TypeRules
    restrict: Restrict | None
    consent: bool = False
    break_glass: tuple[str, ...] = ()
    #: patients the request concerns, as far as known before the work (for the audit trail)
    patients: set[str] = field(default_factory=set)
    precheck_done: bool = False

    # -- before the work -----------------------------------------------------------------------
    @property
    def needs_db(self) -> bool:
        """Whether :meth:`precheck` has database work to do."""
        t = self.target
        if self.principal.break_glass and self.principal.is_clinician:
            return True
        if t.interaction in INSTANCE or (t.interaction == "operation" and t.rid):
            return self.restrict is not None
        return False

    def precheck(self) -> None:
        """The checks that need the database (see the module docstring). Run once."""
        if self.precheck_done:
            return
        self.precheck_done = True
        t, p = self.target, self.principal
        store = self.policy.store
        with store.read_conn() as conn:
            if p.break_glass and p.is_clinician:
                self._break_glass(conn)
            if (t.interaction in INSTANCE or (t.interaction == "operation" and t.rid)) and t.rid:
                assert t.rtype is not None
                if self.restrict is not None and not visible(
                    conn, t.rtype, t.rid, self.restrict, store.base_url
                ):
                    raise _denied(t)

    def _break_glass(self, conn: Connection) -> None:
        t, p = self.target, self.principal
        named: set[str] = set()
        if t.rtype and t.rid and t.interaction != "create":
            named |= stored_patients(conn, [(t.rtype, t.rid)]).get((t.rtype, t.rid), set())
        if t.compartment and t.compartment[0] == "Patient":
            named.add(t.compartment[1])
        for k, v in t.params:
            if k.split(":")[0] in ("patient", "subject"):
                for part in v.split(","):
                    ref = relative_ref(part.strip(), "Patient" if k.startswith("patient") else None)
                    if ref and ref.startswith("Patient/"):
                        named.add(ref.split("/", 1)[1])
        existing = (
            {
                rid
                for rid in conn.execute(
                    select(resources.c.rid).where(
                        resources.c.rtype == "Patient",
                        resources.c.rid.in_(sorted(named)),
                        resources.c.deleted == false(),
                    )
                ).scalars()
            }
            if named
            else set()
        )
        if self.context == "patient" and p.patient:
            existing &= {p.patient}
        if not existing:
            return
        self.break_glass = tuple(sorted(existing))
        self.patients |= existing
        # rebuild the restriction with these patients in reach and their consents lifted
        self.reach = Reach(
            everyone=self.reach.everyone,
            ids=self.reach.ids | existing,
            treated_sql=self.reach.treated_sql,
            shared=self.reach.shared,
        )
        hidden = hidden_condition(p, lifted=existing) if self.consent else None
        self.restrict = restriction(self.reach, self.rules, self.policy.store.registry, hidden)
        assert p.break_glass is not None
        notify_break_glass(self.policy.store, p, self.break_glass, p.break_glass)

    # -- during the work -----------------------------------------------------------------------
    def _allowed(
        self, conn: Connection, patients: set[str], resource: dict[str, Any] | None
    ) -> bool:
        if self.reach.everyone:
            return True
        rest = patients - self.reach.ids
        if not rest:
            return True
        if self.reach.treated_sql is not None:
            treated = is_treated(conn, self.principal, sorted(rest))
            if self.context == "patient":  # only the launch patient is in reach
                treated &= {self.principal.patient} if self.principal.patient else set()
            rest -= treated
        starts_care = (
            resource is not None
            and self.principal.is_clinician
            and establishes_treatment(resource, self.principal)
        )
        if rest and starts_care and (self.context != "patient" or rest <= {self.principal.patient}):
            rest = set()
        return not rest

    def check_write(self, ctx: WriteContext, write: PendingWrite) -> None:
        """Refuse (403) a write the requester may not make: a resource of a patient out of
        reach (new and previous version), a non-compartment resource by a patient-context
        token, or a body outside a constrained write scope. Notes the patients written for the
        audit trail."""
        rtype = write.rtype
        if rtype == "AuditEvent":
            raise Forbidden("AuditEvents are written by the server only")
        if write.client_id and not self.reach.everyone:
            # a confined requester cannot update-as-create: answered as for an id it cannot
            # see, whether or not the id is in use (conditional updates and Bundle entries too)
            raise _denied(Target("update", rtype, write.rid))
        store = self.policy.store
        for body in (write.resource, write.previous):
            if body is None:
                continue
            if rtype not in compartment_types():
                if not self.reach.everyone and self.reach.shared is not None:
                    raise Forbidden(
                        f"A patient-context token may only write its patient's records, not {rtype}"
                    )
                continue
            pats = patients_of({**body, "id": write.rid}, store.base_url)
            if not self.reach.everyone:
                if not pats:
                    raise Forbidden(
                        f"A {rtype} written with this token must belong to a patient in its reach"
                    )
                if not self._allowed(ctx.conn, pats, body if body is write.resource else None):
                    raise Forbidden(
                        f"This token may not write records of "
                        f"{', '.join('Patient/' + p for p in sorted(pats))}"
                    )
            self.patients |= pats
        if write.resource is not None and self.context is not None:
            letter = {"create": "c", "update": "u", "delete": "d"}[write.kind]
            sets = self.principal.scopes.constraints(self.context, rtype, letter)
            if sets and not any(self._body_matches(write.resource, ps) for ps in sets):
                raise Forbidden(f"The {rtype} does not match the constraints of this token's scope")

    def _body_matches(self, resource: dict[str, Any], params: Sequence[tuple[str, str]]) -> bool:
        """A write scope's constraint (token parameters only) against a body."""
        store = self.policy.store
        rtype = resource.get("resourceType", "")
        rows = store.index(resource).get("token", [])
        for name, value in params:
            sp = store.registry.get(rtype, name)
            if sp is None or sp.type != "token":
                return False
            system, _, code = value.rpartition("|") if "|" in value else ("", "", value)
            if not any(
                r["param"] == name
                and any(c == r.get("code") for c in code.split(","))
                and (not system or r.get("system") == system)
                for r in rows
            ):
                return False
        return True

    def check_entry(self, entry: Any) -> None:
        """A batch/transaction entry (:class:`ehr.transaction.EntryRequest`), checked as if it
        were its own request (scopes, then what the requester can see)."""
        target = target_of_entry(entry)
        sub = self.policy.plan(self.principal, target)
        sub.precheck()
        self.patients |= sub.patients

    def filter_pks(self, conn: Connection, pks: Sequence[int]) -> set[int]:
        """Those of ``pks`` the requester may see (for results built outside the search engine,
        e.g. an operation's own SQL; costs one query)."""
        if self.restrict is None or not pks:
            return set(pks)
        r = resources.alias("r")
        cond = self.restrict(r, sql_context(conn, self.policy.store.base_url))
        return set(conn.execute(select(r.c.pk).where(r.c.pk.in_(list(pks)), cond)).scalars())


def target_of_entry(entry: Any) -> Target:
    """The :class:`Target` of a Bundle entry request."""
    method = entry.method
    query = tuple(parse_qsl(entry.query or "", keep_blank_values=True))
    if method in ("GET", "HEAD"):
        if entry.rid and entry.vid:
            return Target("vread", entry.rtype, entry.rid, version=entry.vid)
        if entry.rid:
            return Target("read", entry.rtype, entry.rid)
        if entry.rtype:
            return Target("search-type", entry.rtype, params=query)
        return Target("search-system", params=query)
    if method == "POST":
        return Target("create", entry.rtype, conditional=bool(entry.if_none_exist))
    if method == "PUT":
        return Target("update", entry.rtype, entry.rid, conditional=entry.query is not None)
    if method == "PATCH":
        return Target("patch", entry.rtype, entry.rid, conditional=entry.query is not None)
    if method == "DELETE":
        return Target("delete", entry.rtype, entry.rid, conditional=entry.query is not None)
    raise BadRequest(f"Unsupported method {method}")


class Policy:
    """The authorization policy of one store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def _context(self, principal: Principal, letters: str, types: Sequence[str]) -> str | None:
        contexts = ("user", "patient") if principal.is_user else ("system", "user", "patient")
        for ctx in contexts:
            if all(_allows(principal, ctx, t, letter) for t in types for letter in letters):
                return ctx
        return None

    def _bundle_context(self, principal: Principal) -> str | None:
        have = principal.scopes.contexts()
        contexts = ("user", "patient") if principal.is_user else ("system", "user", "patient")
        return next((c for c in contexts if c in have), None)

    def _reach(self, principal: Principal, context: str) -> Reach:
        if context == "system":
            return Reach(everyone=True)
        if context == "user":
            if principal.is_citizen:
                own = principal.own_patient
                return Reach(everyone=False, ids=frozenset({own} if own else ()))
            if principal.is_clinician:
                return Reach(everyone=False, treated_sql=treated_patients(principal), shared=None)
            return Reach(everyone=False, shared=None)
        # patient context
        pid = principal.patient
        if not pid:
            raise Forbidden("A patient/ scope needs a patient in the token's launch context")
        if not principal.is_user:
            return Reach(everyone=False, ids=frozenset({pid}))
        if principal.is_citizen:
            # their own record, or a family member's they act for: the authorization server
            # checked the RelatedPerson when it put that patient and ``acting_for`` in the token
            mine = pid == principal.own_patient or bool(principal.claims.get("acting_for"))
            return Reach(everyone=False, ids=frozenset({pid} if mine else ()))
        if principal.is_clinician:
            treated = treated_patients(principal)
            return Reach(
                everyone=False,
                treated_sql=treated.where(treated.selected_columns.patient_id == pid),
            )
        return Reach(everyone=False)

    def plan(self, principal: Principal, target: Target) -> Guard:
        """Decide what needs no database (scopes, reach, restriction); raise 403 to refuse."""
        if target.interaction in PUBLIC:
            return Guard(self, principal, target, None, Reach(everyone=True), TypeRules(None), None)
        if principal.break_glass and not principal.is_clinician:
            raise Forbidden("Break-the-glass is for clinicians (practitioners and nurses)")
        if target.interaction in BULK:
            return self._bulk(principal, target)
        if target.interaction in BUNDLES:
            context = self._bundle_context(principal)
            if context is None:
                raise Forbidden("This token has no resource scopes")
            types: list[str] = []
        else:
            letters = letters_for(target)
            types = _types_of(target)
            if target.rtype == "AuditEvent" and set(letters) & set("cud"):
                raise Forbidden("AuditEvents are written by the server only")
            if letters:
                context = self._context(principal, letters, types)
            else:  # no data access ($validate): any resource scope will do
                context = self._bundle_context(principal)
            if context is None:
                what = target.operation or target.interaction
                on = target.rtype or ",".join(types)
                raise Forbidden(
                    f"The token's scopes ({principal.scopes}) do not allow {what} on {on}"
                )
        reach = self._reach(principal, context)
        consent = principal.is_user and not principal.is_citizen and context != "system"
        rules = type_rules(principal.scopes, context, [t for t in types if t != "*"])
        hidden = hidden_condition(principal) if consent else None
        restrict = restriction(reach, rules, self.store.registry, hidden)
        guard = Guard(self, principal, target, context, reach, rules, restrict, consent)
        if reach.ids and len(reach.ids) == 1 and not reach.everyone and context == "patient":
            guard.patients |= set(reach.ids)
        if target.compartment and target.compartment[0] == "Patient":
            guard.patients.add(target.compartment[1])
        if target.interaction in ("history-type", "history-system") and restrict is not None:
            raise Forbidden(
                "History of a type or of the system is available to backend services only; "
                "search instead"
            )
        op = (target.operation or "").lstrip("$") if target.interaction == "operation" else ""
        if op in ADMINISTRATIVE and not reach.everyone:
            raise Forbidden(f"${op} is an identity-administration operation for backend services")
        elif op in UNFILTERED_OUTPUT and not reach.everyone and (consent or not rules.unlimited):
            raise Forbidden(
                f"${op} returns the whole record: not available to a token limited by consent "
                "or by constrained or per-type scopes; search the compartment instead"
            )
        return guard

    def _bulk(self, principal: Principal, target: Target) -> Guard:
        """Bulk Data export / import (and a job's status and files): backend services only.
        Their output is neither compartment- nor consent-filtered, and a job belongs to a
        client, not to a user, so no user token may start or read one."""
        letters = BULK[target.interaction]
        if target.operation in ("$export", "$import"):
            types = sorted(
                {t.strip() for k, v in target.params if k == "_type" for t in v.split(",")} - {""}
            ) or ["*"]
            ok = all(_allows(principal, "system", t, x) for t in types for x in letters)
        else:  # $bulk-status / $bulk-files of a job (the route checks the job's owner)
            ok = "system" in principal.scopes.contexts()
        if principal.is_user or not ok:
            raise Forbidden(
                f"Bulk Data {target.interaction} is for backend services with system/ scopes "
                f"({'system/*.' + letters if letters == 's' else 'system/*.cud'} or per type)"
            )
        return Guard(self, principal, target, "system", Reach(everyone=True), TypeRules(None), None)
