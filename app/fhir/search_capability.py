"""The search part of the CapabilityStatement, from the parameter registry."""

from __future__ import annotations

from typing import Any

from app.fhir import capability
from app.search.query import TYPE_MODIFIERS
from app.search.registry import params_for, supported

_COMMON_ONLY = ("_id", "_lastUpdated", "_tag", "_profile", "_security", "_source")


def _search_params(resource_type: str) -> list[dict[str, Any]]:
    out = []
    for code, definition in sorted(params_for(resource_type).items()):
        if not supported(definition):
            continue
        modifiers = sorted(TYPE_MODIFIERS.get(definition.type, ()))
        documentation = definition.description
        if modifiers:
            documentation += f" Modifiers: {', '.join(':' + m for m in modifiers)}."
        out.append(
            {
                "name": code,
                "definition": definition.url,
                "type": definition.type,
                "documentation": documentation,
            }
        )
    return out


def _reference_params(resource_type: str) -> list[str]:
    return sorted(
        f"{resource_type}:{code}"
        for code, d in params_for(resource_type).items()
        if d.type == "reference"
    )


def contribute(rest: dict[str, Any]) -> None:
    for resource in rest["resource"]:
        kind = resource["type"]
        resource["interaction"].append({"code": "search-type"})
        resource["searchParam"] = _search_params(kind)
        resource["searchInclude"] = ["*", *_reference_params(kind)]
        resource["searchRevInclude"] = ["*"]
    rest["interaction"].append({"code": "search-system"})
    rest["searchParam"] = [
        {
            "name": code,
            "type": "token"
            if code == "_id"
            else "date"
            if code == "_lastUpdated"
            else "uri"
            if code in {"_profile", "_source"}
            else "token",
            "documentation": "Common to every resource type",
        }
        for code in _COMMON_ONLY
    ]


capability.contributors.append(contribute)
