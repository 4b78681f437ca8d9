"""UCUM unit normalization for quantity search: http://hl7.org/fhir/R4/search.html#quantity
(units from https://ucum.org/ucum).

Only simple conversions: each known unit is ``factor * value + offset`` of one canonical unit
per dimension, chosen as UCUM's base unit where it is practical:

| dimension            | canonical | known units                                        |
| -------------------- | --------- | -------------------------------------------------- |
| mass                 | ``g``     | kg g mg ug ng [lb_av] [oz_av]                      |
| volume               | ``L``     | L l dL dl mL ml uL ul                              |
| length               | ``m``     | km m cm mm um [in_i] [ft_i]                        |
| time                 | ``s``     | a mo wk d h min s ms                               |
| amount concentration | ``mol/L`` | mol/L mmol/L umol/L nmol/L                         |
| mass concentration   | ``g/L``   | g/L g/dL mg/dL mg/L ug/mL ug/L ng/mL               |
| temperature          | ``Cel``   | Cel [degF] K                                       |

A UCUM code not in the table is its own canonical unit (``kg/m2`` stays ``kg/m2``), so the query
side can always compare canonical values: it calls :func:`canonical` on the searched value too.
"""

from __future__ import annotations

__all__ = ["UCUM", "canonical", "canonical_unit"]

UCUM = "http://unitsofmeasure.org"

# code -> (factor, offset, canonical code): canonical = value * factor + offset
_UNITS: dict[str, tuple[float, float, str]] = {}


def _add(canon: str, units: dict[str, float]) -> None:
    for code, factor in units.items():
        _UNITS[code] = (factor, 0.0, canon)


_add("g", {"kg": 1e3, "g": 1.0, "mg": 1e-3, "ug": 1e-6, "ng": 1e-9,
           "[lb_av]": 453.59237, "[oz_av]": 28.349523125})  # fmt: skip
_add(
    "L", {"L": 1.0, "l": 1.0, "dL": 0.1, "dl": 0.1, "mL": 1e-3, "ml": 1e-3, "uL": 1e-6, "ul": 1e-6}
)
_add(
    "m",
    {"km": 1e3, "m": 1.0, "cm": 1e-2, "mm": 1e-3, "um": 1e-6, "[in_i]": 0.0254, "[ft_i]": 0.3048},
)
_add("s", {"a": 31557600.0, "mo": 2629800.0, "wk": 604800.0, "d": 86400.0, "h": 3600.0,
           "min": 60.0, "s": 1.0, "ms": 1e-3})  # fmt: skip
_add("mol/L", {"mol/L": 1.0, "mmol/L": 1e-3, "umol/L": 1e-6, "nmol/L": 1e-9})
_add("g/L", {"g/L": 1.0, "g/dL": 10.0, "mg/dL": 1e-2, "mg/L": 1e-3, "ug/mL": 1e-3, "ug/L": 1e-6,
             "ng/mL": 1e-6})  # fmt: skip
_UNITS["Cel"] = (1.0, 0.0, "Cel")
_UNITS["[degF]"] = (5 / 9, -32 * 5 / 9, "Cel")
_UNITS["K"] = (1.0, -273.15, "Cel")


def canonical_unit(code: str) -> str:
    """The canonical UCUM code ``code`` converts to (itself when unknown)."""
    return _UNITS[code][2] if code in _UNITS else code


def canonical(value: float, code: str) -> tuple[float, str]:
    """``value`` in ``code`` expressed in the canonical unit: ``(185, "[lb_av]")`` ->
    ``(83914.58845, "g")``; an unknown code is returned unchanged."""
    if code not in _UNITS:
        return value, code
    factor, offset, canon = _UNITS[code]
    return value * factor + offset, canon
