"""Hypothesis strategies for fuzzing the server: valid FHIR R4B resources written as exact JSON
text, mutations that make them invalid, and search queries built from the R4B definitions.

Resources are hand-written from the R4B spec (Patient, Observation, Condition,
MedicationAdministration, Encounter): the elements that matter for this server, with their
required bindings, choice types and the invariants it checks (obs-6, rng-2, qty-3 + UCUM, con-3
to con-5, mad-1, reference target types). Primitives follow the R4B regexes (fhir_core.types):
date, dateTime (timezone whenever there is a time), instant, decimal, integer, code, id, uri
and string (no code point below U+0020 but tab, LF and CR; not whitespace only).

Numbers are `Num`: the exact text a decimal is written as (`1.50`, `1e-7`,
`123456789012345678.5`), so a body is built by `dumps` as text and sent as bytes (httpx's
`json=` would re-serialise floats), and a response is read back by `loads_exact` into `Num`s
again: comparing them compares the number text, so 1.50 must come back as 1.50.

Running a longer campaign (CI runs each test with a small, fixed budget; FUZZ_EXAMPLES replaces
it for every test, and the parametrized ones run it per parameter, so 2000 is a long run):

    FUZZ_EXAMPLES=2000 .venv/bin/python -m pytest -q -n 2 tests/fuzz
    FUZZ_EXAMPLES=2000 FUZZ_RANDOM=1 .venv/bin/python -m pytest -q -n 2 tests/fuzz \
        --hypothesis-seed=12345 --hypothesis-show-statistics

Determinism: CI runs `derandomize=True` with `database=None`: every run draws the same
examples (a seed derived from the test itself: its source and parametrization), so a red build
is a regression of the code under test, reproducible with the same command, never a new random
draw that fails an unrelated change; and no example database is written.
`FUZZ_EXAMPLES` widens the (still deterministic) search; `FUZZ_RANDOM=1` draws at random
instead: pass `--hypothesis-seed=N` to fix or repeat a run, and a failure prints the
`@reproduce_failure` blob (print_blob) to paste above the test. `--hypothesis-show-statistics`
shows what the tests saw (the status answered per resource type, mutation or method).

A server bug found here is pinned by a strict xfail test (`test_known_bug_*`) naming its
reproduction, and its input kept out of the generators until the fix (a generator that kept
hitting it would only rediscover it, and would hide new failures behind it); once fixed,
strict mode fails that test until the mark and the filter go. The bugs found so far are fixed
and kept as regression tests in the test modules.
"""

from __future__ import annotations

import calendar
import copy
import html
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from app.fhir.models import RESOURCE_TYPES
from app.search.registry import SearchParamDef, by_url, params_for

# -- budget and determinism ----------------------------------------------------------------------
FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES") or 0)
FUZZ_RANDOM = os.environ.get("FUZZ_RANDOM") == "1"


def fuzz_settings(examples: int) -> settings:
    """`examples` in CI; FUZZ_EXAMPLES overrides it for a campaign (see the module docstring)."""
    return settings(
        max_examples=FUZZ_EXAMPLES or examples,
        deadline=None,
        database=None,
        derandomize=not FUZZ_RANDOM,
        print_blob=FUZZ_RANDOM,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
            HealthCheck.large_base_example,
        ],
    )


# -- exact JSON text -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Num:
    """A JSON number as the exact text it is written as: Num("1.50") != Num("1.5")."""

    text: str

    def __repr__(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True)
class Raw:
    """JSON text spliced in as it is (NaN, 1e400, "\\ud800", ...): what `json` cannot write."""

    text: str

    def __repr__(self) -> str:
        return f"Raw({self.text[:60]!r}{'...' if len(self.text) > 60 else ''})"


@dataclass(frozen=True, slots=True)
class Pairs:
    """A JSON object written with these (key, value) members in order, duplicates included."""

    items: tuple[tuple[str, Any], ...]


def dumps(value: Any, *, ascii_only: bool = False) -> str:
    """JSON text of a document of dicts, lists, str, bool, None, Num, Raw and Pairs."""
    parts: list[str] = []
    _write(value, parts, ascii_only)
    return "".join(parts)


def _write(value: Any, out: list[str], ascii_only: bool) -> None:
    if isinstance(value, Num | Raw):
        out.append(value.text)
    elif isinstance(value, str):
        out.append(json.dumps(value, ensure_ascii=ascii_only))
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif value is None:
        out.append("null")
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, dict | Pairs):
        items = value.items if isinstance(value, Pairs) else tuple(value.items())
        out.append("{")
        for index, (key, item) in enumerate(items):
            if index:
                out.append(",")
            out.append(json.dumps(key, ensure_ascii=ascii_only))
            out.append(":")
            _write(item, out, ascii_only)
        out.append("}")
    elif isinstance(value, list):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _write(item, out, ascii_only)
        out.append("]")
    else:
        raise TypeError(f"cannot write {type(value).__name__} as JSON")


def loads_exact(text: str | bytes) -> Any:
    """Parse JSON keeping every number as its text (Num), for exact comparison."""
    return json.loads(text, parse_float=Num, parse_int=Num)


def without_server_fields(resource: dict[str, Any]) -> dict[str, Any]:
    """The resource without what the server assigns (id, meta)."""
    return {k: v for k, v in resource.items() if k not in ("id", "meta")}


# -- primitives ----------------------------------------------------------------------------------
# datatypes.html#string: no code point below U+0020 but tab, LF and CR; nor U+FFFE and U+FFFF,
# which XML 1.0 cannot hold (the server refuses them: every resource must render as XML).
CONTROL = "".join(chr(c) for c in range(0x20) if chr(c) not in "\t\n\r")
XML_INVALID = "\ufffe\uffff"
STRING_CHARS = st.characters(exclude_categories=["Cs"], exclude_characters=CONTROL + XML_INVALID)
NON_SPACE_CHARS = st.characters(
    exclude_categories=("Cs", "Zs", "Zl", "Zp"),
    exclude_characters=CONTROL + XML_INVALID + "\t\n\r\x85\x1c\x1d\x1e\x1f \u180e",
)
# unicode that trips naive code: astral planes, ZWJ sequences, combining marks, bidi controls,
# right-to-left scripts, BOM and zero-width space, a noncharacter XML allows, case-mapping
# oddities, JSON/SQL/XML metacharacters
UNICODE_EDGES = [
    "😀",
    "👩\u200d👩\u200d👧",
    "e\u0301",
    "\u0301",
    "\u202eevil\u202c",
    "\u200f",
    "שלום",
    "مرحبا",
    "\u200b",
    "\ufeff",
    "\u00a0",
    "\U0001d11e",
    "\U0010fffd",
    "\ufdd0",
    "ß",
    "İ",
    "ﬁ",
    "\u0085",
    "\u2028",
    "\u007f",
    "\\",
    '"',
    "</div>",
    "&amp;",
    "]]>",
    '{"a":1}',
    "%00",
    "%",
    "_",
    "'; DROP TABLE resource;--",
    "NaN",
    "null",
    "\t",
    "\r\n",
]


def _not_blank(text: str) -> bool:
    return text.strip() != ""


fhir_string: st.SearchStrategy[str] = st.one_of(
    st.text(STRING_CHARS, min_size=1, max_size=24),
    st.lists(
        st.sampled_from(UNICODE_EDGES) | st.text(STRING_CHARS, min_size=1, max_size=6),
        min_size=1,
        max_size=4,
    ).map("".join),
).filter(_not_blank)
# Long text, longer than the index columns (255 and 1,024 characters: the server stores such
# values bounded, head + hash, app/storage/derived.py); free text and the token-indexed
# strings (a Coding's display, a CodeableConcept's text, an Identifier's value) draw it.
long_text = st.text(STRING_CHARS, min_size=256, max_size=3000).filter(_not_blank)
free_text: st.SearchStrategy[str] = st.one_of(fhir_string, fhir_string, fhir_string, long_text)
fhir_id = st.from_regex(r"[A-Za-z0-9\-.]{1,64}", fullmatch=True)
fhir_code: st.SearchStrategy[str] = st.one_of(
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9\-._]{0,12}", fullmatch=True),
    st.lists(st.text(NON_SPACE_CHARS, min_size=1, max_size=8), min_size=1, max_size=3).map(
        " ".join
    ),
)
fhir_uri: st.SearchStrategy[str] = st.one_of(
    st.sampled_from(
        [
            "http://loinc.org",
            "http://snomed.info/sct",
            "http://unitsofmeasure.org",
            "urn:oid:2.16.840.1.113883.6.1",
            "urn:uuid:53fefa32-fcbb-4ff8-8a92-55ee120877b7",
            "http://example.org/codes/%C3%BC?x=1#frag",
            "https://example.org/ü",
            "mailto:a@example.org",
        ]
    ),
    st.text(NON_SPACE_CHARS, min_size=1, max_size=16).map(lambda s: f"http://example.org/{s}"),
)
fhir_boolean = st.booleans()
integer = st.integers(-(2**31), 2**31 - 1).map(lambda i: Num(str(i)))
positive_int = st.integers(1, 2**31 - 1).map(lambda i: Num(str(i)))

FLOAT_MAX = Decimal("1.7976931348623157e308")
SPECIAL_DECIMALS = [
    "1.50",
    "0.10",
    "100.000",
    "1e-7",
    "1E-7",
    "1e2",
    "1E+2",
    "123456789012345678.5",
    "0.1000000000000000055511151231257827",
    "3.141592653589793238462643383279",
    "12345678901234567890",
    "18446744073709551615",
    "-9223372036854775808",
    "-0.0",
    "0",
    "0.0",
    "-12",
    "1.7976931348623157e308",
    "-1.7976931348623157E+308",
    "4.9e-324",
    "1e-400",
    "0.000000000000000000000000000001",
    "9e299",
]
_decimal_text = st.builds(
    lambda sign, whole, fraction, exponent: f"{sign}{whole}{fraction}{exponent}",
    st.sampled_from(["", "", "-"]),
    st.one_of(
        st.just("0"),
        st.integers(1, 999).map(str),
        st.from_regex(r"[1-9][0-9]{0,17}", fullmatch=True),
        st.from_regex(r"[1-9][0-9]{18,30}", fullmatch=True),
    ),
    st.one_of(
        st.just(""),
        st.sampled_from([".0", ".5", ".50", ".00", ".10", ".05"]),
        st.from_regex(r"\.[0-9]{1,24}", fullmatch=True),
    ),
    st.one_of(
        st.just(""),
        st.builds(
            lambda e, sign, zeros, n: f"{e}{sign}{zeros}{n}",
            st.sampled_from("eE"),
            st.sampled_from(["", "+", "-"]),
            st.sampled_from(["", "", "0", "00"]),
            st.integers(0, 330),
        ),
    ),
)


def _in_double_range(text: str) -> bool:
    return abs(Decimal(text)) <= FLOAT_MAX


# A FHIR decimal (regex -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?) within a double's range
# (the server refuses larger ones, README "Decimals keep their text").
decimal_text: st.SearchStrategy[str] = (st.sampled_from(SPECIAL_DECIMALS) | _decimal_text).filter(
    _in_double_range
)
decimal = decimal_text.map(Num)
positive_decimal = decimal_text.filter(lambda t: Decimal(t) > 0).map(Num)


@st.composite
def _date_parts(draw: st.DrawFn) -> tuple[int, int, int]:
    year = draw(st.integers(1, 9999))
    month = draw(st.integers(1, 12))
    day = draw(st.integers(1, calendar.monthrange(year, month)[1]))
    return year, month, day


timezone = st.one_of(
    st.just("Z"),
    st.builds(
        lambda sign, hours, minutes: f"{sign}{hours:02d}:{minutes:02d}",
        st.sampled_from("+-"),
        st.integers(0, 13),
        st.integers(0, 59),
    ),
    st.sampled_from(["+14:00", "-14:00", "+00:00", "-00:00", "+05:30"]),
)


@st.composite
def _time(draw: st.DrawFn) -> str:
    if draw(st.integers(0, 19)) == 0:
        hms = "23:59:60"  # a leap second: allowed by the regex
    else:
        hms = (
            f"{draw(st.integers(0, 23)):02d}:{draw(st.integers(0, 59)):02d}:"
            f"{draw(st.integers(0, 59)):02d}"
        )
    fraction = draw(st.one_of(st.just(""), st.from_regex(r"\.[0-9]{1,12}", fullmatch=True)))
    return hms + fraction


@st.composite
def fhir_date(draw: st.DrawFn) -> str:
    year, month, day = draw(_date_parts())
    precision = draw(st.sampled_from(["y", "m", "d", "d"]))
    if precision == "y":
        return f"{year:04d}"
    if precision == "m":
        return f"{year:04d}-{month:02d}"
    return f"{year:04d}-{month:02d}-{day:02d}"


@st.composite
def fhir_datetime(draw: st.DrawFn) -> str:
    if draw(st.booleans()):
        return draw(fhir_date())
    return draw(fhir_instant())


@st.composite
def fhir_instant(draw: st.DrawFn) -> str:
    year, month, day = draw(_date_parts())
    return f"{year:04d}-{month:02d}-{day:02d}T{draw(_time())}{draw(timezone)}"


fhir_time = st.builds(
    lambda h, m, s, f: f"{h:02d}:{m:02d}:{s:02d}{f}",
    st.integers(0, 23),
    st.integers(0, 59),
    st.integers(0, 59),
    st.sampled_from(["", ".5", ".123456789"]),
)


# -- general-purpose data types ------------------------------------------------------------------
def _some(strategy: st.SearchStrategy[Any], max_size: int = 3) -> st.SearchStrategy[list[Any]]:
    """A FHIR array: never empty in JSON."""
    return st.lists(strategy, min_size=1, max_size=max_size)


def _obj(
    required: dict[str, st.SearchStrategy[Any]],
    optional: dict[str, st.SearchStrategy[Any]],
) -> st.SearchStrategy[dict[str, Any]]:
    """An element: the `required` members and some of the `optional` ones; never an empty
    object (FHIR JSON forbids them), without filtering."""
    keys = sorted(optional)

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        out = {key: draw(strategy) for key, strategy in required.items()}
        chosen = draw(st.lists(st.sampled_from(keys), unique=True, min_size=0 if required else 1))
        for key in keys:
            if key in chosen:
                out[key] = draw(optional[key])
        return out

    return build()


UCUM = "http://unitsofmeasure.org"
UCUM_CODES = [
    "mg",
    "g",
    "kg",
    "ug",
    "Tg",
    "mL",
    "L",
    "mm[Hg]",
    "/min",
    "Cel",
    "%",
    "{score}",
    "mg/kg",
    "mg/kg/h",
    "ng/mL",
    "[IU]/L",
    "U/L",
    "mmol/L",
    "10*3/uL",
    "h",
    "min",
    "s",
    "d",
    "wk",
    "mo",
    "a",
    "[lb_av]",
    "cm",
    "m",
]
TIME_UNITS = ["a", "mo", "wk", "d", "h", "min", "s"]

coding = _obj(
    {},
    {
        "system": fhir_uri,
        "version": fhir_string,
        "code": fhir_code,
        "display": free_text,
        "userSelected": fhir_boolean,
    },
)
codeable_concept = _obj({}, {"coding": _some(coding), "text": free_text})


def concept_from(system: str, codes: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """A CodeableConcept bound (required) to `codes` of `system`: one coding from it, maybe
    others from elsewhere and a text."""
    bound = st.fixed_dictionaries(
        {"system": st.just(system), "code": st.sampled_from(codes)},
        optional={"display": fhir_string},
    )
    return st.fixed_dictionaries(
        {"coding": st.tuples(bound, st.lists(coding, max_size=1)).map(lambda t: [t[0], *t[1]])},
        optional={"text": fhir_string},
    )


identifier = _obj(
    {},
    {
        "use": st.sampled_from(["usual", "official", "temp", "secondary", "old"]),
        "system": fhir_uri,
        "value": free_text,
    },
)


@st.composite
def _quantity(
    draw: st.DrawFn, *, comparator: bool, value: st.SearchStrategy[Num] = decimal
) -> dict[str, Any]:
    out: dict[str, Any] = {"value": draw(value)}
    if comparator and draw(st.integers(0, 4)) == 0:
        out["comparator"] = draw(st.sampled_from(["<", "<=", ">=", ">"]))
    kind = draw(st.sampled_from(["ucum", "ucum", "other", "unit-only", "bare"]))
    if kind == "ucum":
        code = draw(st.sampled_from(UCUM_CODES))
        out.update(system=UCUM, code=code)
        if draw(st.booleans()):
            out["unit"] = code
    elif kind == "other":
        out.update(system=draw(fhir_uri.filter(lambda u: u != UCUM)), code=draw(fhir_code))
    elif kind == "unit-only":
        out["unit"] = draw(fhir_string)
    return out


def quantity(*, comparator: bool = True) -> st.SearchStrategy[dict[str, Any]]:
    return _quantity(comparator=comparator)


simple_quantity = quantity(comparator=False)


@st.composite
def time_quantity(draw: st.DrawFn) -> dict[str, Any]:
    """Age or Duration: a UCUM time unit, a positive value (age-1 / drt-1)."""
    code = draw(st.sampled_from(TIME_UNITS))
    return {"value": draw(positive_decimal), "unit": code, "system": UCUM, "code": code}


@st.composite
def quantity_range(draw: st.DrawFn) -> dict[str, Any]:
    """A Range whose low is not above its high (rng-2), both in one unit (rng-3)."""
    a, b = draw(decimal), draw(decimal)
    low, high = sorted([a, b], key=lambda n: Decimal(n.text))
    code = draw(st.sampled_from(UCUM_CODES))
    side = draw(st.sampled_from(["both", "both", "low", "high"]))
    out: dict[str, Any] = {}
    if side in ("both", "low"):
        out["low"] = {"value": low, "system": UCUM, "code": code}
    if side in ("both", "high"):
        out["high"] = {"value": high, "system": UCUM, "code": code}
    return out


@st.composite
def period(draw: st.DrawFn) -> dict[str, Any]:
    """A Period with start <= end (per-1): both days, or only one (any precision)."""
    side = draw(st.sampled_from(["both", "start", "end"]))
    if side != "both":
        return {side: draw(fhir_datetime())}
    a, b = draw(_date_parts()), draw(_date_parts())
    start, end = sorted([a, b])
    return {
        "start": "{:04d}-{:02d}-{:02d}".format(*start),
        "end": "{:04d}-{:02d}-{:02d}".format(*end),
    }


ratio = _obj({}, {"numerator": quantity(), "denominator": quantity()})
annotation = st.fixed_dictionaries(
    {"text": free_text}, optional={"time": fhir_datetime(), "authorString": free_text}
)
human_name = _obj(
    {},
    {
        "use": st.sampled_from(["usual", "official", "temp", "nickname", "anonymous", "old"]),
        "text": free_text,
        "family": free_text,
        "given": _some(free_text),
        "prefix": _some(free_text, 1),
        "period": period(),
    },
)
_contact_point = _obj(
    {},
    {
        "system": st.sampled_from(["phone", "fax", "email", "pager", "url", "sms", "other"]),
        "value": fhir_string,
        "use": st.sampled_from(["home", "work", "temp", "old", "mobile"]),
        "rank": positive_int,
    },
)


@st.composite
def contact_point(draw: st.DrawFn) -> dict[str, Any]:
    out = draw(_contact_point)
    if "system" in out and "value" not in out:  # cpt-2: a system needs a value
        out["value"] = draw(fhir_string)
    return out


address = _obj(
    {},
    {
        "use": st.sampled_from(["home", "work", "temp", "old", "billing"]),
        "type": st.sampled_from(["postal", "physical", "both"]),
        "line": _some(free_text, 2),
        "city": free_text,
        "postalCode": fhir_string,
        "country": fhir_string,
        "period": period(),
    },
)


def reference(*targets: str) -> st.SearchStrategy[dict[str, Any]]:
    """A Reference to one of `targets` (relative, versioned or absolute), or a logical one."""
    kind = st.sampled_from(targets)
    literal = st.one_of(
        st.builds(lambda t, i: f"{t}/{i}", kind, fhir_id),
        st.builds(lambda t, i, v: f"{t}/{i}/_history/{v}", kind, fhir_id, st.integers(1, 99)),
        st.builds(lambda t, i: f"http://example.org/fhir/{t}/{i}", kind, fhir_id),
    )
    return st.one_of(
        st.fixed_dictionaries({"reference": literal}, optional={"display": fhir_string}),
        st.fixed_dictionaries({"identifier": identifier}, optional={"display": fhir_string}),
        st.fixed_dictionaries({"display": fhir_string}),
    )


# Extension: a url and a value[x], or nested extensions (ext-1: not both), a few levels deep.
_extension_value = st.one_of(
    st.fixed_dictionaries({"valueString": free_text}),
    st.fixed_dictionaries({"valueDecimal": decimal}),
    st.fixed_dictionaries({"valueInteger": integer}),
    st.fixed_dictionaries({"valueBoolean": fhir_boolean}),
    st.fixed_dictionaries({"valueCode": fhir_code}),
    st.fixed_dictionaries({"valueDate": fhir_date()}),
    st.fixed_dictionaries({"valueDateTime": fhir_datetime()}),
    st.fixed_dictionaries({"valueInstant": fhir_instant()}),
    st.fixed_dictionaries({"valueUri": fhir_uri}),
    st.fixed_dictionaries({"valueCoding": coding}),
    st.fixed_dictionaries({"valueQuantity": quantity()}),
    st.fixed_dictionaries({"valueReference": reference("Patient", "Practitioner")}),
)
extension: st.SearchStrategy[dict[str, Any]] = st.recursive(
    st.builds(lambda url, value: {"url": url, **value}, fhir_uri, _extension_value),
    lambda inner: st.builds(
        lambda url, children: {"url": url, "extension": children},
        fhir_uri,
        _some(inner, 2),
    ),
    max_leaves=4,
)
primitive_extension = st.fixed_dictionaries(
    {"extension": _some(extension, 2)}, optional={"id": fhir_id}
)


@st.composite
def narrative(draw: st.DrawFn) -> dict[str, Any]:
    text = html.escape(draw(free_text), quote=False)
    return {
        "status": draw(st.sampled_from(["generated", "extensions", "additional", "empty"])),
        "div": f'<div xmlns="http://www.w3.org/1999/xhtml"><p>{text}</p></div>',
    }


def _domain_resource(draw: st.DrawFn, resource: dict[str, Any]) -> dict[str, Any]:
    """Adds what any DomainResource may have: text, extensions, identifiers (not meta: the
    server owns versionId and lastUpdated)."""
    if draw(st.integers(0, 3)) == 0:
        resource["text"] = draw(narrative())
    if draw(st.booleans()):
        resource["extension"] = draw(_some(extension, 2))
    return resource


def _choice(draw: st.DrawFn, options: dict[str, st.SearchStrategy[Any]]) -> tuple[str, Any]:
    name = draw(st.sampled_from(sorted(options)))
    return name, draw(options[name])


# -- resources -----------------------------------------------------------------------------------
OBSERVATION_STATUS = [
    "registered",
    "preliminary",
    "final",
    "amended",
    "corrected",
    "cancelled",
    "entered-in-error",
    "unknown",
]
SUBJECT_TARGETS = ("Patient", "Group", "Device", "Location")


@st.composite
def patient(draw: st.DrawFn) -> dict[str, Any]:
    out: dict[str, Any] = {"resourceType": "Patient"}
    out.update(
        draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "identifier": _some(identifier),
                    "active": fhir_boolean,
                    "name": _some(human_name),
                    "telecom": _some(contact_point()),
                    "gender": st.sampled_from(["male", "female", "other", "unknown"]),
                    "birthDate": fhir_date(),
                    "address": _some(address, 2),
                    "maritalStatus": codeable_concept,
                    "communication": _some(
                        st.fixed_dictionaries(
                            {"language": codeable_concept}, optional={"preferred": fhir_boolean}
                        ),
                        2,
                    ),
                    "generalPractitioner": _some(
                        reference("Organization", "Practitioner", "PractitionerRole"), 2
                    ),
                    "managingOrganization": reference("Organization"),
                },
            )
        )
    )
    if draw(st.booleans()):
        name, value = _choice(
            draw, {"deceasedBoolean": fhir_boolean, "deceasedDateTime": fhir_datetime()}
        )
        out[name] = value
    if draw(st.booleans()):
        name, value = _choice(
            draw, {"multipleBirthBoolean": fhir_boolean, "multipleBirthInteger": integer}
        )
        out[name] = value
    if "birthDate" in out and draw(st.booleans()):
        out["_birthDate"] = draw(primitive_extension)
    if "name" in out and draw(st.integers(0, 3)) == 0:
        # a primitive array with extensions: null pads the value array where only the
        # extension is given (json.html#primitive)
        given = draw(_some(fhir_string, 2))
        out["name"][0]["given"] = [*given, None]
        out["name"][0]["_given"] = [None] * len(given) + [draw(primitive_extension)]
    return _domain_resource(draw, out)


@st.composite
def observation(draw: st.DrawFn) -> dict[str, Any]:
    out: dict[str, Any] = {
        "resourceType": "Observation",
        "status": draw(st.sampled_from(OBSERVATION_STATUS)),
        "code": draw(codeable_concept),
    }
    out.update(
        draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "identifier": _some(identifier, 2),
                    "category": _some(codeable_concept, 2),
                    "subject": reference(*SUBJECT_TARGETS),
                    "encounter": reference("Encounter"),
                    "issued": fhir_instant(),
                    "performer": _some(reference("Practitioner", "Organization", "Patient"), 2),
                    "interpretation": _some(codeable_concept, 2),
                    "note": _some(annotation, 2),
                    "bodySite": codeable_concept,
                    "method": codeable_concept,
                    "referenceRange": _some(
                        _obj(
                            {},
                            {
                                "low": simple_quantity,
                                "high": simple_quantity,
                                "text": fhir_string,
                            },
                        ).map(_range_ordered),
                        2,
                    ),
                    "component": _some(
                        st.fixed_dictionaries(
                            {"code": concept_from("http://example.org/component", ["a", "b"])},
                            optional={"valueQuantity": quantity()},
                        ),
                        2,
                    ),
                },
            )
        )
    )
    if draw(st.booleans()):
        name, value = _choice(
            draw,
            {
                "effectiveDateTime": fhir_datetime(),
                "effectivePeriod": period(),
                "effectiveInstant": fhir_instant(),
            },
        )
        out[name] = value
    value_kinds: dict[str, st.SearchStrategy[Any]] = {
        "valueQuantity": quantity(),
        "valueCodeableConcept": codeable_concept,
        "valueString": free_text,
        "valueBoolean": fhir_boolean,
        "valueInteger": integer,
        "valueRange": quantity_range(),
        "valueRatio": ratio,
        "valueTime": fhir_time,
        "valueDateTime": fhir_datetime(),
        "valuePeriod": period(),
    }
    shape = draw(st.sampled_from(["quantity", "quantity", "other", "absent", "none"]))
    if shape == "quantity":
        out["valueQuantity"] = draw(quantity())
    elif shape == "other":
        name, value = _choice(draw, value_kinds)
        out[name] = value
    elif shape == "absent":  # obs-6: a dataAbsentReason only without a value
        out["dataAbsentReason"] = draw(codeable_concept)
    return _domain_resource(draw, out)


def _range_ordered(reference_range: dict[str, Any]) -> dict[str, Any]:
    """rng-2 for a reference range: low and high swapped when low is above high."""
    low, high = reference_range.get("low"), reference_range.get("high")
    if low is None or high is None:
        return reference_range
    if Decimal(low["value"].text) <= Decimal(high["value"].text):
        return reference_range
    return {**reference_range, "low": high, "high": low}


CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"


@st.composite
def condition(draw: st.DrawFn) -> dict[str, Any]:
    out: dict[str, Any] = {
        "resourceType": "Condition",
        "subject": draw(reference("Patient", "Group")),
    }
    verification = draw(
        st.sampled_from(
            [
                None,
                "unconfirmed",
                "provisional",
                "differential",
                "confirmed",
                "refuted",
                "entered-in-error",
            ]
        )
    )
    abated = draw(st.booleans())
    if verification is not None:
        out["verificationStatus"] = draw(concept_from(CONDITION_VERIFICATION, [verification]))
    if verification != "entered-in-error":  # con-5; and con-3 wants it for problem-list items
        clinical = ["inactive", "remission", "resolved"]  # con-4: abated
        if not abated:
            clinical += ["active", "recurrence", "relapse"]
        out["clinicalStatus"] = draw(concept_from(CONDITION_CLINICAL, clinical))
    out.update(
        draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "identifier": _some(identifier, 2),
                    "category": _some(
                        concept_from(
                            CONDITION_CATEGORY, ["problem-list-item", "encounter-diagnosis"]
                        ),
                        2,
                    ),
                    "severity": codeable_concept,
                    "code": codeable_concept,
                    "bodySite": _some(codeable_concept, 2),
                    "encounter": reference("Encounter"),
                    "recordedDate": fhir_datetime(),
                    "recorder": reference("Practitioner", "Patient"),
                    "asserter": reference("Practitioner", "Patient", "RelatedPerson"),
                    "note": _some(annotation, 2),
                },
            )
        )
    )
    if draw(st.booleans()):
        name, value = _choice(
            draw,
            {
                "onsetDateTime": fhir_datetime(),
                "onsetAge": time_quantity(),
                "onsetPeriod": period(),
                "onsetString": free_text,
            },
        )
        out[name] = value
    if abated:
        name, value = _choice(
            draw,
            {
                "abatementDateTime": fhir_datetime(),
                "abatementAge": time_quantity(),
                "abatementString": free_text,
            },
        )
        out[name] = value
    return _domain_resource(draw, out)


@st.composite
def medication_administration(draw: st.DrawFn) -> dict[str, Any]:
    out: dict[str, Any] = {
        "resourceType": "MedicationAdministration",
        "status": draw(
            st.sampled_from(
                [
                    "in-progress",
                    "not-done",
                    "on-hold",
                    "completed",
                    "entered-in-error",
                    "stopped",
                    "unknown",
                ]
            )
        ),
        "subject": draw(reference("Patient", "Group")),
    }
    if draw(st.booleans()):
        out["medicationCodeableConcept"] = draw(codeable_concept)
    elif draw(st.booleans()):
        out["medicationReference"] = draw(reference("Medication"))
    else:  # a contained Medication, referred to by fragment (ref-1)
        out["contained"] = [
            {"resourceType": "Medication", "id": "med1", "code": draw(codeable_concept)}
        ]
        out["medicationReference"] = {"reference": "#med1"}
    name, value = _choice(draw, {"effectiveDateTime": fhir_datetime(), "effectivePeriod": period()})
    out[name] = value
    dosage: dict[str, Any] = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "text": free_text,
                "site": codeable_concept,
                "route": codeable_concept,
                "method": codeable_concept,
            },
        )
    )
    rate = draw(st.sampled_from(["dose", "rateRatio", "rateQuantity", "both"]))  # mad-1
    if rate in ("dose", "both"):
        dosage["dose"] = draw(simple_quantity)
    if rate == "rateRatio":
        dosage["rateRatio"] = draw(ratio)
    if rate in ("rateQuantity", "both"):
        dosage["rateQuantity"] = draw(simple_quantity)
    out["dosage"] = dosage
    out.update(
        draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "identifier": _some(identifier, 2),
                    "category": codeable_concept,
                    "context": reference("Encounter", "EpisodeOfCare"),
                    "performer": _some(
                        st.fixed_dictionaries(
                            {"actor": reference("Practitioner", "Patient", "Device")},
                            optional={"function": codeable_concept},
                        ),
                        2,
                    ),
                    "reasonCode": _some(codeable_concept, 2),
                    "request": reference("MedicationRequest"),
                    "note": _some(annotation, 2),
                },
            )
        )
    )
    return _domain_resource(draw, out)


@st.composite
def encounter(draw: st.DrawFn) -> dict[str, Any]:
    statuses = [
        "planned",
        "arrived",
        "triaged",
        "in-progress",
        "onleave",
        "finished",
        "cancelled",
        "entered-in-error",
        "unknown",
    ]
    out: dict[str, Any] = {
        "resourceType": "Encounter",
        "status": draw(st.sampled_from(statuses)),
        "class": draw(
            st.fixed_dictionaries(
                {
                    "system": st.just("http://terminology.hl7.org/CodeSystem/v3-ActCode"),
                    "code": st.sampled_from(["AMB", "IMP", "EMER", "HH", "VR"]),
                },
                optional={"display": fhir_string},
            )
        ),
    }
    out.update(
        draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "identifier": _some(identifier, 2),
                    "statusHistory": _some(
                        st.fixed_dictionaries(
                            {"status": st.sampled_from(statuses), "period": period()}
                        ),
                        2,
                    ),
                    "type": _some(codeable_concept, 2),
                    "serviceType": codeable_concept,
                    "priority": codeable_concept,
                    "subject": reference("Patient", "Group"),
                    "participant": _some(
                        _obj(
                            {},
                            {
                                "type": _some(codeable_concept, 1),
                                "period": period(),
                                "individual": reference("Practitioner", "RelatedPerson"),
                            },
                        ),
                        2,
                    ),
                    "period": period(),
                    "length": time_quantity(),
                    "reasonCode": _some(codeable_concept, 2),
                    "diagnosis": _some(
                        st.fixed_dictionaries(
                            {"condition": reference("Condition", "Procedure")},
                            optional={"use": codeable_concept, "rank": positive_int},
                        ),
                        2,
                    ),
                    "hospitalization": _obj(
                        {},
                        {
                            "admitSource": codeable_concept,
                            "dischargeDisposition": codeable_concept,
                        },
                    ),
                    "location": _some(
                        st.fixed_dictionaries(
                            {"location": reference("Location")},
                            optional={
                                "status": st.sampled_from(
                                    ["planned", "active", "reserved", "completed"]
                                )
                            },
                        ),
                        2,
                    ),
                    "serviceProvider": reference("Organization"),
                },
            )
        )
    )
    return _domain_resource(draw, out)


RESOURCES: dict[str, Callable[[], st.SearchStrategy[dict[str, Any]]]] = {
    "Patient": patient,
    "Observation": observation,
    "Condition": condition,
    "MedicationAdministration": medication_administration,
    "Encounter": encounter,
}
any_resource: st.SearchStrategy[dict[str, Any]] = st.one_of(*(f() for f in RESOURCES.values()))


# -- walking and changing a document -------------------------------------------------------------
Path = tuple[str | int, ...]


def paths(node: Any, here: Path = ()) -> Iterator[tuple[Path, Any]]:
    """Every (path, value) below the root, depth first."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*here, key), value
            yield from paths(value, (*here, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield (*here, index), value
            yield from paths(value, (*here, index))


def replace(document: Any, path: Path, value: Any) -> Any:
    """A copy of `document` with the value at `path` replaced (the root when path is ())."""
    if not path:
        return value
    out = copy.deepcopy(document)
    node = out
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return out


def at(document: Any, path: Path) -> Any:
    for step in path:
        document = document[step]
    return document


# Elements of the generated resources by primitive type, for mutations that need the type.
DATE_KEYS = frozenset(
    {
        "birthDate",
        "deceasedDateTime",
        "effectiveDateTime",
        "effectiveInstant",
        "issued",
        "valueDate",
        "valueDateTime",
        "valueInstant",
        "valueTime",
        "start",
        "end",
        "time",
        "recordedDate",
        "onsetDateTime",
        "abatementDateTime",
    }
)
INTEGER_KEYS = frozenset({"valueInteger", "multipleBirthInteger", "rank"})


def wrong_types(path: Path, value: Any) -> list[Any]:
    """Values of another JSON type than the element at `path` holds (some of them pydantic's
    lax mode would coerce: "true", 1, "12", 2.0 for an integer, a number for a date)."""
    key = path[-1] if path else None
    if isinstance(value, bool):
        return [Num("7"), "maybe", [value], {"value": value}, Num("1"), str(value).lower()]
    if isinstance(value, Num):
        out: list[Any] = ["seven", [value], {"value": value}, value.text, True]
        if key in INTEGER_KEYS:
            return [*out, Num(f"{value.text}.0")]
        return out
    if isinstance(value, str):
        out = [True, [value], {"value": value}]
        return [*out, Num("1600000000") if key in DATE_KEYS else Num("1.5")]
    if isinstance(value, dict):
        return ["x", Num("1"), [value]]
    if isinstance(value, list):
        return ["x", Num("1"), value[0]]
    raise AssertionError(f"no wrong types for {value!r}")


# -- invalid mutations ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Mutation:
    """An invalid body made from a valid resource, and what was done to it."""

    kind: str
    detail: str
    body: bytes
    resource_type: str

    def __repr__(self) -> str:
        shown = self.body[:400].decode("utf-8", "replace")
        more = f"... ({len(self.body)} bytes)" if len(self.body) > 400 else ""
        return f"Mutation({self.kind}: {self.detail}; body={shown!r}{more})"


BAD_DATES = [
    "2023-02-30",
    "2021-02-29",
    "2023-13-01",
    "2023-00-10",
    "2023-01-32",
    "2023-01-00",
    "0000",
    "0000-01-01",
    "10000-01-01",
    "2023-1-1",
    "20230101",
    "2023-01-01T24:00:00Z",
    "2023-01-01T23:60:00Z",
    "2023-01-01T23:59:61Z",
    "2023-01-01T10:00:00+15:00",
    "2023-01-01T10:00:00+14:01",
    "2023-01-01T10:00:00",
    "2023-01-01T10:00Z",
    "2023-01-01T10:00:00.Z",
    "2023-01-01 10:00:00Z",
    " 2023-01-01",
    "2023-01-01\n",
    "yesterday",
    "",
]
# Literal references that are no reference: empty, control characters, no id, no type, a space,
# an id FHIR forbids (id: [A-Za-z0-9-.]{1,64}), a fragment naming no contained resource (ref-1).
BROKEN_REFERENCES = [
    "",
    "\u0000",
    "Patient/1\u0007",
    "Patient/",
    "//",
    "Patient/a b",
    " ",
    "Patient//1",
    "Patient/a_b",
    f"Patient/{'a' * 65}",
    "#nope",
]
NOT_JSON_NUMBERS = ["NaN", "Infinity", "-Infinity", "+1", "01", "1.", ".5", "1e", "0x10", "1_000"]
BEYOND_DOUBLE = ["1e400", "-1e400", "1.8e308", "-1.7976931348623159e308", "1E+99999", "1e309"]
LONE_SURROGATES = ["\\ud800", "\\udfff", "a\\ud83db", "\\ude00\\ud83d", "\\ud800\\u0041"]
EMPTY_VALUES: list[Any] = ["", [], {}, None]
MAX_STRING = 1024 * 1024  # characters (string.value maxLength in R4B)
DATE_ELEMENT: dict[str, Path] = {
    "Patient": ("birthDate",),
    "Observation": ("issued",),
    "Condition": ("recordedDate",),
    "MedicationAdministration": ("effectiveDateTime",),
    "Encounter": ("period",),
}
MUTATIONS = [
    "wrong-type",
    "bad-date",
    "broken-reference",
    "deep-nesting",
    "huge-string",
    "lone-surrogate",
    "xml-invalid-character",
    "not-a-number",
    "beyond-double",
    "empty",
    "null-in-array",
    "duplicate-key",
    "unknown-element",
    "bad-code",
]


def _body(document: Any) -> bytes:
    return dumps(document).encode()


def _leaves(document: dict[str, Any], kind: type | tuple[type, ...]) -> list[Path]:
    return [p for p, v in paths(document) if isinstance(v, kind) and p != ("resourceType",)]


def _string_leaves(document: dict[str, Any]) -> list[Path]:
    """Paths of strings that are not the type, nor the fragment reference to a contained
    resource (changing it breaks the reference, which is not the mutation meant)."""
    return [
        p
        for p in _leaves(document, str)
        if p[-1] not in ("reference", "id") and p != ("contained", 0, "resourceType")
    ]


@st.composite
def mutation(draw: st.DrawFn, how: str) -> Mutation:
    """An invalid body: a valid resource (of any of the types) broken the way `how` (one of
    MUTATIONS) says."""
    resource = draw(any_resource)
    kind = resource["resourceType"]
    every = [(p, v) for p, v in paths(resource) if v is not None]

    def made(detail: str, document: Any) -> Mutation:
        return Mutation(how, detail, _body(document), kind)

    if how == "wrong-type":
        path, value = draw(st.sampled_from(every))
        wrong = draw(st.sampled_from(wrong_types(path, value)))
        return made(f"{path} = {wrong!r}", replace(resource, path, wrong))
    if how == "bad-date":
        dates = [p for p in _leaves(resource, str) if p[-1] in DATE_KEYS]
        bad = draw(st.sampled_from(BAD_DATES))
        if dates:
            path = draw(st.sampled_from(dates))
            return made(f"{path} = {bad!r}", replace(resource, path, bad))
        path = DATE_ELEMENT[kind]
        element: Any = {"start": bad} if kind == "Encounter" else bad
        return made(f"{path} = {element!r}", {**resource, path[0]: element})
    if how == "broken-reference":
        bad = draw(st.sampled_from(BROKEN_REFERENCES))
        refs = [p for p in _leaves(resource, str) if p[-1] == "reference"]
        if refs:
            path = draw(st.sampled_from(refs))
            return made(f"{path} = {bad!r}", replace(resource, path, bad))
        element = "managingOrganization" if kind == "Patient" else "subject"
        if kind == "Encounter":
            element = "serviceProvider"
        return made(f"{element}.reference = {bad!r}", {**resource, element: {"reference": bad}})
    if how == "deep-nesting":
        depth = draw(st.integers(40, 1500))
        opening = '{"url":"http://example.org/deep","extension":['
        bottom = '{"url":"http://example.org/deep","valueString":"bottom"}'
        nested = Raw(f"[{opening * depth}{bottom}{']}' * depth}]")
        return made(f"extension in extension, {depth} levels", {**resource, "extension": nested})
    if how == "huge-string":
        unit = draw(st.sampled_from(["x", "é", "😀", "\u0301"]))
        huge = unit * (MAX_STRING + draw(st.integers(1, 4096)))
        places = [p for p in _leaves(resource, str) if p[-1] not in ("reference", "resourceType")]
        in_place = draw(st.booleans())
        if places and in_place:
            path = draw(st.sampled_from(places))
            return made(f"{path} = {unit!r} * {len(huge)}", replace(resource, path, huge))
        extension = {"url": "http://example.org/huge", "valueString": huge}
        return made(
            f"extension.valueString = {unit!r} * {len(huge)}",
            {**resource, "extension": [extension]},
        )
    if how in ("xml-invalid-character", "lone-surrogate"):
        strings = _string_leaves(resource)
        if not strings:
            extension = {"url": "http://example.org/s", "valueString": "s"}
            resource = {**resource, "extension": [extension]}
            strings = _string_leaves(resource)
        path = draw(st.sampled_from(strings))
        old = at(resource, path)
        if how == "xml-invalid-character":
            char = draw(st.sampled_from(XML_INVALID))
            return made(
                f"{path} = {old!r} + U+{ord(char):04X}",
                replace(resource, path, old + char),
            )
        escape = draw(st.sampled_from(LONE_SURROGATES))
        raw = Raw(json.dumps(old)[:-1] + escape + '"')
        return made(f"{path} = {raw.text}", replace(resource, path, raw))
    if how in ("not-a-number", "beyond-double"):
        numbers = _leaves(resource, Num)
        table = NOT_JSON_NUMBERS if how == "not-a-number" else BEYOND_DOUBLE
        bad_number = Raw(draw(st.sampled_from(table)))
        if numbers:
            path = draw(st.sampled_from(numbers))
            return made(f"{path} = {bad_number.text}", replace(resource, path, bad_number))
        number_extension = {"url": "http://example.org/n", "valueDecimal": bad_number}
        return made(
            f"extension.valueDecimal = {bad_number.text}",
            {**resource, "extension": [number_extension]},
        )
    if how == "empty":
        path, _ = draw(st.sampled_from([(p, v) for p, v in every if p != ("resourceType",)]))
        empty = draw(st.sampled_from(EMPTY_VALUES))
        return made(f"{path} = {empty!r}", replace(resource, path, empty))
    if how == "null-in-array":  # null only pads a primitive array that has a `_` partner
        arrays = [p for p, v in every if isinstance(v, list) and not str(p[-1]).startswith("_")]
        if not arrays:
            return made("identifier = [null]", {**resource, "identifier": [None]})
        path = draw(st.sampled_from(arrays))
        items = list(at(resource, path))
        if f"_{path[-1]}" in at(resource, path[:-1]):
            items = [None] * len(items)  # `given` beside `_given`: no value nor extension
        else:
            items.insert(draw(st.integers(0, len(items))), None)
        return made(f"{path} = {items!r}", replace(resource, path, items))
    if how == "duplicate-key":
        objects = [(), *(p for p, v in every if isinstance(v, dict) and v)]
        path = draw(st.sampled_from(objects))
        target = at(resource, path)
        key = draw(st.sampled_from(sorted(target)))
        same = draw(st.booleans())
        second = (
            target[key] if same else draw(st.sampled_from(wrong_types((*path, key), target[key])))
        )
        pairs = Pairs((*target.items(), (key, second)))
        return made(
            f"{(*path, key)} twice ({'same' if same else 'another'} value)",
            replace(resource, path, pairs),
        )
    if how == "unknown-element":
        objects = [(), *(p for p, v in every if isinstance(v, dict))]
        where = draw(st.sampled_from(objects))
        name = draw(st.sampled_from(["colour", "valueNope", "Status", "resourcetype", "value_x"]))
        target = at(resource, where)
        if name in target:
            name += "X"
        return made(f"{(*where, name)} added", replace(resource, where, {**target, name: "x"}))
    # bad-code: a code outside a required value set
    if kind == "Condition":
        code = draw(st.sampled_from(["done", "Active", "active ", "ACTIVE"]))
        status = {"coding": [{"system": CONDITION_CLINICAL, "code": code}]}
        broken = {k: v for k, v in resource.items() if k != "verificationStatus"}
        return made(f"clinicalStatus = {status}", {**broken, "clinicalStatus": status})
    element = "gender" if kind == "Patient" else "status"
    bad_code = draw(st.sampled_from(["done", "FINAL", "final ", "unknown-code", "m", "Male"]))
    return made(f"{element} = {bad_code!r}", {**resource, element: bad_code})


# -- search queries ------------------------------------------------------------------------------
SEARCH_TYPES = ["Observation", "Patient", "Condition", "MedicationAdministration", "Encounter"]
PREFIXES = ["eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"]
MODIFIERS = [
    "missing",
    "exact",
    "contains",
    "not",
    "above",
    "below",
    "text",
    "of-type",
    "identifier",
    "iterate",
    "in",
    "not-in",
    "Patient",
    "Practitioner",
    "nope",
    "",
    "missing:exact",
    "EXACT",
]
SEARCH_TEXT_CHARS = st.characters(exclude_categories=["Cs"])
PRINTABLE = st.characters(exclude_categories=("Cs", "Cc"))
# Mostly values a client could mean (so searches reach the SQL), some unicode edges, and now
# and then anything at all (control characters are a 400 before any SQL).
search_text = st.one_of(
    st.sampled_from(
        ["a", "Jane", "doe", "Ölmez", "ÉLODIE", "hanna", "pain", "72514-3", "p1", "x%", "a_b"]
    ),
    st.sampled_from(["\\", "a\\,b", "a\\|b", "a\\$b", "a\\", "'", "%25", "*", "?"]),
    st.text(PRINTABLE, min_size=1, max_size=12),
    st.sampled_from(UNICODE_EDGES),
    st.text(SEARCH_TEXT_CHARS, max_size=12),
)
date_like = st.one_of(
    fhir_datetime(),
    fhir_datetime(),
    fhir_date(),
    st.sampled_from(
        [
            *BAD_DATES,
            "9999-12-31T23:59:59-14:00",
            "0001-01-01T00:00:00+14:00",
            "9999",
            "0001",
            "2016-08-22T10:00:00.123456789+02:00",
        ]
    ),
    st.from_regex(
        r"\d{4}(-\d{2}(-\d{2}(T\d{2}(:\d{2}(:\d{2}(\.\d{1,9})?)?)?(Z|[+-]\d{2}:\d{2})?)?)?)?",
        fullmatch=True,
    ),
)
number_like = st.one_of(
    decimal_text,
    decimal_text,
    st.sampled_from([*NOT_JSON_NUMBERS, *BEYOND_DOUBLE, "0E1000001", "1e-999999999", "-0", ""]),
)
system_like = (
    st.sampled_from(["", "http://loinc.org", UCUM, "http://snomed.info/sct", "urn:oid:1.2"])
    | fhir_uri
)
prefix = st.sampled_from(["", "", "", *PREFIXES, "xx", "EQ"])
# The modifiers each parameter type takes (some of them a 400 not-supported on this server)
TYPE_MODIFIERS = {
    "string": ["exact", "contains", "missing"],
    "token": ["not", "text", "of-type", "missing", "above", "below", "in", "not-in"],
    "reference": ["missing", "identifier", "Patient", "Encounter", "Practitioner"],
    "date": ["missing"],
    "number": ["missing"],
    "quantity": ["missing"],
    "uri": ["above", "below", "missing"],
    "composite": ["missing"],
    "special": ["above", "exact", "missing"],  # near takes none: each is a 400 not-supported
}


def modifier_for(kind: str) -> st.SearchStrategy[str]:
    """None (half the time), one the type takes, or any other (a 400)."""
    others = list(MODIFIERS)
    return st.one_of(
        st.just(""),
        st.just(""),
        st.sampled_from(TYPE_MODIFIERS.get(kind, ["missing"])).map(lambda m: f":{m}"),
        st.sampled_from(others).map(lambda m: f":{m}"),
    )


missing_value = st.sampled_from(["true", "false", "true", "false", "yes", ""])


def _token_value() -> st.SearchStrategy[str]:
    return st.one_of(
        search_text,
        st.builds(lambda s, c: f"{s}|{c}", system_like, search_text),
        st.builds(lambda c: f"|{c}", search_text),
        st.builds(lambda s: f"{s}|", system_like),
        st.builds(lambda s, c, v: f"{s}|{c}|{v}", system_like, search_text, search_text),
        st.sampled_from(["true", "false", "male", "final", "72514-3", "http://loinc.org|72514-3"]),
    )


def value_for(kind: str) -> st.SearchStrategy[str]:
    """A search value (sometimes malformed) for a parameter of type `kind`."""
    if kind == "token":
        return _token_value()
    if kind == "date":
        return st.builds(str.__add__, prefix, date_like)
    if kind == "number":
        return st.builds(str.__add__, prefix, number_like)
    if kind == "quantity":
        return st.one_of(
            st.builds(str.__add__, prefix, number_like),
            st.builds(
                lambda p, n, s, c: f"{p}{n}|{s}|{c}",
                prefix,
                number_like,
                system_like,
                st.sampled_from([*UCUM_CODES, "", "nope", "mg/"]) | search_text,
            ),
        )
    if kind == "reference":
        return st.one_of(
            fhir_id,
            st.builds(
                lambda t, i: f"{t}/{i}",
                st.sampled_from(["Patient", "Encounter", "Nope", ""]),
                fhir_id,
            ),
            st.builds(lambda i: f"http://example.org/fhir/Patient/{i}", fhir_id),
            st.sampled_from(
                ["p1", "Patient/p1", "Patient/", "//", "Patient/a b", "Patient/p1/_history/1"]
            ),
            search_text,
        )
    if kind == "uri":
        return st.one_of(fhir_uri, search_text)
    return search_text  # string, special, and unknowns


def _joined(values: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """One value, or several OR'ed with commas."""
    return st.lists(values, min_size=1, max_size=3).map(",".join)


def _composite_value(definition: SearchParamDef) -> st.SearchStrategy[str]:
    parts = []
    for url, _ in definition.components:
        component = by_url(url)
        parts.append(value_for(component.type if component is not None else "string"))
    return st.tuples(*parts).map("$".join) if parts else search_text


def parameter_value(definition: SearchParamDef) -> st.SearchStrategy[str]:
    if definition.type == "composite":
        return _composite_value(definition)
    if definition.code == "_lastUpdated":
        return value_for("date")
    return value_for(definition.type)


@st.composite
def criterion(draw: st.DrawFn, resource_type: str, depth: int = 0) -> tuple[str, str]:
    """One `name=value` of `resource_type`: a parameter with a random modifier, a chain
    (several levels), or a reverse chain (_has)."""
    params = params_for(resource_type)
    codes = sorted(params)
    references = [c for c in codes if params[c].type == "reference"]
    shape = draw(st.sampled_from(["plain", "plain", "modifier", "chain", "has", "missing"]))
    if depth >= 3 or (shape == "chain" and not references):
        shape = "plain"
    if shape == "chain":
        code = draw(st.sampled_from(references))
        targets = params[code].targets or ("Patient",)
        target = draw(st.sampled_from([t for t in targets if t in SEARCH_TYPES] or list(targets)))
        typed = draw(st.booleans())
        name, value = draw(criterion(target, depth + 1))
        return f"{code}{':' + target if typed else ''}.{name}", value
    if shape == "has":
        source = draw(st.sampled_from(SEARCH_TYPES))
        source_params = params_for(source)
        pointing = sorted(
            c
            for c, d in source_params.items()
            if d.type == "reference" and (resource_type in d.targets or not d.targets)
        ) or ["subject"]
        link = draw(st.sampled_from(pointing))
        name, value = draw(criterion(source, depth + 1))
        return f"_has:{source}:{link}:{name}", value
    code = draw(st.sampled_from(codes))
    definition = params[code]
    if shape == "missing":
        return f"{code}:missing", draw(missing_value)
    if shape == "modifier":
        modifier = draw(modifier_for(definition.type))
        if modifier == ":missing":
            return f"{code}{modifier}", draw(missing_value)
        return f"{code}{modifier}", draw(_joined(parameter_value(definition)))
    return code, draw(_joined(parameter_value(definition)))


def _result_parameter(resource_type: str) -> st.SearchStrategy[tuple[str, str]]:
    codes = sorted(params_for(resource_type))
    references = [c for c in codes if params_for(resource_type)[c].type == "reference"] or ["x"]
    include_value = st.one_of(
        st.builds(lambda c: f"{resource_type}:{c}", st.sampled_from(references)),
        st.builds(
            lambda c, t: f"{resource_type}:{c}:{t}",
            st.sampled_from(references),
            st.sampled_from(["Patient", "Encounter", "Nope"]),
        ),
        st.sampled_from(["*", f"{resource_type}:*", "Observation:subject", "Nope:x", ":", ""]),
    )
    revinclude_value = st.sampled_from(
        [
            "Observation:subject",
            "Observation:patient",
            "Condition:subject",
            "MedicationAdministration:patient",
            "Encounter:subject",
            "Observation:encounter",
            "Provenance:target",
            "*",
            "Nope:x",
        ]
    )
    sort_key = st.builds(
        str.__add__,
        st.sampled_from(["", "-"]),
        st.sampled_from([*codes, "_id", "_lastUpdated", "nope", ""]),
    )
    elements = st.lists(
        st.sampled_from(
            ["id", "meta", "status", "code", "subject", "name", "valueQuantity", "nope", "", "*"]
        ),
        min_size=1,
        max_size=4,
    ).map(",".join)
    return st.one_of(
        st.tuples(
            st.sampled_from(["_include", "_include:iterate", "_include:nope"]), include_value
        ),
        st.tuples(st.sampled_from(["_revinclude", "_revinclude:iterate"]), revinclude_value),
        st.tuples(st.just("_sort"), st.lists(sort_key, min_size=1, max_size=3).map(",".join)),
        st.tuples(
            st.sampled_from(["_count", "_offset"]),
            st.one_of(
                st.integers(0, 2000).map(str),
                st.integers(0, 5).map(str),
                st.sampled_from(["", "-1", "x", "1.5", "\u00b2", "9" * 30, "+5"]),
            ),
        ),
        st.tuples(
            st.just("_summary"),
            st.sampled_from(["true", "false", "text", "data", "count"] * 2 + ["nope", ""]),
        ),
        st.tuples(
            st.just("_total"),
            st.sampled_from(["none", "estimate", "accurate"] * 2 + ["nope"]),
        ),
        st.tuples(st.just("_elements"), elements),
        st.tuples(
            st.sampled_from(
                [
                    "_id",
                    "_lastUpdated",
                    "_tag",
                    "_profile",
                    "_security",
                    "_source",
                    "_text",
                    "_content",
                    "_list",
                    "_query",
                    "_filter",
                    "_contained",
                    "_containedType",
                    "_format",
                    "_pretty",
                ]
            ),
            st.one_of(search_text, st.builds(str.__add__, prefix, date_like)),
        ),
    )


@dataclass(frozen=True)
class Query:
    """A search of `resource_type` (None: of the whole server): (name, value) pairs, or a raw
    query string, by GET or by POST _search, with `Prefer: handling=strict` or not."""

    resource_type: str | None
    params: tuple[tuple[str, str], ...]
    raw: str | None = None  # a hand-encoded query string instead of params
    post: bool = False
    strict: bool = False


def _percent(text: str, draw: st.DrawFn) -> str:
    """Percent-encode `text` the way a sloppy client might: each byte encoded or not, in upper or
    lower case, with `+` for space now and then; reserved characters always encoded."""
    out = []
    for char in text:
        if char in "&=#%+" or not char.isascii() or not char.isprintable() or char == " ":
            if char == " " and draw(st.booleans()):
                out.append("+")
                continue
            encoded = "".join(f"%{b:02X}" for b in char.encode())
            out.append(encoded.lower() if draw(st.booleans()) else encoded)
        elif draw(st.integers(0, 5)) == 0:
            out.append(f"%{ord(char):02X}")
        else:
            out.append(char)
    return "".join(out)


@st.composite
def search_query(draw: st.DrawFn) -> Query:
    resource_type = draw(st.sampled_from(SEARCH_TYPES))
    criteria = draw(st.lists(criterion(resource_type), max_size=3))
    results = draw(st.lists(_result_parameter(resource_type), max_size=3))
    junk = draw(
        st.lists(
            st.tuples(
                st.sampled_from(
                    ["nope", "", ":", ".", "_has", "_has:", "a..b", "subject.", "subject:Patient."]
                ),
                search_text,
            ),
            max_size=1,
        )
    )
    params = tuple(criteria + results + junk)
    raw = None
    if draw(st.integers(0, 3)) == 0:
        pieces = [f"{_percent(n, draw)}={_percent(v, draw)}" for n, v in params]
        pieces += draw(
            st.lists(
                st.sampled_from(
                    ["%ZZ=1", "name=%ff", "name=%C3", "=", "&", "a=%", "%00=x", "name=%2C%5C%2C"]
                ),
                max_size=2,
            )
        )
        raw = "&".join(pieces)
    return Query(
        resource_type,
        params,
        raw,
        post=draw(st.integers(0, 4)) == 0,
        strict=draw(st.integers(0, 5)) == 0,
    )


def parameters_of_type(kind: str) -> list[tuple[str, str]]:
    """(resource type, code) of every parameter of type `kind` on the fuzzed types, or on any
    type when they have none (number: RiskAssessment.probability..., special: Location.near)."""
    found = [
        (t, c) for t in SEARCH_TYPES for c, d in sorted(params_for(t).items()) if d.type == kind
    ]
    if found:
        return found
    return [
        (t, c) for t in RESOURCE_TYPES for c, d in sorted(params_for(t).items()) if d.type == kind
    ]


@st.composite
def typed_query(draw: st.DrawFn, kind: str) -> Query:
    """A search on one parameter of type `kind` (a random modifier, one or several values),
    and maybe a result parameter."""
    resource_type, code = draw(st.sampled_from(parameters_of_type(kind)))
    definition = params_for(resource_type)[code]
    modifier = draw(modifier_for(kind))
    if modifier == ":missing":
        value = draw(missing_value)
    else:
        value = draw(_joined(parameter_value(definition)))
    extra = draw(st.lists(_result_parameter(resource_type), max_size=1))
    return Query(
        resource_type,
        ((f"{code}{modifier}", value), *extra),
        post=draw(st.integers(0, 4)) == 0,
    )


@st.composite
def system_query(draw: st.DrawFn) -> Query:
    """A search of every type (GET /fhir?_type=...), with parameters common to all."""
    types = draw(
        st.lists(st.sampled_from([*SEARCH_TYPES, "Nope", "", "Resource"]), max_size=3, unique=True)
    )
    params: list[tuple[str, str]] = [("_type", ",".join(types))] if types else []
    params += draw(st.lists(criterion("Resource"), max_size=2))
    params += draw(st.lists(_result_parameter("Resource"), max_size=2))
    return Query(None, tuple(params), post=False, strict=draw(st.booleans()))
