"""Patient/$summary: a patient summary document in the spirit of the International Patient
Summary (http://hl7.org/fhir/uv/ips/ and http://hl7.org/fhir/R4/documents.html).

The answer is a ``document`` Bundle (http://hl7.org/fhir/R4/bundle.html#document): an
``identifier`` and a ``timestamp``, then the Composition (status ``final``, type LOINC 60591-5
"Patient summary Document", the Patient as subject, the exchange as author), then the Patient,
the author, every resource a section lists, and the Medications those refer to. Every entry has a
``fullUrl`` (``{base}/{type}/{id}`` for stored resources, ``urn:uuid:`` for the generated
Composition and author Device); the Composition refers to entries by their fullUrl.

Sections (LOINC section codes as in IPS), in this order:

=========================  ========  ===========================================================
section                    code      content
=========================  ========  ===========================================================
allergies                  48765-2   AllergyIntolerance not inactive/resolved, not refuted
problems                   11450-4   Condition active / recurrence / relapse, not refuted
medications                10160-0   MedicationRequest and MedicationStatement with status active
immunizations              11369-6   Immunization completed
results                    30954-2   laboratory Observations, the latest per code
vital signs                8716-3    vital-signs Observations, the latest per code
=========================  ========  ===========================================================

Only resources whose subject (``patient`` search parameter) is this Patient count. Each section
has a generated XHTML narrative (``text.div``) with Chinese labels and English in parentheses;
an empty section has ``emptyReason`` ``nilknown`` and says so in its narrative. Ordering is
deterministic: newest first (then by id) within a section; vital signs in the order of the
vital-signs panel. The document identifier is a UUID derived from the patient, the timestamp,
the author and the versions of everything included: the same data at the same instant gives the
same document; another instant gives another one.

Observations are read newest first, at most :data:`MAX_SCAN` per section (``_sort=-date``), so a
very long history costs a bounded amount; a section cut short says so in its narrative.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from html import escape
from typing import Any

import orjson
from sqlalchemy.engine import Connection

from ehr.errors import BadRequest, Gone, NotFound
from ehr.search.dates import date_range, now_us, us_to_instant
from ehr.search.include import Hit
from ehr.storage.repository import Repository
from ehr.store import Store, StoredResource
from ehr.validation import check_id

__all__ = ["MAX_SCAN", "SECTIONS", "Section", "patient_summary"]

#: most resources read for one section (newest first)
MAX_SCAN = 2000

LOINC = "http://loinc.org"
XHTML = "http://www.w3.org/1999/xhtml"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
EMPTY_REASON = "http://terminology.hl7.org/CodeSystem/list-empty-reason"
TITLE = "患者摘要 / Patient Summary"
EXCHANGE_NAME = "区域健康信息交换平台 (Regional Health Information Exchange)"

#: vital-signs panel order (http://hl7.org/fhir/R4/observation-vitalsigns.html)
VITAL_ORDER = ("85354-9", "8480-6", "8462-4", "8867-4", "9279-1", "8310-5", "2708-6", "59408-5",
               "29463-7", "8302-2", "39156-5", "9843-4")  # fmt: skip

_STATUS_ZH = {
    "active": "活动",
    "recurrence": "复发",
    "relapse": "复发",
    "inactive": "非活动",
    "remission": "缓解",
    "resolved": "已解决",
    "completed": "已完成",
    "final": "最终",
    "amended": "已修正",
    "corrected": "已更正",
    "preliminary": "初步",
    "intended": "计划",
    "on-hold": "暂停",
    "high": "高",
    "low": "低",
    "unable-to-assess": "无法评估",
    "mild": "轻度",
    "moderate": "中度",
    "severe": "重度",
    "medication": "药物",
    "food": "食物",
    "environment": "环境",
    "biologic": "生物制品",
}


@dataclass(frozen=True)
class Section:
    """One Composition.section: what it lists and how it draws its table."""

    key: str
    code: str
    display: str
    title: str
    columns: tuple[str, ...]
    row: Callable[[dict[str, Any], dict[str, dict[str, Any]]], list[str]]


# ------------------------------------------------------------------------- value rendering


def _concept(cc: Any) -> str:
    if not isinstance(cc, dict):
        return ""
    if cc.get("text"):
        return str(cc["text"])
    for c in cc.get("coding") or ():
        if c.get("display"):
            return str(c["display"])
    for c in cc.get("coding") or ():
        if c.get("code"):
            return str(c["code"])
    return ""


def _code(cc: Any) -> str | None:
    """The first code of a CodeableConcept (``clinicalStatus`` and the like)."""
    for c in (cc or {}).get("coding") or ():
        if c.get("code"):
            return str(c["code"])
    return None


def _zh(code: str | None) -> str:
    if not code:
        return ""
    return f"{_STATUS_ZH[code]} ({code})" if code in _STATUS_ZH else code


def _quantity(q: Any) -> str:
    if not isinstance(q, dict) or "value" not in q:
        return ""
    unit = q.get("unit") or q.get("code") or ""
    return f"{q.get('comparator', '')}{q['value']} {unit}".strip()


def _date(value: Any, *, time: bool = False) -> str:
    if not isinstance(value, str):
        return ""
    return value[:16].replace("T", " ") if time else value[:10]


def _when(r: dict[str, Any], *names: str) -> str:
    """The first of ``names`` present (``effectiveDateTime``, ``effectivePeriod`` ...) as sortable
    text (dates compare as text in ISO form)."""
    for n in names:
        v = r.get(n)
        if isinstance(v, dict):
            v = v.get("start") or v.get("end")
        if isinstance(v, str):
            return v
    return ""


def _observation_value(o: dict[str, Any]) -> str:
    for k in (
        "valueQuantity",
        "valueCodeableConcept",
        "valueString",
        "valueBoolean",
        "valueInteger",
    ):
        if k in o:
            v = o[k]
            return (
                _quantity(v)
                if k == "valueQuantity"
                else _concept(v)
                if k == "valueCodeableConcept"
                else str(v)
            )
    comps = [c for c in o.get("component") or () if "valueQuantity" in c]
    if comps:
        units = {c["valueQuantity"].get("unit") or c["valueQuantity"].get("code") for c in comps}
        if len(units) == 1:
            return (
                "/".join(str(c["valueQuantity"].get("value", "")) for c in comps)
                + f" {units.pop() or ''}".rstrip()
            )
        return "; ".join(
            f"{_concept(c.get('code'))} {_quantity(c['valueQuantity'])}" for c in comps
        )
    if o.get("dataAbsentReason"):
        return _concept(o["dataAbsentReason"])
    return ""


def _medication_name(r: dict[str, Any], supporting: dict[str, dict[str, Any]]) -> str:
    if "medicationCodeableConcept" in r:
        return _concept(r["medicationCodeableConcept"])
    ref = (r.get("medicationReference") or {}).get("reference", "")
    med = supporting.get(ref)
    return (
        _concept(med.get("code"))
        if med
        else str((r.get("medicationReference") or {}).get("display", ref))
    )


# --------------------------------------------------------------------------- section rows


def _allergy_row(r: dict[str, Any], _: dict[str, dict[str, Any]]) -> list[str]:
    reactions = [
        "、".join(_concept(m) for m in rx.get("manifestation") or ())
        + (f" ({_zh(rx['severity'])})" if rx.get("severity") else "")
        for rx in r.get("reaction") or ()
    ]
    return [
        _concept(r.get("code")),
        "、".join(_zh(c) for c in r.get("category") or ()),
        _zh(r.get("criticality")),
        "；".join(reactions),
        _zh(_code(r.get("clinicalStatus"))),
        _date(r.get("recordedDate") or r.get("onsetDateTime")),
    ]


def _problem_row(r: dict[str, Any], _: dict[str, dict[str, Any]]) -> list[str]:
    return [
        _concept(r.get("code")),
        _zh(_code(r.get("clinicalStatus"))),
        _date(_when(r, "onsetDateTime", "onsetPeriod")) or str(r.get("onsetString", "")),
        _date(r.get("recordedDate")),
    ]


def _medication_row(r: dict[str, Any], supporting: dict[str, dict[str, Any]]) -> list[str]:
    dosage = r.get("dosageInstruction") or r.get("dosage") or []
    return [
        _medication_name(r, supporting),
        "；".join(str(d.get("text", "")) for d in dosage if d.get("text")),
        _zh(r.get("status")),
        _date(_when(r, "authoredOn", "effectiveDateTime", "effectivePeriod", "dateAsserted")),
    ]


def _immunization_row(r: dict[str, Any], _: dict[str, dict[str, Any]]) -> list[str]:
    doses = [
        str(p.get("doseNumberPositiveInt", p.get("doseNumberString", "")))
        for p in r.get("protocolApplied") or ()
    ]
    return [
        _concept(r.get("vaccineCode")),
        "、".join(d for d in doses if d),
        _date(_when(r, "occurrenceDateTime")) or str(r.get("occurrenceString", "")),
        _zh(r.get("status")),
    ]


def _result_row(r: dict[str, Any], _: dict[str, dict[str, Any]]) -> list[str]:
    ranges = [
        f"{_quantity(rr.get('low'))} – {_quantity(rr.get('high'))}".strip(" –")
        if ("low" in rr or "high" in rr)
        else str(rr.get("text", ""))
        for rr in r.get("referenceRange") or ()
    ]
    return [
        _concept(r.get("code")),
        _observation_value(r),
        "；".join(ranges),
        "、".join(_concept(i) for i in r.get("interpretation") or ()),
        _date(
            _when(r, "effectiveDateTime", "effectivePeriod", "effectiveInstant", "issued"),
            time=True,
        ),
    ]


def _vital_row(r: dict[str, Any], _: dict[str, dict[str, Any]]) -> list[str]:
    return [
        _concept(r.get("code")),
        _observation_value(r),
        _date(
            _when(r, "effectiveDateTime", "effectivePeriod", "effectiveInstant", "issued"),
            time=True,
        ),
    ]


SECTIONS: tuple[Section, ...] = (
    Section("allergies", "48765-2", "Allergies and adverse reactions Document",
            "过敏和不耐受 (Allergies and Intolerances)",
            ("过敏原 (Allergen)", "类别 (Category)", "危险程度 (Criticality)", "反应 (Reaction)",
             "状态 (Status)", "记录日期 (Recorded)"), _allergy_row),
    Section("problems", "11450-4", "Problem list - Reported", "问题列表 (Problem List)",
            ("问题 (Problem)", "状态 (Status)", "发病日期 (Onset)", "记录日期 (Recorded)"),
            _problem_row),
    Section("medications", "10160-0", "History of Medication use Narrative",
            "用药情况 (Medication Summary)",
            ("药品 (Medication)", "用法用量 (Dosage)", "状态 (Status)", "日期 (Date)"),
            _medication_row),
    Section("immunizations", "11369-6", "History of Immunization Narrative",
            "免疫接种 (Immunizations)",
            ("疫苗 (Vaccine)", "剂次 (Dose)", "接种日期 (Date)", "状态 (Status)"),
            _immunization_row),
    Section("results", "30954-2", "Relevant diagnostic tests/laboratory data Narrative",
            "检验结果 (Results)",
            ("检验项目 (Test)", "结果 (Result)", "参考范围 (Reference range)",
             "解读 (Interpretation)", "日期 (Date)"), _result_row),
    Section("vital-signs", "8716-3", "Vital signs", "生命体征 (Vital Signs)",
            ("项目 (Vital sign)", "结果 (Value)", "测量时间 (Date)"), _vital_row),
)  # fmt: skip


# ---------------------------------------------------------------------------- selection


@dataclass
class _Item:
    hit: Hit
    res: dict[str, Any]

    @property
    def key(self) -> str:
        return f"{self.hit.rtype}/{self.hit.rid}"


@dataclass
class _Found:
    items: dict[str, list[_Item]] = field(default_factory=dict)
    cut: set[str] = field(default_factory=set)
    supporting: list[_Item] = field(default_factory=list)


def _search(
    store: Store, conn: Connection, rtype: str, params: list[tuple[str, str]]
) -> tuple[list[_Item], bool]:
    """Every match of a strict search, newest pages first, at most :data:`MAX_SCAN`."""
    engine = store.search_engine
    page_params = [*params, ("_count", str(min(MAX_SCAN, store.max_count))), ("_total", "none")]
    out: list[_Item] = []
    while True:
        page = engine.search(conn, rtype, page_params, strict=True)
        out += [_Item(h, orjson.loads(h.data)) for h in page.matches]
        if page.next_params is None:
            return out, False
        if len(out) >= MAX_SCAN:
            return out[:MAX_SCAN], True
        page_params = page.next_params


def _instant(value: str) -> int:
    """A date/dateTime as µs (time zones applied) for ordering; unknown dates sort last."""
    try:
        return date_range(value)[0]
    except ValueError:
        return -(2**62)


def _newest_first(items: Iterable[_Item], when: Callable[[dict[str, Any]], str]) -> list[_Item]:
    by_id = sorted(items, key=lambda i: i.key)
    return sorted(by_id, key=lambda i: _instant(when(i.res)), reverse=True)


def _refuted(r: dict[str, Any]) -> bool:
    return _code(r.get("verificationStatus")) in ("refuted", "entered-in-error")


def _obs_code_key(o: dict[str, Any]) -> str:
    codings = (o.get("code") or {}).get("coding") or []
    loinc = [c for c in codings if c.get("system") == LOINC and c.get("code")]
    first = (loinc or [c for c in codings if c.get("code")] or [None])[0]
    if first is None:
        return "text|" + str((o.get("code") or {}).get("text", ""))
    return f"{first.get('system', '')}|{first['code']}"


def _obs_when(o: dict[str, Any]) -> str:
    return _when(o, "effectiveDateTime", "effectiveInstant", "effectivePeriod", "issued")


def _latest_per_code(items: list[_Item]) -> list[_Item]:
    latest: dict[str, _Item] = {}
    for it in _newest_first(items, _obs_when):
        latest.setdefault(_obs_code_key(it.res), it)
    return list(latest.values())


def _vital_rank(it: _Item) -> tuple[int, str]:
    code = _obs_code_key(it.res).rsplit("|", 1)[-1]
    return (
        VITAL_ORDER.index(code) if code in VITAL_ORDER else len(VITAL_ORDER),
        _obs_code_key(it.res),
    )


def _select(store: Store, conn: Connection, pid: str) -> _Found:
    found = _Found()
    me = ("patient", f"Patient/{pid}")

    allergies, cut_a = _search(store, conn, "AllergyIntolerance", [me])
    found.items["allergies"] = _newest_first(
        (
            a
            for a in allergies
            if _code(a.res.get("clinicalStatus")) not in ("inactive", "resolved")
            and not _refuted(a.res)
        ),
        lambda r: str(r.get("recordedDate") or r.get("onsetDateTime") or ""),
    )

    conds, cut_p = _search(
        store, conn, "Condition", [me, ("clinical-status", "active,recurrence,relapse")]
    )
    found.items["problems"] = _newest_first(
        (c for c in conds if not _refuted(c.res)),
        lambda r: _when(r, "onsetDateTime", "onsetPeriod") or str(r.get("recordedDate", "")),
    )

    requests, cut_r = _search(store, conn, "MedicationRequest", [me, ("status", "active")])
    statements, cut_s = _search(store, conn, "MedicationStatement", [me, ("status", "active")])
    found.items["medications"] = _newest_first(
        [*requests, *statements],
        lambda r: _when(r, "authoredOn", "effectiveDateTime", "effectivePeriod", "dateAsserted"),
    )

    imms, cut_i = _search(store, conn, "Immunization", [me, ("status", "completed")])
    found.items["immunizations"] = _newest_first(imms, lambda r: _when(r, "occurrenceDateTime"))

    statuses = ("status", "final,amended,corrected,preliminary")
    labs, cut_l = _search(
        store, conn, "Observation",
        [me, ("category", f"{OBS_CATEGORY}|laboratory"), statuses, ("_sort", "-date")],
    )  # fmt: skip
    found.items["results"] = _latest_per_code(labs)

    vitals, cut_v = _search(
        store, conn, "Observation",
        [me, ("category", f"{OBS_CATEGORY}|vital-signs"), statuses, ("_sort", "-date")],
    )  # fmt: skip
    found.items["vital-signs"] = sorted(_latest_per_code(vitals), key=_vital_rank)

    for key, cut in (("allergies", cut_a), ("problems", cut_p), ("medications", cut_r or cut_s),
                     ("immunizations", cut_i), ("results", cut_l), ("vital-signs", cut_v)):  # fmt: skip
        if cut:
            found.cut.add(key)

    med_ids = sorted(
        {
            ref.removeprefix("Medication/")
            for m in found.items["medications"]
            if (
                ref := str((m.res.get("medicationReference") or {}).get("reference", ""))
            ).startswith("Medication/")
        }
    )
    meds: list[_Item] = []
    for start in range(0, len(med_ids), 100):  # within the search's limit on OR-ed values
        meds += _search(
            store, conn, "Medication", [("_id", ",".join(med_ids[start : start + 100]))]
        )[0]
    found.supporting = sorted(meds, key=lambda i: i.key)
    return found


# ----------------------------------------------------------------------------- rendering


def _div(inner: str) -> str:
    return f'<div xmlns="{XHTML}">{inner}</div>'


def _table(columns: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{escape(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _section(
    sec: Section,
    items: list[_Item],
    cut: bool,
    full_url: Callable[[str], str],
    supporting: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "title": sec.title,
        "code": {"coding": [{"system": LOINC, "code": sec.code, "display": sec.display}]},
    }
    if not items:
        out["text"] = {
            "status": "generated",
            "div": _div("<p>无已知记录 (No information available)</p>"),
        }
        out["emptyReason"] = {
            "coding": [{"system": EMPTY_REASON, "code": "nilknown", "display": "Nil Known"}],
            "text": "无已知记录 (Nil known)",
        }
        return out
    inner = _table(sec.columns, (sec.row(i.res, supporting) for i in items))
    if cut:
        inner += f"<p>仅检索了最近的 {MAX_SCAN} 条记录 (Only the {MAX_SCAN} most recent records were read)</p>"
    out["text"] = {"status": "generated", "div": _div(inner)}
    out["entry"] = [{"reference": full_url(i.key)} for i in items]
    return out


def _patient_name(p: dict[str, Any]) -> str:
    for n in p.get("name") or ():
        if n.get("text"):
            return str(n["text"])
        text = f"{n.get('family', '')}{''.join(n.get('given') or ())}"
        if text:
            return text
    return str(p.get("id", ""))


def _author_device(doc_id: uuid.UUID) -> tuple[str, dict[str, Any]]:
    dev_id = str(uuid.uuid5(doc_id, "author"))
    device = {
        "resourceType": "Device",
        "id": dev_id,
        "text": {"status": "generated", "div": _div(f"<p>{escape(EXCHANGE_NAME)}</p>")},
        "deviceName": [{"name": EXCHANGE_NAME, "type": "user-friendly-name"}],
        "type": {"text": "患者摘要生成服务 (Patient summary generator)"},
    }
    return f"urn:uuid:{dev_id}", device


def patient_summary(
    store: Store,
    patient_id: str,
    *,
    base: str,
    author: str | None = None,
    now: int | None = None,
) -> bytes:
    """``Patient/{patient_id}/$summary``: the summary document Bundle, serialized.

    ``author``: a reference (``Organization/{id}``) to the exchange's Organization, which must
    exist; without it the author is a Device entry describing the exchange's summary service.
    ``now`` (µs since the epoch) fixes the timestamp (default: the current time).
    Raises NotFound (404) / Gone (410) for the Patient, BadRequest for a bad ``author``.
    """
    check_id(patient_id)
    root = base.rstrip("/")

    def full_url(key: str) -> str:
        return f"{root}/{key}"

    with store.read_conn() as conn:
        repo = Repository(conn)
        cur = repo.current("Patient", patient_id)
        if cur is None:
            raise NotFound(f"Patient/{patient_id} not found")
        if cur.deleted or cur.data is None:
            raise Gone(f"Patient/{patient_id} was deleted")
        patient = StoredResource("Patient", patient_id, cur.version, cur.last_updated, cur.data)
        org: StoredResource | None = None
        if author is not None:
            atype, _, aid = author.partition("/")
            if atype != "Organization" or not aid:
                raise BadRequest(
                    f"author must be an Organization reference, not {author!r}", "value"
                )
            check_id(aid)
            arow = repo.current("Organization", aid)
            if arow is None or arow.deleted or arow.data is None:
                raise BadRequest(f"author {author} does not exist", "not-found")
            org = StoredResource("Organization", aid, arow.version, arow.last_updated, arow.data)
        found = _select(store, conn, patient_id)

    ts = now if now is not None else now_us()
    stamp = us_to_instant(ts)
    listed = [i for sec in SECTIONS for i in found.items[sec.key]]
    stored: list[StoredResource | Hit] = [patient, *([org] if org else [])]
    stored += [i.hit for i in [*listed, *found.supporting]]
    versions = sorted(f"{x.rtype}/{x.rid}/{x.version}" for x in stored)
    doc_id = uuid.uuid5(
        uuid.NAMESPACE_URL,
        orjson.dumps([full_url(f"Patient/{patient_id}"), stamp, author, versions]).decode(),
    )
    comp_id = str(uuid.uuid5(doc_id, "composition"))

    author_entry: Any
    if org is not None:
        author_url, author_entry = full_url(f"Organization/{org.rid}"), orjson.Fragment(org.data)
    else:
        author_url, author_entry = _author_device(doc_id)
    supporting = {f"Medication/{m.hit.rid}": m.res for m in found.supporting}
    pres = patient.resource()
    name = _patient_name(pres)
    sections = [
        _section(sec, found.items[sec.key], sec.key in found.cut, full_url, supporting)
        for sec in SECTIONS
    ]
    overview = _table(
        ("章节 (Section)", "条目数 (Entries)"),
        ((sec.title, str(len(found.items[sec.key]))) for sec in SECTIONS),
    )
    composition: dict[str, Any] = {
        "resourceType": "Composition",
        "id": comp_id,
        "text": {
            "status": "generated",
            "div": _div(
                f"<p>{escape(TITLE)}</p><p>患者 (Patient): {escape(name)}</p>"
                f"<p>生成时间 (Generated): {escape(stamp)}</p>{overview}"
            ),
        },
        "identifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{doc_id}"},
        "status": "final",
        "type": {
            "coding": [{"system": LOINC, "code": "60591-5", "display": "Patient summary Document"}],
            "text": "患者摘要 (Patient summary)",
        },
        "subject": {"reference": full_url(f"Patient/{patient_id}"), "display": name},
        "date": stamp,
        "author": [{"reference": author_url}],
        "title": TITLE,
        "section": sections,
    }

    entries: list[dict[str, Any]] = [
        {"fullUrl": f"urn:uuid:{comp_id}", "resource": composition},
        {"fullUrl": full_url(f"Patient/{patient_id}"), "resource": orjson.Fragment(patient.data)},
        {"fullUrl": author_url, "resource": author_entry},
    ]
    seen = {f"Patient/{patient_id}"}
    for it in [*listed, *found.supporting]:
        if it.key not in seen:
            seen.add(it.key)
            entries.append({"fullUrl": full_url(it.key), "resource": orjson.Fragment(it.hit.data)})
    bundle = {
        "resourceType": "Bundle",
        "identifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{doc_id}"},
        "type": "document",
        "timestamp": stamp,
        "entry": entries,
    }
    return orjson.dumps(bundle)
