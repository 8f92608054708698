"""Every failure leaves as an OperationOutcome, rendered here and nowhere else."""

from __future__ import annotations

import logging
import uuid

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from app.api.responses import outcome_response
from app.fhir.errors import (
    ConflictError,
    FhirError,
    Issue,
    MethodNotAllowedError,
    NotFoundError,
    ServiceUnavailableError,
    operation_outcome,
)
from app.fhir.store import StorageUnavailableError, WriteConflictError

log = logging.getLogger("app.errors")


async def _fhir_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, FhirError)
    return outcome_response(request, exc.outcome(), exc.status, exc.headers or None)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    error: FhirError
    if exc.status_code == 404:
        error = NotFoundError(f"No FHIR endpoint at {request.method} {request.url.path}")
    elif exc.status_code == 405:
        error = MethodNotAllowedError(
            f"{request.method} is not supported on {request.url.path}",
            headers=dict(exc.headers or {}),
        )
    else:
        outcome = operation_outcome([Issue("processing", str(exc.detail))])
        return outcome_response(request, outcome, exc.status_code)
    return await _fhir_error(request, error)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    issues = [
        Issue(
            "invalid",
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}",
            "error",
            (".".join(str(p) for p in err["loc"][1:]),),
        )
        for err in exc.errors()
    ] or [Issue("invalid", "Invalid request")]
    return outcome_response(request, operation_outcome(issues), 400)


async def _storage_unavailable(request: Request, exc: Exception) -> Response:
    log.warning("database unavailable: %s", exc)
    error = ServiceUnavailableError(
        "The database is not available right now; try again shortly", headers={"Retry-After": "2"}
    )
    return await _fhir_error(request, error)


async def _write_conflict(request: Request, exc: Exception) -> Response:
    error = ConflictError(
        "The resource was changed by concurrent writers faster than this "
        "request could be applied; try again"
    )
    return await _fhir_error(request, error)


async def _unexpected(request: Request, exc: Exception) -> Response:
    incident = uuid.uuid4().hex[:12]
    log.exception(
        "unexpected error, incident %s, %s %s", incident, request.method, request.url.path
    )
    outcome = operation_outcome([Issue("exception", f"Internal error; quote incident {incident}")])
    return outcome_response(request, outcome, 500)


def install(app: FastAPI) -> None:
    app.add_exception_handler(FhirError, _fhir_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StorageUnavailableError, _storage_unavailable)
    app.add_exception_handler(WriteConflictError, _write_conflict)
    app.add_exception_handler(Exception, _unexpected)
