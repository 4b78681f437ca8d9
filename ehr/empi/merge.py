"""Patient/$merge (the FHIR R5 operation's shape on our R4 store) and its undo.

http://hl7.org/fhir/R5/patient-operation-merge.html ; Provenance:
http://hl7.org/fhir/R4/provenance.html ; Consent: http://hl7.org/fhir/R4/consent.html

:func:`merge` ``(source, target)`` in one transaction:

1. **Consent.** Refused (403) when the source, the target (or, for golden records, any of their
   sources) has an *active* Consent with a ``deny`` provision (at any depth) that carries a
   sensitive label: a ``securityLabel``, ``class`` or ``code`` of the provision, or a
   ``Consent.category``, from :data:`SENSITIVE` (the v3 ActCode information-sensitivity codes
   such as HIV, PSY, ETH, SDV, STD, and the confidentiality codes R and V). Such a citizen asked that this part of
   their record not be shared, and a merge would pour it into another record. ``force=True``
   (a privileged caller who checked) overrides; the override is in the audit record.
2. **References move.** Every current resource that refers to the source (found through the
   reference index: every reference a search parameter covers, so the whole compartment) gets a
   new version in which each ``reference`` to ``Patient/<source>`` (relative, or absolute under
   the store's base URL) names the target. The history keeps the old versions. Left alone:
   AuditEvent and Provenance (records of what happened stay true), golden records (their links
   are the EMPI's, step 4), EMPI review Tasks (the merge answers their question: the source's
   open ones are cancelled, and stay so after an unmerge), and versioned references
   (``Patient/x/_history/3`` pins a version on purpose).
3. **The patients.** The source becomes ``active = false`` with ``link`` ``replaced-by`` the
   target; the target gets ``link`` ``replaces`` the source and the source's identifiers it
   lacks, with ``use = old`` (a search by the source's MRN finds the survivor).
4. **Golden records.** Two hospital records: the source joins the target's golden record (a
   MANUAL link); its former golden record is deleted if that empties it. Two golden records (the
   R5 operation applied to HAPI-style golden resources, cf. ``$mdm-merge-golden-resources``):
   every source of the source golden record moves to the target golden record.
5. **The merge record**: a Provenance (``activity`` ``{EMPI_SYSTEM}|merge``) whose ``target``
   lists every version written, each moved resource's with the JSON pointers it changed
   (:data:`MOVED_EXT`), whose ``entity`` (role ``revision``) are the patients' versions before
   the merge, and whose :data:`MERGE_EXT` names source, target, the source's former golden record
   and, for golden records, the sources moved. Its id is the ``merge_id``. An AuditEvent
   (subtype ``merge``) is written too.

``preview=True`` runs the same steps and rolls the transaction back: the answer is exactly what
the merge would do, and nothing is written.

:func:`unmerge` ``(merge_id)`` undoes one merge: every recorded pointer that still names the
target names the source again (a new version: history is kept; a pointer changed since is left
as it is and reported as a warning), the source gets back its ``active`` and ``link`` of before
the merge, the target loses the ``replaces`` link and the identifiers the merge added, and the
golden links are put back (a deleted golden record is restored under its id). It writes a
Provenance (``activity`` ``unmerge``, ``entity`` the merge Provenance) and an AuditEvent; a
merge is undone once.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import false, select

from ehr.codesystems import CANONICAL_BASE
from ehr.empi.audit import _audit
from ehr.empi.golden import (
    Golden,
    detach,
    golden_of,
    internal,
    move,
    read_golden,
    read_patient,
    system_view,
    write_golden,
)
from ehr.empi.links import (
    EMPI_SYSTEM,
    golden_sources,
    is_golden,
    link_entry,
    link_info,
    new_golden,
    patient_ref_id,
)
from ehr.empi.review import OPEN_STATUSES, REVIEW_CODE
from ehr.errors import BadRequest, Conflict, Forbidden, Issue, NotFound, operation_outcome
from ehr.model import loads
from ehr.search.dates import now_us, us_to_instant
from ehr.search.tables import idx_reference
from ehr.storage.tables import resources
from ehr.store import Store, WriteContext
from ehr.validation import check_id

__all__ = [
    "MERGE_EXT",
    "MOVED_EXT",
    "SENSITIVE",
    "consent_refusals",
    "merge",
    "merge_operation",
    "unmerge",
]

#: on a Provenance.target (valueString, repeating): a JSON pointer whose reference was moved
MOVED_EXT = f"{CANONICAL_BASE}/StructureDefinition/empi-moved-reference"
#: on the merge Provenance: source, target, source-golden, moved-source (valueReference)
MERGE_EXT = f"{CANONICAL_BASE}/StructureDefinition/empi-merge"

V3_ACTCODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
V3_CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
#: v3 ActCode _ActInformationSensitivityPolicy (HIV, mental health, substance use, sexual
#: health, violence ...) plus adolescent, celebrity and patient-requested sensitivity
_SENSITIVE_ACTCODES = [
    "ETH", "GDIS", "HIV", "MST", "SCA", "SDV", "SEX", "SPI", "BH", "COGN", "DVD", "EMOTDIS",
    "MH", "PSY", "PSYTHPN", "SUD", "ETHUD", "OPIOIDUD", "STD", "TBOO", "VIO", "SICKLE",
    "ADOL", "CEL", "PRS",
]  # fmt: skip
#: (system, code) labels that make a denying Consent block a merge
SENSITIVE: frozenset[tuple[str, str]] = frozenset(
    {(V3_ACTCODE, c) for c in _SENSITIVE_ACTCODES}
    | {(V3_CONFIDENTIALITY, "R"), (V3_CONFIDENTIALITY, "V")}
)
_SKIP_TYPES = ("AuditEvent", "Provenance")


class _Preview(Exception):
    def __init__(self, result: dict[str, Any]) -> None:
        super().__init__("preview")
        self.result = result


# --------------------------------------------------------------------------- JSON pointers


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _reference_pointers(node: Any, forms: frozenset[str], path: str = "") -> Iterator[str]:
    if isinstance(node, dict):
        for k, v in node.items():
            here = f"{path}/{_escape(k)}"
            if k == "reference" and isinstance(v, str):
                if v in forms:
                    yield here
            else:
                yield from _reference_pointers(v, forms, here)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _reference_pointers(v, forms, f"{path}/{i}")


def _walk(doc: Any, pointer: str) -> tuple[Any, Any] | None:
    """(container, key) of ``pointer`` in ``doc``; None when the path no longer exists."""
    tokens = [_unescape(t) for t in pointer.split("/")[1:]]
    node = doc
    for t in tokens[:-1]:
        if isinstance(node, list) and t.isdigit() and int(t) < len(node):
            node = node[int(t)]
        elif isinstance(node, dict) and t in node:
            node = node[t]
        else:
            return None
    last = tokens[-1]
    if isinstance(node, dict) and last in node:
        return node, last
    if isinstance(node, list) and last.isdigit() and int(last) < len(node):
        return node, int(last)
    return None


def _forms(store: Store, pid: str) -> frozenset[str]:
    forms = {f"Patient/{pid}"}
    if store.base_url:
        forms.add(f"{store.base_url.rstrip('/')}/Patient/{pid}")
    return frozenset(forms)


def _retarget(value: str, old: str, new: str) -> str:
    return value[: len(value) - len(old)] + new


# ------------------------------------------------------------------------------- consent


def _codings(provision: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for c in (provision.get("securityLabel") or []) + (provision.get("class") or []):
        yield str(c.get("system")), str(c.get("code"))
    for cc in provision.get("code") or ():
        for c in cc.get("coding") or ():
            yield str(c.get("system")), str(c.get("code"))


def _denies_sensitive(provision: dict[str, Any], category_sensitive: bool) -> bool:
    if provision.get("type") == "deny" and (
        category_sensitive or any(c in SENSITIVE for c in _codings(provision))
    ):
        return True
    return any(_denies_sensitive(p, category_sensitive) for p in provision.get("provision") or ())


def consent_refusals(ctx: WriteContext, patient_ids: list[str]) -> list[Issue]:
    """Issues for each active Consent of ``patient_ids`` that denies sharing sensitive data."""
    issues: list[Issue] = []
    refs = ",".join(f"Patient/{p}" for p in patient_ids)
    for row in ctx.match("Consent", [("patient", refs), ("status", "active")], limit=100):
        if row.data is None:
            continue
        consent = loads(row.data)
        category = any(
            (str(c.get("system")), str(c.get("code"))) in SENSITIVE
            for cc in consent.get("category") or ()
            for c in cc.get("coding") or ()
        )
        provision = consent.get("provision")
        if isinstance(provision, dict) and _denies_sensitive(provision, category):
            who = (consent.get("patient") or {}).get("reference", "?")
            issues.append(
                Issue(
                    "forbidden",
                    f"Consent/{row.rid} of {who} denies sharing sensitive data: a merge would "
                    "expose it (force=true overrides)",
                )
            )
    return issues


# --------------------------------------------------------------------------------- merge


@dataclass
class _Moved:
    rtype: str
    rid: str
    version: int
    pointers: list[str] = field(default_factory=list)


def _referring(ctx: WriteContext, pid: str) -> list[tuple[str, str]]:
    ref, r = idx_reference.alias("ref"), resources.alias("r")
    stmt = (
        select(r.c.rtype, r.c.rid)
        .distinct()
        .select_from(ref.join(r, r.c.pk == ref.c.pk))
        .where(
            ref.c.target_type == "Patient",
            ref.c.target_id == pid,
            r.c.deleted == false(),
            r.c.rtype.not_in(_SKIP_TYPES),
        )
        .order_by(r.c.rtype, r.c.rid)
    )
    return [(str(t), str(i)) for t, i in ctx.conn.execute(stmt)]


def _move_references(ctx: WriteContext, source: str, target: str, skip: set[str]) -> list[_Moved]:
    forms = _forms(ctx.store, source)
    moved: list[_Moved] = []
    for rtype, rid in _referring(ctx, source):
        if rtype == "Patient" and rid in skip:
            continue
        cur = ctx.repo.current(rtype, rid, lock=True)
        if cur is None or cur.deleted or cur.data is None:
            continue
        data = loads(cur.data)
        if (rtype == "Patient" and is_golden(data)) or (rtype == "Task" and _is_review(data)):
            continue
        pointers = list(_reference_pointers(data, forms))
        if not pointers:
            continue
        for p in pointers:
            found = _walk(data, p)
            assert found is not None
            container, key = found
            container[key] = _retarget(container[key], source, target)
        res = ctx.update(rtype, rid, data, if_match=cur.version, validate=False)
        moved.append(_Moved(rtype, rid, res.version, pointers))
    return moved


def _is_review(task: dict[str, Any]) -> bool:
    return any(
        c.get("system") == REVIEW_CODE["system"] and c.get("code") == REVIEW_CODE["code"]
        for c in (task.get("code") or {}).get("coding") or ()
    )


def _cancel_reviews(ctx: WriteContext, source_id: str, target_id: str) -> None:
    """The merge answers the identity question of the source's open review Tasks."""
    for row in ctx.match(
        "Task",
        [("focus", f"Patient/{source_id}"), ("code", f"{REVIEW_CODE['system']}|{REVIEW_CODE['code']}"),
         ("status", ",".join(OPEN_STATUSES))],
        limit=20,
    ):  # fmt: skip
        if row.data is not None:
            task = loads(row.data)
            task["status"] = "cancelled"
            task["statusReason"] = {
                "text": f"Patient/{source_id} was merged into Patient/{target_id}"
            }
            ctx.update("Task", row.rid, task, if_match=row.version, validate=False)


def _patient(ctx: WriteContext, pid: str, role: str) -> tuple[int, dict[str, Any]]:
    check_id(pid)
    got = read_patient(ctx, pid)
    if got is None:
        raise NotFound(f"The {role} patient Patient/{pid} does not exist")
    if any(link.get("type") == "replaced-by" for link in got[1].get("link") or ()):
        raise Conflict(f"The {role} patient Patient/{pid} was already merged into another one")
    return got


def _ref(pid: str) -> dict[str, str]:
    return {"reference": f"Patient/{pid}"}


def _mark_merged(
    source: dict[str, Any], target: dict[str, Any], source_id: str, target_id: str
) -> None:
    source["active"] = False
    if is_golden(source):
        source["link"] = [{"other": _ref(target_id), "type": "replaced-by"}]
    else:
        source["link"] = [
            *(source.get("link") or []),
            {"other": _ref(target_id), "type": "replaced-by"},
        ]
    target["link"] = [*(target.get("link") or []), {"other": _ref(source_id), "type": "replaces"}]
    have = {(i.get("system"), i.get("value")) for i in target.get("identifier") or ()}
    for ident in source.get("identifier") or ():
        if (ident.get("system"), ident.get("value")) not in have:
            target.setdefault("identifier", []).append({**copy.deepcopy(ident), "use": "old"})


def _agent(by: str | None) -> list[dict[str, Any]]:
    return [{"who": {"reference": by} if by else {"display": "EMPI"}}]


def _merge_in(
    ctx: WriteContext, source_id: str, target_id: str, *, force: bool, by: str | None
) -> tuple[dict[str, Any], str, int, list[Issue]]:
    if source_id == target_id:
        raise BadRequest("The source and the target patient are the same", "invalid")
    sv, source = _patient(ctx, source_id, "source")
    tv, target = _patient(ctx, target_id, "target")
    goldens = is_golden(source), is_golden(target)
    if goldens[0] != goldens[1]:
        raise BadRequest("Merge two golden records or two source patients, not one of each")
    both_golden = goldens[0]
    involved = [source_id, target_id]
    if both_golden:
        involved += golden_sources(source) + golden_sources(target)
    with system_view():
        refusals = consent_refusals(ctx, involved)
    if refusals and not force:
        raise Forbidden(refusals[0].diagnostics, issues=refusals)
    notes = [Issue("informational", i.diagnostics + " (overridden)", "warning") for i in refusals]

    moved = _move_references(ctx, source_id, target_id, {source_id, target_id})
    with system_view():
        _cancel_reviews(ctx, source_id, target_id)
    moved_sources = [(s, link_info(source, s) or {}) for s in golden_sources(source)]
    _mark_merged(source, target, source_id, target_id)
    record: list[dict[str, Any]] = [{"url": "source", "valueReference": _ref(source_id)},
                                    {"url": "target", "valueReference": _ref(target_id)}]  # fmt: skip
    with internal(ctx):
        if both_golden:
            src_res = ctx.update("Patient", source_id, source, if_match=sv, validate=False)
            g = Golden(target_id, tv, target)
            for s, info in moved_sources:
                g.data["link"] = [
                    *(g.data.get("link") or []),
                    link_entry(s, grade=str(info.get("match-grade") or "certain"), manual=True,
                               explanation=f"merged from golden record Patient/{source_id}"),
                ]  # fmt: skip
                record.append({"url": "moved-source", "valueReference": _ref(s)})
            write_golden(ctx, g)
            tgt_version = g.version
        else:
            src_res = ctx.update("Patient", source_id, source, if_match=sv, validate=False)
            tgt_version = ctx.update(
                "Patient", target_id, target, if_match=tv, validate=False
            ).version
            gs, gt = golden_of(ctx, source_id), golden_of(ctx, target_id)
            if gs is not None and gt is not None and gs != gt:
                link = link_entry(
                    source_id,
                    grade="certain",
                    manual=True,
                    explanation=f"merged into Patient/{target_id}",
                )
                move(ctx, source_id, gt, link)
                record.append({"url": "source-golden", "valueReference": _ref(gs)})

    now = us_to_instant(now_us())
    targets = [
        {
            "extension": [{"url": MOVED_EXT, "valueString": p} for p in m.pointers],
            "reference": f"{m.rtype}/{m.rid}/_history/{m.version}",
        }
        for m in moved
    ]
    targets += [
        {"reference": f"Patient/{source_id}/_history/{src_res.version}"},
        {"reference": f"Patient/{target_id}/_history/{tgt_version}"},
    ]
    provenance = {
        "resourceType": "Provenance",
        "extension": [{"url": MERGE_EXT, "extension": record}],
        "target": targets,
        "recorded": now,
        "activity": {
            "coding": [{"system": EMPI_SYSTEM, "code": "merge", "display": "Patient merge"}]
        },
        "agent": _agent(by),
        "entity": [
            {"role": "revision", "what": {"reference": f"Patient/{source_id}/_history/{sv}"}},
            {"role": "revision", "what": {"reference": f"Patient/{target_id}/_history/{tv}"}},
        ],
    }
    merge_id = ctx.create(provenance, validate=False).rid
    _audit(
        ctx, "merge", [source_id, target_id], by=by, record=f"Provenance/{merge_id}",
        description=f"Patient/{source_id} merged into Patient/{target_id}; {len(moved)} resources moved"
        + ("; consent refusal overridden (force)" if refusals else ""),
    )  # fmt: skip
    final = read_patient(ctx, target_id, lock=False)
    assert final is not None
    return final[1], merge_id, len(moved), notes


def merge(
    store: Store,
    source_id: str,
    target_id: str,
    *,
    preview: bool = False,
    force: bool = False,
    by: str | None = None,
) -> dict[str, Any]:
    """Merge Patient ``source_id`` into ``target_id`` (see the module docstring). Returns the
    R5 ``$merge`` output Parameters: ``outcome`` (OperationOutcome), ``result`` (the target
    after the merge) and, unless ``preview``, ``merge-record`` (the Provenance, whose id
    :func:`unmerge` takes)."""
    try:
        with store.write() as ctx:
            result, merge_id, n, notes = _merge_in(ctx, source_id, target_id, force=force, by=by)
            if preview:
                raise _Preview(_parameters(result, None, n, notes, preview=True))
    except _Preview as p:
        return p.result
    return _parameters(result, merge_id, n, notes, preview=False)


def _parameters(
    result: dict[str, Any], merge_id: str | None, n: int, notes: list[Issue], *, preview: bool
) -> dict[str, Any]:
    verb = "would be" if preview else "were"
    info = Issue(
        "informational",
        f"Merge {'preview' if preview else 'done'}: {n} resources {verb} moved",
        "information",
    )
    params: list[dict[str, Any]] = [
        {"name": "outcome", "resource": operation_outcome([info, *notes])},
        {"name": "result", "resource": result},
    ]
    if merge_id is not None:
        params.append(
            {"name": "merge-record", "valueReference": {"reference": f"Provenance/{merge_id}"}}
        )
    return {"resourceType": "Parameters", "parameter": params}


# ------------------------------------------------------------------------------- unmerge


def _record(prov: dict[str, Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for e in prov.get("extension") or ():
        if e.get("url") == MERGE_EXT:
            for part in e.get("extension") or ():
                pid = patient_ref_id(part.get("valueReference"))
                if pid:
                    out.setdefault(str(part.get("url")), []).append(pid)
    return out


def _version_of(prov: dict[str, Any], pid: str) -> int:
    for ent in prov.get("entity") or ():
        ref = str((ent.get("what") or {}).get("reference") or "")
        if ref.startswith(f"Patient/{pid}/_history/"):
            return int(ref.rsplit("/", 1)[1])
    raise Conflict(f"The merge record has no version of Patient/{pid}")


def unmerge(store: Store, merge_id: str, *, by: str | None = None) -> dict[str, Any]:
    """Undo the merge recorded by ``Provenance/merge_id``. Returns Parameters: ``outcome``
    (with a warning per reference changed since the merge and left alone), ``result`` (the
    restored source patient) and ``merge-record`` (the unmerge Provenance)."""
    check_id(merge_id)
    with store.write() as ctx:
        cur = ctx.repo.current("Provenance", merge_id, lock=True)
        if cur is None or cur.deleted or cur.data is None:
            raise NotFound(f"Provenance/{merge_id} not found")
        prov = loads(cur.data)
        codes = {c.get("code") for c in (prov.get("activity") or {}).get("coding") or ()}
        rec = _record(prov)
        if "merge" not in codes or not rec.get("source") or not rec.get("target"):
            raise BadRequest(f"Provenance/{merge_id} is not a merge record")
        ctx.lock_condition("Provenance", [("entity", f"Provenance/{merge_id}")])
        with system_view():
            undone = ctx.match("Provenance", [("entity", f"Provenance/{merge_id}")], limit=1)
        if undone:
            raise Conflict(f"The merge Provenance/{merge_id} was already undone")
        source_id, target_id = rec["source"][0], rec["target"][0]
        warnings: list[Issue] = []
        written: list[str] = []
        with internal(ctx):
            for t in prov.get("target") or ():
                pointers = [
                    e.get("valueString")
                    for e in t.get("extension") or ()
                    if e.get("url") == MOVED_EXT
                ]
                if not pointers:
                    continue
                rtype, rid = str(t.get("reference")).split("/")[:2]
                row = ctx.repo.current(rtype, rid, lock=True)
                if row is None or row.deleted or row.data is None:
                    warnings.append(
                        Issue("deleted", f"{rtype}/{rid} was deleted since the merge", "warning")
                    )
                    continue
                data = loads(row.data)
                target_forms = _forms(store, target_id)
                changed = False
                for p in pointers:
                    found = _walk(data, str(p))
                    if found is not None and found[0][found[1]] in target_forms:
                        container, key = found
                        container[key] = _retarget(container[key], target_id, source_id)
                        changed = True
                    else:
                        warnings.append(
                            Issue(
                                "conflict",
                                f"{rtype}/{rid}{p} changed since the merge: left as it is",
                                "warning",
                            )
                        )
                if changed:
                    res = ctx.update(rtype, rid, data, if_match=row.version, validate=False)
                    written.append(f"{rtype}/{rid}/_history/{res.version}")
            written += _restore_patients(ctx, prov, rec, source_id, target_id)
        unmerge_prov = {
            "resourceType": "Provenance",
            "target": [{"reference": r} for r in written],
            "recorded": us_to_instant(now_us()),
            "activity": {
                "coding": [{"system": EMPI_SYSTEM, "code": "unmerge", "display": "Patient unmerge"}]
            },
            "agent": _agent(by),
            "entity": [{"role": "source", "what": {"reference": f"Provenance/{merge_id}"}}],
        }
        unmerge_id = ctx.create(unmerge_prov, validate=False).rid
        _audit(
            ctx, "unmerge", [source_id, target_id], by=by, record=f"Provenance/{unmerge_id}",
            description=f"Merge Provenance/{merge_id} of Patient/{source_id} into Patient/{target_id} undone",
        )  # fmt: skip
        restored = read_patient(ctx, source_id, lock=False)
    info = Issue("informational", f"Unmerge done: {len(written)} resources restored", "information")
    params: list[dict[str, Any]] = [
        {"name": "outcome", "resource": operation_outcome([info, *warnings])},
        {"name": "merge-record", "valueReference": {"reference": f"Provenance/{unmerge_id}"}},
    ]
    if restored is not None:
        params.insert(1, {"name": "result", "resource": restored[1]})
    return {"resourceType": "Parameters", "parameter": params}


def _restore_patients(
    ctx: WriteContext,
    prov: dict[str, Any],
    rec: dict[str, list[str]],
    source_id: str,
    target_id: str,
) -> list[str]:
    before = {
        pid: loads(ctx.repo.version("Patient", pid, _version_of(prov, pid))[2] or b"{}")  # type: ignore[index]
        for pid in (source_id, target_id)
    }
    got_s, got_t = read_patient(ctx, source_id), read_patient(ctx, target_id)
    if got_s is None or got_t is None:
        raise Conflict("The merged patients no longer both exist: the merge cannot be undone")
    (sv, source), (tv, target) = got_s, got_t
    for key in ("active", "link"):
        if key in before[source_id]:
            source[key] = before[source_id][key]
        else:
            source.pop(key, None)
    target["link"] = [
        link
        for link in target.get("link") or ()
        if not (link.get("type") == "replaces" and patient_ref_id(link.get("other")) == source_id)
    ] or None
    if target["link"] is None:
        del target["link"]
    had = {(i.get("system"), i.get("value")) for i in before[target_id].get("identifier") or ()}
    from_source = {
        (i.get("system"), i.get("value")) for i in before[source_id].get("identifier") or ()
    }
    idents = [
        i
        for i in target.get("identifier") or ()
        if not (
            i.get("use") == "old"
            and (i.get("system"), i.get("value")) in from_source
            and (i.get("system"), i.get("value")) not in had
        )
    ]
    if idents:
        target["identifier"] = idents
    else:
        target.pop("identifier", None)
    if is_golden(source):
        moved = [s for s in rec.get("moved-source", []) if golden_of(ctx, s) == target_id]
        target["link"] = [
            link
            for link in target.get("link") or ()
            if not (link.get("type") == "seealso" and patient_ref_id(link.get("other")) in moved)
        ]
        keep = set(moved)
        source["link"] = [
            link
            for link in source.get("link") or ()
            if link.get("type") != "seealso" or patient_ref_id(link.get("other")) in keep
        ]
        g_src = Golden(source_id, sv, source)
        write_golden(ctx, g_src)
        g_tgt = Golden(target_id, tv, target)
        write_golden(ctx, g_tgt)
        return [
            f"Patient/{source_id}/_history/{g_src.version}",
            f"Patient/{target_id}/_history/{g_tgt.version}",
        ]
    s_ver = ctx.update("Patient", source_id, source, if_match=sv, validate=False).version
    t_ver = ctx.update("Patient", target_id, target, if_match=tv, validate=False).version
    written = [f"Patient/{source_id}/_history/{s_ver}", f"Patient/{target_id}/_history/{t_ver}"]
    former = rec.get("source-golden", [None])[0]
    now = golden_of(ctx, source_id)
    if former is not None and now != former:
        link = link_entry(
            source_id,
            grade="certain",
            manual=True,
            explanation=f"unmerged from Patient/{target_id}",
        )
        if read_golden(ctx, former) is not None:
            move(ctx, source_id, former, link)
        else:
            if now is not None:
                detach(ctx, source_id, now)
            src = read_patient(ctx, source_id, lock=False)
            assert src is not None
            restored = new_golden([link], [src[1]])
            ctx.update("Patient", former, restored, validate=False)
        written.append(f"Patient/{former}")
    return written


# ------------------------------------------------------------------------ the operation


def _param(params: dict[str, Any], name: str) -> dict[str, Any] | None:
    for p in params.get("parameter") or ():
        if p.get("name") == name:
            return p  # type: ignore[no-any-return]
    return None


def _resolve_patient(ctx_store: Store, params: dict[str, Any], role: str) -> str:
    ref = _param(params, f"{role}-patient")
    if ref is not None:
        pid = patient_ref_id(ref.get("valueReference"))
        if pid is None:
            raise BadRequest(f"{role}-patient must be a reference to a Patient", "value")
        return pid
    ident = _param(params, f"{role}-patient-identifier")
    if ident is None:
        raise BadRequest(f"{role}-patient or {role}-patient-identifier is required", "required")
    value = ident.get("valueIdentifier") or {}
    if not value.get("value"):
        raise BadRequest(f"{role}-patient-identifier needs a value", "value")
    token = (
        f"{value.get('system')}|{value['value']}" if value.get("system") else str(value["value"])
    )
    page = ctx_store.search("Patient", [("identifier", token), ("_count", "2")])
    if len(page.matches) != 1:
        raise Conflict(
            f"{role}-patient-identifier matches {len(page.matches) or 'no'} patient(s); exactly one is needed",
            "multiple-matches" if page.matches else "not-found",
        )
    return str(page.matches[0].rid)


def merge_operation(
    store: Store, parameters: dict[str, Any], *, by: str | None = None
) -> dict[str, Any]:
    """``POST Patient/$merge`` with the R5 input Parameters (``source-patient`` /
    ``source-patient-identifier``, ``target-patient`` / ``target-patient-identifier``,
    ``preview``; ``force`` is ours). ``result-patient`` is not supported (400)."""
    if not isinstance(parameters, dict) or parameters.get("resourceType") != "Parameters":
        raise BadRequest("$merge takes a Parameters resource", "structure")
    if _param(parameters, "result-patient") is not None:
        raise BadRequest(
            "result-patient is not supported: the target is kept as it is", "not-supported"
        )
    source = _resolve_patient(store, parameters, "source")
    target = _resolve_patient(store, parameters, "target")
    preview = bool((_param(parameters, "preview") or {}).get("valueBoolean", False))
    force = bool((_param(parameters, "force") or {}).get("valueBoolean", False))
    out = merge(store, source, target, preview=preview, force=force, by=by)
    out["parameter"].insert(0, {"name": "input", "resource": parameters})
    return out
