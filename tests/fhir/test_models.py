from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from app.fhir.catalog_gen import build_catalog
from app.fhir.errors import InvalidResourceError, StructureError
from app.fhir.models import (
    _CATALOG,
    _REQUIRED_CODES,
    RESOURCE_TYPES,
    _required_code_issues,
    is_resource_type,
    model_class,
    validate,
)
from tests.helpers import ketamine_administration, pain_observation
from tests.search.test_extract import FIXTURES, fixture_resources


def test_catalog_file_matches_the_installed_models() -> None:
    assert build_catalog() == _CATALOG, "run: python -m app.fhir.catalog_gen"


def test_resource_types_are_the_r4b_set() -> None:
    assert len(RESOURCE_TYPES) == 141
    assert is_resource_type("SubscriptionTopic")  # R4B-only
    assert not is_resource_type("MedicinalProduct")  # removed in R4B
    assert not is_resource_type("DomainResource")


def test_valid_resources_pass() -> None:
    validate(pain_observation(), "Observation")
    validate(ketamine_administration(), "MedicationAdministration")


@pytest.mark.parametrize(
    ("field", "value", "expression"),
    [
        ("status", "done", "Observation.status"),
        ("valueQuantity", {"value": 1, "comparator": "~"}, "Observation.valueQuantity.comparator"),
        ("identifier", [{"use": "primary", "value": "1"}], "Observation.identifier[0].use"),
        (
            "text",
            {"status": "nice", "div": '<div xmlns="http://www.w3.org/1999/xhtml">x</div>'},
            "Observation.text.status",
        ),
    ],
)
def test_required_bindings_are_enforced(field: str, value: object, expression: str) -> None:
    with pytest.raises(InvalidResourceError) as caught:
        validate(pain_observation(**{field: value}), "Observation")
    issue = caught.value.issues[0]
    assert issue.code == "code-invalid"
    assert issue.expression == (expression,)


def test_every_observation_status_in_the_value_set_is_accepted() -> None:
    for status in (
        "registered",
        "preliminary",
        "final",
        "amended",
        "corrected",
        "cancelled",
        "entered-in-error",
        "unknown",
    ):
        validate(pain_observation(status=status), "Observation")


def test_not_a_resource_is_a_structure_error() -> None:
    for data in ([], "x", {}, {"resourceType": 5}):
        with pytest.raises(StructureError):
            validate(data, "Observation")


# -- the pruned walk of required codes and reference targets --------------------------------------
_BOUND_KEYS = {alias for elements in _REQUIRED_CODES.values() for alias in elements}
_CASE_BUNDLE = Path(__file__).parents[2] / "app" / "case" / "data" / "ketamine-case-bundle.json"


def _broken(node: Any) -> Any:
    """Every bound-looking code made an unknown code, every reference a reference to Basic:
    what the walk must report, wherever it sits."""
    if isinstance(node, dict):
        return {
            key: "Basic/zz"
            if key == "reference" and isinstance(value, str)
            else "zz-unknown"
            if key in _BOUND_KEYS and isinstance(value, str)
            else _broken(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_broken(item) for item in node]
    return node


def _walks_agree(resources: list[dict[str, Any]]) -> int:
    """Asserts the pruned walk finds what the full walk finds; returns how many issues."""
    found = 0
    for resource in resources:
        kind = resource["resourceType"]
        try:
            instance = model_class(kind).model_validate(_broken(resource))
        except (ValidationError, ValueError, TypeError):
            continue  # a mutation the models refuse themselves: nothing left to walk
        full = sorted(i.diagnostics for i in _required_code_issues(instance, kind, prune=False))
        pruned = sorted(i.diagnostics for i in _required_code_issues(instance, kind))
        assert pruned == full, kind
        found += len(full)
    return found


def test_the_pruned_walk_finds_every_issue_the_full_walk_finds_in_the_case() -> None:
    bundle = json.loads(_CASE_BUNDLE.read_bytes())
    assert _walks_agree([e["resource"] for e in bundle["entry"]]) > 100


@pytest.mark.skipif(not fixture_resources(), reason=f"shared fixtures absent ({FIXTURES})")
def test_the_pruned_walk_finds_every_issue_the_full_walk_finds_in_the_fixtures() -> None:
    assert _walks_agree(list(fixture_resources())) > 1000


# app/fhir/json_rules.py: what pydantic's lax mode would forgive, refused naming the element
_ORGANIZATION = {"resourceType": "Organization", "id": "o", "name": "Clinic"}
_ORG_REF = "Patient.managingOrganization.reference"


@pytest.mark.parametrize(
    ("resource", "expression", "message"),
    [
        ({"active": "true"}, "Patient.active", "must be a boolean"),
        ({"active": 1}, "Patient.active", "must be a boolean"),
        ({"multipleBirthInteger": True}, "Patient.multipleBirthInteger", "must be an integer"),
        ({"multipleBirthInteger": "3"}, "Patient.multipleBirthInteger", "must be an integer"),
        ({"birthDate": 0}, "Patient.birthDate", "must be a string"),
        ({"identifier": [{"system": ""}]}, "Patient.identifier[0].system", "empty strings"),
        ({"name": [{"family": "a\ufffe"}]}, "Patient.name[0].family", "U+FFFE"),
        ({"name": [{"family": "a\x07"}]}, "Patient.name[0].family", "control characters"),
        ({"name": [{"family": "x" * (2**20 + 1)}]}, "Patient.name[0].family", "SHALL NOT"),
        ({"name": [{"given": ["a", None]}]}, "Patient.name[0].given[1]", "null is allowed"),
        ({"name": [{"given": ["a"], "_given": [None, {"id": "x"}]}]}, "Patient.name[0].given",
         "line up"),
        ({"name": [{"_given": [None]}]}, "Patient.name[0]._given[0]", "null is allowed"),
        ({"managingOrganization": {"reference": "Organization/"}}, _ORG_REF, "not a valid id"),
        ({"managingOrganization": {"reference": "Organization/a b"}}, _ORG_REF, "not a valid id"),
        ({"managingOrganization": {"reference": " "}}, _ORG_REF, "not a reference"),
        ({"managingOrganization": {"reference": "#o"}}, _ORG_REF, "ref-1"),
        ({"generalPractitioner": [{"reference": "Practitioner/1/_history/"}]},
         "Patient.generalPractitioner[0].reference", "version"),
    ],
)  # fmt: skip
def test_json_forms_the_model_forgives_are_refused(
    resource: dict[str, object], expression: str, message: str
) -> None:
    with pytest.raises(InvalidResourceError) as caught:
        validate({"resourceType": "Patient", **resource})
    issues = caught.value.issues
    assert any(
        issue.expression == (expression,) and message in issue.diagnostics for issue in issues
    ), [(i.expression, i.diagnostics) for i in issues]


@pytest.mark.parametrize(
    "resource",
    [
        {"name": [{"given": ["Ann", None], "_given": [None, {"id": "g2"}]}]},
        {"_birthDate": {"extension": [{"url": "http://x", "valueBoolean": True}]}},
        {"managingOrganization": {"reference": "#o"}, "contained": [_ORGANIZATION]},
        {"managingOrganization": {"reference": "http://example.org/fhir/Organization/1"}},
        {"managingOrganization": {"reference": "urn:uuid:0b9f4f4e-0a37-4d0b-9a1a-4f3c8f6b2d11"}},
        {"generalPractitioner": [{"reference": "Practitioner/p-1.2/_history/3"}]},
        {"multipleBirthInteger": -(2**31)},
        {"extension": [{"url": "http://x", "valueDecimal": 1e300}]},
    ],
)
def test_json_forms_fhir_allows_pass(resource: dict[str, object]) -> None:
    validate({"resourceType": "Patient", **resource})


def test_conditional_references_only_in_bundles() -> None:
    patient = {
        "resourceType": "Patient",
        "managingOrganization": {"reference": "Organization?identifier=http://x|1"},
    }
    validate(patient, conditional_references=True)  # a transaction or batch entry
    with pytest.raises(InvalidResourceError, match="only in transaction and batch Bundles"):
        validate(patient)
