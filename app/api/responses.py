"""Building FHIR responses: body in the negotiated format, ETag, Last-Modified, Location."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from app.api import negotiation
from app.api.context import base_url
from app.fhir import jsonio
from app.fhir.errors import Issue, operation_outcome
from app.fhir.formats import JSON, render
from app.fhir.instants import http_date
from app.fhir.store import VersionRecord


def fhir_response(
    request: Request,
    content: bytes,
    status: int = 200,
    headers: dict[str, str] | None = None,
    fmt: str | None = None,
) -> Response:
    fmt = fmt or negotiation.response_format(request)
    body = render(content, fmt, pretty=negotiation.pretty(request))
    return Response(body, status, headers, media_type=negotiation.MEDIA_TYPES[fmt])


def version_headers(record: VersionRecord) -> dict[str, str]:
    return {"ETag": f'W/"{record.version_id}"', "Last-Modified": http_date(record.last_updated)}


def resource_response(
    request: Request,
    record: VersionRecord,
    status: int = 200,
    *,
    location: bool = False,
    prefer: str = "representation",
) -> Response:
    """A resource after a read or a write. Writes honour Prefer: return=..."""
    fmt = negotiation.response_format(request)
    headers = version_headers(record)
    if location:
        headers["Location"] = (
            f"{base_url(request)}/{record.resource_type}/"
            f"{record.resource_id}/_history/{record.version_id}"
        )
    if prefer == "minimal" or (record.content is None and prefer == "representation"):
        return Response(status_code=status, headers=headers)
    if prefer == "OperationOutcome":
        verb = "deleted" if record.content is None else ("created" if status == 201 else "updated")
        outcome = informational(
            f"{record.resource_type}/{record.resource_id} {verb}: version {record.version_id}"
        )
        return fhir_response(request, outcome, status, headers, fmt)
    assert record.content is not None
    return fhir_response(request, record.content, status, headers, fmt)


def informational(message: str) -> bytes:
    return jsonio.dumps(operation_outcome([Issue("informational", message, "information")]))


def outcome_response(
    request: Request, outcome: dict[str, Any], status: int, headers: dict[str, str] | None = None
) -> Response:
    """An OperationOutcome, in the client's format when that can be told, JSON otherwise."""
    try:
        fmt = negotiation.response_format(request)
    except Exception:  # an unacceptable Accept is itself being reported: fall back to JSON
        fmt = JSON
    try:
        body = render(jsonio.dumps(outcome), fmt, pretty=negotiation.pretty(request))
    except Exception:
        fmt, body = JSON, jsonio.dumps(outcome)
    return Response(body, status, headers, media_type=negotiation.MEDIA_TYPES[fmt])
