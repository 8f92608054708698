"""The clinical operations (app/fhir/operations.py), by GET (query parameters) or POST (a
Parameters body)."""

from __future__ import annotations

import base64
from typing import Annotated, Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from app.api.auth import access
from app.api.context import base_url, parse_body, read_body, runtime
from app.api.openapi import (
    BUNDLE_OK,
    CREATE_EXAMPLES,
    ERRORS,
    FHIR_JSON,
    FHIR_XML,
    FORMAT,
    INTERACTION,
    OUTCOME_OK,
    PARAMETERS_OK,
    PATIENT_ID,
    RESOURCE,
    RESOURCE_ID,
    RESOURCE_TYPE,
    UPDATE_EXAMPLES,
    body,
    fhir,
    fhir_content,
    operation,
    operation_body,
    operation_parameters,
    query,
)
from app.api.responses import fhir_response
from app.api.routes import read
from app.fhir import jsonio, operations
from app.fhir.bundles import searchset_bundle
from app.fhir.errors import ForbiddenError, NotFoundError
from app.fhir.models import RESOURCE_TYPES
from app.fhir.operation_definitions import DEFINITIONS
from app.fhir.service import ResourceService
from app.fhir.store import SearchPage

router = APIRouter(
    prefix="/fhir", tags=["operations"], default_response_class=Response, responses=ERRORS
)
# Matched before app/api/routes.py's router, whose read would take /OperationDefinition/{name}.
definitions_router = APIRouter(prefix="/fhir", default_response_class=Response, responses=ERRORS)
Patient = Annotated[str, PATIENT_ID]


def _get(name: str, *extra: dict[str, Any]) -> dict[str, Any]:
    """The GET form's declaration: the operation's input parameters in the query."""
    return {
        "responses": PARAMETERS_OK,
        "openapi_extra": {
            INTERACTION: operation(name),
            "parameters": [*operation_parameters(name, *extra), *FORMAT],
        },
    }


def _post(name: str, summary: str) -> dict[str, Any]:
    """The POST form's: its input parameters in a Parameters body."""
    return {
        "summary": f"{summary} (POST: the parameters in a Parameters body)",
        "responses": PARAMETERS_OK,
        "openapi_extra": {
            INTERACTION: operation(name),
            "requestBody": operation_body(name),
            "parameters": FORMAT,
        },
    }


async def _pairs(request: Request) -> list[tuple[str, str]]:
    if request.method == "POST":
        body = parse_body(request, await read_body(request))
        return operations.parameters_from_body(body)
    pairs = request.query_params.multi_items()
    return [(k, v) for k, v in pairs if k not in ("_format", "_pretty")]


# What each operation reads, so what the access token must allow (read r, search s).
_PATIENT_COURSE = (
    ("Patient", "r"),
    ("Observation", "s"),
    ("MedicationAdministration", "s"),
    ("Medication", "r"),
)
_PATIENT_CONDITIONS = (("Patient", "r"), ("Condition", "s"))


def _require(
    request: Request, needs: tuple[tuple[str, str], ...], patient_id: str | None = None
) -> None:
    """The scopes each read needs. Patient-context access runs an operation only on its own
    patient (the operation reads that patient's resources alone); another patient is 404."""
    allowed = access(request)
    for resource_type, interaction in needs:
        allowed.require(resource_type, interaction)
        if allowed.restriction(resource_type, interaction):
            raise ForbiddenError(
                f"This operation reads every {resource_type} of the patient; the access "
                f"token's scopes reach only some (a filtered scope)"
            )
        bound = allowed.compartment(resource_type, interaction)
        if bound is None:
            continue
        if patient_id is None:
            raise ForbiddenError(
                "This operation is not available to patient-context access tokens yet"
            )
        if patient_id != bound:
            raise NotFoundError(f"Patient/{patient_id} is not known")


def _searching_observations(request: Request) -> ResourceService:
    """$stats and $lastn are Observation searches: a patient-context token's are bounded to
    its compartment like any search."""
    allowed = access(request)
    allowed.require("Observation", "s")
    return runtime(request).service.bounded(allowed)


async def _parameters(
    request: Request,
    operation: Any,
    patient_id: str | None,
    needs: tuple[tuple[str, str], ...] = _PATIENT_COURSE,
) -> Response:
    """Run an operation that answers Parameters, with the request's parameters."""
    _require(request, needs, patient_id)
    rt = runtime(request)
    pairs = await _pairs(request)
    result = await rt.call(operation, rt.service, patient_id, pairs)
    return fhir_response(request, jsonio.dumps(result))


_PAIN_RESPONSE = "pain-response: baseline, improvement, cumulative dose, relapse, courses"


@router.get("/Patient/{patient_id}/$pain-response", summary=_PAIN_RESPONSE, **_get("pain-response"))
@router.post("/Patient/{patient_id}/$pain-response", **_post("pain-response", _PAIN_RESPONSE))
async def pain_response(request: Request, patient_id: Patient) -> Response:
    return await _parameters(request, operations.pain_response, patient_id)


_LIVER_SAFETY = "liver-safety: liver tests against ULN, DILI signal, monitoring gap"


@router.get("/Patient/{patient_id}/$liver-safety", summary=_LIVER_SAFETY, **_get("liver-safety"))
@router.post("/Patient/{patient_id}/$liver-safety", **_post("liver-safety", _LIVER_SAFETY))
async def liver_safety(request: Request, patient_id: Patient) -> Response:
    return await _parameters(request, operations.liver_safety, patient_id)


_FIBROMYALGIA = "fibromyalgia-criteria: ACR 2010/2016 from wpi, ss, duration, exclusion"
_FIBROMYALGIA_PATIENT = "fibromyalgia-criteria for a patient (duration from the Condition's onset)"


@router.get("/$fibromyalgia-criteria", summary=_FIBROMYALGIA, **_get("fibromyalgia-criteria"))
@router.post("/$fibromyalgia-criteria", **_post("fibromyalgia-criteria", _FIBROMYALGIA))
async def fibromyalgia_criteria(request: Request) -> Response:
    return await _parameters(request, operations.fibromyalgia_criteria, None, ())


@router.get(
    "/Patient/{patient_id}/$fibromyalgia-criteria",
    summary=_FIBROMYALGIA_PATIENT,
    **_get("fibromyalgia-criteria"),
)
@router.post(
    "/Patient/{patient_id}/$fibromyalgia-criteria",
    **_post("fibromyalgia-criteria", _FIBROMYALGIA_PATIENT),
)
async def fibromyalgia_criteria_patient(request: Request, patient_id: Patient) -> Response:
    return await _parameters(
        request, operations.fibromyalgia_criteria, patient_id, _PATIENT_CONDITIONS
    )


@definitions_router.get(
    "/OperationDefinition/{name}",
    summary="OperationDefinition: this server's operations, or a stored one",
    tags=["instance"],
    responses={200: fhir(RESOURCE, "The OperationDefinition (a stored one with ETag)")},
    openapi_extra={INTERACTION: "read", "parameters": FORMAT},
)
async def operation_definition(request: Request, name: Annotated[str, RESOURCE_ID]) -> Response:
    definition = DEFINITIONS.get(name)
    if definition is None:
        return await read(request, "OperationDefinition", name)
    return fhir_response(request, jsonio.dumps(definition))


# -- standard operations ------------------------------------------------------------------------
@router.get(
    "/Patient/{patient_id}/$everything",
    summary="everything: the patient and every resource that refers to it (paged)",
    responses=BUNDLE_OK,
    openapi_extra={
        INTERACTION: operation("everything"),
        "parameters": [
            *operation_parameters(
                "everything",
                query("_offset", {"type": "integer", "minimum": 0}, "Where the page starts"),
            ),
            *FORMAT,
        ],
    },
)
async def everything(request: Request, patient_id: Patient) -> Response:
    rt = runtime(request)
    allowed = access(request)
    _require(request, (("Patient", "r"),), patient_id)
    pairs = list(request.query_params.multi_items())
    if not allowed.allows_all_types("s"):
        # only the types the token may read come back: an explicit _type of them
        asked = [t.strip() for k, v in pairs if k == "_type" for t in v.split(",") if t.strip()]
        types = [t for t in (asked or RESOURCE_TYPES) if allowed.readable(t)]
        if not types:
            raise ForbiddenError("The access token's scopes allow reading none of these types")
        pairs = [*((k, v) for k, v in pairs if k != "_type"), ("_type", ",".join(types))]
    search, page = await rt.call(
        operations.everything,
        rt.service.bounded(allowed),  # bounded tokens get what their scopes reach
        patient_id,
        [(k, v) for k, v in pairs if k not in ("_format", "_pretty")],
        rt.settings.default_page_size,
        rt.settings.max_page_size,
    )
    base = base_url(request)
    kept = [(k, v) for k, v in pairs if k != "_offset"]
    link = f"{base}/Patient/{patient_id}/$everything"
    return fhir_response(request, searchset_bundle(base, search, page, link, kept, None))


_STATS = "stats: statistics of a subject's observations"


@router.get("/Observation/$stats", summary=_STATS, **_get("stats"))
@router.post("/Observation/$stats", **_post("stats", _STATS))
async def observation_stats(request: Request) -> Response:
    rt = runtime(request)
    service = _searching_observations(request)
    result = await rt.call(operations.stats, service, await _pairs(request))
    return fhir_response(request, jsonio.dumps(result))


@router.get(
    "/Observation/$lastn",
    summary="lastn: the most recent observations per code",
    description="Any Observation search parameter selects them; patient or subject is needed.",
    responses=BUNDLE_OK,
    openapi_extra={
        INTERACTION: operation("lastn"),
        "parameters": [
            *operation_parameters(
                "lastn",
                query("patient", {"type": "string"}, "The patient (id or Patient/id)"),
                query("code", {"type": "string"}, "Codes, comma-separated (system|code)"),
                query("category", {"type": "string"}, "Categories (system|code)"),
            ),
            *FORMAT,
        ],
    },
)
async def lastn(request: Request) -> Response:
    rt = runtime(request)
    service = _searching_observations(request)
    pairs = [
        (k, v) for k, v in request.query_params.multi_items() if k not in ("_format", "_pretty")
    ]
    search, records = await rt.call(operations.lastn, service, pairs)
    base = base_url(request)
    search.count = max(len(records), 1)
    search.offset = 0
    page = SearchPage(records, [], len(records), False)
    link = f"{base}/Observation/$lastn"
    return fhir_response(request, searchset_bundle(base, search, page, link, pairs, None))


async def _validate(request: Request, resource_type: str, resource_id: str | None) -> Response:
    allowed = access(request)
    if resource_id is not None:  # it reads the stored resource, as a read would
        allowed.require(resource_type, "r")
    rt = runtime(request)
    body = None
    if request.method == "POST":
        raw = await read_body(request)
        if raw.strip():
            body = parse_body(request, raw)
    outcome = await rt.call(
        operations.validate_resource,
        rt.service.bounded(allowed),
        resource_type,
        resource_id,
        body,
    )
    return fhir_response(request, jsonio.dumps(outcome))


@router.post(
    "/{resource_type}/$validate",
    summary="validate: check a resource (in the body, or in a Parameters 'resource')",
    tags=["type"],
    responses=OUTCOME_OK,
    openapi_extra={
        INTERACTION: operation("validate"),
        "requestBody": body(RESOURCE, examples=CREATE_EXAMPLES),
        "parameters": FORMAT,
    },
)
async def validate_type(request: Request, resource_type: Annotated[str, RESOURCE_TYPE]) -> Response:
    return await _validate(request, resource_type, None)


@router.get(
    "/{resource_type}/{resource_id}/$validate",
    summary="validate: check the stored resource",
    tags=["instance"],
    responses=OUTCOME_OK,
    openapi_extra={INTERACTION: operation("validate"), "parameters": FORMAT},
)
@router.post(
    "/{resource_type}/{resource_id}/$validate",
    summary="validate: check a resource for this id (the body, or the stored one)",
    tags=["instance"],
    responses=OUTCOME_OK,
    openapi_extra={
        INTERACTION: operation("validate"),
        "requestBody": body(RESOURCE, required=False, examples=UPDATE_EXAMPLES),
        "parameters": FORMAT,
    },
)
async def validate_instance(
    request: Request,
    resource_type: Annotated[str, RESOURCE_TYPE],
    resource_id: Annotated[str, RESOURCE_ID],
) -> Response:
    return await _validate(request, resource_type, resource_id)


_COURSE_MEDIA = {"svg": "image/svg+xml", "html": "text/html; charset=utf-8"}


@router.get(
    "/Patient/{patient_id}/$clinical-course",
    summary="clinical-course: the chart (Accept: image/svg+xml or text/html, or a Binary)",
    responses={
        200: {
            "description": "The chart: SVG, an HTML page with the pain table, or a FHIR Binary",
            "content": {"image/svg+xml": {}, "text/html": {}, **fhir_content(RESOURCE)},
        }
    },
    openapi_extra={
        INTERACTION: operation("clinical-course"),
        "parameters": [
            *operation_parameters("clinical-course"),
            query(
                "_format",
                {"enum": ["svg", "html", "json", "xml", FHIR_JSON, FHIR_XML]},
                "svg or html for the chart, a FHIR format for a Binary (else by Accept)",
            ),
            query("_pretty", {"enum": ["true", "false"]}, "Indented output"),
        ],
    },
)
async def clinical_course(request: Request, patient_id: Patient) -> Response:
    _require(request, _PATIENT_COURSE, patient_id)
    rt = runtime(request)
    pairs = [(k, v) for k, v in request.query_params.multi_items() if k not in ("_format",)]
    wanted = request.query_params.get("_format", "")
    accept = request.headers.get("accept", "")
    kind = (
        "svg"
        if wanted == "svg" or (not wanted and "image/svg+xml" in accept)
        else ("html" if wanted == "html" or (not wanted and "text/html" in accept) else "binary")
    )
    if kind == "binary":  # a FHIR client gets a Binary in the negotiated FHIR format
        pairs = [(k, v) for k, v in pairs if k != "_pretty"]
    body = await rt.call(
        operations.clinical_course,
        rt.service,
        patient_id,
        pairs,
        "html" if kind == "html" else "svg",
    )
    if kind != "binary":
        return Response(body, 200, media_type=_COURSE_MEDIA[kind])
    binary = {
        "resourceType": "Binary",
        "contentType": "image/svg+xml",
        "data": base64.b64encode(body).decode(),
    }
    return fhir_response(request, jsonio.dumps(binary))
