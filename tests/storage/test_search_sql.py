"""The SQL compiler's shortcut for negation agrees with the subqueries it builds."""

from __future__ import annotations

import pytest

from app.search.query import parse_criterion
from app.storage.search_sql import _negated, matching_keys


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
