"""All index rows of one resource: every search parameter of its type, evaluated once."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from functools import cache
from typing import Any

from app.search import index_values as iv
from app.search.aliases import RESOURCE_COLUMNS, Stored, indexed_params, stored_as
from app.search.extract import Extractor, compile_expression, root_keys
from app.search.registry import (
    REGISTRY_PATH,
    SearchParamDef,
    by_url,
    expression_for,
    params_for,
    split_union,
)

# Bump when a change to extraction or normalisation changes the rows of stored resources.
_EXTRACTION_VERSION = 6  # 3: token rows carry the patient; 4: a concept's text once;
# 5: resource-rooted composites read from their components' rows (aliases.PAIRED);
# 6: a string's exact text whole (storage bounds values longer than their column: a hash)


@cache
def index_fingerprint() -> str:
    """Names the rules the index rows follow: stored rows older than these are rebuilt."""
    digest = hashlib.sha256(REGISTRY_PATH.read_bytes())
    digest.update(str(_EXTRACTION_VERSION).encode())
    return digest.hexdigest()[:32]


def _relative(expression: str) -> Callable[[dict[str, Any]], list[Any]]:
    """A composite component's expression, relative to its root element (`code`,
    `value.as(Quantity)`, `value.as(DateTime) | value.as(Period)`)."""
    branches = [_relative_path(branch) for branch in split_union(expression)]
    if len(branches) == 1:
        return branches[0]
    return lambda root: [value for branch in branches for value in branch(root)]


def _relative_path(expression: str) -> Callable[[dict[str, Any]], list[Any]]:
    steps: list[str] = []
    for part in expression.strip().split("."):
        cast = re.fullmatch(r"as\(([A-Za-z]+)\)", part.strip())
        if cast and steps:
            steps[-1] += cast.group(1)[0].upper() + cast.group(1)[1:]
        elif re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", part.strip()):
            steps.append(part.strip())
        else:
            return lambda root: []

    def extract(root: dict[str, Any]) -> list[Any]:
        values: list[Any] = [root]
        for step in steps:
            found: list[Any] = []
            for value in values:
                item = value.get(step) if isinstance(value, dict) else None
                if isinstance(item, list):
                    found.extend(item)
                elif item is not None:
                    found.append(item)
            values = found
        return values

    return extract


Component = tuple[str, Callable[[dict[str, Any]], list[Any]]]


class _Plan:
    """What to evaluate for one resource type: (code, type, extractor) per parameter."""

    def __init__(self, resource_type: str, with_aliases: bool, skip: bool = True) -> None:
        wanted = params_for(resource_type) if with_aliases else indexed_params(resource_type)
        # (code, type, extractor, top-level keys it reads: None = always evaluate)
        self.simple: list[tuple[str, str, Extractor, frozenset[str] | None]] = []
        self.composites: list[
            tuple[str, Extractor, list[tuple[str, Callable[..., list[Any]]]]]
        ] = []
        for code, definition in sorted(wanted.items()):
            if code in RESOURCE_COLUMNS or definition.type == "special":
                continue
            expression = expression_for(definition, resource_type)
            if not expression:
                continue
            extractor = compile_expression(expression)
            if definition.type == "composite":
                parts = self._components(definition)
                if parts:
                    self.composites.append((code, extractor, parts))
            else:
                keys = root_keys(expression) if skip else None
                self.simple.append((code, definition.type, extractor, keys))

    @staticmethod
    def _components(definition: SearchParamDef) -> list[Component]:
        parts = []
        for url, expression in definition.components[:2]:
            component = by_url(url)
            if component is None:
                return []
            parts.append((component.type, _relative(expression)))
        return parts if len(parts) == 2 else []


@cache
def _plan(resource_type: str, with_aliases: bool, skip: bool = True) -> _Plan:
    return _Plan(resource_type, with_aliases, skip)


def index_rows(
    resource: dict[str, Any], *, with_aliases: bool = False, skip: bool = True
) -> iv.IndexRows:
    """The rows to store; with_aliases adds the rows of parameters stored as others' rows
    (app/search/aliases.py), which the tests derive both ways. skip=False evaluates every
    expression, also those whose top-level keys the resource lacks (a test compares both)."""
    rows = iv.IndexRows()
    plan = _plan(resource["resourceType"], with_aliases, skip)
    for code, kind, extractor, keys in plan.simple:
        if keys is not None and keys.isdisjoint(resource):
            continue
        values = extractor(resource)
        if not values:
            continue
        if kind == "token":
            for value in values:
                for system, token, text in iv.tokens(value):
                    rows.token.add((code, system, token, text))
                for system, typed in iv.identifier_types(value):
                    rows.token.add((f"{code}:of-type", system, typed, None))
        elif kind == "string":
            for value in values:
                for text in iv.strings(value):
                    rows.string.add((code, iv.fold(text)[:255], text))
        elif kind == "date":
            for value in values:
                for low, high in iv.date_ranges(value):
                    rows.date.add((code, low, high))
        elif kind == "number":
            for value in values:
                for number in iv.numbers(value):
                    rows.number.add((code, number))
        elif kind == "quantity":
            for value in values:
                for quantity in iv.quantities(value):
                    rows.quantity.add((code, *quantity))
        elif kind == "reference":
            for value in values:
                for target in iv.references(value, resource):
                    rows.reference.add((code, *target))
        elif kind == "uri":
            for value in values:
                for uri in iv.uris(value):
                    rows.uri.add((code, uri))
    for code, roots, parts in plan.composites:
        for root in roots(resource):
            _composite_rows(rows, code, root, parts)
    patient = patient_rows(resource["resourceType"])
    if patient is not None:
        rows.patient = _patient(rows, patient)
    return rows


@cache
def patient_rows(resource_type: str) -> Stored | None:
    """Where the type's `patient` parameter keeps its reference rows (None: it has none)."""
    definition = params_for(resource_type).get("patient")
    if definition is None or definition.type != "reference":
        return None
    return stored_as(resource_type, "patient")


def _patient(rows: iv.IndexRows, stored: Stored) -> int | None:
    ids = {
        target_id
        for code, target_type, target_id, _ in rows.reference
        if code in stored.codes
        and target_id is not None
        and (stored.target_type is None or target_type == stored.target_type)
    }
    if not ids:
        return None
    return iv.patient_hash(ids.pop()) if len(ids) == 1 else iv.SEVERAL_PATIENTS


def _composite_rows(
    rows: iv.IndexRows, code: str, root: Any, parts: list[tuple[str, Callable[..., list[Any]]]]
) -> None:
    (first_type, first), (second_type, second) = parts
    if first_type != "token" or not isinstance(root, dict):
        return
    firsts = [t for value in first(root) for t in iv.tokens(value) if t[1] is not None]
    for value in second(root):
        for c2 in _second_values(second_type, value):
            for system, token, _ in firsts:
                rows.composite.add((code, system, token, *c2))


def _second_values(kind: str, value: Any) -> list[tuple[Any, ...]]:
    """(system, code, value, canon value, canon code, low, high, text) for the 2nd component."""
    if kind == "token":
        return [
            (s, c, None, None, None, None, None, None)
            for s, c, _ in iv.tokens(value)
            if c is not None
        ]
    if kind == "quantity":
        return [(s, c, v, cv, cc, None, None, None) for v, s, c, cv, cc in iv.quantities(value)]
    if kind == "date":
        return [
            (None, None, None, None, None, low, high, None) for low, high in iv.date_ranges(value)
        ]
    if kind == "string":
        return [
            (None, None, None, None, None, None, None, iv.fold(t)[:255]) for t in iv.strings(value)
        ]
    if kind == "number":
        return [(None, None, n, None, None, None, None, None) for n in iv.numbers(value)]
    return []
