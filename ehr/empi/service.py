"""The EMPI service: one citizen, one record (issue 9). Store-level functions; no HTTP.

Patient/$match: http://hl7.org/fhir/R4/patient-operation-match.html ; Patient/$merge (R5):
http://hl7.org/fhir/R5/patient-operation-merge.html ; Patient.link:
http://hl7.org/fhir/R4/patient-definitions.html#Patient.link ; HAPI FHIR MDM (golden resources,
link states, ``:mdm`` search expansion): https://hapifhir.io/hapi-fhir/docs/server_jpa_mdm/mdm.html

    from ehr.empi.service import install, patient_match, link, unlink, merge, unmerge
    empi = install(store)                  # the write hook: every Patient write is matched
    store.create(patient)                  # -> linked to a golden record (or a review Task)
    patient_match(store, {"resourceType": "Patient", ...})       # $match Bundle
    merge(store, "dup", "keep"); unmerge(store, merge_id)
    linked_patient_ids(store, golden_id)  # for $everything on a golden record

Modules: :mod:`ehr.empi.links` (the FHIR shape: golden records, links, survivorship),
:mod:`ehr.empi.hook` (matching on every write, concurrency), :mod:`ehr.empi.candidates`
(blocking rows and scoring in the database), :mod:`ehr.empi.review` (the Task queue),
:mod:`ehr.empi.merge` ($merge, unmerge, consent), :mod:`ehr.empi.match` ($match),
:mod:`ehr.empi.audit` (AuditEvent per identity change).

**Searches and $everything across a citizen's records.** A golden record has no clinical data
of its own: the hospitals' records hold it. :func:`linked_patient_ids` gives the Patient ids
whose records make up a patient's record: for a golden record, itself and all its sources; for
a hospital record, itself (and the duplicates merged into it), so a hospital's own view is
unchanged. ``$everything`` on a golden record passes these as ``patient_ids``
(:func:`ehr.operations.everything.everything_page`). :func:`expand_search_params` rewrites a
search so that ``Patient/<golden>`` in a reference parameter (or any ``Patient/x`` with the HAPI
``:mdm`` modifier, e.g. ``Observation?subject:mdm=Patient/x``) means every record of that
citizen.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import false, select

from ehr.empi.audit import _audit
from ehr.empi.golden import (
    create_golden,
    detach,
    golden_of,
    move,
    read_golden,
    read_patient,
    resolve_golden,
)
from ehr.empi.hook import Empi, get_empi, install
from ehr.empi.links import (
    golden_ids_of,
    golden_sources,
    is_golden,
    link_entry,
    link_info,
    load_patients,
    patient_ref_id,
    referring_patients,
)
from ehr.empi.match import match_operation, patient_match
from ehr.empi.merge import merge, merge_operation, unmerge
from ehr.empi.review import resolve_review, review_tasks
from ehr.errors import BadRequest, Conflict, Gone, NotFound
from ehr.storage.repository import Repository
from ehr.storage.tables import resources
from ehr.store import Store
from ehr.validation import check_id

__all__ = [
    "Empi",
    "backfill",
    "expand_search_params",
    "get_empi",
    "golden_record_id",
    "install",
    "link",
    "linked_patient_ids",
    "match_operation",
    "merge",
    "merge_operation",
    "patient_match",
    "person_patient_ids",
    "resolve_review",
    "review_tasks",
    "unlink",
    "unmerge",
]


# ------------------------------------------------------------------------------ lookups


def _current_patient(store: Store, patient_id: str) -> dict[str, Any]:
    check_id(patient_id)
    with store.read_conn() as conn:
        cur = Repository(conn).current("Patient", patient_id)
    if cur is None:
        raise NotFound(f"Patient/{patient_id} not found")
    if cur.deleted or cur.data is None:
        raise Gone(f"Patient/{patient_id} was deleted")
    return orjson.loads(cur.data)  # type: ignore[no-any-return]


def golden_record_id(store: Store, patient_id: str) -> str | None:
    """The golden record of ``patient_id`` (itself if it is one); None if it has none."""
    data = _current_patient(store, patient_id)
    if is_golden(data):
        return patient_id
    with store.read_conn() as conn:
        return golden_ids_of(conn, [patient_id]).get(patient_id)


def linked_patient_ids(store: Store, patient_id: str) -> list[str]:
    """The Patient ids whose records make up ``patient_id``'s record, ``patient_id`` first:
    a golden record spans all its sources; a hospital's record is itself plus the duplicates
    merged into it (``replaced-by`` it). 404 / 410 for an unknown or deleted Patient."""
    data = _current_patient(store, patient_id)
    ids = [patient_id]
    if is_golden(data):
        ids += [s for s in golden_sources(data) if s not in ids]
    with store.read_conn() as conn:
        for pid in list(ids):
            refs = [r for r in referring_patients(conn, pid) if r not in ids]
            for rid, (_, _, other) in load_patients(conn, refs).items():
                if not is_golden(other) and any(
                    link.get("type") == "replaced-by" and patient_ref_id(link.get("other")) == pid
                    for link in other.get("link") or ()
                ):
                    ids.append(rid)
    return ids


def person_patient_ids(store: Store, patient_id: str) -> list[str]:
    """Every Patient id of the citizen ``patient_id`` belongs to: its golden record and all the
    golden record's sources (``patient_id`` first)."""
    gid = golden_record_id(store, patient_id)
    if gid is None:
        return linked_patient_ids(store, patient_id)
    ids = [patient_id, *linked_patient_ids(store, gid)]
    return list(dict.fromkeys(ids))


def expand_search_params(store: Store, params: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """Search parameters with citizen-wide Patient references expanded (HAPI MDM style):

    - ``name:mdm=Patient/x[,…]``: the modifier is dropped and each value becomes every record
      of that citizen (:func:`person_patient_ids`);
    - ``name=Patient/<golden>`` (no modifier): the golden record's :func:`linked_patient_ids`.

    Other parameters, and ``link`` (which is about the golden records themselves), pass as they
    are. The caller applies its access rules to the expanded list."""
    values: set[str] = set()
    for name, value in params:
        if not name.startswith("_") and name.split(":", 1)[0] != "link":
            values.update(v[len("Patient/") :] for v in value.split(",") if _is_patient_ref(v))
    with store.read_conn() as conn:
        rows = load_patients(conn, values)
    goldens = {pid for pid, (_, _, data) in rows.items() if is_golden(data)}
    out: list[tuple[str, str]] = []
    for name, value in params:
        base, _, modifier = name.partition(":")
        if modifier == "mdm":
            ids: list[str] = []
            for v in value.split(","):
                if not _is_patient_ref(v):
                    raise BadRequest(f"{name}: ':mdm' takes Patient references ({v!r})", "value")
                ids += person_patient_ids(store, v[len("Patient/") :])
            out.append((base, ",".join(f"Patient/{i}" for i in dict.fromkeys(ids))))
        elif (
            base != "link"
            and not name.startswith("_")
            and any(
                _is_patient_ref(v) and v[len("Patient/") :] in goldens for v in value.split(",")
            )
        ):
            expanded: list[str] = []
            for v in value.split(","):
                if _is_patient_ref(v) and v[len("Patient/") :] in goldens:
                    expanded += [
                        f"Patient/{i}" for i in linked_patient_ids(store, v[len("Patient/") :])
                    ]
                else:
                    expanded.append(v)
            out.append((name, ",".join(dict.fromkeys(expanded))))
        else:
            out.append((name, value))
    return out


def _is_patient_ref(v: str) -> bool:
    return v.startswith("Patient/") and v.count("/") == 1 and len(v) > len("Patient/")


# ------------------------------------------------------------------------- link / unlink


def link(store: Store, source_id: str, golden_id: str, *, by: str | None = None) -> dict[str, Any]:
    """Link hospital record ``source_id`` to ``golden_id`` (a golden record, or a source whose
    golden record is meant) by a person's decision (MANUAL: automatic matching never moves it).
    Its former golden record is deleted if that empties it. Returns the golden record."""
    check_id(source_id)
    check_id(golden_id)
    with store.write() as ctx:
        got = read_patient(ctx, source_id, lock=False)
        if got is None:
            raise NotFound(f"Patient/{source_id} not found")
        if is_golden(got[1]):
            raise BadRequest(
                f"Patient/{source_id} is a golden record: link a hospital record to it"
            )
        target = resolve_golden(ctx, golden_id)
        g = read_golden(ctx, target)
        assert g is not None
        info = link_info(g.data, source_id) or {}
        entry = link_entry(
            source_id,
            grade=str(info.get("match-grade") or "certain"),
            manual=True,
            score=info.get("score"),
            explanation="linked by a person",
        )
        previous = move(ctx, source_id, target, entry)
        _audit(
            ctx, "link", [source_id, target, *([previous] if previous and previous != target else [])],
            by=by, description=f"Patient/{source_id} linked to golden record Patient/{target}",
        )  # fmt: skip
        final = read_patient(ctx, target, lock=False)
    assert final is not None
    return final[1]


def unlink(store: Store, source_id: str, golden_id: str, *, by: str | None = None) -> str:
    """Take hospital record ``source_id`` out of golden record ``golden_id``, recording that it
    is not that citizen (no automatic match will link them again). The record gets a golden
    record of its own, whose id is returned. Unlinking a golden record's only source is a 409."""
    check_id(source_id)
    check_id(golden_id)
    with store.write() as ctx:
        got = read_patient(ctx, source_id, lock=False)
        if got is None:
            raise NotFound(f"Patient/{source_id} not found")
        g = read_golden(ctx, golden_id)
        if g is None:
            raise NotFound(f"Golden record Patient/{golden_id} not found")
        if source_id not in g.sources:
            raise Conflict(f"Patient/{source_id} is not linked to Patient/{golden_id}")
        if g.sources == [source_id]:
            raise Conflict(f"Patient/{source_id} is the only record of Patient/{golden_id}")
        detach(ctx, source_id, golden_id, no_match=True)
        new = create_golden(
            ctx,
            source_id,
            got[1],
            link_entry(source_id, grade="certain", manual=True, explanation="unlinked by a person"),
        )
        _audit(
            ctx, "unlink", [source_id, golden_id, new], by=by,
            description=f"Patient/{source_id} unlinked from Patient/{golden_id}",
        )  # fmt: skip
    return new


# ------------------------------------------------------------------------------- bulk


def backfill(store: Store, *, batch: int = 200) -> int:
    """Match the source Patients that have no golden record yet (stored before the EMPI was
    installed, or loaded without it), in creation order, ``batch`` per transaction; returns
    how many were matched. Each runs the same steps as a live registration."""
    empi = get_empi(store)
    done, after = 0, 0
    while True:
        with store.read_conn() as conn:
            rows = conn.execute(
                select(resources.c.pk, resources.c.rid, resources.c.data)
                .where(
                    resources.c.rtype == "Patient",
                    resources.c.deleted == false(),
                    resources.c.pk > after,
                )
                .order_by(resources.c.pk)
                .limit(batch)
            ).all()
        if not rows:
            return done
        after = int(rows[-1].pk)
        with store.write() as ctx:
            pending = [(r.rid, orjson.loads(r.data)) for r in rows if r.data is not None]
            pending = [(rid, data) for rid, data in pending if not is_golden(data)]
            linked = golden_ids_of(ctx.conn, [rid for rid, _ in pending])
            for rid, data in pending:
                if rid not in linked and golden_of(ctx, rid) is None:
                    empi.match_source(ctx, rid, data, None)
                    done += 1
