from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app.fhir.errors import BadRequestError
from app.fhir.instants import after, format_instant, http_date, now, parse_range


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "low", "high"),
    [
        ("2016", utc(2016, 1, 1), utc(2017, 1, 1)),
        ("2016-12", utc(2016, 12, 1), utc(2017, 1, 1)),
        ("2016-02", utc(2016, 2, 1), utc(2016, 3, 1)),
        ("2016-08-22", utc(2016, 8, 22), utc(2016, 8, 23)),
        ("2016-08-22T10:30", utc(2016, 8, 22, 10, 30), utc(2016, 8, 22, 10, 31)),
        ("2016-08-22T10:30:15Z", utc(2016, 8, 22, 10, 30, 15), utc(2016, 8, 22, 10, 30, 16)),
        (
            "2016-08-22T10:30:15.5Z",
            utc(2016, 8, 22, 10, 30, 15, 500000),
            utc(2016, 8, 22, 10, 30, 15, 600000),
        ),
        (
            "2016-08-22T10:30:15.123+02:00",
            utc(2016, 8, 22, 8, 30, 15, 123000),
            utc(2016, 8, 22, 8, 30, 15, 124000),
        ),
        ("2016-08-22T23:30:00-05:00", utc(2016, 8, 23, 4, 30), utc(2016, 8, 23, 4, 30, 1)),
        ("2016-08-22T10:30:15", utc(2016, 8, 22, 10, 30, 15), utc(2016, 8, 22, 10, 30, 16)),
    ],
)
def test_parse_range(text: str, low: datetime, high: datetime) -> None:
    assert parse_range(text, "_at") == (low, high)


@pytest.mark.parametrize(
    "text",
    [
        "2016-13",
        "2016-02-30",
        "16-01-01",
        "yesterday",
        "2016-1-1",
        "2016-08-22T25:00Z",
        "2016-08-22T10:30+2",
        "",
    ],
)
def test_parse_range_rejects_invalid(text: str) -> None:
    with pytest.raises(BadRequestError) as caught:
        parse_range(text, "_since")
    assert caught.value.expression == ("_since",)


def test_now_is_millisecond_precise_and_formats_as_instant() -> None:
    value = now()
    assert value.microsecond % 1000 == 0
    text = format_instant(value)
    assert text.endswith("Z")
    assert len(text) == 24
    assert parse_range(text, "x")[0] == value


def test_after_is_strictly_later() -> None:
    future = utc(2999, 1, 1)
    assert after(future) > future
    assert after(utc(2000, 1, 1)) > utc(2000, 1, 1)


def test_http_date() -> None:
    assert http_date(utc(2016, 8, 22, 10, 0, 5)) == "Mon, 22 Aug 2016 10:00:05 GMT"
