"""What one search may ask for (app/search/query.py MAX_VALUES, MAX_VALUE_LENGTH): up to the
limits every parameter type is answered on both databases; past them the answer is a 400
`too-costly` naming the parameter, never a database error (SQLite's expression depth of 1000
and LIKE pattern limit, PostgreSQL's 65,535 parameters were 503s before)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta

import httpx
import pytest

from app.search.query import MAX_VALUE_LENGTH, MAX_VALUES
from tests.helpers import assert_outcome

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


# the most expensive value shape of each parameter type: MAX_VALUES distinct values of each
def _date(i: int) -> str:
    return (date(2016, 1, 1) + timedelta(days=i)).isoformat()


SHAPES: dict[str, Callable[[int], str]] = {
    "code": lambda i: f"http://loinc.org|7251{i}-3",
    "date": lambda i: f"ge{_date(i)}",
    "value-quantity": lambda i: f"lt{i}|http://unitsofmeasure.org|mg",
    "subject": lambda i: f"Patient/p{i}",
    "family": lambda i: f"Do{i}",
    "_profile:below": lambda i: f"http://example.org/fhir/{i}",
    "_lastUpdated": lambda i: f"gt{_date(i)}T00:00:00Z",
}


def _type(name: str) -> str:
    return "Patient" if name == "family" else "Observation"


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_the_most_values_a_search_may_have_are_answered(client: httpx.Client, name: str) -> None:
    values = ",".join(SHAPES[name](i) for i in range(MAX_VALUES))
    response = client.post(f"/fhir/{_type(name)}/_search", content=f"{name}={values}", headers=FORM)
    assert response.status_code == 200, response.text[:300]


@pytest.mark.parametrize("name", ["code", "family"])
def test_more_values_are_too_costly(client: httpx.Client, name: str) -> None:
    values = ",".join(SHAPES[name](i) for i in range(MAX_VALUES + 1))
    response = client.post(f"/fhir/{_type(name)}/_search", content=f"{name}={values}", headers=FORM)
    assert_outcome(response, 400, "too-costly", name)
    # counted over the whole search, not per parameter
    half = ",".join(f"x{i}" for i in range(MAX_VALUES // 2 + 1))
    both = client.post("/fhir/Patient/_search", content=f"family={half}&given={half}", headers=FORM)
    assert_outcome(both, 400, "too-costly")


@pytest.mark.parametrize("name", ["family", "name:contains", "code:text", "_profile:below"])
def test_the_longest_value_is_answered_and_a_longer_one_too_costly(
    client: httpx.Client, name: str
) -> None:
    url = f"/fhir/{_type(name)}/_search"
    longest = client.post(url, content=f"{name}={'a' * MAX_VALUE_LENGTH}", headers=FORM)
    assert longest.status_code == 200, longest.text[:300]
    longer = client.post(url, content=f"{name}={'a' * (MAX_VALUE_LENGTH + 1)}", headers=FORM)
    assert_outcome(longer, 400, "too-costly", name)
