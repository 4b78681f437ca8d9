"""The review queue: a FHIR Task per registration that *possibly* matches someone.

Task: http://hl7.org/fhir/R4/task.html ; match grades:
http://hl7.org/fhir/R4/extension-match-grade.html

A review Task has ``code`` :data:`REVIEW_CODE` (``empi-review``), ``status`` ``ready``, ``intent``
``proposal``, ``focus`` and ``for`` the source Patient, and one ``input`` per candidate golden
record::

    {"type": {"coding": [{"system": EMPI_SYSTEM, "code": "candidate"}]},
     "valueReference": {"reference": "Patient/<golden>"},
     "extension": [{"url": MATCH_GRADE_EXT, "valueCode": "possible"},
                   {"url": SCORE_EXT, "valueDecimal": 0.93},
                   {"url": EXPLANATION_EXT, "valueString": "possible +19.2 bits: name=typo …"},
                   {"url": MATCHED_SOURCE_EXT, "valueReference": {"reference": "Patient/<src>"}}]}

While the Task is open, the source Patient has a golden record of its own (every source has
exactly one). One open Task per source: a later update that raises new candidates adds them to
the open Task. :func:`resolve_review` closes it (``completed``) with ``output`` ``decision``
(``match`` | ``no-match``) and, for a match, the golden record chosen:

- ``match``: the source moves to the chosen golden record (a MANUAL link); its own golden record
  is deleted if that leaves it empty;
- ``no-match``: every candidate golden record records the decision (``empi-no-match``), so
  automatic matching never proposes or links that pair again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ehr.codesystems import CANONICAL_BASE
from ehr.empi.audit import _audit
from ehr.empi.candidates import Candidate
from ehr.empi.golden import move, read_golden, resolve_golden, set_no_match, write_golden
from ehr.empi.links import (
    EMPI_SYSTEM,
    EXPLANATION_EXT,
    MATCH_GRADE_EXT,
    link_entry,
    patient_ref_id,
)
from ehr.errors import BadRequest, Conflict, NotFound
from ehr.model import loads
from ehr.search.dates import now_us, us_to_instant
from ehr.store import Store, WriteContext

__all__ = [
    "DECISIONS",
    "MATCHED_SOURCE_EXT",
    "REVIEW_CODE",
    "SCORE_EXT",
    "raise_review",
    "resolve_review",
    "review_tasks",
]

REVIEW_CODE = {
    "system": EMPI_SYSTEM,
    "code": "empi-review",
    "display": "EMPI possible-match review",
}
#: valueDecimal: the match score, 0..1 (``Bundle.entry.search.score`` in ``$match``)
SCORE_EXT = f"{CANONICAL_BASE}/StructureDefinition/empi-match-score"
#: valueReference: the candidate golden record's source Patient that scored best
MATCHED_SOURCE_EXT = f"{CANONICAL_BASE}/StructureDefinition/empi-matched-source"
OPEN_STATUSES = ("requested", "ready", "in-progress")
DECISIONS = ("match", "no-match")


def _coding(code: str) -> dict[str, Any]:
    return {"coding": [{"system": EMPI_SYSTEM, "code": code}]}


def candidate_input(c: Candidate) -> dict[str, Any]:
    return {
        "extension": [
            {"url": MATCH_GRADE_EXT, "valueCode": c.grade},
            {"url": SCORE_EXT, "valueDecimal": c.score.probability},
            {"url": EXPLANATION_EXT, "valueString": c.score.explain()},
            {"url": MATCHED_SOURCE_EXT, "valueReference": {"reference": f"Patient/{c.source_id}"}},
        ],
        "type": _coding("candidate"),
        "valueReference": {"reference": f"Patient/{c.key}"},
    }


def _candidate_ids(task: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for item in task.get("input") or ():
        codes = {c.get("code") for c in (item.get("type") or {}).get("coding") or ()}
        pid = patient_ref_id(item.get("valueReference"))
        if "candidate" in codes and pid and pid not in out:
            out.append(pid)
    return out


def _input_of(task: dict[str, Any], pid: str) -> dict[str, Any] | None:
    for item in task.get("input") or ():
        if patient_ref_id(item.get("valueReference")) == pid:
            return item  # type: ignore[no-any-return]
    return None


def _ext(item: dict[str, Any] | None, url: str) -> Any:
    for e in (item or {}).get("extension") or ():
        if e.get("url") == url:
            return next((v for k, v in e.items() if k.startswith("value")), None)
    return None


def _open_task(ctx: WriteContext, source_id: str) -> tuple[str, int, dict[str, Any]] | None:
    found = ctx.match(
        "Task",
        [
            ("focus", f"Patient/{source_id}"),
            ("code", f"{EMPI_SYSTEM}|empi-review"),
            ("status", ",".join(OPEN_STATUSES)),
        ],
        limit=1,
    )
    if not found or found[0].data is None:
        return None
    return found[0].rid, found[0].version, loads(found[0].data)


def raise_review(
    ctx: WriteContext,
    source_id: str,
    candidates: Sequence[Candidate],
    *,
    reason: str,
    new_id: bool = False,
) -> str:
    """Open (or extend) the review Task of ``source_id`` with ``candidates``; its id.
    ``new_id``: the Patient's id was assigned by the server in this transaction, so it has no
    Task yet (none is looked for)."""
    now = us_to_instant(now_us())
    inputs = [candidate_input(c) for c in candidates]
    existing = None if new_id else _open_task(ctx, source_id)
    if existing is not None:
        rid, version, held = existing
        fresh = {c.key for c in candidates}
        kept = [
            i
            for i in held.get("input") or ()
            if patient_ref_id(i.get("valueReference")) not in fresh
        ]
        held["input"] = kept + inputs
        held["lastModified"] = now
        ctx.update("Task", rid, held, if_match=version, validate=False)
        return rid
    task: dict[str, Any] = {
        "resourceType": "Task",
        "status": "ready",
        "intent": "proposal",
        "priority": "routine",
        "code": {"coding": [dict(REVIEW_CODE)], "text": "EMPI possible match"},
        "description": reason,
        "focus": {"reference": f"Patient/{source_id}"},
        "for": {"reference": f"Patient/{source_id}"},
        "authoredOn": now,
        "lastModified": now,
        "input": inputs,
    }
    return ctx.create(task, validate=False).rid


def review_tasks(
    store: Store, *, count: int = 100, patient_id: str | None = None
) -> list[dict[str, Any]]:
    """The open review Tasks, oldest first (``patient_id``: only those about that Patient)."""
    params = [
        ("code", f"{EMPI_SYSTEM}|empi-review"),
        ("status", ",".join(OPEN_STATUSES)),
        ("_sort", "_lastUpdated"),
        ("_count", str(count)),
    ]
    if patient_id:
        params.append(("focus", f"Patient/{patient_id}"))
    page = store.search("Task", params)
    return [loads(hit.data) for hit in page.matches]


def resolve_review(
    store: Store,
    task_id: str,
    decision: str,
    *,
    golden_id: str | None = None,
    by: str | None = None,
    note: str | None = None,
) -> dict[str, Any]:
    """Close review Task ``task_id`` with ``decision`` ``match`` (link the Patient under review
    to ``golden_id``, a golden record or a source of one; optional when the Task has one
    candidate) or ``no-match``. Returns the completed Task."""
    if decision not in DECISIONS:
        raise BadRequest(f"decision must be one of {', '.join(DECISIONS)}", "value")
    with store.write() as ctx:
        cur = ctx.repo.current("Task", task_id, lock=True)
        if cur is None or cur.deleted or cur.data is None:
            raise NotFound(f"Task/{task_id} not found")
        task = loads(cur.data)
        codes = {c.get("code") for c in (task.get("code") or {}).get("coding") or ()}
        if "empi-review" not in codes:
            raise BadRequest(f"Task/{task_id} is not an EMPI review task")
        if task.get("status") not in OPEN_STATUSES:
            raise Conflict(f"Task/{task_id} is already {task.get('status')}")
        source_id = patient_ref_id(task.get("focus"))
        if source_id is None:
            raise Conflict(f"Task/{task_id} has no Patient focus")
        candidates = _candidate_ids(task)
        outputs: list[dict[str, Any]] = [{"type": _coding("decision"), "valueCode": decision}]
        if decision == "match":
            chosen = golden_id or (candidates[0] if len(candidates) == 1 else None)
            if chosen is None:
                raise BadRequest(
                    "Several candidates: say which golden record (golden_id)", "required"
                )
            target = resolve_golden(ctx, chosen)
            item = _input_of(task, chosen) or _input_of(task, target)
            score = _ext(item, SCORE_EXT)
            link = link_entry(
                source_id,
                grade=str(_ext(item, MATCH_GRADE_EXT) or "possible"),
                manual=True,
                score=float(score) if score is not None else None,
                explanation=_ext(item, EXPLANATION_EXT),
            )
            previous = move(ctx, source_id, target, link)
            outputs.append(
                {
                    "type": _coding("golden-record"),
                    "valueReference": {"reference": f"Patient/{target}"},
                }
            )
            _audit(
                ctx, "link", [source_id, target, *([previous] if previous else [])], by=by,
                description=f"Review Task/{task_id}: Patient/{source_id} is Patient/{target}",
                record=f"Task/{task_id}",
            )  # fmt: skip
        else:
            decided = []
            for pid in candidates:
                try:
                    gid = resolve_golden(ctx, pid)
                except (NotFound, Conflict):
                    continue  # the candidate is gone or merged: nothing to record
                g = read_golden(ctx, gid)
                if g is None or source_id in g.sources:
                    continue
                set_no_match(g.data, source_id, True)
                write_golden(ctx, g)
                decided.append(gid)
            _audit(
                ctx, "no-match", [source_id, *decided], by=by,
                description=f"Review Task/{task_id}: Patient/{source_id} is none of the candidates",
                record=f"Task/{task_id}",
            )  # fmt: skip
        now = us_to_instant(now_us())
        task["status"] = "completed"
        task["businessStatus"] = {
            "text": "linked" if decision == "match" else "not the same person"
        }
        task["output"] = outputs
        task["lastModified"] = now
        if by:
            task["owner"] = {"reference": by}
        if note:
            task["note"] = [*(task.get("note") or []), {"text": note, "time": now}]
        res = ctx.update("Task", task_id, task, if_match=cur.version, validate=False)
    return loads(res.data) if res.data else task
