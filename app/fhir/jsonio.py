"""JSON in and out, fast and exact.

orjson parses and writes in about a microsecond, but reads every decimal as a binary float, so
"1.50" would come back as 1.5 and a 20-digit decimal would be rounded. FHIR decimals keep their
written precision, so a body with such a number is read with the standard library into Decimals
that remember their text, and written back as that text (orjson Fragments). Numbers beyond the
range of a double are refused: nothing downstream (indexes, clients) could compare them. Stored
resources are bytes this module wrote; responses splice them in unparsed.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

import orjson

from app.fhir.errors import StructureError

# A number token in JSON position (after `:`, `,` or `[`). Strings that merely look like this only
# send the body down the exact path, which is correct, just slower.
_NUMBER = re.compile(rb"[:,\[]\s*(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)\s*(?=[,\]}])")
_MAX_EXACT_INT = 2**63 - 1


def _float_would_change(raw: bytes) -> bool:
    """Whether some number would not come back as written through orjson: one a double does
    not hold exactly (1.50, 0.1000000000000000055511), one orjson writes otherwise (1e-05 as
    0.00001), -0, or an integer beyond 64 bits."""
    for match in _NUMBER.finditer(raw):
        token = match.group(1)
        if b"." in token or b"e" in token or b"E" in token:
            if orjson.dumps(float(token)) != token:
                return True
        elif token.startswith(b"-0") or (len(token) > 18 and abs(int(token)) > _MAX_EXACT_INT):
            return True
    return False


class _Number(Decimal):
    """A decimal that remembers the text it was written as, so it is written back the same."""

    __slots__ = ("text",)
    text: str

    def __new__(cls, text: str) -> _Number:
        number = super().__new__(cls, text)
        if not -_FLOAT_MAX <= number <= _FLOAT_MAX:
            raise ValueError(f"the number {text[:40]} is out of range")
        number.text = text
        return number


_FLOAT_MAX = Decimal("1.7976931348623157e308")


def _integer(text: str) -> int | _Number:
    """An integer orjson would write back the same, else a _Number keeping its text (-0, or
    beyond 64 bits, which orjson cannot write as an int)."""
    value = int(text)
    if abs(value) <= _MAX_EXACT_INT and not (value == 0 and text.startswith("-")):
        return value
    return _Number(text)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


# nesting_exceeds: what it keeps of a body once escapes are gone (quotes and brackets)
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'"[]{}')
_OPENING = frozenset(b"[{")


def nesting_exceeds(raw: bytes, limit: int) -> bool:
    """Whether JSON text nests objects and arrays more than `limit` deep (`{}` is 1), told
    from the bytes before parsing: orjson refuses only past 1,024 levels, and a few hundred
    already exhaust Python's recursion in the code that walks a resource.

    Text with at most `limit` opening brackets cannot (one count in C: most resources stop
    there); otherwise strings are cut out (`\\` and `\"` first, then the odd pieces between
    quotes) and the brackets left are counted, stopping at the first too deep. Linear in the
    size (~2x orjson's parse of the same bytes); not a validator: broken JSON fails later."""
    if raw.count(b"{") + raw.count(b"[") <= limit:
        return False
    if b"\\" in raw:
        raw = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    outside = b"".join(raw.translate(None, _NOT_STRUCTURE).split(b'"')[::2])
    depth = 0
    for byte in outside:
        if byte in _OPENING:
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def loads(raw: bytes | str) -> Any:
    """Parse JSON; raise StructureError (400) naming the position when it is not JSON."""
    data = raw.encode() if isinstance(raw, str) else raw
    try:
        parsed = orjson.loads(data)  # also refuses what json.loads forgives: lone surrogates
        if not _float_would_change(data):
            return parsed
        return json.loads(
            data, parse_float=_Number, parse_int=_integer, parse_constant=_reject_constant
        )
    except orjson.JSONDecodeError as exc:
        raise StructureError(f"The body is not valid JSON: {exc}") from None
    except (ValueError, RecursionError) as exc:
        raise StructureError(f"The body is not valid JSON: {exc}") from None


# Every string token, with the colon that makes it a key: scanned from the start, each match
# begins at an opening quote, so strings that contain quotes or colons are never miscounted.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"(\s*:)?')
_SPACED_KEY = re.compile(rb'"\s+:')


def _key_count(raw: bytes, exact: bool) -> int:
    """The number of object keys in JSON text, or (not `exact`) that plus the number of
    strings starting with a colon: every `":`, a count in C, 10x the regex's speed. Two texts
    of the same value compare alike that way when neither has a backslash (no string holds a
    quote or is written two ways) nor a space before a key's colon."""
    if not exact:
        return raw.count(b'":')
    tokens = _STRING.findall(raw)
    return len(tokens) - tokens.count(b"")


def loads_unique(raw: bytes) -> Any:
    """`loads`, refusing an object that has a key twice (JSON parsers keep the last silently;
    FHIR JSON has each property once). Told by counting the keys of the text and of the parsed
    value written back: two regex scans, no Python walk."""
    data = loads(raw)
    written = dumps(data)
    exact = b"\\" in raw or b"\\" in written or _SPACED_KEY.search(raw) is not None
    if _key_count(raw, exact) != _key_count(written, exact):
        raise StructureError(f"The body is not valid FHIR JSON: {_first_duplicate(raw)}")
    return data


def _first_duplicate(raw: bytes) -> str:
    found: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: set[str] = set()
        for key, _ in items:
            if key in seen and not found:
                found.append(key)
            seen.add(key)
        return dict(items)

    json.loads(raw, object_pairs_hook=pairs)
    return f"the key '{found[0][:80]}' appears twice in one object" if found else "duplicate keys"


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise TypeError("NaN and Infinity are not JSON numbers")
        return orjson.Fragment(getattr(value, "text", None) or str(value))
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps(value: Any, *, pretty: bool = False) -> bytes:
    option = orjson.OPT_INDENT_2 if pretty else 0
    return orjson.dumps(value, default=_default, option=option)


def reformat(raw: bytes, *, pretty: bool) -> bytes:
    """Stored compact bytes as the client asked for them (pretty-printed, or as they are)."""
    return dumps(loads(raw), pretty=True) if pretty else raw


Fragment = orjson.Fragment
