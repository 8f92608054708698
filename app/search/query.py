"""Parsing a FHIR search query (search.html) into a typed SearchRequest. Pure: no SQL.

Repeated parameters AND together; comma-separated values OR together. Every failure names the
parameter (BadRequestError with the parameter as expression), never a 500.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import Any

from app.fhir.errors import BadRequestError
from app.search.dates import range_us
from app.search.index_values import fold
from app.search.registry import SearchParamDef, param
from app.search.ucum import UCUM_SYSTEM, canonical

ANY_TYPE = "Resource"  # criteria of a system-level search (no _type) apply to every type
PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
RESULT_PARAMETERS = {
    "_count",
    "_sort",
    "_include",
    "_revinclude",
    "_total",
    "_summary",
    "_elements",
    "_format",
    "_pretty",
    "_offset",
    "_type",
    "_contained",
    "_containedType",
}
TYPE_MODIFIERS: dict[str, set[str]] = {
    "token": {"not", "text", "of-type", "missing"},
    "string": {"exact", "contains", "missing"},
    "date": {"missing"},
    "number": {"missing"},
    "quantity": {"missing"},
    "reference": {"missing"},
    "uri": {"below", "above", "missing"},
    "composite": {"missing"},
}
SUMMARY_VALUES = {"true", "false", "text", "data", "count"}
# Numbers are compared as floats: a search value (and its implicit range) must stay well inside
# float range (below 1e300), and its exponent inside what Decimal arithmetic takes (beyond, it
# raises Overflow or InvalidOperation).
MAX_ADJUSTED_EXPONENT = 299
MIN_EXPONENT = -1000
MAX_OFFSET = 2**63 - 1  # SQL's largest integer
# Chained (`a.b`) and reverse-chained (`_has:`) links in one parameter name. Each link is a level
# of recursion here and a nested subquery in SQL; hundreds ran out of Python's stack.
MAX_CHAIN_DEPTH = 10
TOTAL_VALUES = {"none", "estimate", "accurate"}


# -- values --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class TokenValue:
    system: str | None  # None: any system
    code: str | None  # None: any code (system| form)
    no_system: bool = False  # |code: the value must have no system


@dataclass(frozen=True, slots=True)
class RangeValue:
    """A date, number or quantity comparison: prefix against [low, high] (inclusive for dates,
    [low, high) for numbers, whose implicit precision the search value's digits give)."""

    prefix: str
    low: float
    high: float
    point: float  # the value as written (numbers, quantities)
    system: str | None = None
    code: str | None = None
    canonical: bool = False  # low/high/point are in canonical units, code is canonical


@dataclass(frozen=True, slots=True)
class ReferenceValue:
    target_type: str | None
    target_id: str | None
    url: str | None


@dataclass(frozen=True, slots=True)
class CompositeValue:
    first: TokenValue
    second: Any


@dataclass(frozen=True, slots=True)
class Criterion:
    """One parameter occurrence on `resource_type`: values OR together."""

    resource_type: str
    code: str
    kind: str  # parameter type, or "_id" / "_lastUpdated"
    modifier: str | None
    values: tuple[Any, ...]
    definition: SearchParamDef | None = None
    missing: bool | None = None  # :missing=true/false
    same_row: bool = False  # values AND on one index row (merged range bounds), not OR


@dataclass(frozen=True, slots=True)
class Chain:
    """`subject:Patient.name=x`: resources whose `code` reference points at a `target_type`
    resource matching `inner`."""

    resource_type: str
    code: str
    target_types: tuple[str, ...]
    inner: Criterion | Chain | Has
    # bounds on the target a token's scopes set (app/fhir/scoped_store.py): it must also be
    # in this patient's compartment and match these criteria
    compartment: str | None = None
    also: tuple[Criterion | Chain | Has, ...] = ()


@dataclass(frozen=True, slots=True)
class Has:
    """`_has:Observation:patient:code=x`: resources referenced through `code` by a
    `source_type` resource matching `inner`."""

    resource_type: str
    source_type: str
    code: str
    inner: Criterion | Chain | Has
    compartment: str | None = None  # bounds on the source, as Chain's
    also: tuple[Criterion | Chain | Has, ...] = ()


@dataclass(frozen=True, slots=True)
class Include:
    source_type: str
    code: str  # "*" for every reference parameter
    target_type: str | None
    iterate: bool
    reverse: bool


@dataclass
class SearchRequest:
    resource_types: tuple[str, ...]
    criteria: list[Criterion | Chain | Has] = field(default_factory=list)
    sort: list[tuple[str, bool]] = field(default_factory=list)  # (code, descending)
    count: int = 50
    offset: int = 0
    total: str = "accurate"
    summary: str | None = None
    elements: tuple[str, ...] = ()
    includes: list[Include] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)  # ignored parameters, for the outcome
    # a patient id: only resources in that patient's compartment match (patient-context access)
    compartment: str | None = None


# -- splitting -----------------------------------------------------------------------------------
def _split(text: str, separator: str) -> list[str]:
    """Split on `separator` where it is not escaped by a backslash; escapes are kept."""
    parts, start, index = [], 0, 0
    while index < len(text):
        if text[index] == "\\":
            index += 2
            continue
        if text[index] == separator:
            parts.append(text[start:index])
            start = index + 1
        index += 1
    parts.append(text[start:])
    return parts


def unescape(text: str) -> str:
    return re.sub(r"\\([,|$\\])", r"\1", text)


def split_escaped(text: str, separator: str) -> list[str]:
    """Split on unescaped `separator` (search.html#escaping), then unescape each part."""
    return [unescape(part) for part in _split(text, separator)]


def _split_first(text: str, separator: str) -> tuple[str, str | None]:
    parts = _split(text, separator)
    if len(parts) == 1:
        return unescape(parts[0]), None
    return unescape(parts[0]), unescape(separator.join(parts[1:]))


# -- per type ------------------------------------------------------------------------------------
def _prefix(text: str) -> tuple[str, str]:
    if len(text) > 2 and text[:2] in PREFIXES and not text[:2].isdigit():
        return text[:2], text[2:]
    return "eq", text


def parse_token(text: str, name: str) -> TokenValue:
    if not text:
        raise BadRequestError(f"Parameter '{name}': empty token", (name,))
    system, code = _split_first(text, "|")
    if code is None:
        return TokenValue(None, system)
    if system == "":
        return TokenValue(None, code or None, no_system=True)
    return TokenValue(system, code or None)


def parse_date(text: str, name: str) -> RangeValue:
    prefix, rest = _prefix(text)
    low, high = range_us(rest, name)
    return RangeValue(prefix, float(low), float(high), float(low))


def _decimal(text: str, name: str) -> Decimal:
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise BadRequestError(f"Parameter '{name}': '{text}' is not a number", (name,)) from None
    if not number.is_finite():
        raise BadRequestError(f"Parameter '{name}': '{text}' is not a number", (name,))
    exponent = number.as_tuple().exponent
    assert isinstance(exponent, int)
    if exponent < MIN_EXPONENT or number.adjusted() > MAX_ADJUSTED_EXPONENT:  # no arithmetic
        raise BadRequestError(
            f"Parameter '{name}': '{text}' is out of range (magnitude below 1e300, precision "
            f"to 1e{MIN_EXPONENT} at most)",
            (name,),
        )
    return number


def _implicit_range(number: Decimal) -> tuple[Decimal, Decimal]:
    """search.html#number: the value's precision gives the range it stands for."""
    exponent = number.as_tuple().exponent
    assert isinstance(exponent, int)
    half = Decimal(5).scaleb(exponent - 1)
    return number - half, number + half


def parse_number(text: str, name: str) -> RangeValue:
    prefix, rest = _prefix(text)
    number = _decimal(rest, name)
    low, high = _implicit_range(number)
    return RangeValue(prefix, float(low), float(high), float(number))


def parse_quantity(text: str, name: str) -> RangeValue:
    parts = split_escaped(text, "|")
    if len(parts) not in (1, 3):
        raise BadRequestError(
            f"Parameter '{name}': '{text}' is not [prefix]number or [prefix]number|system|code",
            (name,),
        )
    prefix, rest = _prefix(parts[0])
    number = _decimal(rest, name)
    low, high = _implicit_range(number)
    system = parts[1] or None if len(parts) == 3 else None
    code = parts[2] or None if len(parts) == 3 else None
    if code is not None and system in (UCUM_SYSTEM, None):
        canon_point = canonical(number, code)
        canon_low = canonical(low, code)
        canon_high = canonical(high, code)
        if canon_point and canon_low and canon_high:
            return RangeValue(
                prefix,
                canon_low[0],
                canon_high[0],
                canon_point[0],
                system,
                canon_point[1],
                canonical=True,
            )
    return RangeValue(prefix, float(low), float(high), float(number), system, code)


def parse_reference(
    text: str, name: str, modifier_type: str | None, targets: tuple[str, ...]
) -> ReferenceValue:
    if not text:
        raise BadRequestError(f"Parameter '{name}': empty reference", (name,))
    if "://" in text or text.startswith("urn:"):
        match = re.search(r"/([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/.*)?$", text)
        if match:
            return ReferenceValue(match.group(1), match.group(2), text)
        return ReferenceValue(None, None, text)
    parts = text.split("/")
    if len(parts) == 2:
        if modifier_type and parts[0] != modifier_type:
            raise BadRequestError(
                f"Parameter '{name}': '{text}' is not a {modifier_type} reference", (name,)
            )
        return ReferenceValue(parts[0], parts[1], None)
    if len(parts) == 1:
        kind = modifier_type or (targets[0] if len(targets) == 1 else None)
        return ReferenceValue(kind, parts[0], None)
    raise BadRequestError(f"Parameter '{name}': '{text}' is not a reference", (name,))


def _parse_value(
    definition: SearchParamDef, kind: str, text: str, name: str, modifier: str | None
) -> Any:
    if kind == "token":
        if modifier == "text":
            return fold(text)
        return parse_token(text, name)
    if kind == "string":
        return text
    if kind == "date":
        return parse_date(text, name)
    if kind == "number":
        return parse_number(text, name)
    if kind == "quantity":
        return parse_quantity(text, name)
    if kind == "reference":
        modifier_type = modifier if modifier and modifier[0].isupper() else None
        return parse_reference(text, name, modifier_type, definition.targets)
    if kind == "uri":
        return text
    if kind == "composite":
        return _parse_composite(definition, text, name)
    raise BadRequestError(
        f"Parameter '{name}': {kind} parameters are not supported", (name,), code="not-supported"
    )


def _parse_composite(definition: SearchParamDef, text: str, name: str) -> CompositeValue:
    from app.search.registry import by_url

    parts = split_escaped(text, "$")
    components = [by_url(url) for url, _ in definition.components]
    if len(parts) != 2 or len(components) < 2 or None in components[:2]:
        raise BadRequestError(f"Parameter '{name}': expected two components joined by '$'", (name,))
    second_def = components[1]
    assert second_def is not None
    first = parse_token(parts[0], name)
    second = _parse_value(second_def, second_def.type, parts[1], name, None)
    return CompositeValue(first, second)


# -- parameters ----------------------------------------------------------------------------------
def parse_criterion(
    resource_type: str, name: str, raw_values: list[str]
) -> Criterion | Chain | Has | None:
    """One `name=value` pair on `resource_type`, or None if the parameter is unknown."""
    if name.count(".") + name.count("_has:") > MAX_CHAIN_DEPTH:
        raise BadRequestError(
            f"Parameter '{name}': more than {MAX_CHAIN_DEPTH} chained or _has links", (name,)
        )
    if name.startswith("_has:"):
        return _parse_has(resource_type, name, raw_values)
    head, _, chained = name.partition(".")
    code, _, modifier = head.partition(":")
    modifier_value = modifier or None
    if code == "_id":
        return Criterion(
            resource_type,
            code,
            "_id",
            modifier_value,
            tuple(v for raw in raw_values for v in split_escaped(raw, ",") if v),
            missing=None,
        )
    if code == "_lastUpdated":
        values = tuple(parse_date(v, name) for raw in raw_values for v in split_escaped(raw, ","))
        return Criterion(resource_type, code, "_lastUpdated", None, values)
    definition = param(resource_type, code)
    if definition is None or definition.expression is None:
        # No expression (_text, _content, _list, _query, _filter, _type on a type): nothing
        # is indexed for it, so it is unknown here rather than a criterion matching nothing.
        return None
    if chained:
        return _parse_chain(resource_type, definition, modifier_value, chained, name, raw_values)
    kind = definition.type
    if kind not in TYPE_MODIFIERS:  # special (Location.near): not indexed, so no :missing either
        raise BadRequestError(
            f"Parameter '{name}': {kind} parameters are not supported",
            (name,),
            code="not-supported",
        )
    if modifier_value == "missing":
        flags = [v for raw in raw_values for v in split_escaped(raw, ",")]
        if flags not in (["true"], ["false"]):
            raise BadRequestError(f"Parameter '{name}': :missing takes true or false", (name,))
        return Criterion(
            resource_type, code, kind, "missing", (), definition, missing=flags == ["true"]
        )
    if modifier_value is not None:
        allowed = TYPE_MODIFIERS.get(kind, set())
        is_type = kind == "reference" and modifier_value[0].isupper()
        if not is_type and modifier_value not in allowed:
            raise BadRequestError(
                f"Parameter '{name}': modifier ':{modifier_value}' is not supported on {kind} "
                f"parameters",
                (name,),
                code="not-supported",
            )
        if is_type and definition.targets and modifier_value not in definition.targets:
            raise BadRequestError(
                f"Parameter '{name}': {modifier_value} is not a target of '{code}'", (name,)
            )
    values = tuple(
        _parse_value(definition, kind, text, name, modifier_value)
        for raw in raw_values
        for text in split_escaped(raw, ",")
    )
    if not values:
        raise BadRequestError(f"Parameter '{name}' has no value", (name,))
    return Criterion(resource_type, code, kind, modifier_value, values, definition)


def _parse_chain(
    resource_type: str,
    definition: SearchParamDef,
    modifier: str | None,
    chained: str,
    name: str,
    raw_values: list[str],
) -> Chain:
    if definition.type != "reference":
        raise BadRequestError(
            f"Parameter '{name}': '{definition.code}' is a {definition.type} parameter and "
            "cannot be chained",
            (name,),
        )
    if modifier:
        if modifier not in definition.targets:
            raise BadRequestError(
                f"Parameter '{name}': {modifier} is not a target of '{definition.code}'", (name,)
            )
        targets: tuple[str, ...] = (modifier,)
    else:
        targets = definition.targets
    inners = []
    for target in targets:
        inner = parse_criterion(target, chained, raw_values)
        if inner is not None:
            inners.append((target, inner))
    if not inners:
        raise BadRequestError(
            f"Parameter '{name}': '{chained}' is not a search parameter of "
            f"{' or '.join(targets) or 'the target'}",
            (name,),
        )
    if len(inners) > 1:
        # the same chained parameter on several target types: OR them as separate chains
        raise BadRequestError(
            f"Parameter '{name}': '{definition.code}' can point at {', '.join(targets)}; name "
            f"one with a type modifier, e.g. {definition.code}:{inners[0][0]}.{chained}",
            (name,),
        )
    target, inner = inners[0]
    return Chain(resource_type, definition.code, (target,), inner)


def _parse_has(resource_type: str, name: str, raw_values: list[str]) -> Has:
    parts = name.split(":", 3)
    if len(parts) != 4 or not all(parts[1:]):
        raise BadRequestError(
            f"Parameter '{name}': expected _has:Type:reference:parameter", (name,)
        )
    _, source_type, code, rest = parts
    definition = param(source_type, code) if source_type in _resource_types() else None
    if definition is None or definition.type != "reference":
        raise BadRequestError(
            f"Parameter '{name}': '{code}' is not a reference parameter of '{source_type}'", (name,)
        )
    if definition.targets and resource_type not in definition.targets:
        raise BadRequestError(
            f"Parameter '{name}': {source_type}.{code} does not point at {resource_type}", (name,)
        )
    inner = parse_criterion(source_type, rest, raw_values)
    if inner is None:
        raise BadRequestError(
            f"Parameter '{name}': '{rest}' is not a search parameter of {source_type}", (name,)
        )
    return Has(resource_type, source_type, code, inner)


@cache
def _resource_types() -> frozenset[str]:
    from app.fhir.models import RESOURCE_TYPES  # lazily: search/ sits below fhir/

    return frozenset(RESOURCE_TYPES)


# -- result parameters ---------------------------------------------------------------------------
def _whole_number(text: str) -> int | None:
    """ASCII digits as an int, or None. (str.isdigit also takes '²' and other digits int()
    refuses; numbers of 20 digits or more, which int() refuses past 4300, read as 10**19.)"""
    if not text.isascii() or not text.isdigit():
        return None
    digits = text.lstrip("0") or "0"
    return int(digits) if len(digits) < 20 else 10**19


def _count(text: str, default: int, maximum: int) -> int:
    number = _whole_number(text)
    if number is None:
        raise BadRequestError(f"_count '{text}' is not a whole number of 0 or more", ("_count",))
    return min(number, maximum)


def _include(text: str, reverse: bool, iterate: bool) -> Include:
    name = "_revinclude" if reverse else "_include"
    if text == "*":
        return Include("*", "*", None, iterate, reverse)
    parts = text.split(":")
    if len(parts) not in (2, 3):
        raise BadRequestError(f"{name} '{text}' is not Type:parameter[:targetType]", (name,))
    source, code = parts[0], parts[1]
    target = parts[2] if len(parts) == 3 else None
    if source not in _resource_types():
        raise BadRequestError(f"{name} '{text}': unknown resource type '{source}'", (name,))
    if code != "*":
        definition = param(source, code)
        if definition is None or definition.type != "reference":
            raise BadRequestError(
                f"{name} '{text}': '{code}' is not a reference parameter of {source}", (name,)
            )
    return Include(source, code, target, iterate, reverse)


_CONTROL = re.compile(r"[\x00-\x1f]")  # no FHIR value holds one (datatypes.html#string)
# What one search may ask for: each value is an OR'ed condition, and databases have limits on
# a statement's size (SQLite's expression depth of 1000, PostgreSQL's 65,535 parameters, a
# LIKE pattern of 50,000 bytes on SQLite) that a longer search would hit as an error.
MAX_VALUES = 500
MAX_VALUE_LENGTH = 4096


def parse_search(
    resource_types: tuple[str, ...],
    pairs: Iterable[tuple[str, str]],
    default_count: int,
    max_count: int,
) -> SearchRequest:
    request = SearchRequest(resource_types, count=default_count)
    grouped: dict[str, list[str]] = {}
    order: list[str] = []
    values_seen = 0
    for name, value in pairs:
        if _CONTROL.search(name) or _CONTROL.search(value):
            raise BadRequestError(
                f"Search parameter {name!r}: control characters (below U+0020) are not allowed "
                "in search parameter names or values",
                (name,),
            )
        parts = value.split(",")
        longest = max(len(part) for part in parts)
        if longest > MAX_VALUE_LENGTH:
            raise BadRequestError(
                f"Search parameter {name!r}: a value of {longest} characters is longer than "
                f"this server searches with ({MAX_VALUE_LENGTH})",
                (name,),
                code="too-costly",
            )
        values_seen += len(parts)
        if values_seen > MAX_VALUES:
            raise BadRequestError(
                f"The search has more than {MAX_VALUES} values in all (counting each "
                "comma-separated one); split it into several searches",
                (name,),
                code="too-costly",
            )
        if name not in grouped:
            order.append(name)
        grouped.setdefault(name, []).append(value)
    for name in order:
        values = grouped[name]
        base = name.split(":", 1)[0]
        if base in RESULT_PARAMETERS:
            _result_parameter(request, name, base, values, max_count)
            continue
        for value in values:
            parsed = [parse_criterion(t, name, [value]) for t in resource_types]
            found = [p for p in parsed if p is not None]
            if not found:
                request.unknown.append(name)
                break
            if len(resource_types) > 1 and len(found) != len(resource_types):
                raise BadRequestError(
                    f"Parameter '{name}' is not defined for every type in _type", (name,)
                )
            request.criteria.extend(found)
    return request


def _result_parameter(
    request: SearchRequest, name: str, base: str, values: list[str], max_count: int
) -> None:
    last = values[-1]
    if base == "_count":
        request.count = _count(last, request.count, max_count)
    elif base == "_offset":
        offset = _whole_number(last)
        if offset is None or offset > MAX_OFFSET:
            raise BadRequestError(
                f"_offset '{last}' is not a whole number from 0 to {MAX_OFFSET}", ("_offset",)
            )
        request.offset = offset
    elif base == "_sort":
        for value in values:
            for item in value.split(","):
                item = item.strip()
                descending = item.startswith("-")
                code = item[1:] if descending else item
                if not code:
                    raise BadRequestError("_sort has an empty key", ("_sort",))
                for resource_type in request.resource_types:
                    if code not in {"_id", "_lastUpdated"} and param(resource_type, code) is None:
                        raise BadRequestError(
                            f"_sort '{code}' is not a search parameter of {resource_type}",
                            ("_sort",),
                        )
                request.sort.append((code, descending))
    elif base in {"_include", "_revinclude"}:
        modifier = name.partition(":")[2]
        if modifier not in {"", "iterate", "recurse"}:
            raise BadRequestError(f"{base}:{modifier} is not supported", (name,))
        for value in values:
            request.includes.append(_include(value, base == "_revinclude", bool(modifier)))
    elif base == "_total":
        if last not in TOTAL_VALUES:
            raise BadRequestError(f"_total '{last}': use none, estimate or accurate", ("_total",))
        request.total = last
    elif base == "_summary":
        if last not in SUMMARY_VALUES:
            raise BadRequestError(
                f"_summary '{last}': use true, false, text, data or count", ("_summary",)
            )
        request.summary = None if last == "false" else last
    elif base == "_elements":
        request.elements = tuple(e.strip() for v in values for e in v.split(",") if e.strip())
    elif base in {"_contained", "_containedType"}:
        request.unknown.append(name)
