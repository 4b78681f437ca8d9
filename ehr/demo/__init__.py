"""The deterministic demo city: a fictional Chinese city (云泽市, 江苏省) with hospitals,
community health centres, staff, 300 citizens and three years of their health records, as FHIR
R4 resources (http://hl7.org/fhir/R4/resourcelist.html).

``generate_city(seed, citizens)`` returns the resources in load order; ``city_bundle`` wraps
them in a transaction Bundle. ``python -m ehr.demo`` writes either as JSON.
"""

from ehr.demo.generate import (
    DEMO_CITIZEN_ID_KEY,
    RESOURCE_ORDER,
    anchor_date,
    city_bundle,
    demo_citizen_ids,
    generate_city,
)

__all__ = [
    "DEMO_CITIZEN_ID_KEY",
    "RESOURCE_ORDER",
    "anchor_date",
    "city_bundle",
    "demo_citizen_ids",
    "generate_city",
]
