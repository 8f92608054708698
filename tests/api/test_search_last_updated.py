"""_lastUpdated on both databases: every prefix at a period's boundary, and `ap` (issue 7: it
was a 500) as search.html#prefix recommends and as ordinary date parameters read it: the search
range widened by 10% of its distance from now, at least a day.

The server stamps lastUpdated itself, so the tests set `resource.last_updated` (what
_lastUpdated searches) in the database; each Observation's effectiveDateTime is the same instant,
so `date` answers the same questions from the index tables."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import httpx
import pytest
from sqlalchemy import Engine, update

from app.storage.tables import resource_table as r
from tests.helpers import JSON_HEADERS, assert_outcome, pain_observation, patient


def _iso(when: datetime) -> str:
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def store(client: httpx.Client, engine: Engine, stamps: dict[str, datetime]) -> None:
    """A pain score per name, last updated (and effective) at its instant, each about a
    Patient of the same name and time."""
    for name, when in stamps.items():
        pid, oid = f"p-{name}", f"o-{name}"
        for path, body in (
            (f"/fhir/Patient/{pid}", {**patient(name), "id": pid}),
            (
                f"/fhir/Observation/{oid}",
                pain_observation(subject=f"Patient/{pid}", id=oid, effectiveDateTime=_iso(when)),
            ),
        ):
            response = client.put(path, json=body, headers=JSON_HEADERS)
            assert response.status_code == 201, response.text
        with engine.begin() as conn:
            conn.execute(update(r).where(r.c.resource_id.in_([pid, oid])).values(last_updated=when))


def names(client: httpx.Client, path: str, **params: str) -> set[str]:
    response = client.get(path, params=params)
    assert response.status_code == 200, response.text
    return {e["resource"]["id"].split("-", 1)[1] for e in response.json().get("entry", [])}


NEW_YEAR = datetime(2017, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("prefix", "value", "expected"),
    [
        # the instants 2016-12-31T23:59:59.999Z ("before") and 2017-01-01T00:00:00.000Z ("at")
        ("eq", "2016", {"before"}),
        ("ne", "2016", {"at"}),
        ("gt", "2016", {"at"}),
        ("ge", "2016", {"before", "at"}),
        ("lt", "2016", set()),
        ("le", "2016", {"before"}),
        ("sa", "2016", {"at"}),
        ("eb", "2016", set()),
        ("eq", "2017", {"at"}),
        ("lt", "2017", {"before"}),
        ("eb", "2017", {"before"}),
        ("le", "2017-01-01T00:00:00Z", {"before", "at"}),
        ("gt", "2016-12-31T23:59:59Z", {"at"}),
        ("eq", "2016-12-31T23:59:59Z", {"before"}),
        ("eq", "2016-12-31T23:59:59.999Z", {"before"}),
        ("eq", "2017-01-01T01:00:00+01:00", {"at"}),
    ],
)
def test_each_prefix_at_a_period_boundary(
    client: httpx.Client, engine: Engine, prefix: str, value: str, expected: set[str]
) -> None:
    store(client, engine, {"before": NEW_YEAR - timedelta(milliseconds=1), "at": NEW_YEAR})
    query = f"{prefix}{value}"
    assert names(client, "/fhir/Observation", _lastUpdated=query) == expected
    assert names(client, "/fhir/Observation", date=query) == expected


def test_ap_is_the_value_widened_by_a_tenth_of_its_distance_from_now(
    client: httpx.Client, engine: Engine
) -> None:
    now = datetime.now(UTC)
    day = date.fromordinal(now.date().toordinal() - 200)  # 200 days ago: a margin of ~20 days
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    store(
        client,
        engine,
        {
            "inside-before": start - timedelta(days=15),
            "inside-after": start + timedelta(days=16),
            "outside-before": start - timedelta(days=25),
            "outside-after": start + timedelta(days=26),
            "now": now - timedelta(seconds=1),
        },
    )
    inside = {"inside-before", "inside-after"}
    value = f"ap{day.isoformat()}"
    assert names(client, "/fhir/Observation", _lastUpdated=value) == inside
    assert names(client, "/fhir/Observation", date=value) == inside
    assert names(client, "/fhir/Patient", _lastUpdated=value) == inside
    # across types, and through _has
    assert names(client, "/fhir", _lastUpdated=value) == inside
    assert names(client, "/fhir", _type="Patient", _lastUpdated=value) == inside
    has = "_has:Observation:subject:_lastUpdated"
    assert names(client, "/fhir/Patient", **{has: value}) == inside
    # at least a day around a value close to now; nothing near a value long ago
    today = f"ap{now.date().isoformat()}"
    assert names(client, "/fhir/Observation", _lastUpdated=today) == {"now"}
    assert names(client, "/fhir/Observation", _lastUpdated="ap2000") == set()
    assert names(client, "/fhir/Observation", _lastUpdated="ap2000,ap1990") == set()
    assert "now" in names(client, "/fhir/Observation", _lastUpdated=f"ap2000,{today}")


@pytest.mark.parametrize(
    "value",
    ["ap0001", "ap0001-01-01T00:00:00Z", "ap9999-12-31T23:59:58Z", "gt9999-12-31T23:59:58Z"],
)
@pytest.mark.parametrize("name", ["_lastUpdated", "date"])
def test_ap_and_bounds_at_the_ends_of_the_calendar(
    client: httpx.Client, engine: Engine, name: str, value: str
) -> None:
    """ap widens past years 1 and 9999, which no datetime holds: the range stops there (ap0001
    reaches ~200 years on, ap9999 ~800 years back)."""
    store(
        client,
        engine,
        {
            "ancient": datetime(150, 1, 1, tzinfo=UTC),
            "new-year": NEW_YEAR,
            "far": datetime(9500, 1, 1, tzinfo=UTC),
        },
    )
    expected = {"ap0001": {"ancient"}, "ap9999": {"far"}, "gt9999": set()}[value[:6]]
    assert names(client, "/fhir/Observation", **{name: value}) == expected


def test_ap_on_last_updated_of_a_bad_date_is_a_400(client: httpx.Client) -> None:
    assert_outcome(
        client.get("/fhir/Observation", params={"_lastUpdated": "ap2016-13"}),
        400,
        expression="_lastUpdated",
    )
