"""Enforcement of who may see and do what in the health-record exchange, with no web framework:
SMART on FHIR scopes and the patient compartment (:mod:`.policy`, :mod:`.visibility`), the care
relationship (:mod:`.treatment`), patient consent and break-the-glass (:mod:`.consent`), and the
tamper-evident audit trail (:mod:`.audit`). ``fhir_api.security`` plugs it into the HTTP API.
"""

from __future__ import annotations

from .audit import AuditRecord, AuditReport, AuditTrail, verify_audit_chain
from .consent import ConsentRulesHook, notify_break_glass, rebuild_consent_rules, rules_of
from .context import current_guard, unguarded
from .hooks import GuardHooks
from .policy import Guard, Policy, Target
from .principal import ANONYMOUS, Principal
from .treatment import establishes_treatment, treated_patients
from .visibility import SHARED_TYPES, Reach, patients_of

__all__ = [
    "ANONYMOUS",
    "SHARED_TYPES",
    "AuditRecord",
    "AuditReport",
    "AuditTrail",
    "ConsentRulesHook",
    "Guard",
    "GuardHooks",
    "Policy",
    "Principal",
    "Reach",
    "Target",
    "current_guard",
    "establishes_treatment",
    "notify_break_glass",
    "patients_of",
    "rebuild_consent_rules",
    "rules_of",
    "treated_patients",
    "unguarded",
    "verify_audit_chain",
]
