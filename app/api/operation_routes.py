"""The clinical operations (app/fhir/operations.py), by GET (query parameters) or POST (a
Parameters body)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from app.api import negotiation
from app.api.context import read_body, runtime
from app.api.responses import fhir_response
from app.api.routes import read
from app.fhir import jsonio, operations
from app.fhir.formats import parse_resource
from app.fhir.operation_definitions import DEFINITIONS

router = APIRouter(prefix="/fhir", tags=["operations"])


async def _pairs(request: Request) -> list[tuple[str, str]]:
    if request.method == "POST":
        body = parse_resource(await read_body(request), negotiation.body_format(request))
        return operations.parameters_from_body(body)
    pairs = request.query_params.multi_items()
    return [(k, v) for k, v in pairs if k not in ("_format", "_pretty")]


@router.get(
    "/Patient/{patient_id}/$pain-response",
    summary="pain-response: baseline, improvement, cumulative dose, relapse, courses",
)
@router.post("/Patient/{patient_id}/$pain-response", include_in_schema=False)
async def pain_response(request: Request, patient_id: str) -> Response:
    rt = runtime(request)
    pairs = await _pairs(request)
    result = await rt.call(operations.pain_response, rt.service, patient_id, pairs)
    return fhir_response(request, jsonio.dumps(result))


@router.get(
    "/Patient/{patient_id}/$liver-safety",
    summary="liver-safety: liver tests against ULN, DILI signal, monitoring gap",
)
@router.post("/Patient/{patient_id}/$liver-safety", include_in_schema=False)
async def liver_safety(request: Request, patient_id: str) -> Response:
    rt = runtime(request)
    pairs = await _pairs(request)
    result = await rt.call(operations.liver_safety, rt.service, patient_id, pairs)
    return fhir_response(request, jsonio.dumps(result))


@router.get(
    "/$fibromyalgia-criteria",
    summary="fibromyalgia-criteria: ACR 2010/2016 from wpi, ss, duration, exclusion",
)
@router.post("/$fibromyalgia-criteria", include_in_schema=False)
async def fibromyalgia_criteria(request: Request) -> Response:
    rt = runtime(request)
    pairs = await _pairs(request)
    result = await rt.call(operations.fibromyalgia_criteria, rt.service, None, pairs)
    return fhir_response(request, jsonio.dumps(result))


@router.get(
    "/Patient/{patient_id}/$fibromyalgia-criteria",
    summary="fibromyalgia-criteria for a patient (duration from the Condition's onset)",
)
@router.post("/Patient/{patient_id}/$fibromyalgia-criteria", include_in_schema=False)
async def fibromyalgia_criteria_patient(request: Request, patient_id: str) -> Response:
    rt = runtime(request)
    pairs = await _pairs(request)
    result = await rt.call(operations.fibromyalgia_criteria, rt.service, patient_id, pairs)
    return fhir_response(request, jsonio.dumps(result))


@router.get(
    "/OperationDefinition/{name}",
    summary="OperationDefinition: this server's operations, or a stored one",
    tags=["instance"],
)
async def operation_definition(request: Request, name: str) -> Response:
    definition = DEFINITIONS.get(name)
    if definition is None:
        return await read(request, "OperationDefinition", name)
    return fhir_response(request, jsonio.dumps(definition))
