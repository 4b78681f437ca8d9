"""Generate ``summary_elements.json``: per resource type, the top-level elements that
``_summary=true`` keeps (``isSummary``) and the mandatory ones (``min >= 1``) that
``_summary=text`` and ``_elements`` keep (http://hl7.org/fhir/R4/search.html#summary).
Choice elements keep their ``[x]`` name (``value[x]``)."""

from __future__ import annotations

import json
from pathlib import Path

NOTICE = "Generated from HL7 FHIR R4 4.0.1 definitions (CC0) by ehr.definitions.generate."


def generate(src: Path, out: Path) -> None:
    profiles = json.loads((src / "profiles-resources.json").read_text())
    types: dict[str, dict[str, list[str]]] = {}
    for entry in profiles["entry"]:
        sd = entry["resource"]
        if (
            sd["resourceType"] != "StructureDefinition"
            or sd.get("kind") != "resource"
            or sd.get("abstract")
            or sd.get("derivation") == "constraint"
        ):
            continue
        summary: list[str] = []
        mandatory: list[str] = []
        for el in sd["snapshot"]["element"]:
            parts = el["path"].split(".")
            if len(parts) != 2:
                continue
            name = parts[1]
            if el.get("isSummary"):
                summary.append(name)
            if int(el.get("min", 0)) >= 1:
                mandatory.append(name)
        types[sd["id"]] = {"summary": summary, "mandatory": mandatory}
    payload = {"notice": NOTICE, "types": types}
    (out / "summary_elements.json").write_text(
        json.dumps(payload, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    )
