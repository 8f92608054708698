"""The fast expression path agrees with fhirpathpy on every shared fixture resource.

Every resource of ../shared/fixtures (each entry of each Synthea bundle, each HL7 example file)
is evaluated with every search parameter of its type that has an expression for that type
(composites included): `compile_expression(expr)` (the fast path where the expression's shape
allows it) against `fhirpath_extractor(expr)` (fhirpathpy, the reference). All resources are
compared, no sampling: the whole set (8,983 resources of 18 types, 420 (type, parameter) pairs,
~290,000 fhirpathpy evaluations) takes about 20 s. Pairs in FHIRPATHPY_RAISES are compared with
an equivalent expression fhirpathpy takes; FHIRPATHPY_ONLY lists the pairs that run on
fhirpathpy on both sides.

Also: `index_rows` runs on every fixture resource, and a pain score Observation gives the rows
the search tables expect.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from app.search.extract import compile_expression, fhirpath_extractor
from app.search.index_values import fold, tokens
from app.search.indexer import index_rows
from app.search.registry import expression_for, params_for

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"
UCUM = "http://unitsofmeasure.org"
LOINC = "http://loinc.org"

# (type, code) pairs whose spec expression fhirpathpy itself rejects on some fixture resources.
# `(Observation.component.value as Quantity)`: FHIRPath's `as` operator wants a single item on its
# left, and an Observation with several components (blood pressure) gives several, so fhirpathpy
# raises "Expected singleton on left side of 'as'". The intent (and what the fast path does, and
# what R5 wrote as `.ofType(Quantity)`) is to filter each item by type. For these pairs the
# direct comparison is skipped; the fast path is instead compared with fhirpathpy running the
# same expression with every `(path as Type)` rewritten to `path.ofType(Type)`.
FHIRPATHPY_RAISES: dict[tuple[str, str], str] = {
    ("Observation", "combo-value-concept"): "`as` on several components",
    ("Observation", "combo-value-quantity"): "`as` on several components",
    ("Observation", "component-value-concept"): "`as` on several components",
    ("Observation", "component-value-quantity"): "`as` on several components",
}

# (type, code) pairs where the fast path is kept although fhirpathpy answers differently, with
# the reason (fhirpathpy being wrong). None is needed on the current fixtures.
ALLOWED_MISMATCHES: dict[tuple[str, str], str] = {}

# Pairs whose expression has a branch the fast path does not compile, so compile_expression
# itself runs on fhirpathpy and the comparison cannot fail: listed so that it is visible which
# pairs the comparison does not really exercise.
FHIRPATHPY_ONLY = {
    ("Bundle", "composition"),  # Bundle.entry[0].resource
    ("Bundle", "message"),  # Bundle.entry[0].resource
    ("Patient", "deceased"),  # Patient.deceased.exists() and Patient.deceased != false
}

_AS_OPERATOR = re.compile(r"\(\s*([A-Za-z][\w.]*)\s+as\s+([A-Za-z]\w*)\s*\)")


# -- fixtures ------------------------------------------------------------------------------------
@cache
def fixture_resources() -> tuple[dict[str, Any], ...]:
    """Every fixture resource, in a fixed order (file name, then entry order); empty when the
    fixtures are absent."""
    out: list[dict[str, Any]] = []
    for path in sorted((FIXTURES / "synthea").glob("*.json")):
        bundle = json.loads(path.read_bytes())
        out.extend(e["resource"] for e in bundle.get("entry", ()) if "resource" in e)
    for path in sorted((FIXTURES / "hl7-examples").glob("*.json")):
        out.append(json.loads(path.read_bytes()))
    return tuple(out)


@cache
def resources_by_type() -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for resource in fixture_resources():
        found[resource["resourceType"]].append(resource)
    return dict(found)


def _pairs() -> list[tuple[str, str, str]]:
    """(type, code, expression) for every parameter of every fixture resource type."""
    out = []
    for resource_type in sorted(resources_by_type()):
        for code, definition in sorted(params_for(resource_type).items()):
            expression = expression_for(definition, resource_type)
            if expression is not None:
                out.append((resource_type, code, expression))
    return out


def _needs_fixtures() -> None:
    if not FIXTURES.is_dir() or not fixture_resources():
        pytest.skip(f"the shared fixtures are not beside this checkout ({FIXTURES})")


PAIRS = _pairs() if FIXTURES.is_dir() else []
PAIR_PARAMS = [pytest.param(p, id=f"{p[0]}-{p[1]}") for p in PAIRS] or [
    pytest.param(None, id="fixtures-absent")
]


# -- normalising -------------------------------------------------------------------------------
def plain(value: Any) -> Any:
    """A JSON value both sides can be compared on: fhirpathpy reads JSON decimals as Decimal
    where the stored JSON (and so the fast path) has int or float, so every number becomes a
    float; anything that is not JSON (FP_DateTime, FP_Quantity, nodes) becomes its text, tagged
    with its class so it cannot pass for a string."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int | float | Decimal):
        return float(value)
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return {"<python>": type(value).__name__, "text": str(value)}


def canonical_set(values: list[Any]) -> list[str]:
    """The values as a sorted list of distinct canonical JSON strings.

    Compared as sets: indexing puts every extracted value's rows into sets, so neither order nor
    repetition matters to search; and the two sides legitimately differ in both, because
    FHIRPath's `|` is a union that drops duplicates while the fast path concatenates branches
    (e.g. `Observation | Observation.component` roots, or a reference reached by two branches).
    """
    return sorted({json.dumps(plain(v), sort_keys=True, ensure_ascii=False) for v in values})


# -- fast path against fhirpathpy ----------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("pair", PAIR_PARAMS)
def test_fast_path_agrees_with_fhirpathpy(pair: tuple[str, str, str] | None) -> None:
    _needs_fixtures()
    assert pair is not None
    resource_type, code, expression = pair
    if (resource_type, code) in ALLOWED_MISMATCHES:
        pytest.skip(ALLOWED_MISMATCHES[resource_type, code])
    reference_expression = expression
    if (resource_type, code) in FHIRPATHPY_RAISES:
        reference_expression = _AS_OPERATOR.sub(r"\1.ofType(\2)", expression)
        assert reference_expression != expression
    label = f"{resource_type} {code!r} `{reference_expression}`"
    try:
        reference = fhirpath_extractor(reference_expression)
    except Exception as exc:  # no reference to compare with: the pair needs looking at
        pytest.fail(f"{label}: fhirpathpy does not compile it: {exc!r}")
    fast = compile_expression(expression)
    resources = resources_by_type()[resource_type]
    differences: list[str] = []
    for resource in resources:
        try:
            expected = canonical_set(reference(resource))
        except Exception as exc:
            pytest.fail(
                f"{label}: fhirpathpy raises {exc!r} on {resource_type}/{resource.get('id')}; "
                "if fhirpathpy is wrong, record the pair in FHIRPATHPY_RAISES"
            )
        got = canonical_set(fast(resource))
        if got != expected:
            differences.append(
                f"  {resource_type}/{resource.get('id')}:\n"
                f"    fast path:  {got}\n    fhirpathpy: {expected}"
            )
    assert not differences, (
        f"{label}: the fast path differs from fhirpathpy on {len(differences)} of "
        f"{len(resources)} resources:\n" + "\n".join(differences[:5])
    )


@pytest.mark.slow
def test_fhirpathpy_raises_where_recorded() -> None:
    """FHIRPATHPY_RAISES stays true: each recorded pair's spec expression still makes fhirpathpy
    raise on some fixture resource (if fhirpathpy learns to take it, compare it directly)."""
    _needs_fixtures()
    for resource_type, code in FHIRPATHPY_RAISES:
        expression = expression_for(params_for(resource_type)[code], resource_type)
        assert expression is not None
        reference = fhirpath_extractor(expression)
        raised = 0
        messages: set[str] = set()
        for resource in resources_by_type().get(resource_type, []):
            try:
                reference(resource)
            except ValueError as exc:
                messages.add(str(exc).split(",")[0])
                raised += 1
        assert raised, f"{resource_type} {code!r}: fhirpathpy no longer raises; drop the entry"
        assert messages == {"Expected singleton on left side of 'as'"}, (resource_type, code)


def test_fhirpathpy_only_pairs_are_the_listed_ones() -> None:
    """The pairs the fast path leaves to fhirpathpy are exactly FHIRPATHPY_ONLY, so the
    comparison above exercises the fast path for every other pair."""
    _needs_fixtures()
    reference_code = fhirpath_extractor("Patient.id").__code__
    on_fhirpathpy = {
        (resource_type, code)
        for resource_type, code, expression in PAIRS
        if compile_expression(expression).__code__ is reference_code
    }
    assert on_fhirpathpy == FHIRPATHPY_ONLY


def test_normaliser() -> None:
    assert canonical_set([{"value": Decimal("6.0")}, "a"]) == canonical_set(["a", {"value": 6}])
    assert canonical_set(["a", "a", "b"]) == canonical_set(["b", "a"])
    assert canonical_set([True]) != canonical_set([1])
    assert canonical_set(["2016"]) != canonical_set([2016])


# -- index rows ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_index_rows_on_every_fixture_resource() -> None:
    _needs_fixtures()
    total = 0
    for resource in fixture_resources():
        try:
            total += index_rows(resource).count()
        except Exception as exc:  # name the resource
            pytest.fail(
                f"index_rows fails on {resource['resourceType']}/{resource.get('id')}: {exc!r}"
            )
    assert total > len(fixture_resources())


def test_index_rows_of_a_date_at_the_end_of_time() -> None:
    """9999-12-31 has no UTC range a datetime can end (the next day is year 10000): no date row,
    and no error (it was an OverflowError, so a 500 on create)."""
    rows = index_rows({"resourceType": "Patient", "birthDate": "9999-12-31"})
    assert rows.date == set()
    rows = index_rows({"resourceType": "Patient", "birthDate": "9999-12-30"})
    assert {row[0] for row in rows.date} == {"birthdate"}


PAIN_DISPLAY = "Pain severity - 0-10 verbal numeric rating [Score] - Reported"
PAIN = {
    "resourceType": "Observation",
    "id": "pain1",
    "status": "final",
    "code": {"coding": [{"system": LOINC, "code": "72514-3", "display": PAIN_DISPLAY}]},
    "subject": {"reference": "Patient/p1"},
    "effectiveDateTime": "2016-08-22",
    "valueQuantity": {"value": 6, "unit": "{score}", "system": UCUM, "code": "{score}"},
}
# 2016-08-22T00:00:00Z: 2016-01-01 is day 16801 after the epoch (1451606400 s), and Aug 22 is
# 31+29+31+30+31+30+31+21 = 234 days later: (16801 + 234) * 86400 = 1471824000 s.
DAY_LOW = 1_471_824_000 * 1_000_000
DAY_HIGH = DAY_LOW + 86_400 * 1_000_000 - 1  # inclusive: 2016-08-22T23:59:59.999999Z


def test_index_rows_of_a_pain_observation() -> None:
    rows = index_rows(PAIN)
    assert ("code", LOINC, "72514-3", fold(PAIN_DISPLAY)) in rows.token
    assert ("status", None, "final", None) in rows.token
    # `patient` is the subject rows pointing at a Patient (app/search/aliases.py): not stored
    assert rows.reference == {("subject", "Patient", "p1", None)}
    assert ("patient", "Patient", "p1", None) in index_rows(PAIN, with_aliases=True).reference
    assert rows.date == {("date", DAY_LOW, DAY_HIGH)}
    assert ("value-quantity", 6.0, UCUM, "{score}", 6.0, "1") in rows.quantity
    # (code, first system, first code, system, code, value, canon value, canon code, low, high,
    # text): the second component is the quantity. Not stored: read from the code and
    # value-quantity rows (app/search/aliases.py, PAIRED)
    full = index_rows(PAIN, with_aliases=True)
    assert rows.composite == set()
    assert (
        "code-value-quantity",
        LOINC,
        "72514-3",
        UCUM,
        "{score}",
        6.0,
        6.0,
        "1",
        None,
        None,
        None,
    ) in full.composite
    assert {row[0] for row in full.composite} == {
        "code-value-quantity",
        "combo-code-value-quantity",
    }


@pytest.mark.slow
def test_skipping_expressions_by_top_level_keys_changes_no_row() -> None:
    """index_rows skips an expression when the resource has none of the top-level keys it
    reads (extract.root_keys); over every fixture resource that gives the same rows."""
    _needs_fixtures()
    for resource in fixture_resources():
        fast = index_rows(resource, with_aliases=True)
        full = index_rows(resource, with_aliases=True, skip=False)
        assert fast == full, f"{resource['resourceType']}/{resource.get('id')}"


def test_root_keys_of_expression_shapes() -> None:
    from app.search.extract import root_keys

    assert root_keys("Observation.code") == {"code"}
    assert root_keys("(Observation.value as Quantity) | (Observation.value as SampledData)") == {
        "valueQuantity",
        "valueSampledData",
    }
    assert root_keys("Observation.effective") == {
        "effectiveDateTime",
        "effectivePeriod",
        "effectiveTiming",
        "effectiveInstant",
    }
    assert root_keys("Observation.subject.where(resolve() is Patient)") == {"subject"}
    assert root_keys("Observation.component.code") == {"component"}
    assert root_keys("Observation") is None
    assert root_keys("Bundle.entry[0].resource") is None


def test_a_concepts_text_is_a_row_of_its_own_only_when_no_display_carries_it() -> None:
    coding = {"system": LOINC, "code": "72514-3", "display": "Pain severity"}
    same = tokens({"coding": [coding], "text": "PAIN  Severity"})
    assert same == [(LOINC, "72514-3", "pain severity")]
    other = tokens({"coding": [coding], "text": "How much it hurts"})
    assert other == [(LOINC, "72514-3", "pain severity"), (None, None, "how much it hurts")]
    assert tokens({"text": "Pain"}) == [(None, None, "pain")]
