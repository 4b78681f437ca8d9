"""Golden records and their links: the FHIR shape of the EMPI's decisions.

Patient.link: http://hl7.org/fhir/R4/patient-definitions.html#Patient.link ; HAPI FHIR MDM
(golden resources): https://hapifhir.io/hapi-fhir/docs/server_jpa_mdm/mdm.html

**Design.** One citizen, one *golden record*: a Patient the EMPI owns, tagged
``meta.tag = {EMPI_SYSTEM}|golden`` (:data:`GOLDEN_TAG`), that gathers the hospitals' *source*
Patients of that citizen.

- The golden record carries one ``link`` of type ``seealso`` per source Patient ("in use and
  valid, but points to another patient resource that is known to contain data about the same
  person"). Each link entry holds the decision in the :data:`LINK_EXT` extension: the
  ``match-grade`` (certain | probable | possible), the ``link-source`` (AUTO | MANUAL, as in
  HAPI's MDM links), the ``score`` (0..1) and the ``explanation`` (matched fields and weights).
- **The source Patients are not touched**: the links live only on the golden record. A
  hospital's Patient keeps the exact content and version the hospital wrote, so a hospital's
  ``If-Match`` updates never collide with EMPI bookkeeping, and its compartment stays its own.
  The only EMPI write to a source Patient is a ``Patient/$merge`` of two duplicates, which by
  definition marks the source ``active = false`` with ``link`` ``replaced-by`` the target (and
  the target ``replaces`` the source).
- Lookups use the reference index the store keeps anyway: "the golden record of source S" is
  the golden-tagged Patient whose ``link`` refers to S (one indexed query,
  :func:`golden_ids_of`); "the sources of golden G" are G's ``seealso`` links. This serves
  ``$everything`` (:func:`linked_patient_ids` gives the patient ids to span) and searches
  (``Patient?_tag=…|golden&link=Patient/S``; ``Observation?subject:mdm=Patient/G``, see
  :func:`ehr.empi.service.expand_search_params`) without a second source of truth. A FHIR
  ``Linkage`` resource would duplicate what ``Patient.link`` already says and be one more
  resource to keep in step; it is not used.
- Every source Patient is linked to exactly one golden record. A source that matches nobody
  (or only *possibly* matches someone: a review task is raised) gets a golden record of its own.
- A manual "not the same person" decision is kept on the golden record as a
  :data:`NO_MATCH_EXT` extension (``valueReference`` the source), so automatic matching never
  links that source to it again.
- A golden record merged into another (``$merge`` of two golden records) keeps its tag, becomes
  ``active = false`` and has a single ``replaced-by`` link to the surviving golden record.
- The golden record's demographics (name, gender, birthDate, telecom, address, deceased) are
  *survivorship* copies of its sources (:func:`survivorship`): the union of names, phones and
  addresses, single values from the most recently written source. It carries **no identifiers**:
  a search or conditional create by citizen ID or MRN must keep finding the hospital record
  alone (check-in by card expects exactly one Patient). Find the golden record of an identifier
  with a chain: ``Patient?_tag=…|golden&link:Patient.identifier=<system>|<value>``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson
from sqlalchemy import and_, false, select
from sqlalchemy.engine import Connection

from ehr.codesystems import CANONICAL_BASE
from ehr.search.tables import idx_reference, idx_token
from ehr.storage.tables import resources

__all__ = [
    "EMPI_SYSTEM",
    "apply_survivorship",
    "new_golden_id",
    "referring_patients",
    "EXPLANATION_EXT",
    "GOLDEN_TAG",
    "LINK_EXT",
    "MATCH_GRADE_EXT",
    "NO_MATCH_EXT",
    "golden_ids_of",
    "golden_sources",
    "is_golden",
    "link_entry",
    "link_info",
    "load_patients",
    "new_golden",
    "no_match_ids",
    "patient_ref_id",
    "survivorship",
]

#: the EMPI's code system: the golden tag, task and audit codes
EMPI_SYSTEM = f"{CANONICAL_BASE}/CodeSystem/empi"
GOLDEN_TAG = {"system": EMPI_SYSTEM, "code": "golden", "display": "EMPI golden record"}
#: on a golden record's ``link`` entry: match-grade, link-source, score, explanation
LINK_EXT = f"{CANONICAL_BASE}/StructureDefinition/empi-link"
#: on a golden record (valueReference): a source a person decided is *not* this citizen
NO_MATCH_EXT = f"{CANONICAL_BASE}/StructureDefinition/empi-no-match"
#: http://hl7.org/fhir/R4/extension-match-grade.html
MATCH_GRADE_EXT = "http://hl7.org/fhir/StructureDefinition/match-grade"
#: valueString: the fields of a match score and their weights
EXPLANATION_EXT = f"{CANONICAL_BASE}/StructureDefinition/empi-match-explanation"

_MAX_NAMES, _MAX_TELECOM, _MAX_ADDRESS = 6, 6, 4


def patient_ref_id(reference: Any) -> str | None:
    """``{"reference": "Patient/x"}`` (or an absolute URL ending so) -> ``"x"``."""
    if not isinstance(reference, Mapping):
        return None
    ref = reference.get("reference")
    if not isinstance(ref, str) or "/_history/" in ref:
        return None
    parts = ref.rstrip("/").split("/")
    if len(parts) >= 2 and parts[-2] == "Patient" and parts[-1]:
        return parts[-1]
    return None


def is_golden(resource: Mapping[str, Any] | None) -> bool:
    if not resource:
        return False
    for tag in (resource.get("meta") or {}).get("tag") or ():
        if tag.get("system") == EMPI_SYSTEM and tag.get("code") == "golden":
            return True
    return False


def golden_sources(golden: Mapping[str, Any]) -> list[str]:
    """The source Patient ids of a golden record (its ``seealso`` links), in link order."""
    out: list[str] = []
    for link in golden.get("link") or ():
        if link.get("type") == "seealso":
            pid = patient_ref_id(link.get("other"))
            if pid and pid not in out:
                out.append(pid)
    return out


def no_match_ids(golden: Mapping[str, Any]) -> set[str]:
    return {
        pid
        for e in golden.get("extension") or ()
        if e.get("url") == NO_MATCH_EXT
        for pid in [patient_ref_id(e.get("valueReference"))]
        if pid
    }


def link_entry(
    source_id: str,
    *,
    grade: str,
    manual: bool,
    score: float | None = None,
    explanation: str | None = None,
) -> dict[str, Any]:
    """One ``seealso`` link of a golden record with its decision (:data:`LINK_EXT`)."""
    parts: list[dict[str, Any]] = [
        {"url": "match-grade", "valueCode": grade},
        {"url": "link-source", "valueCode": "MANUAL" if manual else "AUTO"},
    ]
    if score is not None:
        parts.append({"url": "score", "valueDecimal": round(float(score), 4)})
    if explanation:
        parts.append({"url": "explanation", "valueString": explanation})
    return {
        "extension": [{"url": LINK_EXT, "extension": parts}],
        "other": {"reference": f"Patient/{source_id}"},
        "type": "seealso",
    }


def link_info(golden: Mapping[str, Any], source_id: str) -> dict[str, Any] | None:
    """The decision recorded on ``golden``'s link to ``source_id``: ``{"match-grade": …,
    "link-source": …, "score": …, "explanation": …}``; None if not linked."""
    for link in golden.get("link") or ():
        if link.get("type") == "seealso" and patient_ref_id(link.get("other")) == source_id:
            info: dict[str, Any] = {}
            for e in link.get("extension") or ():
                if e.get("url") == LINK_EXT:
                    for part in e.get("extension") or ():
                        value = next((v for k, v in part.items() if k.startswith("value")), None)
                        info[part.get("url")] = value
            return info
    return None


# ------------------------------------------------------------------------------ survivorship


def _dedupe(items: Iterable[Any], key: Any, cap: int) -> list[Any]:
    out: list[Any] = []
    seen: set[Any] = set()
    for item in items:
        k = key(item)
        if k in seen:
            continue
        seen.add(k)
        out.append(item)
        if len(out) >= cap:
            break
    return out


def _json_key(item: Any) -> bytes:
    return orjson.dumps(item, option=orjson.OPT_SORT_KEYS)


def survivorship(sources: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The demographics a golden record copies from its sources, most recent source first:
    names, telecom and addresses are the (deduplicated, capped) union; gender, birthDate and
    deceased come from the most recent source that states them."""
    ordered = sorted(
        sources, key=lambda s: str((s.get("meta") or {}).get("lastUpdated") or "~"), reverse=True
    )
    out: dict[str, Any] = {}
    names = _dedupe(
        (n for s in ordered for n in s.get("name") or ()),
        lambda n: _json_key({k: v for k, v in n.items() if k in ("text", "family", "given")}),
        _MAX_NAMES,
    )
    if names:
        out["name"] = names
    telecom = _dedupe(
        (t for s in ordered for t in s.get("telecom") or () if t.get("value")),
        lambda t: (t.get("system"), str(t.get("value")).replace(" ", "")),
        _MAX_TELECOM,
    )
    if telecom:
        out["telecom"] = telecom
    for key in ("gender", "birthDate"):
        value = next((s[key] for s in ordered if s.get(key)), None)
        if value is not None:
            out[key] = value
    for s in ordered:
        if "deceasedDateTime" in s or s.get("deceasedBoolean") is not None:
            for key in ("deceasedDateTime", "deceasedBoolean"):
                if key in s:
                    out[key] = s[key]
            break
    addresses = _dedupe(
        (a for s in ordered for a in s.get("address") or ()),
        lambda a: _json_key({k: v for k, v in a.items() if k != "period" and k != "use"}),
        _MAX_ADDRESS,
    )
    if addresses:
        out["address"] = addresses
    return out


_DEMOGRAPHICS = (
    "name",
    "telecom",
    "gender",
    "birthDate",
    "deceasedBoolean",
    "deceasedDateTime",
    "address",
)


def apply_survivorship(golden: dict[str, Any], sources: Sequence[Mapping[str, Any]]) -> bool:
    """Rewrite ``golden``'s demographics from ``sources``; True if anything changed."""
    fresh = survivorship(sources)
    changed = False
    for key in _DEMOGRAPHICS:
        if golden.get(key) != fresh.get(key):
            changed = True
            if key in fresh:
                golden[key] = fresh[key]
            else:
                golden.pop(key, None)
    return changed


def new_golden(
    links: Sequence[dict[str, Any]], sources: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """A golden record gathering ``sources`` through ``links`` (see :func:`link_entry`)."""
    golden: dict[str, Any] = {
        "resourceType": "Patient",
        "meta": {"tag": [dict(GOLDEN_TAG)]},
        "active": True,
    }
    golden.update(survivorship(sources))
    golden["link"] = list(links)
    return golden


def new_golden_id() -> str:
    return str(uuid.uuid4())


# ----------------------------------------------------------------------------------- lookups


def golden_ids_of(conn: Connection, source_ids: Iterable[str]) -> dict[str, str]:
    """source Patient id -> the id of the golden record linking it (reference and token
    indexes; one query per 500 ids)."""
    ids = sorted(set(source_ids))
    if not ids:
        return {}
    ref, tag, g = idx_reference.alias("ref"), idx_token.alias("tag"), resources.alias("g")
    out: dict[str, str] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        stmt = (
            select(ref.c.target_id, g.c.rid)
            .select_from(
                ref.join(g, g.c.pk == ref.c.pk).join(
                    tag,
                    and_(
                        tag.c.pk == g.c.pk,
                        tag.c.param == "_tag",
                        tag.c.system == EMPI_SYSTEM,
                        tag.c.code == "golden",
                    ),
                )
            )
            .where(
                ref.c.target_id.in_(chunk),
                ref.c.target_type == "Patient",
                ref.c.rtype == "Patient",
                ref.c.param == "link",
                g.c.deleted == false(),
            )
            .order_by(g.c.pk)
        )
        for target, golden in conn.execute(stmt):
            if target != golden:
                out.setdefault(target, golden)
    return out


def referring_patients(conn: Connection, patient_id: str) -> list[str]:
    """Ids of the Patients whose ``link`` refers to ``patient_id`` (any link type)."""
    ref, p = idx_reference.alias("ref"), resources.alias("p")
    stmt = (
        select(p.c.rid)
        .select_from(ref.join(p, p.c.pk == ref.c.pk))
        .where(
            ref.c.target_id == patient_id,
            ref.c.target_type == "Patient",
            ref.c.rtype == "Patient",
            ref.c.param == "link",
            p.c.deleted == false(),
        )
        .order_by(p.c.pk)
    )
    return [str(r) for r in conn.execute(stmt).scalars()]


def load_patients(
    conn: Connection, ids: Iterable[str]
) -> dict[str, tuple[int, int, dict[str, Any]]]:
    """id -> (version, last_updated, resource) of the current, non-deleted Patients ``ids``."""
    wanted = sorted(set(ids))
    out: dict[str, tuple[int, int, dict[str, Any]]] = {}
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        rows = conn.execute(
            select(
                resources.c.rid, resources.c.version, resources.c.last_updated, resources.c.data
            ).where(
                resources.c.rtype == "Patient",
                resources.c.rid.in_(chunk),
                resources.c.deleted == false(),
            )
        )
        for rid, version, ts, data in rows:
            if data is not None:
                out[rid] = (int(version), int(ts), orjson.loads(data))
    return out
