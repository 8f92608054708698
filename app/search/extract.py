"""Evaluating search parameter expressions on stored JSON.

Most spec expressions are plain paths: `Observation.code`, `(Observation.value as Quantity)`,
`Observation.subject.where(resolve() is Patient)`. Those compile here to small closures over
dicts and lists (a few µs); everything else runs on fhirpathpy (compiled once), whose cost is
~15 µs per expression and resource. tests/search/test_extract.py checks that both agree on every
fixture resource and parameter.

fhirpathpy has no resolve(); a reference's target type is all a search expression asks of it
(`resolve() is Patient`), so resolve() here yields a node of the referenced type: from the
reference's `Type/id` (relative or absolute), or from the contained resource for `#id`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from contextvars import ContextVar
from functools import cache
from typing import Any

from fhirpathpy import compile as fhirpath_compile
from fhirpathpy.engine.nodes import ResourceNode
from fhirpathpy.models import models

from app.search.registry import split_union

Extractor = Callable[[dict[str, Any]], list[Any]]

_MODEL = models["r4"]  # the R4 model's element table; R4B changed no choice/type path we index
_CHOICES: dict[str, list[str]] = _MODEL["choiceTypePaths"]
_ELSEWHERE: dict[str, str] = _MODEL["pathsDefinedElsewhere"]
_PATH_TYPE: dict[str, str] = _MODEL["path2Type"]
_SKIP_TYPES = {"BackboneElement", "Element"}

_IDENT = r"[A-Za-z][A-Za-z0-9_]*"
_PATH = rf"{_IDENT}(?:\.{_IDENT})*"
_CAST = re.compile(rf"^\(\s*({_PATH})\s+as\s+({_IDENT})\s*\)((?:\.{_IDENT})*)$")
_AS_FUNCTION = re.compile(rf"^({_PATH})\.as\(\s*({_IDENT})\s*\)((?:\.{_IDENT})*)$")
_WHERE_EQUALS = re.compile(rf"^({_PATH})\.where\(\s*({_IDENT})\s*=\s*'([^'\\]*)'\s*\)$")
_RESOLVE_IS = re.compile(rf"^({_PATH})\.where\(\s*resolve\(\)\s+is\s+({_IDENT})\s*\)$")
_PLAIN = re.compile(rf"^{_PATH}$")
_REFERENCE_TYPE = re.compile(r"(?:^|/)([A-Z][A-Za-z]+)/[A-Za-z0-9\-.]{1,64}(?:/_history/[^/]+)?$")


def reference_type(reference: dict[str, Any], root: dict[str, Any] | None) -> str | None:
    """The resource type a Reference points at, as far as its text tells."""
    ref = reference.get("reference")
    if isinstance(ref, str):
        if ref.startswith("#") and root is not None:
            for contained in root.get("contained", ()):
                if isinstance(contained, dict) and contained.get("id") == ref[1:]:
                    kind = contained.get("resourceType")
                    return kind if isinstance(kind, str) else None
            return None
        match = _REFERENCE_TYPE.search(ref)
        if match:
            return match.group(1)
    kind = reference.get("type")
    return kind if isinstance(kind, str) else None


def _step(static: str, name: str) -> tuple[str, list[str]]:
    """Follow element `name` from static path `static`: the new static path and the JSON keys
    that hold it (several for a choice element such as Observation.effective[x])."""
    path = f"{static}.{name}"
    path = _ELSEWHERE.get(path, path)
    choices = _CHOICES.get(path)
    keys = [name + c[0].upper() + c[1:] for c in choices] if choices else [name]
    kind = _PATH_TYPE.get(path)
    if kind and kind not in _SKIP_TYPES and kind[0].isupper() and not choices:
        path = kind  # into a datatype: Quantity.value, Reference.reference, ...
    return path, keys


def _navigate(values: list[Any], keys: list[str]) -> list[Any]:
    out: list[Any] = []
    for value in values:
        if not isinstance(value, dict):
            continue
        for key in keys:
            found = value.get(key)
            if found is None:
                continue
            if isinstance(found, list):
                out.extend(item for item in found if item is not None)
            else:
                out.append(found)
    return out


def _plain(path: str) -> Extractor | None:
    names = path.split(".")
    static = names[0]
    steps: list[list[str]] = []
    for name in names[1:]:
        static, keys = _step(static, name)
        steps.append(keys)
    if not steps:
        return lambda resource: [resource]  # the resource itself: a composite's root

    def extract(resource: dict[str, Any]) -> list[Any]:
        values: list[Any] = [resource]
        for keys in steps:
            values = _navigate(values, keys)
            if not values:
                return values
        return values

    return extract


def _cast(path: str, kind: str, rest: str) -> Extractor | None:
    names = path.split(".")
    if len(names) < 2:
        return None
    static = names[0]
    steps: list[list[str]] = []
    for name in names[1:-1]:
        static, keys = _step(static, name)
        steps.append(keys)
    last = f"{static}.{names[-1]}"
    last = _ELSEWHERE.get(last, last)
    choices = _CHOICES.get(last)
    type_name = kind[0].upper() + kind[1:]
    if choices is None:
        return None  # `as` on a non-choice element: a type test fhirpathpy does right
    if type_name not in choices:
        return lambda resource: []
    steps.append([names[-1] + type_name])
    static = type_name
    for name in rest.split(".")[1:] if rest else []:
        static, keys = _step(static, name)
        steps.append(keys)

    def extract(resource: dict[str, Any]) -> list[Any]:
        values: list[Any] = [resource]
        for keys in steps:
            values = _navigate(values, keys)
        return values

    return extract


def _resolve_is(path: str, kind: str) -> Extractor | None:
    inner = _plain(path)
    if inner is None:
        return None

    def extract(resource: dict[str, Any]) -> list[Any]:
        return [
            v
            for v in inner(resource)
            if isinstance(v, dict) and reference_type(v, resource) == kind
        ]

    return extract


def _where_equals(path: str, name: str, literal: str) -> Extractor | None:
    inner = _plain(path)
    if inner is None:
        return None

    def extract(resource: dict[str, Any]) -> list[Any]:
        return [v for v in inner(resource) if isinstance(v, dict) and v.get(name) == literal]

    return extract


def _fast_branch(branch: str) -> Extractor | None:
    if _PLAIN.match(branch):
        return _plain(branch)
    match = _CAST.match(branch) or _AS_FUNCTION.match(branch)
    if match:
        return _cast(match.group(1), match.group(2), match.group(3))
    match = _WHERE_EQUALS.match(branch)
    if match:
        return _where_equals(match.group(1), match.group(2), match.group(3))
    match = _RESOLVE_IS.match(branch)
    if match:
        return _resolve_is(match.group(1), match.group(2))
    return None


_ROOT: ContextVar[dict[str, Any] | None] = ContextVar("fhirpath_root", default=None)


def _resolve_fn(inputs: list[Any]) -> list[Any]:
    out = []
    for item in inputs:
        if isinstance(item, dict):
            kind = reference_type(item, _ROOT.get())
            if kind:
                out.append(ResourceNode({"resourceType": kind}, kind))  # type: ignore[no-untyped-call]
    return out


_OPTIONS = {"userInvocationTable": {"resolve": {"fn": _resolve_fn, "arity": {0: []}}}}


def fhirpath_extractor(expression: str) -> Extractor:
    """The expression on fhirpathpy, as the reference the fast path is checked against."""
    compiled = fhirpath_compile(expression, model=_MODEL, options=_OPTIONS)

    def extract(resource: dict[str, Any]) -> list[Any]:
        token = _ROOT.set(resource)
        try:
            return list(compiled(resource, {}))
        finally:
            _ROOT.reset(token)

    return extract


@cache
def root_keys(expression: str) -> frozenset[str] | None:
    """The resource's top-level JSON keys that can hold a value of `expression`: a resource
    with none of them gives nothing, so indexing skips the expression (most of a type's
    parameters, for any one resource). None when that cannot be told from the shape."""
    keys: set[str] = set()
    for branch in split_union(expression):
        match = _CAST.match(branch) or _AS_FUNCTION.match(branch)
        if match:
            path, kind = match.group(1), match.group(2)
        else:
            where = _WHERE_EQUALS.match(branch) or _RESOLVE_IS.match(branch)
            path, kind = (where.group(1), None) if where else (branch, None)
            if not _PLAIN.match(path):
                return None
        names = path.split(".")
        if len(names) < 2:
            return None  # the resource itself (a composite's root)
        if kind is not None and len(names) == 2:
            keys.add(names[1] + kind[0].upper() + kind[1:])
        else:
            keys.update(_step(names[0], names[1])[1])
    return frozenset(keys)


@cache
def compile_expression(expression: str) -> Extractor:
    """An extractor for a (type-specific) search expression: fast where every branch is a
    plain shape, fhirpathpy otherwise."""
    branches = split_union(expression)
    fast = [_fast_branch(b) for b in branches]
    if all(f is not None for f in fast):
        parts = [f for f in fast if f is not None]
        if len(parts) == 1:
            return parts[0]
        return lambda resource: [v for part in parts for v in part(resource)]
    return fhirpath_extractor(expression)
