"""Aliases (app/search/aliases.py): parameters read from other parameters' rows.

The decisive check: for every resource, the rows an alias's own expression gives equal the rows
derived from what is stored (its holders' rows, restricted to the target type, renamed). Run on
the project's own resources always, and on every shared fixture resource when they are present.
"""

from __future__ import annotations

from typing import Any

import pytest

from app.search.aliases import Stored, indexed_params, stored_as
from app.search.index_values import SEVERAL_PATIENTS, TABLE_KINDS, IndexRows, patient_hash
from app.search.indexer import index_rows, patient_rows
from app.search.registry import params_for
from tests.helpers import ketamine_administration, pain_observation, patient
from tests.search.test_extract import FIXTURES, _needs_fixtures, fixture_resources

UCUM = "http://unitsofmeasure.org"
BLOOD_PRESSURE: dict[str, Any] = {
    "resourceType": "Observation",
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}], "text": "BP"},
    "subject": {"reference": "Patient/p1"},
    "performer": [{"reference": "Practitioner/d1"}, {"reference": "Patient/p1"}],
    "component": [
        {
            "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
            "valueQuantity": {"value": 120, "system": UCUM, "code": "mm[Hg]"},
        },
        {
            "code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
            "valueCodeableConcept": {"coding": [{"system": "urn:x", "code": "low"}]},
        },
    ],
}
ENCOUNTER: dict[str, Any] = {
    "resourceType": "Encounter",
    "status": "finished",
    "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
    "subject": {"reference": "Group/g1"},
    "participant": [
        {"individual": {"reference": "Practitioner/d1"}},
        {"individual": {"reference": "RelatedPerson/r1"}},
    ],
}
OWN_RESOURCES = [
    pain_observation(),
    BLOOD_PRESSURE,
    ENCOUNTER,
    patient("Doe"),
    {**ketamine_administration(), "subject": {"reference": "Group/g1"}},
]


def test_the_aliases_of_the_pain_search_types() -> None:
    assert stored_as("Observation", "patient") == Stored(("subject",), "Patient")
    assert stored_as("Observation", "combo-code") == Stored(("code", "component-code"))
    assert set(stored_as("Observation", "combo-value-quantity").codes) == {
        "value-quantity",
        "component-value-quantity",
    }
    assert stored_as("MedicationAdministration", "patient") == Stored(("subject",), "Patient")
    assert stored_as("Encounter", "practitioner") == Stored(("participant",), "Practitioner")
    # a parameter of its own expression stays itself, and what holds rows is never an alias
    assert stored_as("Observation", "code") == Stored(("code",))
    assert stored_as("Observation", "code-value-quantity") == Stored(
        (), pairs=(("code", "value-quantity"),)
    )
    assert stored_as("Observation", "combo-code-value-quantity") == Stored(
        ("component-code-value-quantity",), pairs=(("code", "value-quantity"),)
    )
    assert stored_as("AllergyIntolerance", "patient") == Stored(("patient",))
    for resource_type in ("Observation", "Patient", "Encounter", "Condition"):
        stored = set(indexed_params(resource_type))
        for code in params_for(resource_type):
            assert set(stored_as(resource_type, code).codes) <= stored | {code}


def _second_values(kind: str, row: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """A stored row of a composite's second parameter as the composite row's c2_ columns."""
    if kind == "quantity":
        _, value, system, code, canon_value, canon_code = row
        return (system, code, value, canon_value, canon_code, None, None, None)
    if kind == "token":
        return None if row[2] is None else (row[1], row[2], *[None] * 6)
    if kind == "date":
        return (*[None] * 5, row[1], row[2], None)
    raise AssertionError(kind)


def _paired(stored: IndexRows, resource_type: str, pair: tuple[str, str]) -> set[tuple[Any, ...]]:
    """The rows of a composite read from a pair: every first code with every second value."""
    first, second = pair
    kind = params_for(resource_type)[second].type
    seconds = [
        values
        for row in getattr(stored, kind)
        if row[0] == second and (values := _second_values(kind, row)) is not None
    ]
    codes = [row[1:3] for row in stored.token if row[0] == first and row[2] is not None]
    return {(*code, *values) for code in codes for values in seconds}


def _derived(resource: dict[str, Any], full: IndexRows, stored: IndexRows) -> list[str]:
    """Mismatches between the alias rows in `full` and those derived from `stored`."""
    problems = []
    resource_type = resource["resourceType"]
    for code in params_for(resource_type):
        alias = stored_as(resource_type, code)
        if alias.codes == (code,):
            continue
        for kind in TABLE_KINDS:
            for suffix in ("", ":of-type"):
                own = {row[1:] for row in getattr(full, kind) if row[0] == code + suffix}
                derived = {
                    row[1:]
                    for row in getattr(stored, kind)
                    if row[0] in {c + suffix for c in alias.codes}
                    and (alias.target_type is None or row[1] == alias.target_type)
                }
                if kind == "composite" and not suffix:
                    for pair in alias.pairs:
                        derived |= _paired(stored, resource_type, pair)
                if own != derived:
                    problems.append(
                        f"{resource_type}/{resource.get('id')} {code}{suffix}: "
                        f"own {sorted(own, key=str)} != derived {sorted(derived, key=str)}"
                    )
    return problems


def _own_patient(resource: dict[str, Any], full: IndexRows) -> int | None:
    """IndexRows.patient as the `patient` parameter's own expression gives it."""
    if patient_rows(resource["resourceType"]) is None:
        return None
    ids = {row[2] for row in full.reference if row[0] == "patient" and row[2] is not None}
    if not ids:
        return None
    return patient_hash(ids.pop()) if len(ids) == 1 else SEVERAL_PATIENTS


def _check(resources: list[dict[str, Any]]) -> None:
    problems: list[str] = []
    for resource in resources:
        full = index_rows(resource, with_aliases=True)
        stored = index_rows(resource)
        problems += _derived(resource, full, stored)
        if stored.patient != _own_patient(resource, full):
            problems.append(f"{resource['resourceType']}/{resource.get('id')}: patient")
        for kind in TABLE_KINDS:  # the stored rows are the full rows without aliases
            assert getattr(stored, kind) <= getattr(full, kind)
    assert problems == []


def test_alias_rows_equal_rows_derived_from_storage_on_own_resources() -> None:
    _check(OWN_RESOURCES)
    # the check can fail: pretend `patient` held every subject row
    stored = index_rows(ENCOUNTER)
    full = index_rows(ENCOUNTER, with_aliases=True)
    full.reference.add(("patient", "Group", "g1", None))
    assert _derived(ENCOUNTER, full, stored)


@pytest.mark.slow
@pytest.mark.skipif(not FIXTURES.is_dir(), reason=f"shared fixtures absent ({FIXTURES})")
def test_alias_rows_equal_rows_derived_from_storage_on_every_fixture() -> None:
    _needs_fixtures()
    _check(list(fixture_resources()))


def test_storage_saves_rows_on_a_pain_observation() -> None:
    pain = pain_observation()
    assert index_rows(pain).count() < index_rows(pain, with_aliases=True).count()


def test_token_rows_carry_the_one_patient_the_resource_points_at() -> None:
    pain = pain_observation(subject="Patient/p1")
    rows = index_rows(pain)
    assert rows.patient == patient_hash("p1")
    assert all(row[-1] == patient_hash("p1") for row in rows.table_rows("token"))
    assert index_rows(pain_observation(subject="Group/p1")).patient is None
    assert index_rows(patient()).patient is None
    appointment: dict[str, Any] = {
        "resourceType": "Appointment",
        "status": "booked",
        "participant": [
            {"actor": {"reference": f"Patient/{p}"}, "status": "accepted"} for p in ("p1", "p2")
        ],
    }
    assert index_rows(appointment).patient == SEVERAL_PATIENTS
    appointment["participant"][1]["actor"]["reference"] = "Practitioner/d1"
    assert index_rows(appointment).patient == patient_hash("p1")
    assert _own_patient(appointment, index_rows(appointment, with_aliases=True)) == patient_hash(
        "p1"
    )
