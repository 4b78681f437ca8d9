"""Generate ``required_bindings.json``: the checks :mod:`ehr.validation` adds on top of the
fhir.resources models, as a graph of *nodes* (resource types, data types, backbone elements).

Sources (HL7 FHIR R4 4.0.1, CC0): the StructureDefinitions in ``profiles-resources.json`` and
``profiles-types.json``, the ValueSets and CodeSystems in ``valuesets.json`` and
``v3-codesystems.json``.

* Required bindings (http://hl7.org/fhir/R4/terminologies.html#required) whose value set expands
  to a finite code list: ValueSet.compose.include of whole CodeSystems (nested concepts too),
  explicit concept lists, ``is-a`` / ``descendent-of`` / ``is-not-a`` filters on a CodeSystem we
  hold, and included value sets, minus compose.exclude. Value sets that cannot be expanded here
  (external systems such as mime types, languages, UCUM, currencies; property filters) are listed
  under ``skipped`` with the reason, and their bindings are not checked.
* JSON primitive kinds of boolean, integer (positiveInt, unsignedInt) and decimal elements
  (http://hl7.org/fhir/R4/json.html#primitive): fhir.resources coerces ``"true"`` and ``"3"``.

Layout::

    {"valuesets": {url: {system: [code, ...]}},
     "skipped":   {url: reason},
     "nodes": {"Patient": {"b":  {"gender": url},              # code element, required binding
                           "cc": {...},                         # CodeableConcept, required binding
                           "c":  {"contact": "Patient.contact", # child node (data type/backbone)
                                  "identifier": "Identifier"},
                           "p":  {"active": "boolean"}},        # JSON primitive kind
               "Identifier": {"b": {"use": url}, "c": {...}},
               "Bundle.entry": {"c": {"resource": "Resource"}}, ...}}

A child named ``Resource`` is any resource, dispatched on its ``resourceType``. Choice elements
appear once per type (``valueQuantity``, ``valueBoolean``). ``extension`` and ``modifierExtension``
(present on every element) are left out; the reader adds them. Only children that lead to a check
are kept.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

NOTICE = (
    "Generated from HL7 FHIR R4 4.0.1 definitions (CC0) by ehr.definitions.generate (gen_bindings)."
)

PRIMITIVE_KINDS = {
    "boolean": "boolean",
    "integer": "integer",
    "positiveInt": "integer",
    "unsignedInt": "integer",
    "decimal": "decimal",
}
GENERIC_CHILDREN = frozenset({"extension", "modifierExtension"})
INLINE_TYPES = frozenset({"BackboneElement", "Element"})

Codes = dict[str, set[str]]  # system -> codes


class _Unexpandable(Exception):
    pass


class _Terminology:
    """Expands ValueSets from the CodeSystems and ValueSets of the spec bundles."""

    def __init__(self, bundles: list[dict[str, Any]]) -> None:
        self.valuesets: dict[str, dict[str, Any]] = {}
        self.codesystems: dict[str, dict[str, Any]] = {}
        for bundle in bundles:
            for entry in bundle.get("entry", []):
                r = entry["resource"]
                if r["resourceType"] == "ValueSet":
                    self.valuesets[r["url"]] = r
                elif r["resourceType"] == "CodeSystem":
                    self.codesystems[r["url"]] = r
        self._cache: dict[str, Codes | str] = {}

    def expand(self, url: str) -> Codes | str:
        """The codes by system, or the reason the value set cannot be expanded."""
        if url not in self._cache:
            try:
                self._cache[url] = self._expand(url, ())
            except _Unexpandable as exc:
                self._cache[url] = str(exc)
        return self._cache[url]

    def _expand(self, url: str, stack: tuple[str, ...]) -> Codes:
        if url in stack:
            raise _Unexpandable(f"value set {url} includes itself")
        vs = self.valuesets.get(url)
        if vs is None:
            raise _Unexpandable(f"value set {url} is not in the definitions")
        compose = vs.get("compose")
        if not compose:
            raise _Unexpandable(f"value set {url} has no compose")
        out: Codes = {}
        for inc in compose.get("include", []):
            for system, codes in self._part(inc, stack + (url,)).items():
                out.setdefault(system, set()).update(codes)
        for exc in compose.get("exclude", []):
            for system, codes in self._part(exc, stack + (url,)).items():
                if system in out:
                    out[system] -= codes
        if not any(out.values()):
            raise _Unexpandable(f"value set {url} expands to no codes")
        return {s: c for s, c in out.items() if c}

    def _part(self, part: dict[str, Any], stack: tuple[str, ...]) -> Codes:
        """One compose.include / compose.exclude: system codes intersected with value sets."""
        result: Codes | None = None
        system = part.get("system")
        if system:
            result = {system: self._system_codes(system, part)}
        for vs_url in part.get("valueSet", []):
            codes = self._expand(vs_url.split("|")[0], stack)
            if result is None:
                result = {s: set(c) for s, c in codes.items()}
            else:
                result = {s: c & codes.get(s, set()) for s, c in result.items()}
        if result is None:
            raise _Unexpandable("compose part with neither system nor valueSet")
        return result

    def _system_codes(self, system: str, part: dict[str, Any]) -> set[str]:
        if part.get("concept"):
            return {c["code"] for c in part["concept"]}
        cs = self.codesystems.get(system)
        if cs is None:
            raise _Unexpandable(f"code system {system} is external (not in the definitions)")
        if cs.get("content") != "complete":
            raise _Unexpandable(f"code system {system} content is {cs.get('content')!r}")
        tree = cs.get("concept", [])
        filters = part.get("filter", [])
        if not filters:
            return _codes(tree)
        codes: set[str] | None = None
        for flt in filters:
            got = _filtered(system, tree, flt)
            codes = got if codes is None else codes & got
        return codes or set()


def _codes(concepts: list[dict[str, Any]]) -> set[str]:
    out: set[str] = set()
    for c in concepts:
        out.add(c["code"])
        out |= _codes(c.get("concept", []))
    return out


def _find(concepts: list[dict[str, Any]], code: str) -> dict[str, Any] | None:
    for c in concepts:
        if c["code"] == code:
            return c
        hit = _find(c.get("concept", []), code)
        if hit is not None:
            return hit
    return None


def _filtered(system: str, tree: list[dict[str, Any]], flt: dict[str, Any]) -> set[str]:
    prop, op, value = flt.get("property"), flt.get("op"), flt.get("value", "")
    if prop == "concept" and op in ("is-a", "descendent-of", "is-not-a"):
        root = _find(tree, value)
        if root is None:
            raise _Unexpandable(f"filter {op} {value}: no such code in {system}")
        below = _codes(root.get("concept", []))
        if op == "is-a":
            return below | {value}
        if op == "descendent-of":
            return below
        return _codes(tree) - below - {value}
    raise _Unexpandable(f"filter {prop} {op} {value} on {system} is not supported")


class _Graph:
    """Builds the node graph from StructureDefinition snapshots."""

    def __init__(self, sds: dict[str, dict[str, Any]], terminology: _Terminology) -> None:
        self.sds = sds
        self.term = terminology
        self.nodes: dict[str, dict[str, dict[str, str]]] = {}
        self.valuesets: dict[str, dict[str, list[str]]] = {}
        self.skipped: dict[str, str] = {}

    def build(self) -> None:
        for name, sd in self.sds.items():
            self._structure(name, sd)
        self._prune()

    def _structure(self, name: str, sd: dict[str, Any]) -> None:
        elements = sd["snapshot"]["element"]
        root = elements[0]["path"]
        self.nodes.setdefault(name, {})
        by_path = {el["path"]: el for el in elements}
        for el in elements[1:]:
            path: str = el["path"]
            parent, _, elname = path.rpartition(".")
            if elname in GENERIC_CHILDREN or elname == "id" or el.get("max") == "0":
                continue
            node_name = name if parent == root else f"{name}{parent[len(root) :]}"
            node = self.nodes.setdefault(node_name, {})
            if "contentReference" in el:
                ref = el["contentReference"].split("#", 1)[1]
                if ref not in by_path:
                    raise ValueError(f"{path}: unknown contentReference {ref}")
                target = name if ref == root else f"{name}{ref[len(root) :]}"
                node.setdefault("c", {})[elname] = target
                continue
            types = [t["code"] for t in el.get("type", [])]
            binding = el.get("binding") or {}
            required = binding.get("strength") == "required" and binding.get("valueSet")
            for tcode in types:
                key = (
                    elname[:-3] + tcode[0].upper() + tcode[1:] if elname.endswith("[x]") else elname
                )
                if tcode in INLINE_TYPES:
                    node.setdefault("c", {})[key] = f"{name}{path[len(root) :]}"
                elif tcode in PRIMITIVE_KINDS:
                    node.setdefault("p", {})[key] = PRIMITIVE_KINDS[tcode]
                elif tcode == "Resource" or tcode[0].isupper():
                    node.setdefault("c", {})[key] = tcode
                if required and tcode in ("code", "CodeableConcept"):
                    url = self._valueset(str(required))
                    if url is not None:
                        node.setdefault("b" if tcode == "code" else "cc", {})[key] = url

    def _valueset(self, canonical: str) -> str | None:
        url = canonical.split("|")[0]
        if url in self.valuesets:
            return url
        if url in self.skipped:
            return None
        got = self.term.expand(url)
        if isinstance(got, str):
            self.skipped[url] = got
            return None
        self.valuesets[url] = {s: sorted(c) for s, c in sorted(got.items())}
        return url

    def _prune(self) -> None:
        """Keep only the children through which some check can be reached."""
        live = {n for n, d in self.nodes.items() if d.get("b") or d.get("cc") or d.get("p")}
        live.add("Resource")
        live.add("Extension")  # reached through every element's extension list
        changed = True
        while changed:
            changed = False
            for name, node in self.nodes.items():
                if name not in live and any(c in live for c in node.get("c", {}).values()):
                    live.add(name)
                    changed = True
        for node in self.nodes.values():
            children = {k: v for k, v in node.get("c", {}).items() if v in live}
            if children:
                node["c"] = children
            else:
                node.pop("c", None)
        for name in [n for n, d in self.nodes.items() if not d]:
            del self.nodes[name]


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def structure_definitions(src: Path) -> dict[str, dict[str, Any]]:
    """Resource and complex-type StructureDefinitions (no profiles, no primitives), by type name."""
    out: dict[str, dict[str, Any]] = {}
    for fname in ("profiles-types.json", "profiles-resources.json"):
        for entry in _load(src / fname)["entry"]:
            sd = entry["resource"]
            if (
                sd["resourceType"] == "StructureDefinition"
                and sd.get("kind") in ("resource", "complex-type")
                and sd.get("derivation") != "constraint"
                and not sd.get("abstract")
                and "snapshot" in sd
            ):
                out[sd["type"]] = sd
    return out


def generate(src: Path, out: Path) -> None:
    terminology = _Terminology([_load(src / "valuesets.json"), _load(src / "v3-codesystems.json")])
    graph = _Graph(structure_definitions(src), terminology)
    graph.build()
    payload = {
        "notice": NOTICE,
        "valuesets": dict(sorted(graph.valuesets.items())),
        "skipped": dict(sorted(graph.skipped.items())),
        "nodes": dict(sorted(graph.nodes.items())),
    }
    (out / "required_bindings.json").write_text(
        json.dumps(payload, ensure_ascii=False, separators=(",", ":"), sort_keys=True),
        encoding="utf-8",
    )
