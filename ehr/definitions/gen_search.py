"""Generate ``search_parameters.json``, ``resource_types.json`` and ``patient_compartment.json``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

NOTICE = "Generated from HL7 FHIR R4 4.0.1 definitions (CC0) by ehr.definitions.generate."


def _dump(path: Path, payload: Any) -> None:
    path.write_text(json.dumps(payload, ensure_ascii=False, separators=(",", ":"), sort_keys=True))


def generate(src: Path, out: Path) -> None:
    bundle = json.loads((src / "search-parameters.json").read_text())
    params = []
    for entry in bundle["entry"]:
        r = entry["resource"]
        if r["resourceType"] != "SearchParameter":
            continue
        params.append(
            {
                "url": r["url"],
                "code": r["code"],
                "base": r["base"],
                "type": r["type"],
                "expression": r.get("expression"),
                "target": r.get("target", []),
                "comparator": r.get("comparator", []),
                "modifier": r.get("modifier", []),
                "multipleOr": r.get("multipleOr", True),
                "multipleAnd": r.get("multipleAnd", True),
                "component": [
                    {"definition": c["definition"], "expression": c["expression"]}
                    for c in r.get("component", [])
                ],
                "description": r.get("description", ""),
            }
        )
    _dump(out / "search_parameters.json", {"notice": NOTICE, "parameters": params})

    profiles = json.loads((src / "profiles-resources.json").read_text())
    types = sorted(
        e["resource"]["id"]
        for e in profiles["entry"]
        if e["resource"]["resourceType"] == "StructureDefinition"
        and e["resource"].get("kind") == "resource"
        and not e["resource"].get("abstract")
        and e["resource"].get("derivation") != "constraint"
    )
    _dump(out / "resource_types.json", {"notice": NOTICE, "types": types})

    comp = json.loads((src / "compartmentdefinition-patient.json").read_text())
    members = {r["code"]: r.get("param", []) for r in comp["resource"] if r.get("param")}
    _dump(out / "patient_compartment.json", {"notice": NOTICE, "resources": members})
