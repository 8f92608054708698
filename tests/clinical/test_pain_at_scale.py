"""pain.analyse on large generated patients gives what the pairwise definition of C.0-C.4
gives: each score against every dose (`pain.before`), every relapse against every course.
analyse finds the doses before a score by bisection and computes each distinct score's
percentages once; this checks that against the plain computation, on patients with scores
and doses on the same days, times in other zones than the day they are written in, links
(partOf, reasonReference) deciding same-day order, unknown doses and courses."""

from __future__ import annotations

import random
from datetime import date, timedelta
from fractions import Fraction
from typing import Any

import pytest

from app.clinical import pain

ZONES = ("Z", "+10:00", "-05:00", "+14:00", "-11:00")


def _when(rng: random.Random, day: date, mode: str) -> str:
    if mode == "date":
        return day.isoformat()
    time = f"{day.isoformat()}T{rng.randrange(24):02d}:{rng.choice((0, 30)):02d}:00"
    return time if mode == "naive" else time + rng.choice(ZONES)


def _patient(
    rng: random.Random, scores: int, doses: int, days: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    start = date(2016, 1, 1)
    # A day's scores (and a day's doses) are all timed or all untimed: pain_points and
    # administrations cannot sort a day mixing both (datetime.min against an aware time).
    modes: dict[tuple[str, date], str] = {}

    def mode(kind: str, day: date) -> str:
        return modes.setdefault((kind, day), rng.choice(("date", "naive", "tz", "tz")))

    score_ids = [f"o{n}" for n in range(scores)]
    dose_ids = [f"d{n}" for n in range(doses)]
    observations = []
    for score_id in score_ids:
        day = start + timedelta(days=rng.randrange(days))
        resource: dict[str, Any] = {
            "resourceType": "Observation",
            "id": score_id,
            "status": rng.choice(("final",) * 8 + ("amended", "preliminary")),
            "code": {"coding": [{"system": pain.LOINC, "code": "72514-3"}]},
            "effectiveDateTime": _when(rng, day, mode("score", day)),
        }
        kind = rng.random()
        if kind < 0.7:
            quantity: dict[str, Any] = {
                "value": rng.choice((rng.randrange(11), rng.randrange(21) / 2)),
                "system": pain.UCUM,
                "code": rng.choice(("{score}",) * 8 + ("mg",)),
            }
            if rng.random() < 0.15:
                quantity["comparator"] = rng.choice(("<", "<=", ">", ">="))
            resource["valueQuantity"] = quantity
        elif kind < 0.85:
            resource["valueInteger"] = rng.randrange(12)
        else:
            resource["valueRange"] = {
                "low": {"value": rng.randrange(5), "code": "{score}"},
                "high": {"value": rng.randrange(5, 11), "code": "{score}"},
            }
        if dose_ids and rng.random() < 0.3:
            resource["partOf"] = [{"reference": f"MedicationAdministration/{rng.choice(dose_ids)}"}]
        observations.append(resource)
    administrations = []
    for dose_id in dose_ids:
        day = start + timedelta(days=rng.randrange(days))
        dosage: dict[str, Any] = {}
        if rng.random() < 0.8:
            unit = rng.choice(("mg",) * 6 + ("g", "mL"))
            dosage["dose"] = {
                "value": rng.choice((100, 428, 0.5)),
                "system": pain.UCUM,
                "code": unit,
            }
        resource = {
            "resourceType": "MedicationAdministration",
            "id": dose_id,
            "status": "completed",
            "medicationCodeableConcept": {"coding": [{"system": pain.RXNORM, "code": "6130"}]},
            "effectiveDateTime": _when(rng, day, mode("dose", day)),
            "dosage": dosage,
        }
        if rng.random() < 0.6:
            resource["partOf"] = [{"reference": f"Procedure/p{rng.randrange(4)}"}]
        if score_ids and rng.random() < 0.3:
            resource["reasonReference"] = [{"reference": f"Observation/{rng.choice(score_ids)}"}]
        administrations.append(resource)
    rng.shuffle(observations)
    rng.shuffle(administrations)
    return observations, administrations


def _reference(
    observations: list[dict[str, Any]],
    administrations: list[dict[str, Any]],
    threshold: Fraction,
    lookback_days: int | None,
) -> tuple[list[tuple[Any, ...]], list[bool]]:
    """Each point's (cumulative mg, unknown doses, undecidable doses, percent, improvement,
    relapse) and each course's relapse_triggered, pair by pair."""
    pains = pain.pain_points(observations)
    doses = pain.administrations(administrations)
    courses = pain.courses_of(doses)
    first = doses[0] if doses else None
    baseline = None
    if first is not None:
        earlier = [p for p in pains if pain.before(p, first) is True]
        if lookback_days is not None:
            earlier = [p for p in earlier if (first.event.day - p.event.day).days <= lookback_days]
        baseline = earlier[-1] if earlier else None
    usable = baseline is not None and baseline.low != 0
    after_first = [p for p in pains if first is not None and pain.before(first, p) is True]
    nadir = min(after_first, key=lambda p: (p.high, p.low, p.event.day), default=None)
    points = []
    for score in pains:
        preceding = [d for d in doses if pain.before(d, score) is True]
        undecided = [d.key for d in doses if pain.before(d, score) is None]
        known = sum((d.dose_mg for d in preceding if d.dose_mg is not None), Fraction(0))
        unknown = sum(1 for d in preceding if d.dose_mg is None)
        percent = improvement = None
        if baseline is not None and usable:
            b_low, b_high = baseline.low, baseline.high
            percent = (score.low / b_high * 100, score.high / b_low * 100)
            improvement = ((b_low - score.high) / b_low * 100, (b_high - score.low) / b_high * 100)
            if b_low == b_high:
                improvement = (
                    (b_low - score.high) / b_low * 100,
                    (b_low - score.low) / b_low * 100,
                )
        relapse = "not-applicable"
        if (
            percent is not None
            and nadir is not None
            and score.event.day > nadir.event.day
            and score in after_first
        ):
            relapse = pain.relapse_status(percent, threshold)
        points.append((score.key, known, unknown, undecided, percent, improvement, relapse))
    relapses = {p[0] for p in points if p[6] in ("definite", "possible")}
    triggered = []
    for course in courses:
        if nadir is None or course.start <= nadir.event.day:
            triggered.append(False)
            continue
        cited = any(a.reasons & relapses for a in course.administrations)
        recent = any(
            key in relapses and 0 <= (course.start - score.event.day).days <= 7
            for key, score in zip((p[0] for p in points), pains, strict=True)
        )
        triggered.append(cited or recent)
    return points, triggered


@pytest.mark.parametrize("seed", range(40))
def test_analyse_matches_the_pairwise_definition(seed: int) -> None:
    rng = random.Random(seed)
    scores, doses = (1000, 100) if seed == 0 else (rng.randrange(1, 150), rng.randrange(0, 40))
    days = 400 if seed == 0 else rng.choice((5, 20, 60, 400))
    observations, administrations = _patient(rng, scores, doses, days)
    threshold = rng.choice((Fraction(30), Fraction(40), Fraction(25, 2)))
    lookback = rng.choice((None, 3, 30))

    result = pain.analyse(
        observations, administrations, threshold=threshold, lookback_days=lookback
    )
    points, triggered = _reference(observations, administrations, threshold, lookback)

    got = [
        (
            p.pain.key,
            p.cumulative_known_mg,
            p.unknown_before,
            p.order_undecidable,
            p.percent_of_baseline,
            p.improvement,
            p.relapse,
        )
        for p in result.points
    ]
    assert got == points
    assert [c.relapse_triggered for c in result.courses] == triggered


def test_the_generated_patients_reach_every_rule() -> None:
    """The generator makes what the comparison is about: undecidable same-day order, links
    that decide it, times whose zone puts them on another UTC day, relapses, courses they
    trigger."""
    seen: dict[str, int] = dict.fromkeys(("undecided", "linked", "zone", "relapse", "trigger"), 0)
    for seed in range(40):
        rng = random.Random(seed)
        observations, administrations = _patient(rng, 100, 30, rng.choice((5, 20, 60)))
        result = pain.analyse(observations, administrations)
        doses = pain.administrations(administrations)
        seen["undecided"] += sum(bool(p.order_undecidable) for p in result.points)
        seen["relapse"] += sum(p.relapse != "not-applicable" for p in result.points)
        seen["trigger"] += sum(c.relapse_triggered for c in result.courses)
        for point in result.points:
            score = point.pain.event
            for dose in doses:
                if dose.event.instant and score.instant:
                    by_day = dose.event.day < score.day
                    seen["zone"] += by_day != (dose.event.instant < score.instant)
                elif dose.event.day == score.day:
                    seen["linked"] += pain.before(dose, point.pain) is not None
    assert all(seen.values()), seen
