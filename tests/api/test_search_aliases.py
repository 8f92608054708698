"""Parameters stored as other parameters' rows (app/search/aliases.py) answer as their own
expressions define, on both databases: `patient` is only the subject that is a Patient, and
combo-* parameters see the Observation's own and its components' values."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import Engine

from tests.api.test_search import ids
from tests.conftest import loaded_client
from tests.search.test_aliases import BLOOD_PRESSURE, ENCOUNTER

DATA = [
    {**BLOOD_PRESSURE, "id": "bp"},
    {**BLOOD_PRESSURE, "id": "group-bp", "subject": {"reference": "Group/g1"}},
    {**ENCOUNTER, "id": "e1"},
    {
        **ENCOUNTER,
        "id": "e2",
        "subject": {"reference": "Patient/p1"},
        "participant": [{"individual": {"reference": "RelatedPerson/r1"}}],
    },
    {
        "resourceType": "Observation",
        "id": "two-codes",
        "status": "final",
        "code": {
            "coding": [
                {"system": "http://loinc.org", "code": "72514-3"},
                {"system": "urn:local", "code": "pain"},
            ]
        },
        "valueQuantity": {"value": 7, "system": "http://unitsofmeasure.org", "code": "{score}"},
    },
    {
        "resourceType": "Observation",
        "id": "lmp",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8665-2"}]},
        "valueDateTime": "2016-12-30",
    },
    {
        "resourceType": "Observation",
        "id": "smoker",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "72166-2"}]},
        "valueCodeableConcept": {
            "coding": [{"system": "http://snomed.info/sct", "code": "8517006"}]
        },
    },
    {"resourceType": "Patient", "id": "p1", "name": [{"family": "Doe"}]},
    {"resourceType": "Practitioner", "id": "d1", "name": [{"family": "Who"}]},
]


@pytest.fixture(scope="module")
def http(database_url: str, admin_engines: dict[str, Engine]) -> Iterator[httpx.Client]:
    with loaded_client(database_url, admin_engines, DATA) as client:
        yield client


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("Observation?patient=p1", ["bp"]),
        ("Observation?subject=g1", ["group-bp"]),
        ("Observation?patient:missing=true", ["group-bp", "lmp", "smoker", "two-codes"]),
        ("Observation?patient:missing=false", ["bp"]),
        ("Observation?patient.name=doe", ["bp"]),
        ("Observation?combo-code=8480-6&patient=p1", ["bp"]),
        ("Observation?combo-code=85354-9", ["bp", "group-bp"]),
        ("Observation?code=8480-6", []),
        ("Observation?combo-value-quantity=120||mm[Hg]", ["bp", "group-bp"]),
        ("Observation?combo-value-concept=urn:x|low&subject=Group/g1", ["group-bp"]),
        ("Observation?combo-code-value-quantity=8480-6$gt119", ["bp", "group-bp"]),
        ("Observation?combo-code-value-quantity=8462-4$gt1", []),
        ("Observation?combo-code:not=8480-6", ["lmp", "smoker", "two-codes"]),
        # resource-rooted composites, read from the code and value rows (aliases.PAIRED)
        ("Observation?code-value-quantity=urn:local|pain$gt6", ["two-codes"]),
        ("Observation?code-value-quantity=http://loinc.org|72514-3$7", ["two-codes"]),
        ("Observation?code-value-quantity=72514-3$lt7", []),
        ("Observation?code-value-quantity=8480-6$120", []),  # a component's, not the root's
        ("Observation?code-value-quantity=pain$8,85354-9$1,pain$ge7", ["two-codes"]),
        ("Observation?code-value-date=8665-2$2016-12", ["lmp"]),
        ("Observation?code-value-date=8665-2$gt2017", []),
        ("Observation?code-value-concept=72166-2$http://snomed.info/sct|8517006", ["smoker"]),
        ("Observation?code-value-concept=72166-2$8517006&code-value-quantity=72166-2$1", []),
        ("Observation?code-value-quantity:missing=false", ["two-codes"]),
        ("Observation?code-value-quantity:missing=true&code=8665-2", ["lmp"]),
        ("Observation?combo-code-value-quantity=pain$7", ["two-codes"]),
        (
            "Observation?combo-code-value-quantity=pain$7,8480-6$120",
            ["bp", "group-bp", "two-codes"],
        ),
        (
            "Observation?combo-code-value-quantity:missing=false&status=final",
            ["bp", "group-bp", "two-codes"],
        ),
        ("Observation?combo-code-value-quantity:missing=true", ["lmp", "smoker"]),
        ("Observation?code=pain&combo-code-value-quantity=72514-3$7", ["two-codes"]),
        ("Encounter?practitioner=d1", ["e1"]),
        ("Encounter?participant=r1", ["e1", "e2"]),
        ("Encounter?practitioner:missing=true", ["e2"]),
        ("Encounter?patient=p1", ["e2"]),
        ("Patient?_has:Observation:patient:combo-code=8462-4", ["p1"]),
        ("Patient?phonetic=do", ["p1"]),
    ],
)
def test_alias_search(http: httpx.Client, query: str, expected: list[str]) -> None:
    assert sorted(ids(http.get(f"/fhir/{query}"))) == expected


def test_include_and_revinclude_through_an_alias(http: httpx.Client) -> None:
    response = http.get("/fhir/Observation?_include=Observation:patient&combo-code=85354-9")
    assert sorted(ids(response)) == ["bp", "group-bp"]
    assert ids(response, "include") == ["p1"]
    response = http.get("/fhir/Patient?_revinclude=Observation:patient")
    assert ids(response) == ["p1"]
    assert ids(response, "include") == ["bp"]
    response = http.get("/fhir/Encounter?_include=Encounter:practitioner")
    assert ids(response, "include") == ["d1"]
