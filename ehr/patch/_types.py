"""What FHIRPath Patch needs to know about the shape of FHIR elements: whether an element
repeats (``add`` of ``identifier`` must create a list) and which JSON keys a choice element
``value[x]`` may take (``add`` of ``deceased`` with ``valueBoolean`` writes ``deceasedBoolean``).

It reads the element definitions that the fhir.resources R4B models carry (the models the store
validates with); R4 and R4B do not differ in these properties for the elements we patch. When a
type is unknown the callers fall back to what the data shows.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from functools import cache
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import BaseModel

__all__ = [
    "Element",
    "choice_alternatives",
    "class_at",
    "elements",
    "resource_class",
    "resolve_name",
]

ModelClass = type[BaseModel]


@dataclass(frozen=True)
class Element:
    """One element of a complex type or resource, as written in JSON."""

    key: str  # JSON key, e.g. "deceasedBoolean"
    repeats: bool
    type: ModelClass | None  # the model of a complex type; None for a primitive
    choice: str | None = None  # "deceased" for deceasedBoolean


def _analyse(annotation: Any) -> tuple[bool, ModelClass | None]:
    repeats = False
    model: ModelClass | None = None
    stack = [annotation]
    while stack:
        t = stack.pop()
        origin = typing.get_origin(t)
        args = typing.get_args(t)
        if origin is list:
            repeats = True
            stack.extend(args)
        elif origin is typing.Annotated:
            stack.append(args[0])
        elif origin is typing.Union or origin is types.UnionType:
            stack.extend(args)
        elif isinstance(t, type) and hasattr(t, "get_model_klass"):
            model = t.get_model_klass()
        elif isinstance(t, type) and issubclass(t, BaseModel):
            model = t
    return repeats, model


@cache
def elements(model: ModelClass) -> dict[str, Element]:
    """JSON key -> Element for every FHIR element of a model class."""
    out: dict[str, Element] = {}
    for name, field in model.model_fields.items():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        if not extra.get("element_property"):
            continue
        repeats, inner = _analyse(field.annotation)
        choice = extra.get("one_of_many")
        key = field.alias or name
        out[key] = Element(key, repeats, inner, choice if isinstance(choice, str) else None)
    return out


@cache
def resource_class(resource_type: str) -> ModelClass | None:
    try:
        model = get_fhir_model_class(resource_type)
    except (KeyError, ValueError, AttributeError, ImportError):
        return None
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def resolve_name(model: ModelClass, name: str, type_suffix: str | None) -> Element | None:
    """The element ``name`` names in ``model``: a plain element, or for a choice element base
    (``deceased``) the alternative for ``type_suffix`` (``Boolean``). None if there is none."""
    table = elements(model)
    if name in table:
        return table[name]
    if type_suffix:
        el = table.get(name + type_suffix)
        if el is not None and el.choice == name:
            return el
    return None


def choice_alternatives(model: ModelClass, base: str) -> list[str]:
    return [e.key for e in elements(model).values() if e.choice == base]


def class_at(root: dict[str, Any], steps: tuple[str | int, ...]) -> ModelClass | None:
    """The model class of the complex value reached from ``root`` by ``steps`` (keys and list
    indexes); None when it is a primitive or unknown."""
    model = resource_class(str(root.get("resourceType", "")))
    node: Any = root
    for step in steps:
        node = node[step]
        if isinstance(node, dict) and "resourceType" in node:  # a contained resource
            model = resource_class(str(node["resourceType"]))
            continue
        if isinstance(step, int):
            continue
        el = elements(model).get(step) if model is not None else None
        model = el.type if el is not None else None
    return model
