"""The SQL compiler's shortcut for negation agrees with the subqueries it builds."""

from __future__ import annotations

from urllib.parse import parse_qsl

import pytest

from app.search.query import parse_criterion, parse_search
from app.storage.search_sql import _negated, matching_keys, plan


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("code", "72514-3"),
        ("code:not", "72514-3"),
        ("value-quantity:missing", "true"),
        ("value-quantity:missing", "false"),
        ("subject:Patient.name", "x"),
        ("_has:Observation:patient:code", "1"),
        ("_id", "a"),
        ("date", "ge2016"),
        ("code:text", "pain"),
        ("_lastUpdated", "lt2020"),
    ],
)
def test_negated_matches_the_compiled_criterion(name: str, value: str) -> None:
    resource_type = "Patient" if name.startswith("_has") else "Observation"
    criterion = parse_criterion(resource_type, name, [value])
    assert criterion is not None
    assert _negated(criterion) == matching_keys(criterion)[1]


@pytest.mark.parametrize(
    ("query", "narrowed"),
    [
        ("patient=px&code=c", True),
        ("subject=Patient/px&code=http://loinc.org|c&_sort=-date", True),
        ("patient=px&patient=py&code=c", True),
        ("subject=Group/px&code=c", False),
        ("subject=px&code=c", False),
        ("patient=http://other.example/fhir/Patient/px&code=c", False),
        ("patient=px&code:not=c", False),
        ("code=c", False),
        ("patient=px", False),
    ],
)
def test_a_patient_and_a_token_drive_from_the_token_rows_of_those_patients(
    query: str, narrowed: bool
) -> None:
    request = parse_search(("Observation",), parse_qsl(query), 50, 1000)
    found = plan(request)
    assert found.keys_only
    sql = str(found.source.element)
    assert ("search_token.patient IN" in sql) == narrowed, sql
