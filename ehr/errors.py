"""The one error type of the store.

Every failure the store reports is a :class:`FhirError`. It carries the HTTP status the FHIR
specification names for the situation and one or more OperationOutcome issues (severity, issue
type code from http://hl7.org/fhir/R4/valueset-issue-type.html, diagnostics, FHIRPath location).
It becomes an OperationOutcome only at the HTTP edge (``fhir_api``); the store never renders HTTP.

Error tree::

    FhirError                    status  code
    ├── BadRequest               400     invalid / structure / value / not-supported
    ├── Forbidden                403     forbidden
    ├── NotFound                 404     not-found
    ├── MethodNotAllowed         405     not-supported
    ├── Conflict                 409     conflict / duplicate / business-rule
    ├── Gone                     410     deleted
    ├── PreconditionFailed       412     conflict / multiple-matches
    ├── PayloadTooLarge          413     too-costly
    ├── UnsupportedMediaType     415     not-supported
    └── Unprocessable            422     invalid / required / code-invalid / value / structure

Foreign exceptions (pydantic, SQLAlchemy, orjson) are translated at the store boundary with
``raise FhirError(...) from exc``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "BadRequest",
    "Conflict",
    "FhirError",
    "Forbidden",
    "Gone",
    "Issue",
    "MethodNotAllowed",
    "NotFound",
    "PayloadTooLarge",
    "PreconditionFailed",
    "Unprocessable",
    "UnsupportedMediaType",
    "operation_outcome",
]


@dataclass(frozen=True)
class Issue:
    """One OperationOutcome.issue."""

    code: str
    diagnostics: str
    severity: str = "error"
    expression: tuple[str, ...] = ()

    def to_fhir(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "severity": self.severity,
            "code": self.code,
            "diagnostics": self.diagnostics,
        }
        if self.expression:
            out["expression"] = list(self.expression)
        return out


@dataclass
class FhirError(Exception):
    """A failure with a FHIR issue code and the HTTP status the spec names for it."""

    status: int
    code: str
    diagnostics: str
    expression: tuple[str, ...] = ()
    issues: list[Issue] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        Exception.__init__(self, f"{self.status} {self.code}: {self.diagnostics}")
        if not self.issues:
            self.issues = [Issue(self.code, self.diagnostics, "error", tuple(self.expression))]

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.diagnostics}"

    def __hash__(self) -> int:
        return id(self)

    def outcome(self) -> dict[str, Any]:
        return operation_outcome(self.issues)


def operation_outcome(issues: list[Issue]) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [i.to_fhir() for i in issues]}


def _kind(status: int, default_code: str) -> type[FhirError]:
    def init(
        self: FhirError,
        diagnostics: str,
        code: str = default_code,
        *,
        expression: tuple[str, ...] | list[str] = (),
        issues: list[Issue] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        FhirError.__init__(
            self,
            status,
            code,
            diagnostics,
            tuple(expression),
            list(issues or []),
            dict(headers or {}),
        )

    return type("_FhirErrorKind", (FhirError,), {"__init__": init})  # type: ignore[return-value]


class BadRequest(_kind(400, "invalid")):  # type: ignore[misc]
    """400: the request cannot be parsed or is not allowed in this form."""


class Forbidden(_kind(403, "forbidden")):  # type: ignore[misc]
    """403: the caller may not do this."""


class NotFound(_kind(404, "not-found")):  # type: ignore[misc]
    """404: unknown resource type or id."""


class MethodNotAllowed(_kind(405, "not-supported")):  # type: ignore[misc]
    """405: the interaction is not allowed on this target."""


class Conflict(_kind(409, "conflict")):  # type: ignore[misc]
    """409: version conflict, duplicate, or a business rule refuses the write."""


class Gone(_kind(410, "deleted")):  # type: ignore[misc]
    """410: the resource was deleted."""


class PreconditionFailed(_kind(412, "conflict")):  # type: ignore[misc]
    """412: If-Match mismatch, or a conditional interaction matched several resources."""


class PayloadTooLarge(_kind(413, "too-costly")):  # type: ignore[misc]
    """413: the body exceeds the configured limit."""


class UnsupportedMediaType(_kind(415, "not-supported")):  # type: ignore[misc]
    """415: the body's content type is not one we read."""


class Unprocessable(_kind(422, "invalid")):  # type: ignore[misc]
    """422: the resource is syntactically fine but violates the FHIR rules."""
