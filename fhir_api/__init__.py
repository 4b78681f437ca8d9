"""The FHIR R4 REST API over :mod:`ehr` (http://hl7.org/fhir/R4/http.html).

Public surface: :func:`create_app`.
"""

from fhir_api.app import create_app

__all__ = ["create_app"]
