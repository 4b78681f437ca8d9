"""Generate ``invariants.json``: the constraints (invariants) of the R4 StructureDefinitions and
the element graph :mod:`ehr.invariants` walks to find where each applies
(http://hl7.org/fhir/R4/conformance-rules.html#constraints,
http://hl7.org/fhir/R4/elementdefinition-definitions.html#ElementDefinition.constraint).

Sources (HL7 FHIR R4 4.0.1, CC0): ``profiles-resources.json`` and ``profiles-types.json``: every
resource and complex data type, the abstract bases (Resource, DomainResource, Element,
BackboneElement) and the two core data-type profiles SimpleQuantity and MoneyQuantity (an element
of type ``Quantity`` with the SimpleQuantity profile is walked as a SimpleQuantity, so sqty-1 is
checked there).

Layout::

    {"constraints": [{"key": "pat-1", "severity": "error", "human": "...",
                      "expression": "name.exists() or ...", "path": "Patient.contact"}, ...],
     "skipped": {"ele-1": "why", ...},
     "nodes": {
       "Patient.contact": {"fp": "Patient.contact",   # the type name fhirpathpy knows it by
                           "base": "BackboneElement", # its constraints and elements apply too
                           "inv": [154],              # constraints on every occurrence
                           "e": {"name": {"t": "HumanName"},            # complex: its node
                                 "telecom": {"t": "ContactPoint", "m": 1},  # m: max is "*"
                                 "gender": {"p": "code"}}},             # primitive: its type
       "Observation": {"req": [["status"], ["code"]],  # min >= 1: one of these JSON keys
                       "e": {"valueQuantity": {"t": "Quantity", "x": "value"},  # value[x]
                             "contained": {"t": "*", "m": 1}, ...}},  # any resource
       "Organization": {"e": {"telecom": {"t": "ContactPoint", "m": 1, "i": [151]}, ...}},
                                                     # i: constraints of this element only
       "SimpleQuantity": {"fp": "Quantity", "base": "Quantity", "inv": [48]}, ...}}

Constraints sit on the node of their type (qty-3 on ``Quantity``, per-1 on ``Period``, pat-1 on
the backbone ``Patient.contact``) and inherited ones are kept once, on the base that defines them
(dom-2 .. dom-5 on ``DomainResource``, qty-3 on ``Quantity`` for Age, Duration, ...). A constraint
on an element of a data type specific to its place (org-3 on ``Organization.telecom``) is kept on
that element's entry (``i``). ``req`` lists for each element with ``min >= 1`` its JSON keys (all
``value[x]`` choices for a choice element).

Skipped constraints (listed in ``skipped`` with the reason):

* ``ele-1`` (every element has a value or children): the JSON rules ``ehr.validation`` enforces
  already refuse empty objects, empty arrays and nulls;
* ``dom-6`` (a resource should have a narrative): a best-practice warning that would flag every
  resource a client sends without ``text``; servers (HAPI's default, Blaze) do not report it;
* ``txt-1`` and ``txt-2`` (narrative XHTML content rules): ``htmlChecks()`` is not FHIRPath any
  engine implements; it needs an XHTML parser;
* an element's copy of a constraint its type defines (``ext-1`` on each ``extension`` element):
  the type's node checks it once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

NOTICE = (
    "Generated from HL7 FHIR R4 4.0.1 definitions (CC0) by ehr.definitions.generate "
    "(gen_invariants)."
)

SKIPPED = {
    "ele-1": "every element has a value or children: the JSON rules of ehr.validation refuse "
    "empty objects, empty arrays and nulls",
    "dom-6": "narrative best practice (warning); flags every resource without text, which no "
    "server reports by default",
    "txt-1": "htmlChecks() (XHTML content rules of Narrative.div) is not evaluable FHIRPath",
    "txt-2": "htmlChecks() (XHTML content rules of Narrative.div) is not evaluable FHIRPath",
}
PROFILES = frozenset({"SimpleQuantity", "MoneyQuantity"})  # core data-type profiles we walk
INLINE = frozenset({"BackboneElement", "Element"})  # an element with children defined in place
SYSTEM_PREFIX = "http://hl7.org/fhirpath/System."


def _definitions(src: Path) -> list[dict[str, Any]]:
    out = []
    for name in ("profiles-types.json", "profiles-resources.json"):
        bundle = json.loads((src / name).read_text(encoding="utf-8"))
        for entry in bundle["entry"]:
            sd = entry["resource"]
            if sd["resourceType"] != "StructureDefinition":
                continue
            if sd.get("kind") not in ("complex-type", "resource"):
                continue
            if sd.get("derivation") == "constraint" and sd["id"] not in PROFILES:
                continue
            out.append(sd)
    return out


def _tail(url: str | None) -> str | None:
    return url.rsplit("/", 1)[-1] if url else None


def _upper_first(code: str) -> str:
    return code[:1].upper() + code[1:]


class _Builder:
    def __init__(self, sds: list[dict[str, Any]]) -> None:
        self.sds = sds
        self.complex = {sd["id"] for sd in sds if sd["kind"] == "complex-type"}
        self.resources = {sd["id"] for sd in sds if sd["kind"] == "resource"}
        self.constraints: list[dict[str, str]] = []
        self.nodes: dict[str, dict[str, Any]] = {}
        self._own: dict[str, set[tuple[str, str]]] = {}  # node -> (key, expression) it checks

    def build(self) -> None:
        for sd in self.sds:
            self._node_of_sd(sd)
        self._drop_copies()
        self._drop_inherited()

    # -- one StructureDefinition ---------------------------------------------------------------
    def _node_of_sd(self, sd: dict[str, Any]) -> None:
        name = sd["id"]
        elements = sd["snapshot"]["element"]
        root_path = elements[0]["path"]
        paths: dict[str, str] = {root_path: name}  # element path -> node name
        self.nodes[name] = {"fp": sd["type"]}
        if sd.get("baseDefinition"):
            self.nodes[name]["base"] = _tail(sd["baseDefinition"])
        for el in elements:
            path = el["path"]
            own = [c for c in el.get("constraint", []) if self._is_own(c, sd)]
            if path == root_path:
                self._attach(self.nodes[name], own, path)
                continue
            parent_path, _, elname = path.rpartition(".")
            parent = paths.get(parent_path)
            if parent is None:  # inside an element we do not walk (a max-0 element)
                continue
            if el.get("max") == "0":
                continue
            node = self.nodes[parent]
            codes = [t["code"] for t in el.get("type", [])]
            many = el.get("max") not in ("0", "1")
            child: str | None = None
            if "contentReference" in el:
                child = el["contentReference"].lstrip("#")
            elif len(codes) == 1 and codes[0] in INLINE and not elname.endswith("[x]"):
                child = path
                paths[path] = path
                self.nodes[path] = {"fp": path, "base": codes[0]}
                self._attach(self.nodes[path], own, path)
                own = []
            keys: list[str] = []
            if elname.endswith("[x]"):
                stem = elname[:-3]
                for t in el.get("type", []):
                    key = stem + _upper_first(t["code"])
                    keys.append(key)
                    node.setdefault("e", {})[key] = {**self._entry(t, None, many), "x": stem}
            else:
                keys.append(elname)
                t = el["type"][0] if el.get("type") else {"code": "Element"}
                node.setdefault("e", {})[elname] = self._entry(t, child, many)
            if own:
                for key in keys:
                    self._attach(node["e"][key], own, path, on_entry=True)
            if int(el.get("min", 0)) >= 1:
                node.setdefault("req", []).append(keys)

    def _entry(self, t: dict[str, Any], child: str | None, many: bool) -> dict[str, Any]:
        code: str = t["code"]
        entry: dict[str, Any] = {}
        if child is not None:
            entry["t"] = child
        elif code == "Resource" or code in self.resources:
            entry["t"] = "*"
        elif code in self.complex:
            profile = next((_tail(p) for p in t.get("profile", []) if _tail(p) in PROFILES), None)
            entry["t"] = profile or code
        else:
            entry["p"] = code.removeprefix(SYSTEM_PREFIX)
        if many:
            entry["m"] = 1
        return entry

    @staticmethod
    def _is_own(c: dict[str, Any], sd: dict[str, Any]) -> bool:
        source = c.get("source")
        return c["key"] not in SKIPPED and (source is None or source == sd["url"])

    def _attach(
        self, target: dict[str, Any], own: list[dict[str, Any]], path: str, on_entry: bool = False
    ) -> None:
        for c in own:
            self.constraints.append(
                {
                    "key": c["key"],
                    "severity": c["severity"],
                    "human": c["human"],
                    "expression": c["expression"],
                    "path": path,
                }
            )
            target.setdefault("i" if on_entry else "inv", []).append(len(self.constraints) - 1)

    # -- what a base already says (DomainResource's elements on every resource) ---------------
    def _inherited(self, node: str | None) -> tuple[dict[str, Any], list[list[str]]]:
        elements: dict[str, Any] = {}
        required: list[list[str]] = []
        chain = []
        while node is not None and node in self.nodes:
            chain.append(self.nodes[node])
            node = self.nodes[node].get("base")
        for n in reversed(chain):
            elements.update(n.get("e", {}))
            required += [r for r in n.get("req", []) if r not in required]
        return elements, required

    def _drop_inherited(self) -> None:
        inherited = {name: self._inherited(n.get("base")) for name, n in self.nodes.items()}
        for name, n in self.nodes.items():
            elements, required = inherited[name]
            if "e" in n:
                n["e"] = {k: v for k, v in n["e"].items() if elements.get(k) != v}
                if not n["e"]:
                    del n["e"]
            if "req" in n:
                n["req"] = [r for r in n["req"] if r not in required]
                if not n["req"]:
                    del n["req"]

    # -- an element's copy of its type's constraint (ext-1 on Extension.extension) ------------
    def _checked_by(self, node: str | None) -> set[tuple[str, str]]:
        out: set[tuple[str, str]] = set()
        while node is not None and node in self.nodes:
            n = self.nodes[node]
            out |= {
                (self.constraints[i]["key"], self.constraints[i]["expression"])
                for i in n.get("inv", [])
            }
            node = n.get("base")
        return out

    def _drop_copies(self) -> None:
        for node in self.nodes.values():
            for entry in node.get("e", {}).values():
                if "i" in entry and "t" in entry:
                    have = self._checked_by(entry["t"])
                    keep = [
                        i
                        for i in entry["i"]
                        if (self.constraints[i]["key"], self.constraints[i]["expression"])
                        not in have
                    ]
                    if keep:
                        entry["i"] = keep
                    else:
                        del entry["i"]
        used = sorted(
            {i for n in self.nodes.values() for i in n.get("inv", [])}
            | {
                i
                for n in self.nodes.values()
                for e in n.get("e", {}).values()
                for i in e.get("i", [])
            }
        )
        renumber = {old: new for new, old in enumerate(used)}
        self.constraints = [self.constraints[i] for i in used]
        for n in self.nodes.values():
            if "inv" in n:
                n["inv"] = [renumber[i] for i in n["inv"]]
            for e in n.get("e", {}).values():
                if "i" in e:
                    e["i"] = [renumber[i] for i in e["i"]]


def generate(src: Path, out: Path) -> None:
    builder = _Builder(_definitions(src))
    builder.build()
    payload = {
        "notice": NOTICE,
        "constraints": builder.constraints,
        "skipped": SKIPPED,
        "nodes": builder.nodes,
    }
    (out / "invariants.json").write_text(
        json.dumps(payload, ensure_ascii=False, separators=(",", ":"), sort_keys=True),
        encoding="utf-8",
    )
