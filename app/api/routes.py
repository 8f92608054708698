"""The FHIR RESTful interactions at /fhir. Each handler: parse the request, one service call,
one response."""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache, partial
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import APIRouter
from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import Response

from app.api import negotiation
from app.api.auth import access
from app.api.context import base_url, check_json_depth, parse_body, read_body, runtime
from app.api.openapi import (
    BUNDLE,
    BUNDLE_OK,
    CAPABILITY_STATEMENT,
    CREATE_EXAMPLES,
    DATE_SEARCH,
    DELETED,
    ERRORS,
    FORMAT,
    HISTORY,
    IF_MATCH,
    INTERACTION,
    JSON_PATCH,
    JSON_PATCH_DOCUMENT,
    PROVENANCE,
    READ_HEADERS,
    RESOURCE,
    RESOURCE_ID,
    RESOURCE_READ,
    RESOURCE_TYPE,
    SEARCH,
    SEARCH_NOTE,
    SEARCHSET_OK,
    SYSTEM_SEARCH,
    TRANSACTION,
    UPDATE_EXAMPLES,
    VERSION_ID,
    WRITTEN,
    body,
    fhir,
    form_body,
    header_parameter,
    query,
)
from app.api.responses import fhir_response, informational, resource_response, version_headers
from app.fhir import jsonio, provenance
from app.fhir.access import Access
from app.fhir.bundles import history_bundle, searchset_bundle
from app.fhir.capability import Security, capability_statement
from app.fhir.compartment import PATIENT_COMPARTMENT
from app.fhir.errors import (
    MethodNotAllowedError,
    UnsupportedMediaTypeError,
)
from app.fhir.formats import render
from app.fhir.history import history_query
from app.fhir.models import require_resource_type
from app.fhir.service import WriteResult
from app.fhir.transactions import BundleProcessor


class _Segment(Convertor[str]):
    """A path segment that is neither an operation's name (`$...`) nor a reserved word
    (`_history`, `_search`), which no resource type or id can be. Routes are matched one by one
    (~1.5 us each), so the interactions, most requests, are matched first (`router` before
    the operations' routers, read and the writes first in it, see the end of this module); with
    this their `{resource_type}` and `{resource_id}` do not take `/fhir/$export`,
    `/fhir/Observation/$lastn` or `/fhir/Patient/_history` from the routes after them."""

    regex = r"[^/$_][^/]*"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("segment", _Segment())
router = APIRouter(prefix="/fhir", default_response_class=Response, responses=ERRORS)
# Answered without a token: what the server is (the CapabilityStatement), so clients can find
# out how to get one.
public_router = APIRouter(prefix="/fhir", default_response_class=Response, responses=ERRORS)

Type = Annotated[str, RESOURCE_TYPE]
Id = Annotated[str, RESOURCE_ID]
# What a conditional interaction's query may hold: search criteria (any search parameter of
# the type), which must match one resource.
_CONDITION = [
    query("_id", {"type": "string"}, "Logical id"),
    query("_lastUpdated", DATE_SEARCH, "When last changed"),
    query("_tag", {"type": "string"}, "meta.tag (system|code)"),
    query("_profile", {"type": "string"}, "meta.profile"),
]
_CONDITION_NOTE = " The criteria: any search parameters of the type (at least one)."
SEARCH_BY_TYPE_NOTE = (
    " Each type's own search parameters are listed under 'search by type' (GET /fhir/Patient, "
    "GET /fhir/Observation, ...) for the types of ketamine therapy, and for every type in "
    "the CapabilityStatement (GET /fhir/metadata, rest.resource.searchParam)."
)


def _provenance(request: Request, allowed: Access) -> dict[str, Any] | None:
    """The X-Provenance header's Provenance (stored with the write), needing create on
    Provenance."""
    raw = request.headers.get(provenance.HEADER)
    if raw is None:
        return None
    allowed.require("Provenance", "c")
    check_json_depth(request, raw.encode("latin-1"), f"The {provenance.HEADER} header")
    return provenance.parse_provenance(raw)


def _written(request: Request, result: WriteResult) -> Response:
    """A create or update's answer: 201 with Location when it created, else 200."""
    assert result.record is not None
    if runtime(request).audit is not None:
        record = result.record
        request.state.audit_entities = [f"{record.resource_type}/{record.resource_id}"]
    return resource_response(
        request,
        result.record,
        201 if result.created else 200,
        location=True,
        prefer=negotiation.prefer_return(request),
    )


@public_router.get(
    "/metadata",
    summary="capabilities: the server's CapabilityStatement",
    tags=["system"],
    responses={200: fhir(CAPABILITY_STATEMENT, "The CapabilityStatement")},
    openapi_extra={INTERACTION: "capabilities", "parameters": FORMAT},
)
async def metadata(request: Request) -> Response:
    settings = runtime(request).settings
    security = Security(settings.auth_enabled, settings.auth_authorize_url, settings.auth_token_url)
    fmt = negotiation.response_format(request)
    body = capability_body(
        base_url(request),
        settings.conditional_delete_multiple,
        security,
        fmt,
        negotiation.pretty(request),
    )
    return Response(body, media_type=negotiation.MEDIA_TYPES[fmt])


@lru_cache(maxsize=32)  # bounded: without FHIR_BASE_URL the base comes from the Host header
def capability_body(
    base: str, multiple_delete: bool, security: Security, fmt: str, pretty: bool
) -> bytes:
    """The CapabilityStatement rendered as sent: built and rendered once per (base URL,
    settings, format, _pretty) -- XML through the R4B models takes seconds."""
    return render(capability_statement(base, multiple_delete, security), fmt, pretty=pretty)


async def _history(
    request: Request, resource_type: str | None, resource_id: str | None
) -> Response:
    rt = runtime(request)
    allowed = access(request)
    if resource_type is None:
        if allowed.compartment("Patient", "s") is None:  # else: the compartment's history
            allowed.require_all_types("s", "History of the whole server")
    elif resource_id is None:
        allowed.require(resource_type, "s")
    else:
        allowed.require(resource_type, "r")
    query, kept, cursor = history_query(
        request.query_params,
        resource_type,
        resource_id,
        rt.settings.default_page_size,
        rt.settings.max_page_size,
    )
    page = await rt.call(rt.service.bounded(allowed).history, query)
    link = f"{base_url(request)}/" + "/".join(
        p for p in (resource_type, resource_id, "_history") if p
    )
    return fhir_response(request, history_bundle(base_url(request), page, link, kept, cursor))


async def _search(
    request: Request,
    resource_types: tuple[str, ...],
    pairs: list[tuple[str, str]],
    system: bool = False,
) -> Response:
    rt = runtime(request)
    allowed = access(request)
    if resource_types:
        for resource_type in resource_types:
            allowed.require(resource_type, "s")
    elif not allowed.allows_all_types("s"):
        # a search of every type is a search of the types the token may search
        resource_types = allowed.types_allowed("s")
        if not resource_types:
            allowed.require_all_types("s", "A search across resource types")
    # A patient-context search of every type is a search of the compartment's types; the
    # bounds themselves are the scoped store's (app/fhir/scoped_store.py).
    if not resource_types and allowed.compartment("Patient", "s") is not None:
        resource_types = tuple(t for t in PATIENT_COMPARTMENT if allowed.allows(t, "s"))
    search, page, outcome = await rt.call(
        rt.service.bounded(allowed).search,
        resource_types,
        pairs,
        rt.settings.default_page_size,
        rt.settings.max_page_size,
        negotiation.strict_handling(request),
        system,
    )
    base = base_url(request)
    link = base if system else f"{base}/{resource_types[0]}"
    if not allowed.everyone:
        included = [r for r in page.includes if allowed.readable(r.resource_type)]
        page = replace(page, includes=included)
    if rt.audit is not None:  # only the audit trail reads them
        request.state.audit_entities = [
            f"{r.resource_type}/{r.resource_id}" for r in (*page.matches, *page.includes)
        ]
    kept = [(k, v) for k, v in pairs if k != "_offset"]
    return fhir_response(request, searchset_bundle(base, search, page, link, kept, outcome))


async def _form_pairs(request: Request) -> list[tuple[str, str]]:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/x-www-form-urlencoded":
        raise UnsupportedMediaTypeError(
            "POST _search takes the parameters as application/x-www-form-urlencoded"
        )
    body = (await read_body(request, allow_empty=True)).decode("utf-8", errors="replace")
    return [*request.query_params.multi_items(), *parse_qsl(body, keep_blank_values=True)]


def _types(pairs: list[tuple[str, str]]) -> tuple[str, ...]:
    names = [t.strip() for k, v in pairs if k == "_type" for t in v.split(",") if t.strip()]
    for name in names:
        require_resource_type(name)
    return tuple(dict.fromkeys(names))


@router.get("/", include_in_schema=False)
@router.get(
    "",
    summary="search-system: search across resource types (_type, _id, ...)",
    description="A searchset Bundle." + SEARCH_NOTE,
    tags=["system"],
    responses=BUNDLE_OK,
    openapi_extra={INTERACTION: "search-system", "parameters": SYSTEM_SEARCH},
)
async def search_system(request: Request) -> Response:
    pairs = list(request.query_params.multi_items())
    return await _search(request, _types(pairs), pairs, system=True)


@router.post(
    "/_search",
    summary="search-system by POST (form-encoded parameters)",
    tags=["system"],
    responses=BUNDLE_OK,
    openapi_extra={INTERACTION: "search-system", "requestBody": form_body(SYSTEM_SEARCH)},
)
async def search_system_post(request: Request) -> Response:
    pairs = await _form_pairs(request)
    return await _search(request, _types(pairs), pairs, system=True)


@router.get(
    "/_history",
    summary="history-system: every change on the server",
    tags=["system"],
    responses=BUNDLE_OK,
    openapi_extra={INTERACTION: "history-system", "parameters": HISTORY},
)
async def history_system(request: Request) -> Response:
    return await _history(request, None, None)


@router.get(
    "/{resource_type:segment}/_history",
    summary="history-type: every change to a type",
    tags=["history"],
    responses=BUNDLE_OK,
    openapi_extra={INTERACTION: "history-type", "parameters": HISTORY},
)
async def history_type(request: Request, resource_type: Type) -> Response:
    return await _history(request, require_resource_type(resource_type), None)


@router.get(
    "/{resource_type:segment}",
    summary="search-type: resources of a type matching the query",
    description="A searchset Bundle." + SEARCH_NOTE + SEARCH_BY_TYPE_NOTE,
    tags=["type"],
    responses=SEARCHSET_OK,
    openapi_extra={INTERACTION: "search-type", "parameters": SEARCH},
)
async def search_type(request: Request, resource_type: Type) -> Response:
    require_resource_type(resource_type)
    return await _search(request, (resource_type,), list(request.query_params.multi_items()))


@router.post(
    "/{resource_type:segment}/_search",
    summary="search-type by POST (form-encoded parameters)",
    tags=["type"],
    responses=SEARCHSET_OK,
    openapi_extra={INTERACTION: "search-type", "requestBody": form_body(SEARCH)},
)
async def search_type_post(request: Request, resource_type: Type) -> Response:
    require_resource_type(resource_type)
    return await _search(request, (resource_type,), await _form_pairs(request))


@router.get(
    "/{resource_type:segment}/{resource_id:segment}/_history",
    summary="history-instance: every version of a resource",
    tags=["history"],
    responses=BUNDLE_OK,
    openapi_extra={INTERACTION: "history-instance", "parameters": HISTORY},
)
async def history_instance(request: Request, resource_type: Type, resource_id: Id) -> Response:
    return await _history(request, require_resource_type(resource_type), resource_id)


@router.get(
    "/{resource_type:segment}/{resource_id:segment}/_history/{version_id}",
    summary="vread: one version of a resource",
    tags=["instance"],
    responses=RESOURCE_READ,
    openapi_extra={INTERACTION: "vread", "parameters": FORMAT},
)
async def vread(
    request: Request,
    resource_type: Type,
    resource_id: Id,
    version_id: Annotated[str, VERSION_ID],
) -> Response:
    rt = runtime(request)
    allowed = access(request)
    allowed.require(require_resource_type(resource_type), "r")
    service = rt.service.bounded(allowed)
    record = await rt.call_read(service.vread, resource_type, resource_id, version_id)
    return resource_response(request, record)


@router.post(
    "/{resource_type:segment}",
    summary="create: a new resource with a server-assigned id",
    description="Prefer: return=minimal | representation | OperationOutcome chooses the body.",
    status_code=201,
    tags=["type"],
    responses=WRITTEN,
    openapi_extra={
        INTERACTION: "create",
        "requestBody": body(RESOURCE, examples=CREATE_EXAMPLES),
        "parameters": [
            *FORMAT,
            header_parameter(
                "If-None-Exist", {"type": "string"}, "Conditional create: search parameters"
            ),
            PROVENANCE,
        ],
    },
)
async def create(request: Request, resource_type: Type) -> Response:
    rt = runtime(request)
    if_none_exist = request.headers.get("if-none-exist")
    allowed = access(request)
    allowed.require(
        require_resource_type(resource_type), "c", *("s" if if_none_exist is not None else "")
    )
    stated = _provenance(request, allowed)
    data = parse_body(request, await read_body(request))
    service = rt.service.bounded(allowed)
    result = await rt.call(service.create, resource_type, data, if_none_exist, stated)
    return _written(request, result)


@router.get(
    "/{resource_type:segment}/{resource_id:segment}",
    summary="read: the current version",
    tags=["instance"],
    responses={
        **RESOURCE_READ,
        304: {"description": "Not modified (If-None-Match, If-Modified-Since)"},
    },
    openapi_extra={INTERACTION: "read", "parameters": [*FORMAT, *READ_HEADERS]},
)
async def read(request: Request, resource_type: Type, resource_id: Id) -> Response:
    rt = runtime(request)
    allowed = access(request)
    allowed.require(require_resource_type(resource_type), "r")
    record = await rt.call_read(rt.service.bounded(allowed).read, resource_type, resource_id)
    if negotiation.not_modified(request, record.version_id, record.last_updated):
        return Response(status_code=304, headers=version_headers(record))
    return resource_response(request, record)


@router.put(
    "/{resource_type:segment}/{resource_id:segment}",
    summary="update: a new version, or create with this id",
    description="Prefer: return=minimal | representation | OperationOutcome chooses the body.",
    tags=["instance"],
    responses=WRITTEN,
    openapi_extra={
        INTERACTION: "update",
        "requestBody": body(RESOURCE, examples=UPDATE_EXAMPLES),
        "parameters": [
            *FORMAT,
            IF_MATCH,
            header_parameter("If-None-Match", {"const": "*"}, "*: create only (else 412)"),
            PROVENANCE,
        ],
    },
)
async def update(request: Request, resource_type: Type, resource_id: Id) -> Response:
    rt = runtime(request)
    allowed = access(request)
    allowed.require(require_resource_type(resource_type), "u")
    if_match = negotiation.if_match(request)
    only_if_absent = negotiation.if_none_match_any(request)
    stated = _provenance(request, allowed)
    data = parse_body(request, await read_body(request))
    result = await rt.call(
        partial(
            rt.service.bounded(allowed).update,
            only_if_absent=only_if_absent,
            may_create=allowed.allows(resource_type, "c"),
            provenance=stated,
        ),
        resource_type,
        resource_id,
        data,
        if_match,
    )
    return _written(request, result)


@router.patch(
    "/{resource_type:segment}/{resource_id:segment}",
    summary="patch: apply a JSON Patch",
    tags=["instance"],
    responses={200: fhir(RESOURCE, "The patched resource")},
    openapi_extra={
        INTERACTION: "patch",
        "requestBody": {"required": True, "content": {JSON_PATCH: {"schema": JSON_PATCH_DOCUMENT}}},
        "parameters": [*FORMAT, IF_MATCH, PROVENANCE],
    },
)
async def patch(request: Request, resource_type: Type, resource_id: Id) -> Response:
    rt = runtime(request)
    allowed = access(request)
    allowed.require(require_resource_type(resource_type), "u")
    if_match = negotiation.if_match(request)
    negotiation.body_format(request, patch=True)
    stated = _provenance(request, allowed)
    operations = jsonio.loads(await read_body(request))
    service = rt.service.bounded(allowed)
    result = await rt.call(service.patch, resource_type, resource_id, operations, if_match, stated)
    assert result.record is not None
    return resource_response(request, result.record, 200, prefer=negotiation.prefer_return(request))


@router.delete(
    "/{resource_type:segment}/{resource_id:segment}",
    summary="delete: mark the resource deleted",
    tags=["instance"],
    responses=DELETED,
    openapi_extra={INTERACTION: "delete", "parameters": [IF_MATCH]},
)
async def delete(request: Request, resource_type: Type, resource_id: Id) -> Response:
    rt = runtime(request)
    allowed = access(request)
    allowed.require(require_resource_type(resource_type), "d")
    if_match = negotiation.if_match(request)
    service = rt.service.bounded(allowed)
    result = await rt.call(service.delete, resource_type, resource_id, if_match)
    prefer = negotiation.prefer_return(request)
    if prefer == "OperationOutcome":
        message = (
            f"{resource_type}/{resource_id} deleted"
            if result.record is not None
            else f"{resource_type}/{resource_id} did not exist or was already deleted"
        )
        headers = {"ETag": f'W/"{result.record.version_id}"'} if result.record is not None else None
        return fhir_response(request, informational(message), 200, headers)
    if result.record is not None:
        return Response(status_code=204, headers={"ETag": f'W/"{result.record.version_id}"'})
    return Response(status_code=204)


# -- Bundles and conditional interactions (http.html#transaction, #cond-update, #cdelete) -------
@router.post("/", include_in_schema=False)
@router.post(
    "",
    summary="transaction or batch: a Bundle of interactions",
    tags=["system"],
    responses={200: fhir(BUNDLE, "A transaction-response or batch-response Bundle")},
    openapi_extra={
        INTERACTION: "transaction or batch",
        "requestBody": body(TRANSACTION),
        "parameters": FORMAT,
    },
)
async def transaction(request: Request) -> Response:
    rt = runtime(request)
    bundle = parse_body(request, await read_body(request))
    processor = BundleProcessor(
        rt.service,
        max_entries=rt.settings.max_bundle_entries,
        multiple_delete=rt.settings.conditional_delete_multiple,
        default_count=rt.settings.default_page_size,
        max_count=rt.settings.max_page_size,
        access=access(request),
    )
    if isinstance(bundle, dict):
        request.state.bundle_kind = bundle.get("type")
    body = await rt.call(
        processor.process, bundle, base_url(request), negotiation.prefer_return(request)
    )
    if rt.audit is not None:
        request.state.audit_entities = _locations(body)
    return fhir_response(request, body)


def _locations(body: bytes) -> list[str]:
    """Type/id of each entry a transaction or batch response names (for the audit trail)."""
    found = []
    for entry in jsonio.loads(body).get("entry", []):
        location = entry.get("response", {}).get("location") or entry.get("fullUrl") or ""
        parts = location.split("/_history")[0].rstrip("/").split("/")
        if len(parts) >= 2 and parts[-2][:1].isupper():
            found.append(f"{parts[-2]}/{parts[-1]}")
    return found


def _condition(request: Request, what: str) -> str:
    query = request.url.query
    if not query:
        raise MethodNotAllowedError(
            f"{what} on a type needs search parameters (Type?params); to name one resource, "
            "use Type/id",
            ("url",),
        )
    return query


@router.put(
    "/{resource_type:segment}",
    summary="conditional update: update the one resource matching the query, or create",
    description="0 matches: create; 1: update; several: 412." + _CONDITION_NOTE,
    tags=["type"],
    responses=WRITTEN,
    openapi_extra={
        INTERACTION: "update",
        "requestBody": body(RESOURCE, examples=CREATE_EXAMPLES),
        "parameters": [*_CONDITION, IF_MATCH, PROVENANCE],
    },
)
async def conditional_update(request: Request, resource_type: Type) -> Response:
    rt = runtime(request)
    allowed = access(request)
    allowed.require(require_resource_type(resource_type), "u", "s")
    query = _condition(request, "PUT")
    if_match = negotiation.if_match(request)
    stated = _provenance(request, allowed)
    data = parse_body(request, await read_body(request))
    result = await rt.call(
        partial(
            rt.service.bounded(allowed).conditional_update,
            may_create=allowed.allows(resource_type, "c"),
            provenance=stated,
        ),
        resource_type,
        query,
        data,
        if_match,
    )
    return _written(request, result)


@router.patch(
    "/{resource_type:segment}",
    summary="conditional patch: patch the one resource matching the query",
    description="0 matches: 404; several: 412." + _CONDITION_NOTE,
    tags=["type"],
    responses={200: fhir(RESOURCE, "The patched resource")},
    openapi_extra={
        INTERACTION: "patch",
        "requestBody": {"required": True, "content": {JSON_PATCH: {"schema": JSON_PATCH_DOCUMENT}}},
        "parameters": [*_CONDITION, IF_MATCH, PROVENANCE],
    },
)
async def conditional_patch(request: Request, resource_type: Type) -> Response:
    rt = runtime(request)
    allowed = access(request)
    allowed.require(require_resource_type(resource_type), "u", "s")
    query = _condition(request, "PATCH")
    if_match = negotiation.if_match(request)
    negotiation.body_format(request, patch=True)
    stated = _provenance(request, allowed)
    operations = jsonio.loads(await read_body(request))
    service = rt.service.bounded(allowed)
    result = await rt.call(
        service.conditional_patch, resource_type, query, operations, if_match, stated
    )
    assert result.record is not None
    return resource_response(request, result.record, 200, prefer=negotiation.prefer_return(request))


@router.delete(
    "/{resource_type:segment}",
    summary="conditional delete: delete the resources matching the query",
    description="Several matches: 412, unless FHIR_CONDITIONAL_DELETE_MULTIPLE." + _CONDITION_NOTE,
    tags=["type"],
    responses=DELETED,
    openapi_extra={INTERACTION: "delete", "parameters": _CONDITION},
)
async def conditional_delete(request: Request, resource_type: Type) -> Response:
    rt = runtime(request)
    allowed = access(request)
    allowed.require(require_resource_type(resource_type), "d", "s")
    query = _condition(request, "DELETE")
    results = await rt.call(
        rt.service.bounded(allowed).conditional_delete,
        resource_type,
        query,
        rt.settings.conditional_delete_multiple,
    )
    deleted = [r.record for r in results if r.record is not None]
    if negotiation.prefer_return(request) == "OperationOutcome":
        names = ", ".join(f"{r.resource_type}/{r.resource_id}" for r in deleted) or "nothing"
        return fhir_response(request, informational(f"Deleted {names}"), 200)
    headers = {"ETag": f'W/"{deleted[0].version_id}"'} if len(deleted) == 1 else None
    return Response(status_code=204, headers=headers)


def _first(route: Any) -> int:
    """Read, create, update, delete and search (the bulk of requests) ahead of the rest."""
    path = getattr(route, "path", "")
    if path == "/fhir/{resource_type:segment}/{resource_id:segment}":
        return 0
    return 1 if path == "/fhir/{resource_type:segment}" else 2


router.routes.sort(key=_first)  # stable: the rest keep their order
