"""Probes for orchestrators, outside /fhir: no token, no audit event, no FHIR negotiation
unless something is wrong.

- GET /healthz: the process answers (liveness); touches nothing else.
- GET /readyz: the database answers and its schema is at the migrations' head (readiness);
  503 with an OperationOutcome saying which when not."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from app.api.context import runtime
from app.api.openapi import INTERACTION, NOT_FHIR, OPERATION_OUTCOME, STATUS_OK, fhir
from app.fhir.errors import ServiceUnavailableError

router = APIRouter(tags=["health"], default_response_class=Response)
_NOT_FHIR = {INTERACTION: NOT_FHIR}  # probes for orchestrators, not FHIR interactions
_OK = {"description": "OK", "content": {"application/json": {"schema": STATUS_OK}}}

_NO_STORE = {"Cache-Control": "no-store"}


@router.get(
    "/healthz",
    summary="liveness: the process answers",
    responses={200: _OK},
    openapi_extra=_NOT_FHIR,
)
async def healthz() -> Response:
    return JSONResponse({"status": "ok"}, headers=_NO_STORE)


@router.get(
    "/readyz",
    summary="readiness: the database answers, at the schema's head",
    responses={200: _OK, 503: fhir(OPERATION_OUTCOME, "Not ready, and why")},
    openapi_extra=_NOT_FHIR,
)
async def readyz(request: Request) -> Response:
    rt = runtime(request)
    problem = await rt.call(rt.readiness) if rt.readiness is not None else None
    if problem is not None:
        raise ServiceUnavailableError(problem, headers=dict(_NO_STORE), code="no-store")
    return JSONResponse({"status": "ok"}, headers=_NO_STORE)
