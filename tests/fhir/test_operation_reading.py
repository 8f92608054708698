"""The operations parse a patient's stored resources together (operations._parsed): what they
get is what jsonio.loads gives for each, decimals kept as written included."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest

from app.fhir import jsonio
from app.fhir.errors import StructureError
from app.fhir.operations import _parsed

SCORE = (
    b'{"resourceType":"Observation","id":"o1","status":"final","effectiveDateTime":'
    b'"2016-08-22T10:00:00+00:00","valueQuantity":{"value":6.5,"code":"{score}"}}'
)
DOSE = (
    b'{"resourceType":"MedicationAdministration","id":"d1","dosage":{"dose":'
    b'{"value":1063,"code":"mg"},"text":"ratio [1:2.50]"}}'
)


@pytest.mark.parametrize(
    "contents",
    [
        [],
        [SCORE],
        [SCORE, DOSE, SCORE.replace(b"6.5", b"1e-05")],
        [SCORE.replace(b"6.5", b"1.50")],  # kept as written: the exact path
        [SCORE, SCORE.replace(b"6.5", b"0.1000000000000000055511")],
        [SCORE.replace(b"6.5", b"123456789012345678901234567890")],
        [SCORE.replace(b"6.5", b"-0")],
        [SCORE.replace(b",", b", ")],  # not written by orjson
        [SCORE.replace(b"o1", b"\\u00e9")],
        [SCORE.replace(b'"final"', b'"final","note":"ratio [1:2.50]"')],
    ],
)
def test_parsed_together_as_each_alone(contents: list[bytes]) -> None:
    """The same values, written back as the same bytes."""
    expected = [jsonio.loads(c) for c in contents]
    got = _parsed(contents)
    assert got == expected
    assert [jsonio.dumps(r) for r in got] == [jsonio.dumps(r) for r in expected]
    for resource, alone in zip(got, expected, strict=True):
        # a float where jsonio.loads may give a Decimal of the same text (when a string looks
        # like a number to its scan): the same number to whoever reads it as the clinical
        # analyses do
        if "valueQuantity" in alone:
            value = Fraction(str(alone["valueQuantity"]["value"]))
            assert Fraction(str(resource["valueQuantity"]["value"])) == value


def test_decimals_keep_their_text() -> None:
    (resource,) = _parsed([SCORE.replace(b"6.5", b"1.50")])
    value = resource["valueQuantity"]["value"]
    assert isinstance(value, Decimal)
    assert jsonio.dumps(resource) == SCORE.replace(b"6.5", b"1.50")


def test_broken_content_is_refused_as_alone() -> None:
    with pytest.raises(StructureError):
        _parsed([SCORE, SCORE[:-1]])
