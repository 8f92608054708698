from __future__ import annotations

import pytest

from app.fhir.catalog_gen import build_catalog
from app.fhir.errors import InvalidResourceError, StructureError
from app.fhir.models import _CATALOG, RESOURCE_TYPES, is_resource_type, validate
from tests.helpers import ketamine_administration, pain_observation


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
