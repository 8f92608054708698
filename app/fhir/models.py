"""The one import point for fhir.resources R4B, and validation of a resource against it.

Validation happens once, on write. Reads never touch the models: stored bytes go out as they are.
"""

from __future__ import annotations

import json
import re
import threading
from functools import cache
from typing import Any, get_args

from pydantic import ValidationError

from app.fhir.catalog_gen import CATALOG_PATH
from app.fhir.errors import InvalidResourceError, Issue, StructureError, UnknownTypeError
from app.fhir.invariants import invariant_issues
from app.fhir.json_rules import json_issues

_CATALOG: dict[str, Any] = json.loads(CATALOG_PATH.read_text())
FHIR_VERSION: str = _CATALOG["fhirVersion"]
RESOURCE_TYPES: tuple[str, ...] = tuple(_CATALOG["resourceTypes"])
_RESOURCE_TYPE_SET = frozenset(RESOURCE_TYPES)
_REQUIRED_CODES: dict[str, dict[str, frozenset[str]]] = {
    cls: {element: frozenset(codes) for element, codes in elements.items()}
    for cls, elements in _CATALOG["requiredCodes"].items()
}
MAX_ISSUES = 20


def is_resource_type(name: str) -> bool:
    return name in _RESOURCE_TYPE_SET


def require_resource_type(name: str) -> str:
    if name not in _RESOURCE_TYPE_SET:
        raise UnknownTypeError(f"Unknown resource type '{name}': not an R4B resource type")
    return name


@cache
def model_class(resource_type: str) -> Any:
    from fhir.resources.R4B import get_fhir_model_class

    return get_fhir_model_class(require_resource_type(resource_type))


def _expression(resource_type: str, loc: tuple[int | str, ...]) -> str:
    path = resource_type
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part.replace("_", "").isalnum():
            path += f".{part}"
    return path


def validate(
    data: Any, resource_type: str | None = None, *, conditional_references: bool = False
) -> Any:
    """Check that `data` (parsed JSON) is a valid R4B resource, of `resource_type` when given.
    `conditional_references`: it is a Bundle entry, whose `Type?query` references the Bundle
    resolves before storing.

    Returns the model instance. Raises StructureError (400) when it is not a resource of the
    expected type at all, InvalidResourceError (422) naming each offending element otherwise.
    """
    if not isinstance(data, dict):
        raise StructureError("The body is not a FHIR resource: expected a JSON object")
    declared = data.get("resourceType")
    if not isinstance(declared, str):
        raise StructureError(
            "The body is not a FHIR resource: it has no resourceType", ("resourceType",)
        )
    if resource_type is not None and declared != resource_type:
        raise StructureError(
            f"resourceType '{declared}' does not match the type in the URL '{resource_type}'",
            (f"{declared}.resourceType",),
        )
    if not is_resource_type(declared):
        raise StructureError(
            f"resourceType '{declared}' is not an R4B resource type", ("resourceType",)
        )
    try:
        instance = model_class(declared).model_validate(data)
    except ValidationError as exc:
        raise validation_error(declared, exc) from None
    except (ValueError, TypeError) as exc:  # fhir_core raises these from some validators
        raise InvalidResourceError(f"{declared}: {exc}", (declared,)) from None
    issues = json_issues(data, model_class, conditional_references=conditional_references)
    issues += _required_code_issues(instance, declared)
    issues += invariant_issues(data)
    if issues:
        raise _invalid(issues)
    return instance


def validation_error(resource_type: str, exc: ValidationError) -> InvalidResourceError:
    issues = [
        Issue(
            "invalid" if err["type"] != "extra_forbidden" else "structure",
            f"{_expression(resource_type, err['loc'])}: {err['msg']}",
            "error",
            (_expression(resource_type, err["loc"]),),
        )
        for err in exc.errors()[:MAX_ISSUES]
    ]
    return _invalid(issues)


def _invalid(issues: list[Issue]) -> InvalidResourceError:
    first = issues[0]
    return InvalidResourceError(first.diagnostics, first.expression, issues[1:], code=first.code)


def _bound_elements(model: type) -> dict[str, frozenset[str]]:
    return _bindings_for(model)


@cache
def _bindings_for(model: type) -> dict[str, frozenset[str]]:
    found: dict[str, frozenset[str]] = {}
    for cls in reversed(model.__mro__):
        found.update(_REQUIRED_CODES.get(cls.__name__, {}))
    return found


def _required_code_issues(node: Any, path: str, root: Any = None, prune: bool = True) -> Any:
    """Yield an issue for every `code` element whose required value set lacks its value, and
    for every Reference to a resource type its element does not allow. `prune` skips the
    fields that can hold neither (_checked_fields); a test compares both walks."""
    root = node if root is None else root
    kind: Any = type(node)
    fields = kind.model_fields
    bound = _bound_elements(kind)
    checked = _checked_fields(kind) if prune else None
    for name in node.model_fields_set:
        if checked is not None and name not in checked:
            continue
        value = getattr(node, name, None)
        if value is None:
            continue
        field = fields.get(name)
        alias = field.alias or name if field is not None else name
        child_path = f"{path}.{alias}"
        allowed = bound.get(alias)
        targets = _reference_targets(field)
        items = value if isinstance(value, list) else [value]
        for index, item in enumerate(items):
            item_path = f"{child_path}[{index}]" if isinstance(value, list) else child_path
            if targets and type(item).__name__ == "Reference":
                issue = _reference_issue(item, targets, item_path, root)
                if issue is not None:
                    yield issue
            if allowed is not None and isinstance(item, str):
                if item not in allowed:
                    yield Issue(
                        "code-invalid",
                        f"{item_path}: '{item}' is not in the required value set "
                        f"({' | '.join(sorted(allowed))})",
                        "error",
                        (item_path,),
                    )
            elif hasattr(item, "model_fields_set"):
                yield from _required_code_issues(item, item_path, root, prune)


_BEING_CHECKED: set[Any] = set()
_CHECKING = threading.RLock()  # one thread works out the classes (recursively) at a time


@cache
def _checked_fields(model: Any) -> frozenset[str]:
    """The fields of `model` that can hold a bound code, a Reference with allowed target types,
    or such a field deeper down. The rest (most primitives: strings, dates, uris) cannot yield
    an issue; skipping them takes the walk from ~85 to ~60 µs for a Synthea resource."""
    with _CHECKING:
        _BEING_CHECKED.add(model)
        try:
            bound = _bound_elements(model)
            found = set()
            for name, field in model.model_fields.items():
                holds = (field.alias or name) in bound or _reference_targets(field)
                if holds or any(_may_hold_issues(k) for k in _model_classes(field.annotation)):
                    found.add(name)
            return frozenset(found)
        finally:
            _BEING_CHECKED.discard(model)


def _may_hold_issues(model: Any) -> bool:
    # None: any resource (contained, Bundle.entry.resource). A class on the current path is a
    # cycle (Extension.extension): counted as possible, which only makes the walk longer.
    return model is None or model in _BEING_CHECKED or bool(_checked_fields(model))


def _model_classes(annotation: Any) -> list[Any]:
    """The model classes a field's annotation names (List[X] | None ...); None for Resource."""
    args = get_args(annotation)
    if args:
        return [k for arg in args for k in _model_classes(arg)]
    getter = getattr(annotation, "get_model_klass", None)
    if getter is None:
        return []
    klass = getter()
    return [None if klass.__name__ in {"Resource", "DomainResource"} else klass]


def _reference_targets(field: Any) -> frozenset[str]:
    extra = getattr(field, "json_schema_extra", None)
    kinds = extra.get("enum_reference_types") if isinstance(extra, dict) else None
    if not kinds or "Resource" in kinds:
        return frozenset()
    return frozenset(kinds)


_TYPED_REFERENCE = re.compile(
    r"(?:^|/)([A-Z][A-Za-z]+)(?:/[A-Za-z0-9\-.]{1,64}(?:/_history/.+)?|\?.*)$"
)


def _reference_issue(item: Any, targets: frozenset[str], path: str, root: Any) -> Issue | None:
    """A Reference whose text names a type (Type/id, an absolute URL, Type?query, or a
    contained #id) outside the element's allowed types. urn: and typeless ones pass."""
    text = getattr(item, "reference", None)
    kind = getattr(item, "type", None)
    if isinstance(text, str) and text.startswith("#"):
        contained = {getattr(c, "id", None): type(c).__name__ for c in (root.contained or [])}
        kind = contained.get(text[1:], kind)
    elif isinstance(text, str) and not text.startswith("urn:"):
        match = _TYPED_REFERENCE.search(text)
        kind = match.group(1) if match else kind
    if kind is None or kind in targets or not is_resource_type(str(kind)):
        return None
    return Issue(
        "invalid",
        f"{path}: a reference to {kind} is not allowed here (allowed: "
        f"{' | '.join(sorted(targets))})",
        "error",
        (path,),
    )
