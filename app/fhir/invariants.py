"""Checks fhir.resources does not make (../shared/CASE.md B.3 item 9), on the resource's JSON:

- obs-6: Observation.dataAbsentReason only when there is no value[x];
- rng-2: a Range's low is not above its high;
- qty-3: a Quantity with a unit code names its system; with the UCUM system the code is UCUM;
- con-3 / con-5: Condition.clinicalStatus present for a problem-list item unless entered in
  error, absent when entered in error;
- required bindings on CodeableConcepts, all 14 of R4B (data/required_concepts.json, from the
  official package; the three whose codes it does not hold are not checked): a coding from
  the bound code system, every code from it in the value set.

Reference target types are checked on the model (app/fhir/models.py), which knows each
Reference element's allowed types. Each problem is an Issue naming the element.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from app.fhir.errors import Issue
from app.search.ucum import UCUM_SYSTEM, is_valid

_TERMINOLOGY = "http://terminology.hl7.org/CodeSystem"
_VERIFICATION_SYSTEM = f"{_TERMINOLOGY}/condition-ver-status"


@dataclass(frozen=True)
class _Binding:
    path: tuple[str, ...]  # elements below the resource
    system: str
    codes: frozenset[str] | None  # None: UCUM, checked by the parser


def _bindings() -> dict[str, list[_Binding]]:
    """Required CodeableConcept bindings of every R4B resource whose codes are known
    (app/fhir/bindings_gen.py wrote the table from the official package)."""
    table: dict[str, list[_Binding]] = {}
    for entry in json.loads(BINDINGS_PATH.read_text()):
        if entry["codes"] is None and entry["system"] != UCUM_SYSTEM:
            continue  # codes the package does not hold: not checked (the entry says why)
        codes = frozenset(entry["codes"]) if entry["codes"] is not None else None
        binding = _Binding(tuple(entry["path"].split(".")[1:]), entry["system"], codes)
        table.setdefault(entry["type"], []).append(binding)
    return table


BINDINGS_PATH = Path(__file__).parent / "data" / "required_concepts.json"
REQUIRED_CONCEPTS = _bindings()


def invariant_issues(resource: dict[str, Any]) -> list[Issue]:
    kind = resource["resourceType"]
    issues = list(_walk(resource, kind))
    issues += _required_concepts(resource, kind)
    if kind == "Observation":
        issues += _obs_6(resource, kind)
    if kind == "Condition":
        issues += _condition_status(resource)
    return issues


def _issue(path: str, message: str, code: str = "invariant") -> Issue:
    return Issue(code, f"{path}: {message}", "error", (path,))


def _obs_6(resource: dict[str, Any], path: str) -> list[Issue]:
    out = []
    if "dataAbsentReason" in resource and any(k.startswith("value") for k in resource):
        out.append(
            _issue(
                f"{path}.dataAbsentReason",
                "obs-6: dataAbsentReason SHALL only be present if value[x] is not present",
            )
        )
    for index, component in enumerate(resource.get("component", [])):
        if (
            isinstance(component, dict)
            and "dataAbsentReason" in component
            and any(k.startswith("value") for k in component)
        ):
            out.append(
                _issue(
                    f"{path}.component[{index}].dataAbsentReason",
                    "obs-6: dataAbsentReason SHALL only be present if value[x] is not present",
                )
            )
    return out


def _codes(concept: Any, system: str) -> list[str]:
    if not isinstance(concept, dict):
        return []
    return [
        str(c.get("code"))
        for c in concept.get("coding", [])
        if isinstance(c, dict) and c.get("system") == system
    ]


def _condition_status(resource: dict[str, Any]) -> list[Issue]:
    verification = _codes(resource.get("verificationStatus"), _VERIFICATION_SYSTEM)
    erroneous = "entered-in-error" in verification
    problem_list = any(
        "problem-list-item" in _codes(c, f"{_TERMINOLOGY}/condition-category")
        for c in resource.get("category", [])
    )
    if erroneous and "clinicalStatus" in resource:
        return [
            _issue(
                "Condition.clinicalStatus",
                "con-5: clinicalStatus SHALL NOT be present if verificationStatus is "
                "entered-in-error",
            )
        ]
    if problem_list and not erroneous and "clinicalStatus" not in resource:
        return [
            _issue(
                "Condition.clinicalStatus",
                "con-3: clinicalStatus SHALL be present if verificationStatus is not "
                "entered-in-error and category is problem-list-item",
            )
        ]
    return []


def _required_concepts(resource: dict[str, Any], kind: str) -> list[Issue]:
    out = []
    for binding in REQUIRED_CONCEPTS.get(kind, []):
        for path, concept in _elements(resource, binding.path, kind):
            codes = _codes(concept, binding.system)
            if binding.codes is None:
                wrong = [code for code in codes if not is_valid(code)]
            else:
                wrong = [code for code in codes if code not in binding.codes]
            if codes and not wrong:
                continue
            allowed = " | ".join(sorted(binding.codes)) if binding.codes else "UCUM units"
            found = ", ".join(wrong) or "no coding from it"
            out.append(
                _issue(
                    path,
                    f"the required binding needs a code from {binding.system} ({allowed}); "
                    f"found {found}",
                    "code-invalid",
                )
            )
    return out


def _elements(node: Any, path: tuple[str, ...], where: str) -> Iterator[tuple[str, Any]]:
    """The values at `path` below `node`, each with its FHIRPath-style location."""
    if not path:
        yield where, node
        return
    value = node.get(path[0]) if isinstance(node, dict) else None
    if isinstance(value, list):
        for index, item in enumerate(value):
            yield from _elements(item, path[1:], f"{where}.{path[0]}[{index}]")
    elif value is not None:
        yield from _elements(value, path[1:], f"{where}.{path[0]}")


def _walk(node: Any, path: str) -> Iterator[Issue]:
    if isinstance(node, list):
        for index, item in enumerate(node):
            yield from _walk(item, f"{path}[{index}]")
        return
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        child = f"{path}.{key}"
        if isinstance(value, dict):
            if key.endswith("Range") or key in ("range", "age"):
                yield from _range(value, child)
            if _is_quantity(value):
                yield from _quantity(value, child)
        if isinstance(value, dict | list) and key != "contained":
            yield from _walk(value, child)
        elif key == "contained" and isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, dict) and isinstance(item.get("resourceType"), str):
                    for issue in invariant_issues(item):
                        rooted = tuple(
                            f"{child}[{index}]{e[len(item['resourceType']) :]}"
                            for e in issue.expression
                        )
                        yield Issue(issue.code, issue.diagnostics, issue.severity, rooted)


def _is_quantity(value: dict[str, Any]) -> bool:
    number = value.get("value")
    return (
        isinstance(number, int | float | Decimal)
        and not isinstance(number, bool)
        and "currency" not in value
    )


def _range(value: dict[str, Any], path: str) -> Iterator[Issue]:
    low, high = value.get("low"), value.get("high")
    if isinstance(low, dict) and isinstance(high, dict):
        a, b = low.get("value"), high.get("value")
        if isinstance(a, int | float | Decimal) and isinstance(b, int | float | Decimal) and a > b:
            yield _issue(path, f"rng-2: low ({a}) SHALL be lower than or equal to high ({b})")


def _quantity(value: dict[str, Any], path: str) -> Iterator[Issue]:
    code = value.get("code")
    if code is not None and "system" not in value:
        yield _issue(path, "qty-3: a code for the unit SHALL come with its system")
    if value.get("system") == UCUM_SYSTEM and isinstance(code, str) and not is_valid(code):
        yield _issue(f"{path}.code", f"'{code}' is not a UCUM unit", "code-invalid")
