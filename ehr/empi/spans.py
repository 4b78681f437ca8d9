"""Which Patient records make up a citizen's record, and searches that span them (issue 9).

HAPI FHIR MDM search expansion (the ``:mdm`` qualifier):
https://hapifhir.io/hapi-fhir/docs/server_jpa_mdm/mdm_expansion.html ; search:
http://hl7.org/fhir/R4/search.html ; Patient.link:
http://hl7.org/fhir/R4/patient-definitions.html#Patient.link

A golden record has no clinical data of its own: the hospitals' records hold it.

- :func:`linked_patient_ids`: the Patient ids whose records make up a patient's record. For a
  golden record, itself and all its sources; for a hospital record, itself (and the duplicates
  merged into it), so a hospital's own view is unchanged. ``$everything`` spans these.
- :func:`person_patient_ids`: every record of the citizen a Patient belongs to (its golden record
  and all the golden record's sources).
- :func:`expand_search_params` rewrites a search:

  * ``name=Patient/<golden>`` (any reference parameter, no modifier; for ``patient`` also the
    bare id) **expands automatically** to the golden record's linked records. The golden record
    itself is never the subject of clinical data, so a search on it without expansion could
    only ever be empty: HAPI requires ``:mdm`` here, we do not (and accept it);
  * ``name:mdm=Patient/x`` (HAPI's qualifier) expands *any* Patient, a hospital's record too,
    to every record of that citizen (:func:`person_patient_ids`);
  * everything else, ``link`` (which is about the golden records themselves) and ``_``
    parameters (``_id``, ``_has`` …) pass unchanged; a plain reference to a hospital's record
    is never expanded (its hospital's view stays its own).

- :func:`search` is the search route's hook: it expands, searches, and puts the parameters as
  the client gave them back into the Bundle's ``self``/``next``/``previous`` links (page 2
  expands again; the links never list the citizen's other records). A compartment search
  ``Patient/<golden>/Observation`` spans the compartments of the linked records.

**Access.** Expansion widens the *query*, never what the requester may *see*. Every expanded
id list is narrowed to the Patients the current request may see
(:data:`ehr.search.engine.ambient_restriction`, set by the security layer), and the search
itself runs under the same restriction. A token confined to one hospital's record (a
patient-context token, or a clinician who treats the patient there) therefore gets only that
record's resources from ``subject:mdm=…``, from ``subject=Patient/<golden>`` and from
``$everything`` on the golden record, even though that golden record is in its compartment (its
``link`` names the record). Only a requester who may see the other hospitals' records (a backend
service, a clinician treating the patient there too) sees the citizen's whole record. The
reasoning: an automatic link is a probabilistic decision (precision 0.9996 in bench/RESULTS.md),
so a wrong link must never be a path into a stranger's record. The links themselves are Patient
data: a token that may not read the linked Patients (e.g. ``system/Observation.rs`` alone) gets
no expansion.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from ehr.empi.links import (
    golden_ids_of,
    golden_sources,
    is_golden,
    load_patients,
    patient_ref_id,
    referring_patients,
)
from ehr.errors import BadRequest, Gone, NotFound
from ehr.search.engine import SearchPage, ambient_restriction
from ehr.storage.repository import Repository
from ehr.store import Store
from ehr.validation import check_id

__all__ = [
    "expand_search_params",
    "golden_record_id",
    "linked_patient_ids",
    "person_patient_ids",
    "search",
]

Params = list[tuple[str, str]]

_PREFIX = "Patient/"
#: reference parameters whose bare-id values can only mean a Patient
_PATIENT_ONLY = frozenset({"patient"})


def _current_patient(store: Store, patient_id: str) -> dict[str, Any]:
    check_id(patient_id)
    with store.read_conn() as conn:
        cur = Repository(conn).current("Patient", patient_id)
    if cur is None:
        raise NotFound(f"Patient/{patient_id} not found")
    if cur.deleted or cur.data is None:
        raise Gone(f"Patient/{patient_id} was deleted")
    return orjson.loads(cur.data)  # type: ignore[no-any-return]


def _visible(store: Store, ids: list[str]) -> list[str]:
    """``ids`` without the Patients the current request may not see (the first one, which the
    caller named and the security layer checked, is kept)."""
    if ambient_restriction.get() is None or len(ids) <= 1:
        return ids
    rest = ids[1:]
    seen: set[str] = set()
    for start in range(0, len(rest), 50):
        chunk = rest[start : start + 50]
        page = store.search("Patient", [("_id", ",".join(chunk)), ("_count", str(len(chunk)))])
        seen.update(h.rid for h in page.matches)
    return [ids[0], *(i for i in rest if i in seen)]


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
    merged into it (``replaced-by`` it). Narrowed to what the current request may see (see the
    module docstring). 404 / 410 for an unknown or deleted Patient."""
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
    return _visible(store, ids)


def person_patient_ids(store: Store, patient_id: str) -> list[str]:
    """Every Patient id of the citizen ``patient_id`` belongs to: its golden record and all the
    golden record's sources (``patient_id`` first), narrowed to what the current request may
    see. An unknown or deleted Patient is just itself."""
    try:
        gid = golden_record_id(store, patient_id)
    except (NotFound, Gone):
        return [patient_id]
    if gid is None:
        return linked_patient_ids(store, patient_id)
    ids = [patient_id, *linked_patient_ids(store, gid)]
    return _visible(store, list(dict.fromkeys(ids)))


def _patient_id(name: str, value: str) -> str | None:
    """The Patient id a reference-parameter value names (``Patient/x``; the bare ``x`` for a
    parameter that only refers to Patients), else None."""
    if value.startswith(_PREFIX):
        rid = value[len(_PREFIX) :]
        return rid if rid and "/" not in rid else None
    if name in _PATIENT_ONLY and value and "/" not in value and ":" not in value:
        return value
    return None


def _expandable(name: str) -> bool:
    return not name.startswith("_") and "." not in name and name.split(":", 1)[0] != "link"


def _goldens(store: Store, ids: Iterable[str]) -> set[str]:
    """Those of the Patients ``ids`` that are golden records, by one prepared SELECT outside
    SQLAlchemy (:meth:`~ehr.store.Store.read_current`): every search naming a Patient asks
    (measured in process: 120 µs of CPU, against 510 through a Core select)."""
    rows = store.read_current("Patient", ids)
    return {pid for pid, got in rows.items() if is_golden(orjson.loads(got.data))}


def expand_search_params(store: Store, params: Sequence[tuple[str, str]]) -> Params:
    """Search parameters with citizen-wide Patient references expanded (see the module
    docstring); the others are returned as they are, in order, one output per input."""
    named: set[str] = set()
    for name, value in params:
        if _expandable(name):
            base = name.split(":", 1)[0]
            named.update(pid for v in value.split(",") if (pid := _patient_id(base, v)) is not None)
    if not named and not any(n.endswith(":mdm") for n, _ in params):
        return list(params)
    goldens = _goldens(store, named)
    if not goldens and not any(n.endswith(":mdm") for n, _ in params):
        return list(params)
    out: Params = []
    for name, value in params:
        base, _, modifier = name.partition(":")
        if not _expandable(name):
            out.append((name, value))
        elif modifier == "mdm":
            ids: list[str] = []
            for v in value.split(","):
                pid = _patient_id(base, v)
                if pid is None:
                    raise BadRequest(
                        f"{name}: ':mdm' takes Patient references ({v!r})", "value",
                        expression=(name,),
                    )  # fmt: skip
                ids += person_patient_ids(store, pid)
            out.append((base, ",".join(f"{_PREFIX}{i}" for i in dict.fromkeys(ids))))
        else:
            expanded: list[str] = []
            for v in value.split(","):
                pid = _patient_id(base, v)
                if pid is not None and pid in goldens:
                    expanded += [f"{_PREFIX}{i}" for i in linked_patient_ids(store, pid)]
                else:
                    expanded.append(v)
            out.append((name, ",".join(dict.fromkeys(expanded))))
    return out


def _compartment(store: Store, compartment: tuple[str, str] | None) -> Any:
    if compartment is None or compartment[0] != "Patient":
        return compartment
    if not _goldens(store, [compartment[1]]):
        return compartment
    return ("Patient", linked_patient_ids(store, compartment[1]))


def _restore(given: Params, used: Params, links: Params | None) -> Params | None:
    """``links`` (a page's link parameters) with each expanded parameter put back as given."""
    if links is None:
        return None
    pending = [(u, g) for g, u in zip(given, used, strict=True) if g != u]
    out: Params = []
    for pair in links:
        for i, (u, g) in enumerate(pending):
            if pair == u:
                out.append(g)
                del pending[i]
                break
        else:
            out.append(pair)
    return out


def search(
    store: Store,
    rtype: str | None,
    params: Sequence[tuple[str, str]],
    *,
    compartment: tuple[str, str] | None = None,
    **kwargs: Any,
) -> SearchPage:
    """:meth:`ehr.store.Store.search` with golden records and ``:mdm`` expanded (the search
    route's hook; ``kwargs`` go to the store). The page's links carry the parameters as given."""
    given = list(params)
    used = expand_search_params(store, given)
    page: SearchPage = store.search(
        rtype, used, compartment=_compartment(store, compartment), **kwargs
    )
    if used != given:
        page.self_params = _restore(given, used, page.self_params) or []
        page.next_params = _restore(given, used, page.next_params)
        page.previous_params = _restore(given, used, page.previous_params)
    return page
