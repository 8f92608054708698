"""Response of pain to ketamine (../shared/CASE.md C.0-C.5): baseline, improvement, the pain
trajectory against cumulative dose, nadir and relapse, courses and dose escalation.

Pure functions over FHIR resources as JSON dicts (no HTTP, no database). Resources refer to each
other as `Type/id`. Numbers are kept exact (Fractions) and rounded only by whoever displays them.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from fractions import Fraction
from functools import lru_cache
from typing import Any

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
PAIN_CODES = ((LOINC, "72514-3"), (LOINC, "38208-5"))
KETAMINE_INGREDIENT = (RXNORM, "6130")
# RxNorm clinical and branded drugs whose ingredient is ketamine (6130): CASE.md B.2.
KETAMINE_PRODUCTS = frozenset({"6130", "238082", "238083", "238084", "206967", "206970", "206972"})
_KETAMINE_WORD = re.compile(r"(?<![a-z])ketamine", re.IGNORECASE)  # not esketamine
_USABLE_STATUS = frozenset({"final", "amended", "corrected"})
_SCORE_UNITS = frozenset({"{score}", "1", ""})
_MASS_TO_MG = {"mg": Fraction(1), "g": Fraction(1000), "ug": Fraction(1, 1000)}
MAX_GAP_DAYS = 3  # administrations further apart start a new course (CASE.md C.3 fallback)
_ZERO = Fraction(0)
_TEN = Fraction(10)


class ClinicalInputError(ValueError):
    """A parameter outside its domain (the API answers 400)."""


@dataclass(frozen=True)
class Event:
    """A dated clinical event, for ordering (C.0): its day, and its time when stated."""

    key: str  # Type/id
    day: date
    instant: datetime | None


@dataclass(frozen=True)
class PainPoint:
    key: str
    event: Event
    low: Fraction
    high: Fraction
    derived: bool
    resource: dict[str, Any]


@dataclass(frozen=True)
class Administration:
    key: str
    event: Event
    dose_mg: Fraction | None  # None: unknown (no dose, a volume, mg/kg without a weight)
    course: str | None  # the Procedure it is partOf
    reasons: frozenset[str]  # reasonReference targets
    resource: dict[str, Any]


@dataclass
class Course:
    key: str | None  # the Procedure, when the administrations name one
    administrations: list[Administration]
    relapse_triggered: bool = False

    @property
    def start(self) -> date:
        return self.administrations[0].event.day

    @property
    def end(self) -> date:
        return self.administrations[-1].event.day

    @property
    def known_mg(self) -> Fraction:
        return sum((a.dose_mg for a in self.administrations if a.dose_mg is not None), Fraction(0))

    @property
    def unknown_doses(self) -> int:
        return sum(1 for a in self.administrations if a.dose_mg is None)

    @property
    def escalation_steps(self) -> list[int]:
        """1-based positions where the dose rose above the previous known dose."""
        steps, previous = [], None
        for position, administration in enumerate(self.administrations, 1):
            dose = administration.dose_mg
            if dose is not None:
                if previous is not None and dose > previous:
                    steps.append(position)
                previous = dose
        return steps


@dataclass
class Point:
    """One pain observation in the trajectory (C.2-C.4)."""

    pain: PainPoint
    cumulative_known_mg: Fraction
    unknown_before: int
    percent_of_baseline: tuple[Fraction, Fraction] | None
    improvement: tuple[Fraction, Fraction] | None
    relapse: str  # definite | possible | none | not-applicable
    order_undecidable: list[str] = field(default_factory=list)  # same-day administrations


@dataclass
class PainResponse:
    baseline: PainPoint | None
    baseline_status: str | None  # no-baseline | baseline-zero | None when usable
    days_before_first_dose: int | None
    points: list[Point]
    nadir: PainPoint | None
    courses: list[Course]
    protocol_total_mg: Fraction | None
    known_total_mg: Fraction
    total_is_lower_bound: bool
    days_to_first_relapse: int | None
    warnings: list[str]


# -- reading resources -----------------------------------------------------------------------
def _codings(concept: Any) -> list[tuple[str | None, str | None]]:
    if not isinstance(concept, dict):
        return []
    return [
        (c.get("system"), c.get("code")) for c in concept.get("coding", []) if isinstance(c, dict)
    ]


def _refs(value: Any) -> list[str]:
    items = value if isinstance(value, list) else [value]
    return [i["reference"] for i in items if isinstance(i, dict) and "reference" in i]


def key(resource: dict[str, Any]) -> str:
    return f"{resource['resourceType']}/{resource.get('id')}"


def event_of(resource: dict[str, Any], *names: str) -> Event | None:
    """The event's day (and time, when the value has one) from the first element present."""
    for name in names:
        value = resource.get(name)
        if isinstance(value, dict):
            value = value.get("start")
        if isinstance(value, str) and len(value) >= 10:
            day = date.fromisoformat(value[:10])
            instant = None
            if len(value) > 10 and "T" in value:
                try:
                    instant = datetime.fromisoformat(value.replace("Z", "+00:00"))
                except ValueError:
                    instant = None
                if instant is not None and instant.tzinfo is None:
                    instant = None  # a time without a zone cannot be compared safely
            return Event(key(resource), day, instant)
    return None


def pain_bounds(resource: dict[str, Any]) -> tuple[Fraction, Fraction] | None:
    """[lo, hi] on the 0-10 scale (C.0), or None when the value is absent or unusable."""
    if "valueQuantity" in resource:
        quantity = resource["valueQuantity"]
        text = _score_text(quantity)
        return None if text is None else _quantity_bounds(text, quantity.get("comparator"))
    if "valueInteger" in resource:
        value = Fraction(resource["valueInteger"])
        return _on_scale(value, value)
    if "valueRange" in resource:
        span = resource["valueRange"]
        low = _score_number(span.get("low")) if "low" in span else _ZERO
        high = _score_number(span.get("high")) if "high" in span else _TEN
        return None if low is None or high is None else _on_scale(low, high)
    return None


def _score_text(quantity: Any) -> str | None:
    """The text of a quantity's value when its unit is a score's."""
    if not isinstance(quantity, dict) or "value" not in quantity:
        return None
    unit = quantity.get("code", quantity.get("unit", ""))
    if unit not in _SCORE_UNITS:
        return None
    return str(quantity["value"])


def _score_number(quantity: Any) -> Fraction | None:
    text = _score_text(quantity)
    return None if text is None else _fraction(text)


@lru_cache(maxsize=4096)
def _fraction(text: str) -> Fraction:
    # a patient's scores take a few values: parsing text into a Fraction costs ~2 us
    return Fraction(text)


@lru_cache(maxsize=4096)
def _quantity_bounds(text: str, comparator: str | None) -> tuple[Fraction, Fraction] | None:
    value = _fraction(text)
    if comparator is None:
        return _on_scale(value, value)
    if comparator == "<":
        return _on_scale(_ZERO, value - 1)
    if comparator == "<=":
        return _on_scale(_ZERO, value)
    if comparator == ">":
        return _on_scale(value + 1, _TEN)
    if comparator == ">=":
        return _on_scale(value, _TEN)
    return None


def _on_scale(low: Fraction, high: Fraction) -> tuple[Fraction, Fraction] | None:
    return (low, high) if 0 <= low <= high <= 10 else None


def dose_mg(resource: dict[str, Any]) -> Fraction | None:
    """The administered mass in mg (C.0): mg, g and ug doses; a mass rate over a closed period;
    anything else (a volume, mg/kg) is unknown."""
    dosage = resource.get("dosage") or {}
    dose = dosage.get("dose")
    if isinstance(dose, dict) and "value" in dose:
        factor = _MASS_TO_MG.get(dose.get("code", ""))
        if factor is not None and dose.get("system", UCUM) == UCUM:
            return Fraction(str(dose["value"])) * factor
        return None
    rate = dosage.get("rateQuantity")
    period = resource.get("effectivePeriod") or {}
    if isinstance(rate, dict) and period.get("start") and period.get("end"):
        match = re.fullmatch(r"(mg|g|ug)/(h|min)", str(rate.get("code", "")))
        if match and "value" in rate:
            start = datetime.fromisoformat(period["start"].replace("Z", "+00:00"))
            end = datetime.fromisoformat(period["end"].replace("Z", "+00:00"))
            seconds = Fraction(int((end - start).total_seconds()))
            per_second = Fraction(3600 if match.group(2) == "h" else 60)
            return Fraction(str(rate["value"])) * _MASS_TO_MG[match.group(1)] * seconds / per_second
    return None


def is_medication(
    resource: dict[str, Any],
    medications: dict[str, dict[str, Any]],
    wanted: tuple[str | None, str] | None = None,
) -> bool:
    """Ketamine by default (RxNorm 6130 or a product of it; the word as a fallback, never
    esketamine); `wanted` = (system or None, code) matches that code instead."""
    concept = resource.get("medicationCodeableConcept")
    reference = (resource.get("medicationReference") or {}).get("reference")
    if concept is None and reference is not None:
        medication = medications.get(reference) or medications.get(reference.lstrip("#"))
        concept = (medication or {}).get("code")
    codings = _codings(concept)
    if wanted is not None:
        system, code = wanted
        return any(c == code and (system is None or s == system) for s, c in codings)
    if any(s == RXNORM and c in KETAMINE_PRODUCTS for s, c in codings):
        return True
    if codings and any(s == RXNORM for s, _ in codings):
        return False  # coded as another RxNorm concept (esketamine 1544952 among them)
    texts = [concept.get("text", "")] if isinstance(concept, dict) else []
    if isinstance(concept, dict):
        texts += [c.get("display", "") for c in concept.get("coding", []) if isinstance(c, dict)]
    return any(_KETAMINE_WORD.search(t or "") for t in texts)


# -- ordering (C.0, rule R6) -------------------------------------------------------------------
def before(first: PainPoint | Administration, second: PainPoint | Administration) -> bool | None:
    """Whether `first` happened before `second`; None when the data cannot tell."""
    a, b = first.event, second.event
    if a.instant is not None and b.instant is not None:
        return a.instant < b.instant
    if a.day != b.day:
        return a.day < b.day
    pain, dose = (first, second) if isinstance(first, PainPoint) else (second, first)
    if isinstance(pain, PainPoint) and isinstance(dose, Administration):
        after_dose = dose.key in _refs(pain.resource.get("partOf"))
        before_dose = pain.key in dose.reasons
        if after_dose or before_dose:
            pain_first = before_dose
            return pain_first if first is pain else not pain_first
    return None


# -- the analysis ------------------------------------------------------------------------------
# Where an event with a day but no time sorts among the day's timed ones (first). Aware, as
# every instant is: a naive datetime.min beside one raised TypeError (a 500).
_UNTIMED = datetime.min.replace(tzinfo=UTC)


def pain_points(
    observations: Iterable[dict[str, Any]],
    codes: Sequence[tuple[str, str]] = PAIN_CODES,
    warnings: list[str] | None = None,
) -> list[PainPoint]:
    found = []
    for resource in observations:
        if resource.get("resourceType") != "Observation":
            continue
        if not any(c in codes for c in _codings(resource.get("code"))):
            continue
        if resource.get("status") not in _USABLE_STATUS or "dataAbsentReason" in resource:
            continue
        event = event_of(resource, "effectiveDateTime", "effectivePeriod", "effectiveInstant")
        bounds = pain_bounds(resource)
        if event is None or bounds is None:
            if warnings is not None:
                why = "no date" if event is None else "no usable 0-10 value"
                warnings.append(f"{key(resource)} ignored: {why}")
            continue
        derived = bool(resource.get("derivedFrom"))
        found.append(PainPoint(key(resource), event, bounds[0], bounds[1], derived, resource))
    return sorted(found, key=lambda p: (p.event.day, p.event.instant or _UNTIMED, p.key))


def administrations(
    resources: Iterable[dict[str, Any]],
    medications: dict[str, dict[str, Any]] | None = None,
    wanted: tuple[str | None, str] | None = None,
) -> list[Administration]:
    found = []
    for resource in resources:
        if resource.get("resourceType") != "MedicationAdministration":
            continue
        if resource.get("status") != "completed":
            continue
        if not is_medication(resource, medications or {}, wanted):
            continue
        event = event_of(resource, "effectiveDateTime", "effectivePeriod")
        if event is None:
            continue
        courses = [r for r in _refs(resource.get("partOf")) if r.startswith("Procedure/")]
        found.append(
            Administration(
                key(resource),
                event,
                dose_mg(resource),
                courses[0] if courses else None,
                frozenset(_refs(resource.get("reasonReference"))),
                resource,
            )
        )
    return sorted(found, key=lambda a: (a.event.day, a.event.instant or _UNTIMED, a.key))


def courses_of(doses: list[Administration], max_gap_days: int = MAX_GAP_DAYS) -> list[Course]:
    """By partOf where the administrations name their course; otherwise by gaps > max_gap."""
    by_procedure: dict[str, Course] = {}
    out: list[Course] = []
    loose: list[Administration] = []
    for administration in doses:
        if administration.course is not None:
            course = by_procedure.get(administration.course)
            if course is None:
                course = by_procedure[administration.course] = Course(administration.course, [])
                out.append(course)
            course.administrations.append(administration)
        else:
            loose.append(administration)
    current: Course | None = None
    for administration in loose:
        if current is None or (administration.event.day - current.end).days > max_gap_days:
            current = Course(None, [])
            out.append(current)
        current.administrations.append(administration)
    return sorted(out, key=lambda c: (c.start, c.end))


def relapse_status(percent: tuple[Fraction, Fraction], threshold: Fraction) -> str:
    low, high = percent
    if low >= threshold:
        return "definite"
    if high >= threshold:
        return "possible"
    return "none"


DEFAULT_THRESHOLD = Fraction(30)  # relapse: pain back to >= T% of baseline (CASE.md C.4)


def analyse(
    observations: Iterable[dict[str, Any]],
    meds: Iterable[dict[str, Any]],
    *,
    threshold: Fraction = DEFAULT_THRESHOLD,
    lookback_days: int | None = None,
    medication: tuple[str | None, str] | None = None,
    pain_codes: Sequence[tuple[str, str]] = PAIN_CODES,
    medications: dict[str, dict[str, Any]] | None = None,
) -> PainResponse:
    if not 0 < threshold <= 100:
        raise ClinicalInputError(f"threshold {threshold} is outside (0, 100]")
    if lookback_days is not None and lookback_days < 0:
        raise ClinicalInputError("baselineLookbackDays must be 0 or more")
    warnings: list[str] = []
    pains = pain_points(observations, pain_codes, warnings)
    doses = administrations(meds, medications, medication)
    courses = courses_of(doses)
    first = doses[0] if doses else None

    baseline = None
    if first is not None:
        earlier = [p for p in pains if before(p, first) is True]
        if lookback_days is not None:
            earlier = [p for p in earlier if (first.event.day - p.event.day).days <= lookback_days]
        baseline = earlier[-1] if earlier else None
    status = None
    if baseline is None:
        status = "no-baseline"
    elif baseline.low == 0:
        status = "baseline-zero"

    after = [first is not None and before(first, p) is True for p in pains]
    after_first = [p for p, later in zip(pains, after, strict=True) if later]
    nadir = min(after_first, key=lambda p: (p.high, p.low, p.event.day), default=None)

    timeline = _Timeline(doses)
    # percentages depend on the score's bounds alone: each distinct [lo, hi] is computed once
    ratios: dict[tuple[int, int, int, int], tuple[_Bounds, _Bounds]] = {}
    points = []
    for pain, later in zip(pains, after, strict=True):
        cumulative, unknown, undecided = timeline.before(pain)
        percent = improvement = None
        if baseline is not None and status is None:
            low, high = pain.low, pain.high  # keyed by ints: a Fraction's hash is costly
            bounds = (low.numerator, low.denominator, high.numerator, high.denominator)
            found = ratios.get(bounds)
            if found is None:
                found = ratios[bounds] = _percentages(pain, baseline)
            percent, improvement = found
        relapse = "not-applicable"
        if percent is not None and nadir is not None and pain.event.day > nadir.event.day and later:
            relapse = relapse_status(percent, threshold)
        points.append(Point(pain, cumulative, unknown, percent, improvement, relapse, undecided))

    relapses = {p.pain.key for p in points if p.relapse in ("definite", "possible")}
    relapse_days = sorted({p.pain.event.day for p in points if p.pain.key in relapses})
    for course in courses:
        if nadir is None or course.start <= nadir.event.day:
            continue
        cited = any(a.reasons & relapses for a in course.administrations)
        # a relapse on the course's first day or in the 7 days before it
        latest = bisect_right(relapse_days, course.start)
        recent = latest > 0 and (course.start - relapse_days[latest - 1]).days <= 7
        course.relapse_triggered = cited or recent

    protocol = courses[0] if courses else None
    known_total = sum((d.dose_mg for d in doses if d.dose_mg is not None), Fraction(0))
    first_relapse = next((p for p in points if p.relapse == "definite"), None)
    days_to_relapse = None
    if protocol is not None and first_relapse is not None:
        days_to_relapse = (first_relapse.pain.event.day - protocol.end).days
    return PainResponse(
        baseline=baseline,
        baseline_status=status,
        days_before_first_dose=(
            (first.event.day - baseline.event.day).days if baseline and first else None
        ),
        points=points,
        nadir=nadir,
        courses=courses,
        protocol_total_mg=protocol.known_mg if protocol else None,
        known_total_mg=known_total,
        total_is_lower_bound=any(d.dose_mg is None for d in doses),
        days_to_first_relapse=days_to_relapse,
        warnings=warnings,
    )


_Bounds = tuple[Fraction, Fraction]


def _percentages(pain: PainPoint, baseline: PainPoint) -> tuple[_Bounds, _Bounds]:
    """[lo, hi] of the score as a percentage of the baseline, and of the improvement (C.2)."""
    b_low, b_high = baseline.low, baseline.high
    percent = (pain.low / b_high * 100, pain.high / b_low * 100)
    improvement = ((b_low - pain.high) / b_low * 100, (b_high - pain.low) / b_high * 100)
    if b_low == b_high:
        improvement = ((b_low - pain.high) / b_low * 100, (b_low - pain.low) / b_low * 100)
    return percent, improvement


class _Timeline:
    """The doses arranged so that those before a pain score (`before(dose, pain) is True`) are
    found by bisection instead of by comparing every pair, with the same answer: two events
    that both have a time compare by it, any other two by day, and only same-day pairs need
    `before` itself (where the data may not tell, R6)."""

    def __init__(self, doses: list[Administration]) -> None:
        timed = sorted((d for d in doses if d.event.instant is not None), key=_instant)
        self._instants = [_instant(d) for d in timed]
        self._timed = _running(timed)
        by_day = sorted(doses, key=lambda d: d.event.day)
        self._days = [d.event.day for d in by_day]
        self._all = _running(by_day)
        untimed = [d for d in by_day if d.event.instant is None]
        self._untimed_days = [d.event.day for d in untimed]
        self._untimed = _running(untimed)
        self._on_day: dict[date, list[Administration]] = {}  # in the order of `doses`
        for dose in doses:
            self._on_day.setdefault(dose.event.day, []).append(dose)

    def before(self, pain: PainPoint) -> tuple[Fraction, int, list[str]]:
        """Known mg and unknown doses given before `pain`, and the same-day doses whose order
        against it is undecidable (in dose order)."""
        day, instant = pain.event.day, pain.event.instant
        same_day = self._on_day.get(day, [])
        if instant is None:
            known, unknown = self._all[bisect_left(self._days, day)]
        else:
            timed_known, timed_unknown = self._timed[bisect_left(self._instants, instant)]
            known, unknown = self._untimed[bisect_left(self._untimed_days, day)]
            if timed_known:
                known += timed_known
            unknown += timed_unknown
            same_day = [d for d in same_day if d.event.instant is None]
        undecided = []
        for dose in same_day:
            order = before(dose, pain)
            if order is None:
                undecided.append(dose.key)
            elif order:
                if dose.dose_mg is None:
                    unknown += 1
                else:
                    known += dose.dose_mg
        return known, unknown, undecided


def _instant(dose: Administration) -> datetime:
    assert dose.event.instant is not None
    return dose.event.instant


def _running(doses: list[Administration]) -> list[tuple[Fraction, int]]:
    """(known mg, unknown doses) of the first n doses, for n = 0 .. len(doses)."""
    out = [(Fraction(0), 0)]
    for dose in doses:
        known, unknown = out[-1]
        if dose.dose_mg is None:
            out.append((known, unknown + 1))
        else:
            out.append((known + dose.dose_mg, unknown))
    return out
