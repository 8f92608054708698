"""Every failure leaves as an OperationOutcome, rendered here and nowhere else."""

from __future__ import annotations

import logging
import uuid

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from app.api.request_log import HEADER, route_template
from app.api.responses import outcome_response
from app.fhir.errors import (
    ConflictError,
    FhirError,
    InsufficientStorageError,
    Issue,
    MethodNotAllowedError,
    NotFoundError,
    ServiceUnavailableError,
    operation_outcome,
)
from app.fhir.store import (
    CommitOutcomeUnknownError,
    StorageFullError,
    StorageReadOnlyError,
    StorageUnavailableError,
    WriteConflictError,
)
from app.log_policy import redacted_traceback

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


async def _commit_outcome_unknown(request: Request, exc: Exception) -> Response:
    log.error("database away during a COMMIT, outcome unknown: %s", exc)
    error = ServiceUnavailableError(
        "The database went away while this write was being committed and has not come back: "
        "whether it was stored is unknown. Read the resource (or search for it) before "
        "sending it again; a conditional create (If-None-Exist) is safe to repeat",
        headers={"Retry-After": "10"},
    )
    return await _fhir_error(request, error)


async def _storage_read_only(request: Request, exc: Exception) -> Response:
    log.warning("database refuses writes: %s", exc)
    error = ServiceUnavailableError(
        "The database is read-only right now: writes are refused (reads still work); "
        "try again later",
        headers={"Retry-After": "60"},
        code="no-store",
    )
    return await _fhir_error(request, error)


async def _storage_full(request: Request, exc: Exception) -> Response:
    log.error("database full: %s", exc)
    error = InsufficientStorageError(
        "The database has no room left for this write (disk or quota full); nothing was "
        "written. Reads still work"
    )
    return await _fhir_error(request, error)


async def _write_conflict(request: Request, exc: Exception) -> Response:
    error = ConflictError(
        "The resource was changed by concurrent writers faster than this "
        "request could be applied; try again"
    )
    return await _fhir_error(request, error)


# nginx's "client closed request": what the request log and metrics count such a request as
CLIENT_CLOSED = 499


async def _client_disconnect(request: Request, exc: Exception) -> Response:
    """The client went away while its body was being read: nothing was done and nobody is
    there to answer, which is not a server error (no incident, no traceback)."""
    log.info("client disconnected before its request body was read")
    return Response(status_code=CLIENT_CLOSED)


async def _unexpected(request: Request, exc: Exception) -> Response:
    # The log policy (app/log_policy.py): the route template, never the path (ids) or query,
    # and a traceback without the exception's message (it may quote what the request carried).
    incident = uuid.uuid4().hex[:12]
    request_id = getattr(request.state, "request_id", None)
    log.error(
        "unexpected error, incident %s, request_id=%s method=%s route=%s\n%s",
        incident,
        request_id,
        request.method,
        route_template(request.scope),
        redacted_traceback(exc),
    )
    outcome = operation_outcome([Issue("exception", f"Internal error; quote incident {incident}")])
    # sent by Starlette's ServerErrorMiddleware, outside RequestLogMiddleware: the id is set here
    headers = {HEADER: request_id} if request_id else None
    return outcome_response(request, outcome, 500, headers)


def install(app: FastAPI) -> None:
    app.add_exception_handler(FhirError, _fhir_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StorageUnavailableError, _storage_unavailable)
    app.add_exception_handler(CommitOutcomeUnknownError, _commit_outcome_unknown)
    app.add_exception_handler(StorageReadOnlyError, _storage_read_only)
    app.add_exception_handler(StorageFullError, _storage_full)
    app.add_exception_handler(WriteConflictError, _write_conflict)
    app.add_exception_handler(ClientDisconnect, _client_disconnect)
    app.add_exception_handler(Exception, _unexpected)
