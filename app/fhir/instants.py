"""FHIR instants and dateTimes: the server's clock, formatting, and parsing into UTC ranges.

A value without a timezone is read as UTC: the server has no better knowledge of the writer's
zone, and one fixed rule keeps comparisons consistent (documented in docs/architecture.md).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from app.search.dates import parse_range

__all__ = ["after", "format_instant", "http_date", "now", "parse_range"]

_MS = timedelta(milliseconds=1)


def now() -> datetime:
    """The current time in UTC, truncated to milliseconds: meta.lastUpdated shows exactly what
    the database holds, so a client's `_since` taken from it compares exactly."""
    ms = time.time_ns() // 1_000_000
    return datetime.fromtimestamp(ms / 1000, UTC).replace(microsecond=(ms % 1000) * 1000)


def after(previous: datetime) -> datetime:
    """A timestamp for a new version: now, but never at or before the previous version's."""
    current = now()
    return current if current > previous else previous + _MS


def format_instant(value: datetime) -> str:
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def http_date(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")
