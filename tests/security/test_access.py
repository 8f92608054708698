"""SMART scopes as grants (app/fhir/access.py)."""

from __future__ import annotations

import pytest

from app.fhir.access import EVERYONE, Access, Grant, parse_scope
from app.fhir.errors import ForbiddenError
from app.fhir.models import RESOURCE_TYPES


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        ("patient/Observation.read", Grant("patient", "Observation", frozenset("rs"))),
        ("user/*.write", Grant("user", "*", frozenset("cud"))),
        ("system/*.*", Grant("system", "*", frozenset("cruds"))),
        ("patient/Observation.rs", Grant("patient", "Observation", frozenset("rs"))),
        (
            "system/MedicationAdministration.cu",
            Grant("system", "MedicationAdministration", frozenset("cu")),
        ),
        ("user/Patient.cruds", Grant("user", "Patient", frozenset("cruds"))),
        (
            "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory",
            Grant(
                "patient",
                "Observation",
                frozenset("rs"),
                (
                    (
                        "category",
                        "http://terminology.hl7.org/CodeSystem/observation-category|laboratory",
                    ),
                ),
            ),
        ),
    ],
)
def test_scopes_parse(scope: str, expected: Grant) -> None:
    assert parse_scope(scope) == expected


@pytest.mark.parametrize(
    "scope",
    [
        "openid",
        "fhirUser",
        "launch/patient",
        "offline_access",
        "user/Observation.",  # no interaction
        "user/Observation.sr",  # v2 letters out of order
        "user/Observation.rr",
        "user/Observation.x",
        "admin/*.*",
        "user/Unicorn.read",  # not a resource type
        "user/observation.read",
        "user/Observation.read?category=x",  # filters are v2 only
        "user/*.rs?",
        " user/*.rs",
    ],
)
def test_what_is_not_a_resource_scope_grants_nothing(scope: str) -> None:
    assert parse_scope(scope) is None
    assert not Access.from_scopes([scope]).allows("Observation", "r")


def test_access_is_the_union_of_its_grants() -> None:
    access = Access.from_scopes(["user/Observation.rs", "user/Patient.r", "openid"])
    assert access.allows("Observation", "r")
    assert access.allows("Observation", "s")
    assert access.allows("Patient", "r")
    assert not access.allows("Patient", "s")
    assert not access.allows("Observation", "c")
    assert not access.allows("Condition", "r")
    assert access.types_allowed("s") == ("Observation",)
    assert access.readable("Patient")
    assert not access.readable("Condition")
    assert not access.allows_all_types("s")
    every = Access.from_scopes(["system/*.rs"])
    assert not every.allows("Observation", "d")
    # a wildcard does not reach the audit trail: that takes a scope naming AuditEvent
    assert not every.allows("AuditEvent", "s")
    assert every.types_allowed("s") == tuple(t for t in RESOURCE_TYPES if t != "AuditEvent")
    assert not every.allows_all_types("s")
    auditor = Access.from_scopes(["system/*.rs", "system/AuditEvent.rs"])
    assert auditor.allows_all_types("s")
    assert auditor.types_allowed("s") == RESOURCE_TYPES


def test_refusals_name_the_interaction_and_type() -> None:
    access = Access.from_scopes(["user/Observation.rs"])
    with pytest.raises(ForbiddenError, match="create on Observation"):
        access.require("Observation", "c")
    access.require("Observation", "r", "s")
    with pytest.raises(ForbiddenError, match="every resource type"):
        access.require_all_types("s", "History of the whole server")


def test_patient_scopes_are_bound_to_the_compartment_and_need_a_patient() -> None:
    patient = Access.from_scopes(["patient/*.rs", "user/Practitioner.r"], patient="p1")
    assert patient.allows("Observation", "r")
    assert patient.compartment("Observation", "r") == "p1"
    assert patient.compartment("Practitioner", "r") is None  # a user grant covers it
    assert not patient.allows("Observation", "c")
    without = Access.from_scopes(["patient/*.rs"])
    assert not without.allows("Observation", "r")
    with pytest.raises(ForbiddenError, match="patient claim"):
        without.require("Observation", "r")


def test_filtered_scopes_restrict_to_their_search() -> None:
    lab = "user/Observation.rs?category=laboratory"
    filtered = Access.from_scopes([lab])
    assert filtered.allows("Observation", "s")
    assert filtered.bounded
    assert filtered.restriction("Observation", "s") == (("category", "laboratory"),)
    assert filtered.restriction("Observation", "c") == ()  # not granted: require() refuses
    # an unfiltered grant on the type lifts the filter
    assert Access.from_scopes([lab, "user/*.rs"]).restriction("Observation", "r") == ()
    # filtered grants on one parameter OR their values; a grant's own filters AND
    both = Access.from_scopes([lab, "user/Observation.rs?category=vital-signs"])
    assert both.restriction("Observation", "r") == (("category", "laboratory,vital-signs"),)
    anded = Access.from_scopes(["user/Observation.rs?category=laboratory&status=final"])
    assert anded.restriction("Observation", "r") == (
        ("category", "laboratory"),
        ("status", "final"),
    )
    mixed = Access.from_scopes([lab, "user/Observation.rs?status=final"])
    with pytest.raises(ForbiddenError, match="cannot combine"):
        mixed.restriction("Observation", "r")


def test_mixed_reach_is_never_wider_than_the_union_of_the_grants() -> None:
    # patient-context unfiltered + user filtered: the compartment (a subset of the union)
    mixed = Access.from_scopes(
        ["patient/Observation.rs", "user/Observation.rs?category=lab"], patient="p1"
    )
    assert mixed.compartment("Observation", "r") == "p1"
    assert mixed.restriction("Observation", "r") == ()
    # both filtered: the compartment and the filters
    both = Access.from_scopes(
        ["patient/Observation.rs?category=lab", "user/Observation.rs?category=vital"], patient="p1"
    )
    assert both.compartment("Observation", "r") == "p1"
    assert both.restriction("Observation", "r") == (("category", "lab,vital"),)


def test_no_authorization_configured_allows_everything() -> None:
    assert EVERYONE.allows("AuditEvent", "d")
    assert EVERYONE.allows_all_types("s")
    assert not Access().allows("Patient", "r")  # no grants at all
