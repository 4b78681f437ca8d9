"""The FHIR R4 store of the regional health-record exchange (a library; no web server).

Public surface: :class:`Store` and its result types, the :class:`FhirError` family, and
:class:`Settings`.
"""

from ehr.errors import FhirError
from ehr.settings import Settings, get_settings
from ehr.store import PendingWrite, Store, StoredResource, WriteContext, WriteHook, WriteResult

__all__ = [
    "FhirError",
    "PendingWrite",
    "Settings",
    "Store",
    "StoredResource",
    "WriteContext",
    "WriteHook",
    "WriteResult",
    "get_settings",
]
