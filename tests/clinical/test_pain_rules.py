"""The rules of CASE.md C.0-C.5 on data built for each edge case (no database)."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import pytest

from app.clinical import pain

RX = pain.RXNORM


def _obs(id_: str, day: str, **value: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": id_,
        "status": "final",
        "code": {"coding": [{"system": pain.LOINC, "code": "72514-3"}]},
        "effectiveDateTime": day,
        **(value or {"valueQuantity": {"value": 5, "system": pain.UCUM, "code": "{score}"}}),
    }


def _dose(id_: str, day: str, mg: float | None = 100, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "resourceType": "MedicationAdministration",
        "id": id_,
        "status": "completed",
        "medicationCodeableConcept": {"coding": [{"system": RX, "code": "6130"}]},
        "effectiveDateTime": day,
        "dosage": {},
    }
    if mg is not None:
        out["dosage"]["dose"] = {"value": mg, "system": pain.UCUM, "code": "mg"}
    out.update(extra)
    return out


def _q(value: float, comparator: str | None = None, code: str = "{score}") -> dict[str, Any]:
    quantity: dict[str, Any] = {"value": value, "system": pain.UCUM, "code": code}
    if comparator:
        quantity["comparator"] = comparator
    return {"valueQuantity": quantity}


@pytest.mark.parametrize(
    ("value", "bounds"),
    [
        (_q(6), (6, 6)),
        ({"valueInteger": 3}, (3, 3)),
        ({"valueRange": {"low": {"value": 0, "code": "{score}"}}}, (0, 10)),
        ({"valueRange": {"high": {"value": 4, "code": "{score}"}}}, (0, 4)),
        (_q(3, "<"), (0, 2)),
        (_q(3, "<="), (0, 3)),
        (_q(7, ">"), (8, 10)),
        (_q(7, ">="), (7, 10)),
        (_q(6, code="1"), (6, 6)),
        (_q(6, code="mg"), None),
        (_q(11), None),
        ({"valueRange": {"low": {"value": 5}, "high": {"value": 4}}}, None),
        ({"valueString": "six"}, None),
    ],
)
def test_pain_values_normalise_to_bounds(value: dict[str, Any], bounds: Any) -> None:
    expected = None if bounds is None else (Fraction(bounds[0]), Fraction(bounds[1]))
    assert pain.pain_bounds(_obs("o", "2020-01-01", **value)) == expected


@pytest.mark.parametrize(
    ("dosage", "extra", "mg"),
    [
        ({"dose": {"value": 1.5, "system": pain.UCUM, "code": "g"}}, {}, 1500),
        ({"dose": {"value": 500, "system": pain.UCUM, "code": "ug"}}, {}, Fraction(1, 2)),
        ({"dose": {"value": 10, "system": pain.UCUM, "code": "mL"}}, {}, None),
        ({"dose": {"value": 1, "system": pain.UCUM, "code": "mg/kg"}}, {}, None),
        (
            {"rateQuantity": {"value": 50, "system": pain.UCUM, "code": "mg/h"}},
            {
                "effectivePeriod": {
                    "start": "2020-01-01T10:00:00Z",
                    "end": "2020-01-01T12:30:00Z",
                }
            },
            125,
        ),
        ({"rateQuantity": {"value": 50, "system": pain.UCUM, "code": "mg/h"}}, {}, None),
        ({}, {}, None),
    ],
)
def test_doses_in_mg(dosage: dict[str, Any], extra: dict[str, Any], mg: Any) -> None:
    resource = {"resourceType": "MedicationAdministration", "dosage": dosage, **extra}
    assert pain.dose_mg(resource) == (None if mg is None else Fraction(mg))


@pytest.mark.parametrize(
    ("concept", "matches"),
    [
        ({"coding": [{"system": RX, "code": "6130"}]}, True),
        ({"coding": [{"system": RX, "code": "238083"}]}, True),
        ({"coding": [{"system": RX, "code": "1544952", "display": "esketamine"}]}, False),
        ({"text": "Ketamine HCl 500 mg in saline"}, True),
        ({"text": "Esketamine 56 mg nasal spray"}, False),
        ({"text": "esketamine"}, False),
        ({"text": "lidocaine"}, False),
    ],
)
def test_ketamine_but_never_esketamine(concept: dict[str, Any], matches: bool) -> None:
    resource = {"resourceType": "MedicationAdministration", "medicationCodeableConcept": concept}
    assert pain.is_medication(resource, {}) is matches


def test_a_medication_reference_is_followed() -> None:
    resource = {"medicationReference": {"reference": "Medication/m1"}}
    medication = {
        "resourceType": "Medication",
        "code": {"coding": [{"system": RX, "code": "6130"}]},
    }
    assert pain.is_medication(resource, {"Medication/m1": medication})
    assert not pain.is_medication(resource, {})


def test_baseline_zero_leaves_percentages_undefined() -> None:
    result = pain.analyse(
        [_obs("b", "2020-01-01", **_q(0)), _obs("p", "2020-01-03", **_q(2))],
        [_dose("d", "2020-01-02")],
    )
    assert result.baseline is not None
    assert result.baseline_status == "baseline-zero"
    assert all(p.improvement is None and p.relapse == "not-applicable" for p in result.points)


def test_no_dose_means_no_baseline_and_no_nadir() -> None:
    result = pain.analyse([_obs("b", "2020-01-01")], [])
    assert result.baseline_status == "no-baseline"
    assert result.nadir is None
    assert result.courses == []


def test_same_day_order_without_links_is_reported_not_guessed() -> None:
    result = pain.analyse(
        [_obs("b", "2020-01-01", **_q(8)), _obs("same", "2020-01-02", **_q(4))],
        [_dose("d", "2020-01-02")],
    )
    same = result.points[1]
    assert same.order_undecidable == ["MedicationAdministration/d"]
    assert same.cumulative_known_mg == 0  # not counted: it may have come after


def test_links_decide_same_day_order() -> None:
    before = _obs("before", "2020-01-02", **_q(8))
    after = _obs(
        "after", "2020-01-02", **_q(3), partOf=[{"reference": "MedicationAdministration/d"}]
    )
    dose = _dose("d", "2020-01-02", reasonReference=[{"reference": "Observation/before"}])
    result = pain.analyse([after, before], [dose])
    assert result.baseline is not None
    assert result.baseline.key == "Observation/before"
    assert result.baseline_status is None
    later = next(p for p in result.points if p.pain.key == "Observation/after")
    assert later.cumulative_known_mg == 100
    assert later.order_undecidable == []


def test_courses_by_gaps_when_no_procedure_is_named() -> None:
    doses = [
        _dose("a", "2020-01-01", 100),
        _dose("b", "2020-01-02", 200),
        _dose("c", "2020-01-05", 200),
        _dose("d", "2020-01-20", None),
    ]
    result = pain.analyse([_obs("b", "2019-12-31", **_q(8))], doses)
    assert [(str(c.start), len(c.administrations)) for c in result.courses] == [
        ("2020-01-01", 3),
        ("2020-01-20", 1),
    ]
    assert result.courses[0].escalation_steps == [2]
    assert result.protocol_total_mg == 500
    assert result.total_is_lower_bound


def test_worsening_is_negative_and_not_clamped() -> None:
    result = pain.analyse(
        [_obs("b", "2020-01-01", **_q(5)), _obs("w", "2020-01-03", **_q(8))],
        [_dose("d", "2020-01-02")],
    )
    assert result.points[1].improvement == (Fraction(-60), Fraction(-60))


def test_unusable_observations_are_warned_about_not_used() -> None:
    result = pain.analyse(
        [_obs("b", "2020-01-01", **_q(12)), {**_obs("x", "2020-01-01"), "status": "preliminary"}],
        [_dose("d", "2020-01-02")],
    )
    assert result.points == []
    assert result.warnings == ["Observation/b ignored: no usable 0-10 value"]


def test_threshold_must_be_in_range() -> None:
    with pytest.raises(pain.ClinicalInputError):
        pain.analyse([], [], threshold=Fraction(0))


def test_timed_and_untimed_events_of_one_day_sort_untimed_first() -> None:
    """A day without a time beside a time with a zone: ordered (untimed first), not a
    TypeError (which was a 500)."""
    points = pain.pain_points(
        [_obs("timed", "2020-01-02T10:00:00Z", **_q(6)), _obs("untimed", "2020-01-02", **_q(7))]
    )
    assert [p.key for p in points] == ["Observation/untimed", "Observation/timed"]
    doses = pain.administrations(
        [_dose("timed", "2020-01-02T09:00:00+01:00"), _dose("untimed", "2020-01-02")]
    )
    assert [d.key for d in doses] == [
        "MedicationAdministration/untimed",
        "MedicationAdministration/timed",
    ]
    result = pain.analyse(
        [_obs("timed", "2020-01-02T10:00:00Z", **_q(6)), _obs("untimed", "2020-01-02", **_q(7))],
        [_dose("timed", "2020-01-02T09:00:00+01:00"), _dose("untimed", "2020-01-02")],
    )
    assert len(result.points) == 2
