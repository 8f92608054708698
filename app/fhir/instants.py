"""FHIR instants and dateTimes: the server's clock, formatting, and parsing into UTC ranges.

A value without a timezone is read as UTC: the server has no better knowledge of the writer's
zone, and one fixed rule keeps comparisons consistent (documented in docs/architecture.md).
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

from app.fhir.errors import BadRequestError

_DATETIME = re.compile(
    r"^(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})(?:T(?P<H>\d{2}):(?P<M>\d{2})"
    r"(?::(?P<S>\d{2})(?:\.(?P<f>\d{1,9}))?)?(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)
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


def parse_range(text: str, name: str) -> tuple[datetime, datetime]:
    """A FHIR date/dateTime/instant as the half-open UTC range [low, high) it denotes."""
    match = _DATETIME.match(text.strip())
    if match is None:
        raise BadRequestError(
            f"Parameter '{name}': '{text}' is not a FHIR date or dateTime", (name,)
        )
    parts = match.groupdict()
    try:
        year = int(parts["y"])
        if parts["m"] is None:
            low = datetime(year, 1, 1, tzinfo=UTC)
            return low, low.replace(year=year + 1)
        month = int(parts["m"])
        if parts["d"] is None:
            low = datetime(year, month, 1, tzinfo=UTC)
            high = (
                low.replace(year=year + 1, month=1) if month == 12 else low.replace(month=month + 1)
            )
            return low, high
        day = int(parts["d"])
        if parts["H"] is None:
            low = datetime(year, month, day, tzinfo=UTC)
            return low, low + timedelta(days=1)
        fraction = parts["f"] or ""
        second = int(parts["S"]) if parts["S"] is not None else 0
        micro = int((fraction + "000000")[:6]) if fraction else 0
        naive = datetime(year, month, day, int(parts["H"]), int(parts["M"]), second, micro)
        tz = parts["tz"]
        if tz is None or tz == "Z":
            low = naive.replace(tzinfo=UTC)
        else:
            sign = 1 if tz[0] == "+" else -1
            offset = timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6])) * sign
            low = (naive - offset).replace(tzinfo=UTC)
        if parts["S"] is None:
            step = timedelta(minutes=1)
        elif fraction:
            step = timedelta(microseconds=max(1, 10 ** (6 - min(len(fraction), 6))))
        else:
            step = timedelta(seconds=1)
        return low, low + step
    except ValueError as exc:
        raise BadRequestError(
            f"Parameter '{name}': '{text}' is not a valid date: {exc}", (name,)
        ) from None
