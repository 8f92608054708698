"""The one family of errors. Each knows its HTTP status and OperationOutcome issue code, so the
API renders every failure the same way without knowing where it came from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True)
class Issue:
    code: str  # OperationOutcome.issue.code (IssueType value set)
    diagnostics: str
    severity: str = "error"
    expression: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "severity": self.severity,
            "code": self.code,
            "diagnostics": self.diagnostics,
        }
        if self.expression:
            out["expression"] = list(self.expression)
        return out


def operation_outcome(issues: list[Issue]) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [i.as_json() for i in issues]}


@dataclass
class FhirError(Exception):
    """Base error. `issues` carries one issue or more; the first names the failure."""

    diagnostics: str
    expression: tuple[str, ...] = ()
    extra_issues: list[Issue] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    code: str | None = None  # overrides the class's issue code for the first issue

    status: ClassVar[int] = 500
    issue_code: ClassVar[str] = "exception"

    def __post_init__(self) -> None:
        super().__init__(self.diagnostics)

    @property
    def issues(self) -> list[Issue]:
        return [
            Issue(self.code or self.issue_code, self.diagnostics, "error", self.expression),
            *self.extra_issues,
        ]

    def outcome(self) -> dict[str, Any]:
        return operation_outcome(self.issues)


class BadRequestError(FhirError):
    status = 400
    issue_code = "invalid"


class StructureError(BadRequestError):
    """The body is not parseable as a FHIR resource at all."""

    issue_code = "structure"


class UnauthorizedError(FhirError):
    """No valid credentials: the API adds WWW-Authenticate (RFC 6750)."""

    status = 401
    issue_code = "login"


class ForbiddenError(FhirError):
    """Valid credentials that do not allow this."""

    status = 403
    issue_code = "forbidden"


class NotFoundError(FhirError):
    status = 404
    issue_code = "not-found"


class UnknownTypeError(NotFoundError):
    issue_code = "not-supported"


class MethodNotAllowedError(FhirError):
    status = 405
    issue_code = "not-supported"


class NotAcceptableError(FhirError):
    status = 406
    issue_code = "not-supported"


class ConflictError(FhirError):
    status = 409
    issue_code = "conflict"


class GoneError(FhirError):
    status = 410
    issue_code = "deleted"


class PreconditionFailedError(FhirError):
    status = 412
    issue_code = "conflict"


class PayloadTooLargeError(FhirError):
    status = 413
    issue_code = "too-costly"


class UriTooLongError(FhirError):
    status = 414
    issue_code = "too-costly"


class UnsupportedMediaTypeError(FhirError):
    status = 415
    issue_code = "not-supported"


class UnprocessableError(FhirError):
    """The resource parses but breaks the rules (model validation, bindings, invariants)."""

    status = 422
    issue_code = "processing"


class InvalidResourceError(UnprocessableError):
    issue_code = "invalid"


class ServiceUnavailableError(FhirError):
    status = 503
    issue_code = "transient"


class InsufficientStorageError(FhirError):
    """The database has no room for the write (disk or quota full): nothing was written."""

    status = 507
    issue_code = "no-store"
