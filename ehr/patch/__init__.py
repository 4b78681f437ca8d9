"""The two patch formats of the FHIR patch interaction (http://hl7.org/fhir/R4/http.html#patch):

* :func:`apply_json_patch`: JSON Patch, RFC 6902 (``application/json-patch+json``);
* :func:`apply_fhirpath_patch`: FHIRPath Patch, a Parameters resource
  (http://hl7.org/fhir/R4/fhirpatch.html, ``application/fhir+json``).

Both are pure: they return a new dict and never modify their input. A malformed patch document
raises ``ehr.errors.BadRequest`` (400); a well-formed patch that cannot be applied raises
``ehr.errors.Unprocessable`` (422, code ``processing``), naming the failing operation by its
index. A patch may not change ``id`` or ``resourceType`` (422). Whether the result is valid FHIR
is checked by the store afterwards.
"""

from ehr.patch.fhirpath_patch import apply_fhirpath_patch
from ehr.patch.json_patch import apply_json_patch

__all__ = ["apply_fhirpath_patch", "apply_json_patch"]
