"""Search by type in the OpenAPI document: `GET /fhir/{Type}` for the types this server is about,
each with that type's search parameters from the registry (app/search/registry.py).

The routes are generic (`GET /fhir/{resource_type}` serves every type), so these paths exist in
the document only: a concrete path is matched before a templated one (OpenAPI 3.1, "Paths
Object"), and each is answered by the generic route. They list the parameters the
CapabilityStatement lists for the type (`rest.resource.searchParam`, app/fhir/search_capability.py:
every registry parameter of the type but the `special` ones), each with its FHIR type
(`x-fhir-type`), its definition (`x-fhir-definition`) and the FHIRPath it searches, then the
result parameters every search takes (_count, _sort, _include, ...), declared once under
components/parameters.

Only DOCUMENTED_TYPES get a path: all 141 R4B types would make the document 1.4 MB (~5,000
parameters, 6x the 240 KB it is) and Swagger UI slow to open, for types this server stores but
is not about. The
other types' parameters are in the CapabilityStatement (GET /fhir/metadata), and every type is
searchable at `GET /fhir/{resource_type}`.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from app.search.query import TYPE_MODIFIERS
from app.search.registry import SearchParamDef, by_url, expression_for, params_for, supported

# The types of ketamine infusion therapy and its outcomes: the case's (Patient, Condition,
# Observation, MedicationAdministration, MedicationStatement, Procedure, Organization) and
# what a clinical system sends around them.
DOCUMENTED_TYPES = (
    "Patient",
    "Condition",
    "Observation",
    "MedicationAdministration",
    "MedicationStatement",
    "MedicationRequest",
    "Medication",
    "Procedure",
    "Encounter",
    "Practitioner",
    "Organization",
)
TAG = "search by type"
TAG_DESCRIPTION = (
    "Search one resource type, with its own search parameters listed (from the server's "
    "registry: the CapabilityStatement's searchParam). Shown for the types of ketamine "
    "infusion therapy; every other type is searched at GET /fhir/{resource_type} with the "
    "parameters /fhir/metadata lists for it."
)

_PARAMETER_REF = "#/components/parameters/"
_HOW = {
    "token": "`[system]|[code]`, `code`, `|code` or `system|`",
    "string": "starts with, ignoring case and accents",
    "date": "a FHIR date or dateTime, after an optional prefix (eq ne gt lt ge le sa eb ap)",
    "number": "a number, after an optional prefix (eq ne gt lt ge le sa eb ap)",
    "quantity": "`[prefix]number|system|code`, e.g. `ge5|http://unitsofmeasure.org|mg`",
    "reference": "`id`, `Type/id` or an absolute URL; `:Type` and chains (`param.name=x`)",
    "uri": "an absolute URI; `:below` and `:above` match by prefix",
}
_SPEC = "https://hl7.org/fhir/R4B/"
_RELATIVE_LINK = re.compile(r"\]\((?!https?:)([a-z0-9_-]+\.html[^)]*)\)")
# What a value of each kind looks like (a composite's example joins its components').
_SAMPLE = {
    "token": "system|code",
    "string": "text",
    "date": "ge2016-08-22",
    "number": "ge5",
    "quantity": "ge5",
    "reference": "Type/id",
    "uri": "http://example.org",
}
_VALUE_OF = {"_id": "logical ids, comma-separated"}  # a token, but only ever a plain id
# Parameters the registry gives with no path in the resource: what the server does with them.
_SPECIAL_USE = {
    "_has": (
        "Reverse chaining, in the parameter's name: `_has:Type:reference-param:search-param="
        "value` selects the resources that a matching Type refers to (e.g. "
        "`_has:Observation:patient:code=72514-3` on Patient)."
    ),
}

# The result parameters every search takes (app/search/query.py RESULT_PARAMETERS), declared
# once as components/parameters. _include and _revinclude are per type (below).
RESULT_PARAMETERS: dict[str, dict[str, Any]] = {
    "_count": {
        "schema": {"type": "integer", "minimum": 0},
        "description": "Page size (default 50, FHIR_MAX_COUNT at most); 0: the total only",
    },
    "_offset": {
        "schema": {"type": "integer", "minimum": 0},
        "description": "Where the page starts (the paging links carry it)",
    },
    "_sort": {
        "schema": {"type": "string"},
        "description": "Search parameters to sort by, comma-separated, `-` for descending "
        "(e.g. `-date`); missing values last",
    },
    "_total": {
        "schema": {"type": "string", "enum": ["none", "estimate", "accurate"]},
        "description": "Whether to count the matches (Bundle.total)",
    },
    "_summary": {
        "schema": {"type": "string", "enum": ["true", "false", "text", "data", "count"]},
        "description": "A summary form of each resource, or only the count",
    },
    "_elements": {
        "schema": {"type": "string"},
        "description": "Comma-separated top-level elements to keep in each resource",
    },
    "_format": {
        "schema": {
            "type": "string",
            "enum": ["json", "xml", "application/fhir+json", "application/fhir+xml"],
        },
        "description": "The response format (overrides Accept); another value is 406",
    },
    "_pretty": {
        "schema": {"type": "string", "enum": ["true", "false"]},
        "description": "Indented output",
    },
}


def _own_description(definition: SearchParamDef, resource_type: str) -> str:
    """The registry's description (its links to the specification made absolute), or (R4B
    shares some definitions across types, described as just "Multiple Resources:") the
    parameter's name."""
    text = definition.description.strip()
    if not text or text.startswith("Multiple Resources"):
        return f"The {definition.code} of the {resource_type}"
    return _RELATIVE_LINK.sub(lambda m: f"]({_SPEC}{m.group(1)})", text).rstrip(".")


def _components(definition: SearchParamDef) -> str:
    """A composite's components and an example value: `a (token) $ b (quantity)`, e.g.
    `system|code$ge5`."""
    names = []
    samples = []
    for url, _ in definition.components:
        component = by_url(url)
        names.append(f"`{component.code}` ({component.type})" if component else url)
        samples.append(_SAMPLE.get(component.type, "x") if component else "x")
    return f"{' $ '.join(names)}, e.g. `{'$'.join(samples)}`"


def search_parameter(definition: SearchParamDef, resource_type: str) -> dict[str, Any]:
    """One registry parameter of `resource_type` (or of every resource: "Resource") as an
    OpenAPI query parameter."""
    kind = definition.type
    expression = expression_for(definition, resource_type)
    if definition.code in _SPECIAL_USE or expression is None:
        parts = [f"{kind}: {_SPECIAL_USE.get(definition.code, '')}"]
    else:
        parts = [f"{kind}: {_own_description(definition, resource_type)}."]
        if kind == "composite":
            parts.append(f"Searches `{expression}`; value: {_components(definition)}.")
        else:
            value = _VALUE_OF.get(definition.code) or _HOW.get(kind, "text")
            parts.append(f"Searches `{expression}`; value: {value}.")
        if definition.targets and kind == "reference":
            parts.append(f"Refers to {', '.join(definition.targets)}.")
        modifiers = sorted(TYPE_MODIFIERS.get(kind, ()))
        if modifiers:
            parts.append(f"Modifiers: {', '.join(':' + m for m in modifiers)}.")
    return {
        "name": definition.code,
        "in": "query",
        "required": False,
        "description": " ".join(parts),
        "schema": {"type": "string"},
        "x-fhir-type": kind,
        "x-fhir-definition": definition.url,
    }


def _is_common(definition: SearchParamDef) -> bool:
    """Defined on Resource or DomainResource: the same parameter on every type."""
    return set(definition.base) <= set(_COMMON_BASES)


_COMMON_BASES = ("Resource", "DomainResource")


def type_parameters(
    resource_type: str, shared: dict[str, dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """The type's search parameters (as its CapabilityStatement entry lists them: the
    registry's it supports), its own first, then those of every resource.

    With `shared` (components/parameters, filled here), those of every resource are declared
    there once and referred to."""
    own: list[dict[str, Any]] = []
    common: list[dict[str, Any]] = []
    for code, definition in sorted(params_for(resource_type).items()):
        if not supported(definition):
            continue
        if not _is_common(definition):
            own.append(search_parameter(definition, resource_type))
            continue
        declared = search_parameter(definition, definition.base[0])
        if shared is None:
            common.append(declared)
            continue
        key = f"{definition.base[0]}.{code}"  # Resource._text and DomainResource._text differ
        shared.setdefault(key, declared)
        common.append({"$ref": f"{_PARAMETER_REF}{key}"})
    return [*own, *common]


def _include(resource_type: str) -> list[dict[str, Any]]:
    references = sorted(c for c, d in params_for(resource_type).items() if d.type == "reference")
    listed = ", ".join(f"`{resource_type}:{c}`" for c in references) or "none"
    return [
        {
            "name": "_include",
            "in": "query",
            "required": False,
            "description": (
                f"Also return what matches refer to: `{resource_type}:param[:Type]` "
                f"(`:iterate`, `*`); its reference parameters: {listed}"
            ),
            "schema": {"type": "string"},
        },
        {
            "name": "_revinclude",
            "in": "query",
            "required": False,
            "description": (
                f"Also return what refers to matches: `Type:param[:{resource_type}]` "
                f"(e.g. `Provenance:target`; `:iterate`, `*`)"
            ),
            "schema": {"type": "string"},
        },
    ]


def search_operation(
    resource_type: str,
    responses: dict[str, Any],
    examples: dict[str, Any] | None = None,
    shared: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """`GET /fhir/{resource_type}`: answered as the generic search's `responses`, with
    `examples` of its searchset Bundle (or none); `shared`: components/parameters."""
    result = [{"$ref": f"{_PARAMETER_REF}{name}"} for name in RESULT_PARAMETERS]
    answers = copy.deepcopy(responses)
    for content in answers["200"].get("content", {}).values():
        content.pop("examples", None)
        if examples:
            content["examples"] = examples
            break  # JSON, the first: XML is not described
    return {
        "tags": [TAG],
        "summary": f"search-type: {resource_type} resources matching the query",
        "description": (
            f"A searchset Bundle of the {resource_type} resources that match every parameter "
            "given (repeat a parameter for AND; separate values by commas for OR). Its own "
            "parameters are listed with their FHIR search type; modifiers go after the name "
            "(`code:not=...`). Unknown parameters are reported in an OperationOutcome entry, "
            "or a 400 with `Prefer: handling=strict`. The same request as "
            f"GET /fhir/{{resource_type}} with resource_type {resource_type}."
        ),
        "operationId": f"search_{resource_type}",
        "x-fhir-interaction": "search-type",
        "parameters": [
            *type_parameters(resource_type, shared),
            *_include(resource_type),
            *result,
        ],
        "responses": answers,
    }


def add_type_searches(
    document: dict[str, Any],
    examples: dict[str, dict[str, Any]],
    generic: str = "/fhir/{resource_type}",
) -> None:
    """`GET /fhir/{Type}` for each documented type, answered as the generic search route's
    (its responses; `examples` of a type's searchset by type), with the result parameters as
    components/parameters."""
    responses = document["paths"][generic]["get"]["responses"]
    parameters = document.setdefault("components", {}).setdefault("parameters", {})
    for name, declared in RESULT_PARAMETERS.items():
        parameters[name] = {"name": name, "in": "query", "required": False, **declared}
    for resource_type in DOCUMENTED_TYPES:
        path = f"/fhir/{resource_type}"
        assert path not in document["paths"], f"{path} is a route already"
        operation = search_operation(
            resource_type, responses, examples.get(resource_type), parameters
        )
        document["paths"][path] = {"get": operation}
    document["components"]["parameters"] = dict(sorted(parameters.items()))
