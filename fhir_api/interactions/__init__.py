"""One module per FHIR REST interaction (http://hl7.org/fhir/R4/http.html), each with a
``router``: read, vread, create, update, patch, delete, history, search, capabilities."""

from . import capabilities, create, delete, history, patch, read, search, update, vread

__all__ = [
    "capabilities",
    "create",
    "delete",
    "history",
    "patch",
    "read",
    "search",
    "update",
    "vread",
]
