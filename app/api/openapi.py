"""What the OpenAPI document (/openapi.json, /docs) says the routes take and answer.

The handlers read their query parameters and bodies themselves (FHIR search takes any of the
type's search parameters; bodies are JSON or XML by Content-Type), so FastAPI cannot infer the
document from their signatures. The declarations here describe them instead, and
tests/contract checks the server against them with schemathesis: every FHIR response is
`application/fhir+json` (or `+xml` by `_format`), every 4xx and 5xx an OperationOutcome.

Path and query parameters are documented, never validated by FastAPI (`json_schema_extra` and
`openapi_extra` add to the document only): the handlers answer a bad value the FHIR way, e.g.
an unknown resource type is a 404 `not-supported` OperationOutcome, not a 422. The schemas are
written here as dicts (FastAPI adds components only for pydantic models); `install` makes
the app's document name them as components (OperationOutcome, Bundle, ...) and refer to them.

The FHIR schemas here are small (resourceType, id, meta; a Bundle's entries; an
OperationOutcome's issues), not fhir.resources' R4B models: those expanded for 141 types would
make the document megabytes. What a FHIR integrator needs beyond them is added by `install`
when the document is first built: each operation's FHIR interaction (`x-fhir-interaction`,
declared by each route: a code of FHIR's restful-interaction value set, `operation $name`, or
`none` outside the FHIR API), a search path per resource type with the type's search
parameters (app/api/openapi_search.py), and examples taken from the shipped case
(app/api/openapi_examples.py) under components/examples, to which the declarations here refer.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Path
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app.api import openapi_examples as ex
from app.api import openapi_search
from app.api.openapi_examples import example_refs
from app.fhir.models import RESOURCE_TYPES
from app.fhir.operation_definitions import DEFINITIONS

FHIR_JSON = "application/fhir+json"
FHIR_XML = "application/fhir+xml"
JSON_PATCH = "application/json-patch+json"
FORM = "application/x-www-form-urlencoded"

ID_PATTERN = r"^[A-Za-z0-9\-.]{1,64}$"  # the FHIR id rule
_CODE_PATTERN = r"^[^\s]+( [^\s]+)*$"  # the FHIR code rule
_ETAG = {"type": "string", "pattern": r'^W/"[0-9]+"$'}
_INSTANT = {"type": "string", "format": "date-time"}
DATE_SEARCH = {
    "type": "string",
    "pattern": r"^(eq|ne|gt|lt|ge|le|sa|eb|ap)?[0-9]{4}(-[0-9]{2}(-[0-9]{2})?)?$",
}

# -- FHIR interactions ---------------------------------------------------------------------------
# Each operation of the document states the FHIR interaction it implements under this key
# (openapi_extra={INTERACTION: ...} on each route): a code of FHIR's restful-interaction value
# set (http://hl7.org/fhir/R4B/valueset-restful-interaction.html), two joined by " or ",
# `operation $name` (an operation's kick-off, and the requests that follow it), or `none` for a
# route outside the FHIR API (the probes, SMART's discovery document).
INTERACTION = "x-fhir-interaction"
INTERACTIONS = frozenset(
    {
        *("read", "vread", "update", "patch", "delete", "create", "capabilities"),
        *("history-instance", "history-type", "history-system", "search-type", "search-system"),
        *("batch", "transaction", "operation"),
    }
)
NOT_FHIR = "none"


def operation(name: str) -> str:
    """The interaction of FHIR operation `name` (without the $)."""
    return f"operation ${name}"


# The interaction of routes whose module does not declare one: (method, path) -> interaction.
# SMART's discovery document (app/api/auth.py) is no FHIR interaction.
_DECLARED_HERE = {("get", "/.well-known/smart-configuration"): NOT_FHIR}

# -- schemas -------------------------------------------------------------------------------------
RESOURCE: dict[str, Any] = {
    "title": "Resource",
    "description": "A FHIR R4B resource (https://hl7.org/fhir/R4B/resourcelist.html)",
    "type": "object",
    "required": ["resourceType"],
    "properties": {
        "resourceType": {"type": "string", "pattern": "^[A-Z][A-Za-z]+$"},
        "id": {"type": "string", "pattern": ID_PATTERN},
        "meta": {
            "type": "object",
            "properties": {"versionId": {"type": "string"}, "lastUpdated": {"type": "string"}},
        },
    },
}

OPERATION_OUTCOME: dict[str, Any] = {
    "title": "OperationOutcome",
    "type": "object",
    "required": ["resourceType", "issue"],
    "properties": {
        "resourceType": {"const": "OperationOutcome"},
        "issue": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["severity", "code"],
                "properties": {
                    "severity": {"enum": ["fatal", "error", "warning", "information"]},
                    "code": {"type": "string", "pattern": _CODE_PATTERN},
                    "diagnostics": {"type": "string"},
                    "expression": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
    },
}

_HTTP_METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"]

BUNDLE: dict[str, Any] = {
    "title": "Bundle",
    "type": "object",
    "required": ["resourceType", "type"],
    "properties": {
        "resourceType": {"const": "Bundle"},
        "type": {
            "enum": [
                "document",
                "message",
                "transaction",
                "transaction-response",
                "batch",
                "batch-response",
                "history",
                "searchset",
                "collection",
            ]
        },
        "total": {"type": "integer", "minimum": 0},
        "link": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["relation", "url"],
                "properties": {"relation": {"type": "string"}, "url": {"type": "string"}},
            },
        },
        "entry": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "fullUrl": {"type": "string"},
                    "resource": RESOURCE,
                    "search": {
                        "type": "object",
                        "properties": {"mode": {"enum": ["match", "include", "outcome"]}},
                    },
                    "request": {
                        "type": "object",
                        "required": ["method", "url"],
                        "properties": {
                            "method": {"enum": _HTTP_METHODS},
                            "url": {"type": "string"},
                        },
                    },
                    "response": {
                        "type": "object",
                        "required": ["status"],
                        "properties": {
                            "status": {"type": "string", "pattern": "^[1-5][0-9][0-9]( .*)?$"},
                            "location": {"type": "string"},
                            "etag": {"type": "string"},
                            "lastModified": {"type": "string"},
                            "outcome": RESOURCE,
                        },
                    },
                },
            },
        },
    },
}

# What POST /fhir takes: a transaction or batch, each entry with its request.
TRANSACTION: dict[str, Any] = {
    "title": "Bundle (transaction or batch)",
    "type": "object",
    "required": ["resourceType", "type"],
    "properties": {
        "resourceType": {"const": "Bundle"},
        "type": {"enum": ["transaction", "batch"]},
        "entry": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["request"],
                "properties": {
                    "fullUrl": {"type": "string"},
                    "resource": RESOURCE,
                    "request": {
                        "type": "object",
                        "required": ["method", "url"],
                        "properties": {
                            "method": {"enum": _HTTP_METHODS},
                            "url": {"type": "string"},
                            "ifNoneExist": {"type": "string"},
                            "ifMatch": {"type": "string"},
                        },
                    },
                },
            },
        },
    },
}

PARAMETERS: dict[str, Any] = {
    "title": "Parameters",
    "type": "object",
    "required": ["resourceType"],
    "properties": {
        "resourceType": {"const": "Parameters"},
        "parameter": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {"name": {"type": "string"}},
            },
        },
    },
}

CAPABILITY_STATEMENT: dict[str, Any] = {
    "title": "CapabilityStatement",
    "type": "object",
    "required": ["resourceType", "status", "date", "kind", "fhirVersion", "format"],
    "properties": {
        "resourceType": {"const": "CapabilityStatement"},
        "status": {"const": "active"},
        "kind": {"const": "instance"},
        "fhirVersion": {"const": "4.3.0"},
        "format": {"type": "array", "items": {"type": "string"}},
        "rest": {"type": "array", "items": {"type": "object"}},
    },
}

JSON_PATCH_DOCUMENT: dict[str, Any] = {
    "title": "JSON Patch (RFC 6902)",
    "type": "array",
    "items": {
        "type": "object",
        "required": ["op", "path"],
        "properties": {
            "op": {"enum": ["add", "remove", "replace", "move", "copy", "test"]},
            "path": {"type": "string"},
            "from": {"type": "string"},
            "value": {},
        },
    },
}

EXPORT_MANIFEST: dict[str, Any] = {
    "title": "Bulk Data export manifest",
    "type": "object",
    "required": ["transactionTime", "request", "requiresAccessToken", "output", "error"],
    "properties": {
        "transactionTime": {"type": "string"},
        "request": {"type": "string"},
        "requiresAccessToken": {"type": "boolean"},
        "output": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["type", "url"],
                "properties": {
                    "type": {"type": "string"},
                    "url": {"type": "string"},
                    "count": {"type": "integer", "minimum": 0},
                },
            },
        },
        "error": {"type": "array"},
    },
}

STATUS_OK: dict[str, Any] = {
    "type": "object",
    "required": ["status"],
    "properties": {"status": {"const": "ok"}},
}

SMART_CONFIGURATION: dict[str, Any] = {
    "title": "SMART App Launch configuration",
    "type": "object",
    "required": ["capabilities", "grant_types_supported", "code_challenge_methods_supported"],
    "properties": {
        "capabilities": {"type": "array", "items": {"type": "string"}},
        "grant_types_supported": {"type": "array", "items": {"type": "string"}},
        "code_challenge_methods_supported": {"type": "array", "items": {"type": "string"}},
        "fhir_base": {"type": "string"},
    },
}


# -- responses -----------------------------------------------------------------------------------
def fhir_content(schema: dict[str, Any], examples: dict[str, Any] | None = None) -> dict[str, Any]:
    """A FHIR body: JSON by default, XML by `_format` or Accept (the XML is not described).
    `examples`: references to components/examples (example_refs)."""
    json_body: dict[str, Any] = {"schema": schema}
    if examples:
        json_body["examples"] = examples
    return {FHIR_JSON: json_body, FHIR_XML: {}}


def fhir(
    schema: dict[str, Any],
    description: str,
    *,
    examples: dict[str, Any] | None = None,
    **headers: dict[str, Any],
) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": fhir_content(schema, examples),
    }
    if headers:
        response["headers"] = {name.replace("_", "-"): header for name, header in headers.items()}
    return response


def header(schema: dict[str, Any], description: str, required: bool = True) -> dict[str, Any]:
    return {"description": description, "required": required, "schema": schema}


ETAG = header(_ETAG, 'The version read or written, as W/"n"')
LAST_MODIFIED = header({"type": "string"}, "When the version was written (HTTP date)")
LOCATION = header({"type": "string"}, "The version written: {base}/{type}/{id}/_history/{version}")

# Every route under /fhir (router-level): what any failure is answered with.
ERRORS: dict[int | str, dict[str, Any]] = {
    "4XX": fhir(
        OPERATION_OUTCOME,
        "The request failed: an OperationOutcome says why (400 bad request, 404 unknown, "
        "406, 410 deleted, 412 version conflict, 413/414 too large, 415, 422 invalid ...)",
        examples=example_refs(ex.OUTCOME_400, ex.OUTCOME_404, ex.OUTCOME_422),
    ),
    "5XX": fhir(
        OPERATION_OUTCOME,
        "The server could not answer: 503 database unavailable or read-only (Retry-After), "
        "507 database full; an unexpected error names an incident to quote",
    ),
}

# Examples of stored resources (a read's answer, a write's with return=representation).
STORED_EXAMPLES = example_refs(ex.ADMINISTRATION_STORED, ex.OBSERVATION_STORED)
RESOURCE_READ: dict[int | str, dict[str, Any]] = {
    200: fhir(
        RESOURCE,
        "The resource",
        examples=STORED_EXAMPLES,
        ETag=ETAG,
        Last_Modified=LAST_MODIFIED,
    ),
}
WRITTEN: dict[int | str, dict[str, Any]] = {
    200: fhir(
        RESOURCE,
        "Updated (or, conditional create, the one match)",
        examples=STORED_EXAMPLES,
        ETag=ETAG,
    ),
    201: fhir(RESOURCE, "Created", examples=STORED_EXAMPLES, ETag=ETAG, Location=LOCATION),
}
# Request bodies: a create's (no id) and an update's (the id of the URL).
CREATE_EXAMPLES = example_refs(ex.ADMINISTRATION_CREATE, ex.OBSERVATION_CREATE)
UPDATE_EXAMPLES = example_refs(ex.ADMINISTRATION_UPDATE, ex.OBSERVATION_UPDATE)
# The searchset example is an Observation search's (it is shown on GET /fhir/Observation too).
SEARCHSET_EXAMPLES = {"Observation": example_refs(ex.PAIN_SEARCHSET)}
BUNDLE_OK: dict[int | str, dict[str, Any]] = {200: fhir(BUNDLE, "A Bundle")}
SEARCHSET_OK: dict[int | str, dict[str, Any]] = {
    200: fhir(BUNDLE, "A searchset Bundle", examples=SEARCHSET_EXAMPLES["Observation"])
}
PARAMETERS_OK: dict[int | str, dict[str, Any]] = {200: fhir(PARAMETERS, "The results")}
OUTCOME_OK: dict[int | str, dict[str, Any]] = {200: fhir(OPERATION_OUTCOME, "The issues found")}
DELETED: dict[int | str, dict[str, Any]] = {
    204: {"description": "Deleted (or nothing to delete)"},
    200: fhir(OPERATION_OUTCOME, "With Prefer: return=OperationOutcome: what was deleted"),
}


# -- parameters ----------------------------------------------------------------------------------
def query(
    name: str,
    schema: dict[str, Any],
    description: str,
    *,
    required: bool = False,
    repeated: bool = False,
) -> dict[str, Any]:
    parameter: dict[str, Any] = {
        "name": name,
        "in": "query",
        "required": required,
        "description": description,
        "schema": {"type": "array", "items": schema} if repeated else schema,
    }
    if repeated:
        parameter.update(style="form", explode=True)
    return parameter


def header_parameter(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "header", "required": False, "description": description,
            "schema": schema}  # fmt: skip


# Path parameters, documented only (see the module docstring).
RESOURCE_TYPE = Path(
    description="A FHIR R4B resource type; another name is a 404 OperationOutcome",
    json_schema_extra={"enum": list(RESOURCE_TYPES)},
)
RESOURCE_ID = Path(
    description="The resource's logical id (FHIR id: 1-64 of A-Z a-z 0-9 - .)",
    json_schema_extra={"pattern": ID_PATTERN},
)
VERSION_ID = Path(description="A version of the resource: 1, 2, ...")
PATIENT_ID = Path(description="The Patient's logical id", json_schema_extra={"pattern": ID_PATTERN})

FORMAT = [
    query(
        "_format",
        {"enum": ["json", "xml", FHIR_JSON, FHIR_XML]},
        "The response format (overrides Accept); another value is 406",
    ),
    query("_pretty", {"enum": ["true", "false"]}, "Indented output"),
]
_RESULT = [
    query("_count", {"type": "integer", "minimum": 0}, "Page size (FHIR_MAX_COUNT at most)"),
    query("_offset", {"type": "integer", "minimum": 0}, "Where the page starts (paging links)"),
]
SEARCH = [
    *FORMAT,
    *_RESULT,
    query("_sort", {"type": "string"}, "Sort keys, comma-separated, `-` for descending"),
    query("_total", {"enum": ["none", "estimate", "accurate"]}, "Whether to count the matches"),
    query("_summary", {"enum": ["true", "false", "text", "data", "count"]}, "A summary form"),
    query("_elements", {"type": "string"}, "Comma-separated elements to keep"),
    query("_include", {"type": "string"}, "Type:param[:target] to include"),
    query("_revinclude", {"type": "string"}, "Type:param[:target] that refer to matches"),
    query("_id", {"type": "string"}, "Logical ids, comma-separated"),
    query("_lastUpdated", DATE_SEARCH, "When last changed, with a prefix (ge2016-08)"),
    query("_tag", {"type": "string"}, "meta.tag as a token (system|code)"),
    query("_profile", {"type": "string"}, "meta.profile (a canonical URL)"),
]
SEARCH_NOTE = (
    " Any search parameter of the type is accepted too (R4B's definitions: token, string, "
    "date, number, quantity, reference, uri, composite, with modifiers, chains and _has); "
    "unknown ones are reported in an OperationOutcome entry, or a 400 with Prefer: "
    "handling=strict."
)
SYSTEM_SEARCH = [
    *SEARCH,
    query("_type", {"type": "string"}, "Resource types to search, comma-separated"),
]
HISTORY = [
    *FORMAT,
    query("_count", {"type": "integer", "minimum": 0}, "Page size"),
    query("_since", _INSTANT, "Only versions written after this instant"),
    query("_at", {"type": "string"}, "Only versions current at this time (a FHIR dateTime)"),
]
IF_MATCH = header_parameter("If-Match", _ETAG, 'Write only over this version: W/"n" (else 412)')
PROVENANCE = header_parameter(
    "X-Provenance", {"type": "string"}, "A Provenance resource (JSON) stored with the write"
)
READ_HEADERS = [
    header_parameter("If-None-Match", {"type": "string"}, 'W/"n": 304 when it is current'),
    header_parameter("If-Modified-Since", {"type": "string"}, "HTTP date: 304 when not newer"),
]

_KINDS: dict[str, dict[str, Any]] = {
    "decimal": {"type": "number"},
    "integer": {"type": "integer"},
    "positiveInt": {"type": "integer", "minimum": 1},
    "boolean": {"type": "boolean"},
    "instant": _INSTANT,
}


# Codes an operation takes that its OperationDefinition binds to no value set.
_CODES: dict[str, dict[str, Any]] = {
    # $stats (operations.stats; `total` is read as sum)
    "statistic": {
        "enum": [
            *("average", "maximum", "minimum", "count", "median", "sum", "std-dev", "variance"),
            "total",
        ]
    },
    "version": {"enum": ["2010", "2016"]},  # $fibromyalgia-criteria
}


def operation_parameters(name: str, *extra: dict[str, Any]) -> list[dict[str, Any]]:
    """An operation's primitive input parameters, from its OperationDefinition. Those that
    may repeat are repeated in the query, but `_type` (one comma-separated value)."""
    found = [
        query(
            p["name"],
            _CODES.get(p["name"]) or _KINDS.get(p.get("type", ""), {"type": "string"}),
            p["documentation"],
            required=p["min"] > 0,
            repeated=p["max"] == "*" and p["name"] != "_type",
        )
        for p in DEFINITIONS[name]["parameter"]
        if p["use"] == "in" and p.get("type") not in ("Resource", "Period", None)
    ]
    return [*found, *extra]


def operation_body(name: str) -> dict[str, Any]:
    """The POST form of an operation: its input parameters in a Parameters resource."""
    names = [
        p["name"]
        for p in DEFINITIONS[name]["parameter"]
        if p["use"] == "in" and p.get("type") not in ("Resource", "Period", None)
    ]
    item = {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"enum": names},
            "valueString": {"type": "string"},
            "valueCode": {"type": "string"},
            "valueInteger": {"type": "integer"},
            "valueDecimal": {"type": "number"},
            "valueBoolean": {"type": "boolean"},
        },
    }
    schema = {
        **PARAMETERS,
        "properties": {**PARAMETERS["properties"], "parameter": {"type": "array", "items": item}},
    }
    return {"required": True, "content": {FHIR_JSON: {"schema": schema}}}


def body(
    schema: dict[str, Any], required: bool = True, examples: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A FHIR body (described as JSON; application/fhir+xml is taken too), with `examples`
    (references to components/examples)."""
    content: dict[str, Any] = {"schema": schema}
    if examples:
        content["examples"] = examples
    return {"required": required, "content": {FHIR_JSON: content}}


def form_body(parameters: list[dict[str, Any]]) -> dict[str, Any]:
    """POST _search: the same parameters, form-encoded."""
    properties = {
        p["name"]: {"type": "string"} if p["schema"].get("type") == "array" else p["schema"]
        for p in parameters
    }
    return {
        "required": False,
        "content": {FORM: {"schema": {"type": "object", "properties": properties}}},
    }


# -- the document --------------------------------------------------------------------------------
RESOURCE_TYPE_SCHEMA: dict[str, Any] = {
    "title": "ResourceType",
    "type": "string",
    "description": "A FHIR R4B resource type; another name is a 404 OperationOutcome",
    "enum": list(RESOURCE_TYPES),
}
# Each schema with a title here becomes a component, referred to wherever it appears.
COMPONENTS: dict[str, dict[str, Any]] = {
    "Resource": RESOURCE,
    "OperationOutcome": OPERATION_OUTCOME,
    "Bundle": BUNDLE,
    "TransactionBundle": TRANSACTION,
    "Parameters": PARAMETERS,
    "CapabilityStatement": CAPABILITY_STATEMENT,
    "JsonPatch": JSON_PATCH_DOCUMENT,
    "ExportManifest": EXPORT_MANIFEST,
    "SmartConfiguration": SMART_CONFIGURATION,
    "ResourceType": RESOURCE_TYPE_SCHEMA,
}


def _refer(node: Any, found: dict[str, Any]) -> Any:
    """`node` with every copy of a component replaced by a reference to it (FastAPI deep-copies
    what routes declare, so copies are found by value). The resource type path parameters
    (pydantic's schema: the enum, a title and a description) become references too."""
    if isinstance(node, list):
        return [_refer(item, found) for item in node]
    if not isinstance(node, dict):
        return node
    for name, schema in COMPONENTS.items():
        if node == schema or (name == "ResourceType" and node.get("enum") == schema["enum"]):
            found[name] = schema
            return {"$ref": f"#/components/schemas/{name}"}
    return {key: _refer(value, found) for key, value in node.items()}


TAGS = [
    {
        "name": "system",
        "description": "The whole server: capabilities, search-system, history-system, "
        "transaction or batch, SMART discovery",
    },
    {"name": openapi_search.TAG, "description": openapi_search.TAG_DESCRIPTION},
    {
        "name": "type",
        "description": "A resource type (any of R4B's in the path): search-type, create, "
        "conditional update, patch and delete, $validate",
    },
    {
        "name": "instance",
        "description": "One resource: read, vread, update, patch, delete, $validate",
    },
    {"name": "history", "description": "Every version of a resource, or of a type"},
    {
        "name": "operations",
        "description": "The clinical operations of ketamine infusion therapy (each with an "
        "OperationDefinition) and FHIR's $everything, $stats and $lastn",
    },
    {
        "name": "bulk data",
        "description": "FHIR Bulk Data Access 2.0: $export kick-off, status, files, cancel",
    },
    {"name": "health", "description": "Probes for orchestrators (not FHIR)"},
]


def _build(document: dict[str, Any]) -> dict[str, Any]:
    """FastAPI's document made FHIR's: schemas as components, each operation's interaction,
    the search paths per type, the case's examples, the tags described."""
    found: dict[str, Any] = {}
    document["paths"] = _refer(document["paths"], found)
    components = document.setdefault("components", {}).setdefault("schemas", {})
    pending = list(found)
    while pending:  # a component's own parts are referred to too (a Bundle's Resource)
        name = pending.pop()
        if name not in components:
            components[name] = {k: _refer(v, found) for k, v in COMPONENTS[name].items()}
            pending.extend(n for n in found if n not in components)
    document["components"]["schemas"] = dict(sorted(components.items()))
    for path, item in document["paths"].items():
        for method, declared in item.items():
            if (method, path) in _DECLARED_HERE:
                declared.setdefault(INTERACTION, _DECLARED_HERE[method, path])
    openapi_search.add_type_searches(document, SEARCHSET_EXAMPLES)
    ex.install_examples(document)
    document["tags"] = [dict(tag) for tag in TAGS]
    return document


def install(app: FastAPI) -> None:
    """The app's /openapi.json made FHIR's (`_build`), built once like FastAPI's."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _build(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    _serve_cached(app)


def _serve_cached(app: FastAPI) -> None:
    """FastAPI's /openapi.json route, but serialising the document once (per root path; it
    JSON-encoded the ~240 KB document on every request) instead of each time."""
    if not app.openapi_url:
        return
    cached: dict[str, bytes] = {}

    async def openapi_json(request: Request) -> Response:
        root_path = request.scope.get("root_path", "").rstrip("/")
        body = cached.get(root_path)
        if body is None:
            schema = app.openapi()
            if root_path and app.root_path_in_servers:  # as FastAPI's own route does
                server_urls = {s.get("url") for s in schema.get("servers", [])}
                if root_path not in server_urls:
                    schema = {**schema, "servers": [{"url": root_path}, *schema.get("servers", [])]}
            body = bytes(JSONResponse(schema).body)
            if len(cached) < 8:  # the server's root paths: a few at most
                cached[root_path] = body
        return Response(body, media_type="application/json")

    routes = app.router.routes
    for i, route in enumerate(routes):
        if isinstance(route, Route) and route.path == app.openapi_url:
            routes[i] = Route(app.openapi_url, openapi_json, include_in_schema=False)
