"""Bulk Data export (FHIR Bulk Data Access IG 2.0): kick-off, status, files, cancel."""

from __future__ import annotations

import threading
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response

from app.api.auth import access
from app.api.context import base_url, runtime
from app.api.openapi import (
    ERRORS,
    EXPORT_MANIFEST,
    INTERACTION,
    header,
    header_parameter,
    operation,
    query,
)
from app.fhir import export
from app.fhir.errors import (
    BadRequestError,
    ForbiddenError,
    NotFoundError,
    ServiceUnavailableError,
)

router = APIRouter(
    prefix="/fhir", tags=["bulk data"], default_response_class=Response, responses=ERRORS
)
# The status, cancel and file requests are the asynchronous pattern's, of $export.
_EXPORT = {INTERACTION: operation("export")}

_KICK_OFF: dict[str, Any] = {
    "status_code": 202,
    "responses": {
        202: {
            "description": "Accepted: poll the status URL",
            "headers": {
                "Content-Location": header({"type": "string"}, "The job's status URL"),
            },
        }
    },
    "openapi_extra": {
        INTERACTION: operation("export"),
        "parameters": [
            header_parameter("Prefer", {"type": "string"}, "respond-async (required: else 400)"),
            query("_type", {"type": "string"}, "Resource types, comma-separated"),
            query("_since", {"type": "string", "format": "date-time"}, "Changed after"),
            query(
                "_outputFormat",
                {"enum": [export.NDJSON, "application/ndjson", "ndjson"]},
                "The files' format: NDJSON",
            ),
        ],
    },
}


def _owner(request: Request) -> str | None:
    allowed = access(request)
    return None if allowed.everyone else f"{allowed.client_id}|{allowed.subject}"


async def _kick_off(request: Request, level: str) -> Response:
    rt = runtime(request)
    prefer = request.headers.get("prefer", "")
    if "respond-async" not in prefer.lower():
        raise BadRequestError(
            "$export runs asynchronously: send the header Prefer: respond-async", ("Prefer",)
        )
    params = list(request.query_params.multi_items())
    allowed = access(request)
    types = [t.strip() for k, v in params if k == "_type" for t in v.split(",") if t.strip()]
    if level == "patient":
        allowed.require("Patient", "s")
    if types:
        for resource_type in types:
            allowed.require(resource_type, "s")
    else:
        allowed.require_all_types("s", "$export of every resource type (no _type)")
    if any(allowed.compartment(t, "s") is not None for t in types or ("Patient",)):
        raise ForbiddenError("$export is not available to patient-context access tokens")
    if any(allowed.restriction(t, "s") for t in types or allowed.types_allowed("s")):
        raise ForbiddenError("$export is not available to access tokens with filtered scopes")
    job = await rt.call(
        export.kick_off, rt.exports, level, str(request.url), params, _owner(request)
    )
    thread = threading.Thread(
        target=export.run,
        args=(rt.exports, job, rt.settings.export_dir),
        name=f"export-{job.job_id}",
        daemon=True,
    )
    thread.start()
    status_url = f"{base_url(request)}/$export-status/{job.job_id}"
    return Response(status_code=202, headers={"Content-Location": status_url})


@router.get(
    "/$export", summary="export: every resource, as NDJSON files (asynchronous)", **_KICK_OFF
)
async def export_system(request: Request) -> Response:
    return await _kick_off(request, "system")


@router.get(
    "/Patient/$export",
    summary="export: the Patients and what refers to them, as NDJSON files (asynchronous)",
    **_KICK_OFF,
)
async def export_patients(request: Request) -> Response:
    return await _kick_off(request, "patient")


@router.get(
    "/$export-status/{job_id}",
    summary="export status: progress, or the manifest (of $export)",
    responses={
        200: {
            "description": "Complete: the manifest",
            "content": {"application/json": {"schema": EXPORT_MANIFEST}},
        },
        202: {
            "description": "In progress",
            "headers": {"X-Progress": header({"type": "string"}, "How far it is")},
        },
    },
    openapi_extra=_EXPORT,
)
async def export_status(request: Request, job_id: str) -> Response:
    rt = runtime(request)
    job = await rt.call(export.owned_job, rt.exports, job_id, _owner(request))
    if job is None or job.status == "cancelled":
        raise NotFoundError(f"No export job {job_id}", ("job",))
    if job.status == "accepted":
        headers = {"X-Progress": job.progress or "started", "Retry-After": "2"}
        return Response(status_code=202, headers=headers)
    if job.status == "failed":
        raise ServiceUnavailableError(f"The export failed: {job.error}")
    files = f"{base_url(request)}/$export-file/{job_id}"
    return JSONResponse(export.manifest(job, files), headers={"Expires": "never"})


@router.delete(
    "/$export-status/{job_id}",
    summary="export cancel: stop an export, or delete its files (of $export)",
    status_code=202,
    responses={202: {"description": "Cancelled, or its files deleted"}},
    openapi_extra=_EXPORT,
)
async def export_cancel(request: Request, job_id: str) -> Response:
    rt = runtime(request)
    await rt.call(export.cancel, rt.exports, job_id, rt.settings.export_dir, _owner(request))
    return Response(status_code=202)


@router.get(
    "/$export-file/{job_id}/{name}",
    summary="export file: one NDJSON file of a complete export (of $export)",
    responses={200: {"description": "The file", "content": {export.NDJSON: {}}}},
    openapi_extra=_EXPORT,
)
async def export_file(request: Request, job_id: str, name: str) -> Response:
    rt = runtime(request)
    path = await rt.call(
        export.file_path, rt.exports, rt.settings.export_dir, job_id, name, _owner(request)
    )
    return FileResponse(path, media_type=export.NDJSON)
