"""Date search: every prefix against every precision and timezone boundary, on both databases.

One Observation at 2016-08-22T10:30:00+02:00, i.e. [08:30:00.000000, 08:30:00.999999] UTC (a
dateTime to the second stands for that second). Expected answers worked out by hand from
search.html#prefix, where the search value is the range [L, H] its precision gives and
eq: contained, ne: not contained, gt: the range above H overlaps, lt: the range below L
overlaps, ge: gt or eq, le: lt or eq, sa: starts after H, eb: ends before L, ap: near.
A second Observation at 2016-08-22T23:30:00-05:00 is 2016-08-23T04:30Z: the server compares in
UTC, so it belongs to the 23rd.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import Engine

from tests.conftest import loaded_client
from tests.helpers import pain_observation

PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb")
# search value -> the prefixes that match the 10:30+02:00 observation
EXPECTED: dict[str, set[str]] = {
    "2016": {"eq", "ge", "le"},
    "2015": {"ne", "gt", "ge", "sa"},
    "2017": {"ne", "lt", "le", "eb"},
    "2016-08": {"eq", "ge", "le"},
    "2016-07": {"ne", "gt", "ge", "sa"},
    "2016-09": {"ne", "lt", "le", "eb"},
    "2016-08-22": {"eq", "ge", "le"},
    "2016-08-21": {"ne", "gt", "ge", "sa"},
    "2016-08-23": {"ne", "lt", "le", "eb"},
    "2016-08-22T08:30Z": {"eq", "ge", "le"},  # minute precision contains the second
    "2016-08-22T08:30:00Z": {"eq", "ge", "le"},
    "2016-08-22T10:30:00+02:00": {"eq", "ge", "le"},  # the same instant, another zone
    "2016-08-22T04:30:00-04:00": {"eq", "ge", "le"},
    "2016-08-22T08:30:01Z": {"ne", "lt", "le", "eb"},
    "2016-08-22T08:29:59Z": {"ne", "gt", "ge", "sa"},
    "2016-08-22T08:30:00.500Z": {"ne", "gt", "lt", "ge", "le"},  # inside: overlaps both sides
    "2016-08-22T10:30:00": {"ne", "lt", "le", "eb"},  # no zone: read as UTC, two hours later
}


@pytest.fixture(scope="module")
def http(database_url: str, admin_engines: dict[str, Engine]) -> Iterator[httpx.Client]:
    resources = [
        pain_observation(id=resource_id, effectiveDateTime=when)
        for resource_id, when in (
            ("d1", "2016-08-22T10:30:00+02:00"),
            ("d2", "2016-08-22T23:30:00-05:00"),
        )
    ]
    with loaded_client(database_url, admin_engines, resources) as client:
        yield client


def _matches(client: httpx.Client, query: str) -> set[str]:
    response = client.get("/fhir/Observation", params={"date": query, "_id": "d1,d2"})
    assert response.status_code == 200, response.text
    return {e["resource"]["id"] for e in response.json().get("entry", [])}


@pytest.mark.parametrize("value", list(EXPECTED))
def test_each_prefix_against_each_precision(http: httpx.Client, value: str) -> None:
    got = {prefix for prefix in PREFIXES if "d1" in _matches(http, f"{prefix}{value}")}
    assert got == EXPECTED[value]


def test_ap_matches_values_near_the_search_value(http: httpx.Client) -> None:
    assert "d1" in _matches(http, "ap2016-08-22")
    assert "d1" not in _matches(http, "ap2010-01-01")


def test_timezones_are_compared_in_utc(http: httpx.Client) -> None:
    assert _matches(http, "2016-08-22") == {"d1"}
    assert _matches(http, "2016-08-23") == {"d2"}
    assert _matches(http, "2016-08-23T04:30:00Z") == {"d2"}
    assert _matches(http, "2016-08") == {"d1", "d2"}
