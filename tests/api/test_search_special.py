"""The one `special` parameter of R4B, Location.near, is not supported: every use of it is a 400
not-supported naming the parameter, on both databases. `:missing` on it was a 500 (issue 7):
nothing indexes a special parameter, so there are no rows to find present or absent."""

from __future__ import annotations

import httpx
import pytest

from tests.helpers import assert_outcome


@pytest.mark.parametrize(
    ("path", "query", "named"),
    [
        ("/fhir/Location", "near=42.25|-83.69|10|km", "near"),
        ("/fhir/Location", "near:missing=true", "near:missing"),
        ("/fhir/Location", "near:missing=false", "near:missing"),
        ("/fhir/Location", "near:above=1", "near:above"),
        ("/fhir/Encounter", "location.near:missing=true", "near:missing"),
        ("/fhir/Location", "_has:Location:partof:near:missing=true", "near:missing"),
        ("/fhir", "_type=Location&near:missing=true", "near:missing"),
        ("/fhir", "_type=Location,Patient&near:missing=false", "near:missing"),
        ("/fhir/Location/_search", "near:missing=true", "near:missing"),
    ],
)
def test_near_is_not_supported_in_any_form(
    client: httpx.Client, path: str, query: str, named: str
) -> None:
    if path.endswith("/_search"):
        response = client.post(
            path,
            content=query.encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    else:
        response = client.get(f"{path}?{query}")
    assert_outcome(response, 400, code="not-supported", expression=named)
