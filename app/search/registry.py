"""The FHIR R4B search-parameter registry: which parameters each resource type supports, their
types, and the FHIRPath that extracts their values. Read once from data/search_parameters.json,
which `python -m app.search.registry_gen` writes from the official definitions.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

REGISTRY_PATH = Path(__file__).parent / "data" / "search_parameters.json"

# Parameters defined on Resource apply to every type; those on DomainResource to every type but
# these three, which derive from Resource directly.
NOT_DOMAIN_RESOURCES = frozenset({"Binary", "Bundle", "Parameters"})
_ABSTRACT_BASES = ("Resource", "DomainResource")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True, slots=True)
class SearchParamDef:
    """One SearchParameter: `components` holds (definition url, expression) pairs of a composite."""

    url: str
    code: str
    type: str
    base: tuple[str, ...]
    expression: str | None
    targets: tuple[str, ...]
    components: tuple[tuple[str, str], ...]
    modifiers: tuple[str, ...]
    comparators: tuple[str, ...]
    description: str


def _definition(raw: dict[str, Any]) -> SearchParamDef:
    return SearchParamDef(
        url=raw["url"],
        code=raw["code"],
        type=raw["type"],
        base=tuple(raw["base"]),
        expression=raw.get("expression"),
        targets=tuple(raw.get("target", ())),
        components=tuple((c["definition"], c["expression"]) for c in raw.get("component", ())),
        modifiers=tuple(raw.get("modifier", ())),
        comparators=tuple(raw.get("comparator", ())),
        description=raw.get("description", ""),
    )


def _load() -> tuple[SearchParamDef, ...]:
    data: dict[str, Any] = json.loads(REGISTRY_PATH.read_text(encoding="utf-8"))
    return tuple(_definition(raw) for raw in data["parameters"])


ALL_PARAMS: tuple[SearchParamDef, ...] = _load()
_BY_URL: dict[str, SearchParamDef] = {p.url: p for p in ALL_PARAMS}
_BY_BASE: dict[str, list[SearchParamDef]] = {}
for _p in ALL_PARAMS:
    for _b in _p.base:
        _BY_BASE.setdefault(_b, []).append(_p)
del _p, _b


@cache
def params_for(resource_type: str) -> dict[str, SearchParamDef]:
    """Every parameter that applies to `resource_type`, by code (a shared dict: do not mutate).

    A code defined for the type itself wins over DomainResource's, which wins over Resource's
    (`_text` is defined on both). The type is not checked against the R4B list.
    """
    layers = [_BY_BASE.get("Resource", [])]
    if resource_type not in NOT_DOMAIN_RESOURCES:
        layers.append(_BY_BASE.get("DomainResource", []))
    if resource_type not in _ABSTRACT_BASES:
        layers.append(_BY_BASE.get(resource_type, []))
    found: dict[str, SearchParamDef] = {}
    for layer in layers:
        for definition in layer:
            found[definition.code] = definition
    return found


def supported(definition: SearchParamDef) -> bool:
    """Whether the server searches by it. Not: `special` ones (Location.near) and those with
    no expression (_text, _content, _list, _query, _filter; _type outside a system search),
    of which nothing is indexed; `_has` has none but is read from the name (`_has:...`)."""
    if definition.type == "special":
        return False
    return definition.expression is not None or definition.code == "_has"


def param(resource_type: str, code: str) -> SearchParamDef | None:
    return params_for(resource_type).get(code)


def by_url(url: str) -> SearchParamDef | None:
    return _BY_URL.get(url)


def split_union(expression: str) -> list[str]:
    """The branches of a FHIRPath union: split on `|` outside brackets and string literals."""
    branches: list[str] = []
    depth = 0
    quote: str | None = None
    start = 0
    i = 0
    while i < len(expression):
        char = expression[i]
        if quote is not None:
            if char == "\\":
                i += 1
            elif char == quote:
                quote = None
        elif char in "'\"`":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == "|" and depth == 0:
            branches.append(expression[start:i].strip())
            start = i + 1
        i += 1
    branches.append(expression[start:].strip())
    return [b for b in branches if b]


@cache
def expression_for(definition: SearchParamDef, resource_type: str) -> str | None:
    """The branches of the parameter's expression that apply to `resource_type`, joined by ` | `.

    A branch applies when its first identifier (after any opening parentheses) is the type, or
    Resource/DomainResource, which is then rewritten to the type. None when no branch applies.
    A branch starting with an element name (lower case) is taken as relative to the type when the
    type is one of the parameter's bases: the spec's InsurancePlan-name reads `name | alias`.
    """
    if not definition.expression:
        return None
    kept: list[str] = []
    for branch in split_union(definition.expression):
        offset = len(branch) - len(branch.lstrip("( \t\r\n"))
        match = _IDENTIFIER.match(branch, offset)
        if match is None:
            continue
        name = match.group()
        if name == resource_type:
            kept.append(branch)
        elif name in _ABSTRACT_BASES:
            kept.append(branch[: match.start()] + resource_type + branch[match.end() :])
        elif name[0].islower() and resource_type in definition.base:
            kept.append(f"{branch[: match.start()]}{resource_type}.{branch[match.start() :]}")
    return " | ".join(kept) if kept else None
