"""``$validate``: http://hl7.org/fhir/R4/resource-operation-validate.html

:func:`validate_operation` answers ``[type]/$validate`` and ``[type]/[id]/$validate`` with an
OperationOutcome (a dict) that lists every issue found, each with severity, code, diagnostics and
its FHIRPath location (``expression``); a single ``information`` issue "All OK" when there is
none. A resource with errors is an answer, not a failure: only a request that cannot be carried
out raises a :class:`~ehr.errors.FhirError` (an unknown type, an unknown mode, a missing resource
or id, an unknown parameter: 400 / 404).

What is checked, all reported together:

1. the resource type against the URL, and the id's format;
2. structure, primitive formats, JSON rules and required bindings: :mod:`ehr.validation` (which
   stops at the first kind of problem; here its issues are collected, not raised);
3. cardinalities (every missing ``min >= 1`` element, arrays exactly where ``max`` is ``*``) and
   the invariants (constraint FHIRPath) of the R4 StructureDefinitions, anywhere in the
   resource: :mod:`ehr.invariants`;
4. ``profile``: the core StructureDefinition of the type (``.../StructureDefinition/Patient``,
   nothing more to check) and the FHIR vital-signs profile
   (``http://hl7.org/fhir/StructureDefinition/vitalsigns``: category ``vital-signs``, a LOINC
   code, a subject that is a Patient, ``effective[x]`` a dateTime precise to the day or a
   Period, vs-2 and vs-3, Quantities in UCUM with value, unit, system and code); any other
   profile gives an error issue with code ``not-supported``;
5. ``mode`` (http://hl7.org/fhir/R4/valueset-resource-validation-mode.html):

   * ``create``: the write is tried in a transaction that is then rolled back, so the store's
     write hooks (the booking rules) and its uniqueness rules have their say; the id in the
     body is not needed (a create ignores it);
   * ``update``: the body must carry the id of the URL; the update is tried and rolled back the
     same way (an unknown id would be an update-as-create, which this server allows);
   * ``delete``: the content is ignored; the resource must exist (``not-found`` otherwise) and
     its deletion is tried and rolled back (a booked Slot cannot be deleted);
   * ``profile``: the resource (or, without one, the stored ``[type]/[id]``) against the
     ``profile``, which is then required.

   The trial write runs only when the content has no error. Without a mode nothing is written
   or locked, and ``store`` may be None.

``parse_validate_parameters`` reads the body: the resource itself, or a ``Parameters`` with the
parts ``resource``, ``mode`` and ``profile`` (declared in :data:`PARAMETERS`).

Invariant evaluation is slow next to the ordinary write path (tens of µs to a few ms a resource),
which is why only ``$validate`` runs it; create and update check what :mod:`ehr.validation` does.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from ehr.definitions import resource_types
from ehr.errors import BadRequest, FhirError, Issue, NotFound, operation_outcome
from ehr.invariants import check_resource
from ehr.search.fhirpath import reference_type
from ehr.validation import ID_RE, validate_resource

if TYPE_CHECKING:
    from ehr.store import Store, WriteContext

__all__ = [
    "CORE_PROFILE",
    "MODES",
    "PARAMETERS",
    "VITAL_SIGNS",
    "content_issues",
    "parse_validate_parameters",
    "profile_issues",
    "validate_operation",
]

#: the operation's input parameters: name -> the ``Parameters.parameter`` keys that may carry
#: its value (each at most once)
PARAMETERS: dict[str, tuple[str, ...]] = {
    "resource": ("resource",),
    "mode": ("valueCode", "valueString"),
    "profile": ("valueUri", "valueCanonical", "valueString"),
}
MODES = ("create", "update", "delete", "profile")
CORE_PROFILE = "http://hl7.org/fhir/StructureDefinition/"
VITAL_SIGNS = "http://hl7.org/fhir/StructureDefinition/vitalsigns"
_ALL_OK = Issue("informational", "All OK", "information")


def parse_validate_parameters(body: Any) -> tuple[Any, str | None, str | None]:
    """``(resource, mode, profile)`` from a ``$validate`` body: a ``Parameters`` whose parts are
    all among :data:`PARAMETERS`, or else the resource itself (a Parameters resource with other
    parts is a resource to validate)."""
    if not isinstance(body, dict):
        raise BadRequest("the body of $validate must be a JSON object", "structure")
    parts = body.get("parameter") if body.get("resourceType") == "Parameters" else None
    if (
        not isinstance(parts, list)
        or not parts
        or not all(isinstance(p, dict) and p.get("name") in PARAMETERS for p in parts)
    ):
        return body, None, None
    found: dict[str, Any] = {}
    for part in parts:
        name = part["name"]
        if name in found:
            raise BadRequest(f"$validate: the parameter {name!r} is given twice", "invalid")
        values = [part[key] for key in PARAMETERS[name] if key in part]
        if len(values) != 1:
            expected = " or ".join(PARAMETERS[name])
            raise BadRequest(f"$validate: the parameter {name!r} needs one {expected}", "invalid")
        found[name] = values[0]
    for name in ("mode", "profile"):
        if name in found and not isinstance(found[name], str):
            raise BadRequest(f"$validate: the parameter {name!r} must be a string", "invalid")
    return found.get("resource"), found.get("mode"), found.get("profile")


def validate_operation(
    store: Store | None,
    rtype: str,
    resource: Any,
    *,
    rid: str | None = None,
    mode: str | None = None,
    profile: str | None = None,
) -> dict[str, Any]:
    """The OperationOutcome of ``$validate`` on ``rtype`` (and ``rid`` at instance level)."""
    if rtype not in resource_types():
        raise NotFound(f"Unknown resource type {rtype!r}", "not-supported")
    if mode is not None and mode not in MODES:
        raise BadRequest(f"$validate: unknown mode {mode!r} (one of {', '.join(MODES)})", "value")
    if rid is not None and not ID_RE.fullmatch(rid):
        raise BadRequest(f"{rid!r} is not a valid resource id", "value")
    if mode in ("update", "delete") and rid is None:
        raise BadRequest(f"$validate mode={mode} needs a resource id ([type]/[id]/$validate)")
    if mode in ("create", "update", "delete") and store is None:
        raise ValueError(f"$validate mode={mode} needs the store")
    if mode == "delete":
        assert store is not None and rid is not None
        return _outcome(_delete_issues(store, rtype, rid))
    if mode == "profile":
        if profile is None:
            raise BadRequest("$validate mode=profile needs a profile")
        if resource is None:
            if store is None or rid is None:
                raise BadRequest("$validate mode=profile needs a resource or an id")
            resource = store.read(rtype, rid).resource()
    if resource is None:
        raise BadRequest("$validate needs the resource to validate")

    issues = content_issues(rtype, resource)
    if profile is not None:
        issues += profile_issues(rtype, resource, profile)
    if mode == "update" and isinstance(resource, dict):
        issues += _update_id_issues(rtype, resource, rid)
    if mode in ("create", "update") and not _has_errors(issues):
        assert store is not None
        issues += _trial_write(store, rtype, rid, resource, mode)
    return _outcome(issues)


def content_issues(rtype: str, resource: Any) -> list[Issue]:
    """Every problem of ``resource`` as a ``rtype``: steps 1 to 3 of the module docstring."""
    if not isinstance(resource, dict):
        return [Issue("structure", "the resource must be a JSON object")]
    actual = resource.get("resourceType")
    if not isinstance(actual, str) or actual not in resource_types():
        what = f"unknown resource type {actual!r}" if actual else "the resource has no resourceType"
        return [Issue("structure" if actual else "required", what, expression=("resourceType",))]
    issues: list[Issue] = []
    if actual != rtype:
        issues.append(
            Issue(
                "invalid",
                f"resourceType {actual!r} does not match the type {rtype!r} in the URL",
                expression=("resourceType",),
            )
        )
    body = resource
    if "id" in resource and not (
        isinstance(resource["id"], str) and ID_RE.fullmatch(resource["id"])
    ):
        issues.append(
            Issue(
                "value",
                f"{resource['id']!r} is not a valid resource id (1-64 of A-Z a-z 0-9 - .)",
                expression=(f"{actual}.id",),
            )
        )
        body = {k: v for k, v in resource.items() if k != "id"}
    structure: list[Issue] = []
    try:
        validate_resource(body)
    except FhirError as exc:
        structure = list(exc.issues)
    issues += structure
    seen = [e for i in structure for e in i.expression]
    for issue in check_resource(resource):
        # a cardinality or evaluation problem may be one ehr.validation reported already
        if issue.code == "invariant" or not any(
            _within(s, e) for s in seen for e in issue.expression
        ):
            issues.append(issue)
    return issues


def profile_issues(rtype: str, resource: Any, profile: str) -> list[Issue]:
    """Step 4: the resource against ``profile`` (a canonical URL, ``|version`` allowed)."""
    url = profile.split("|", 1)[0]
    actual = resource.get("resourceType") if isinstance(resource, dict) else None
    if url == VITAL_SIGNS:
        if actual != "Observation":
            return [_not_a("Observation", actual, profile)]
        return _vital_signs_issues(resource)
    if url.startswith(CORE_PROFILE) and url[len(CORE_PROFILE) :] in resource_types():
        core = url[len(CORE_PROFILE) :]
        return [] if core == actual else [_not_a(core, actual, profile)]
    return [
        Issue(
            "not-supported",
            f"profile {profile!r} is not supported: this server validates against the core "
            f"StructureDefinitions ({CORE_PROFILE}[type]) and {VITAL_SIGNS} only",
        )
    ]


def _not_a(expected: str, actual: Any, profile: str) -> Issue:
    return Issue(
        "invalid",
        f"profile {profile!r} is for {expected}, not {actual}",
        expression=("resourceType",),
    )


# --------------------------------------------------------------------------- vital signs

_OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
_LOINC = "http://loinc.org"
_UCUM = "http://unitsofmeasure.org"
_VALUE_KEYS = (
    "valueQuantity", "valueCodeableConcept", "valueString", "valueBoolean", "valueInteger",
    "valueRange", "valueRatio", "valueSampledData", "valueTime", "valueDateTime", "valuePeriod",
)  # fmt: skip


def _vital_signs_issues(obs: dict[str, Any]) -> list[Issue]:
    """The rules of http://hl7.org/fhir/R4/vitalsigns.html (the vitalsigns profile)."""
    out: list[Issue] = []

    def issue(code: str, text: str, where: str) -> None:
        out.append(Issue(code, f"vitalsigns: {text}", expression=(where,)))

    codings = [c for cat in _dicts(obs.get("category")) for c in _dicts(cat.get("coding"))]
    if not any(
        c.get("system") == _OBSERVATION_CATEGORY and c.get("code") == "vital-signs" for c in codings
    ):
        issue(
            "required",
            f"a category coding {_OBSERVATION_CATEGORY}|vital-signs is required",
            "Observation.category",
        )
    code = obs.get("code")
    if not any(c.get("system") == _LOINC and c.get("code") for c in _dicts(_get(code, "coding"))):
        issue(
            "required",
            "the code needs a LOINC coding (system http://loinc.org)",
            "Observation.code",
        )
    subject = obs.get("subject")
    if not isinstance(subject, dict):
        issue("required", "a subject (the Patient) is required", "Observation.subject")
    elif (target := reference_type(subject)) not in (None, "Patient"):
        issue("value", f"the subject must be a Patient, not a {target}", "Observation.subject")
    effective = [k for k in obs if k.startswith("effective") and k[9:10].isupper()]
    if not effective:
        issue(
            "required",
            "effective[x] (when it was measured) is required",
            "Observation.effective[x]",
        )
    for key in effective:
        if key not in ("effectiveDateTime", "effectivePeriod"):
            issue(
                "structure",
                f"effective[x] must be a dateTime or a Period, not {key}",
                f"Observation.{key}",
            )
        elif key == "effectiveDateTime":
            value = obs[key]
            if isinstance(value, str) and len(value) < 10:
                issue(
                    "value",
                    "vs-1: if Observation.effective[x] is dateTime and has a value then that "
                    "value shall be precise to the day",
                    "Observation.effectiveDateTime",
                )
    has_value = any(k in obs for k in _VALUE_KEYS)
    if (
        not obs.get("component")
        and not obs.get("hasMember")
        and not has_value
        and "dataAbsentReason" not in obs
    ):
        issue(
            "invariant",
            "vs-2: if there is no component or hasMember element then either a value[x] or a "
            "data absent reason must be present",
            "Observation",
        )
    for key in _VALUE_KEYS:
        if key in obs and key != "valueQuantity":
            issue("structure", f"value[x] must be a Quantity, not {key}", f"Observation.{key}")
    if isinstance(obs.get("valueQuantity"), dict):
        out += _ucum_issues(obs["valueQuantity"], "Observation.valueQuantity")
    for i, component in enumerate(_dicts(obs.get("component"))):
        where = f"Observation.component[{i}]"
        if not any(k in component for k in _VALUE_KEYS) and "dataAbsentReason" not in component:
            issue(
                "invariant",
                "vs-3: if there is no a value a data absent reason must be present",
                where,
            )
        if isinstance(component.get("valueQuantity"), dict):
            out += _ucum_issues(component["valueQuantity"], f"{where}.valueQuantity")
    return out


def _ucum_issues(quantity: dict[str, Any], where: str) -> list[Issue]:
    out = []
    for key in ("value", "unit", "system", "code"):
        if key not in quantity:
            out.append(
                Issue(
                    "required",
                    f"vitalsigns: a vital-sign Quantity needs its {key} (UCUM)",
                    expression=(f"{where}.{key}",),
                )
            )
    system = quantity.get("system")
    if system is not None and system != _UCUM:
        out.append(
            Issue(
                "value",
                f"vitalsigns: the unit system must be UCUM ({_UCUM}), not {system!r}",
                expression=(f"{where}.system",),
            )
        )
    return out


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _get(value: Any, key: str) -> Any:
    return value.get(key) if isinstance(value, dict) else None


# --------------------------------------------------------------------------- modes


def _update_id_issues(rtype: str, resource: dict[str, Any], rid: str | None) -> list[Issue]:
    body_id = resource.get("id")
    if body_id is None:
        return [
            Issue(
                "required",
                f"an update needs the id in the resource (here {rid!r}, as in the URL)",
                expression=(f"{rtype}.id",),
            )
        ]
    if body_id != rid:
        return [
            Issue(
                "invalid",
                f"the id {body_id!r} in the resource does not match the id {rid!r} in the URL",
                expression=(f"{rtype}.id",),
            )
        ]
    return []


class _RollBack(Exception):
    """Leaves :meth:`Store.write` so that the trial write is rolled back."""


def _trial_write(
    store: Store, rtype: str, rid: str | None, resource: dict[str, Any], mode: str
) -> list[Issue]:
    """Try the write (hooks, uniqueness, indexing) in a transaction that is rolled back."""

    body = copy.deepcopy(resource)  # write hooks may change what they are given

    def write(ctx: WriteContext) -> None:
        if mode == "create":
            ctx.create(body, validate=False)
        else:
            assert rid is not None
            ctx.update(rtype, rid, body, validate=False)

    return _try(store, write)


def _delete_issues(store: Store, rtype: str, rid: str) -> list[Issue]:
    found: list[Issue] = []

    def write(ctx: WriteContext) -> None:
        current = ctx.repo.current(rtype, rid)
        if current is None:
            found.append(Issue("not-found", f"{rtype}/{rid} does not exist", expression=(rtype,)))
        elif current.deleted:
            found.append(
                Issue(
                    "deleted",
                    f"{rtype}/{rid} is already deleted (a delete would change nothing)",
                    "information",
                    (rtype,),
                )
            )
        else:
            ctx.delete(rtype, rid)

    return _try(store, write) + found


def _try(store: Store, write: Any) -> list[Issue]:
    try:
        with store.write() as ctx:
            write(ctx)
            raise _RollBack
    except _RollBack:
        return []
    except FhirError as exc:
        return list(exc.issues)


# --------------------------------------------------------------------------- the outcome


def _has_errors(issues: list[Issue]) -> bool:
    return any(i.severity in ("error", "fatal") for i in issues)


def _within(inner: str, outer: str) -> bool:
    """``inner`` is the location ``outer`` or inside it."""
    return inner == outer or inner.startswith((outer + ".", outer + "["))


def _outcome(issues: list[Issue]) -> dict[str, Any]:
    return operation_outcome(issues or [_ALL_OK])
