"""FHIR date, dateTime and instant values as UTC ranges.

A value without a timezone is read as UTC: the server has no better knowledge of the writer's
zone, and one fixed rule keeps comparisons consistent (documented in docs/architecture.md).
Index rows hold ranges as whole microseconds since the Unix epoch, both ends inclusive.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from app.fhir.errors import BadRequestError

_DATETIME = re.compile(
    r"^(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})(?:T(?P<H>\d{2}):(?P<M>\d{2})"
    r"(?::(?P<S>\d{2})(?:\.(?P<f>\d{1,9}))?)?(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MIN_US = -62135596800 * 1_000_000  # 0001-01-01T00:00:00Z
MAX_US = 253402300799 * 1_000_000 + 999_999  # 9999-12-31T23:59:59.999999Z


def to_us(value: datetime) -> int:
    delta = value - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def range_us(text: str, name: str = "value") -> tuple[int, int]:
    """[low, high] in epoch microseconds, both inclusive."""
    low, high = parse_range(text, name)
    return to_us(low), to_us(high) - 1


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
    except (ValueError, OverflowError) as exc:  # no such day; or beyond years 1-9999 (UTC)
        raise BadRequestError(
            f"Parameter '{name}': '{text}' is not a valid date: {exc}", (name,)
        ) from None
