"""Liver safety under ketamine (../shared/CASE.md C.6): each liver test against its upper limit
of normal, the DILI signal and pattern, timing against the first dose, and the monitoring gap.

A population ULN is never assumed: without a reference range the ratio is not computable and
the result's interpretation (N, H, ...) is all that is used.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from fractions import Fraction
from typing import Any

from app.clinical.pain import LOINC, Administration, event_of, key

ANALYTES = {"1742-6": "ALT", "1920-8": "AST", "6768-6": "ALP", "2324-2": "GGT"}
BILIRUBIN = "1975-2"
_INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
_NORMAL = frozenset({"N"})
_ELEVATED = frozenset({"H", "HH", "HU", "A", "AA"})
# Enzyme activity units to U/L: U/L and [IU]/L are taken as equal for these enzymes;
# 1 ukat = 60 umol/min = 60 U.
_TO_UNITS_PER_L = {"U/L": Fraction(1), "[IU]/L": Fraction(1), "ukat/L": Fraction(60)}
_MG_PER_DL = {"mg/dL": Fraction(1), "umol/L": Fraction(1000, 17104)}  # bilirubin


@dataclass
class LiverTest:
    resource: dict[str, Any]
    key: str
    analyte: str  # ALT, AST, ALP, GGT, bilirubin
    day: date | None
    value: Fraction | None
    uln: Fraction | None
    ratio: Fraction | None  # value / ULN, when both are known in compatible units
    status: str  # normal | elevated | unknown
    pre_dose: bool  # dated before the first dose, or undated but cited by it
    days_from_first_dose: int | None


@dataclass
class LiverSafety:
    tests: list[LiverTest]
    abnormal: int
    uln_computable: bool
    dili_signal: bool | None  # None: not computable (no ratios)
    dili_criteria: list[str]
    pattern: str | None  # hepatocellular | mixed | cholestatic
    r_ratio: Fraction | None
    last_dated_test: date | None
    administrations_after_last_test: int


def _converted(quantity: Any, table: dict[str, Fraction]) -> Fraction | None:
    if not isinstance(quantity, dict) or "value" not in quantity:
        return None
    factor = table.get(str(quantity.get("code", quantity.get("unit", ""))))
    return None if factor is None else Fraction(str(quantity["value"])) * factor


def _interpretation(resource: dict[str, Any]) -> str:
    codes = {
        c.get("code")
        for i in resource.get("interpretation", [])
        for c in i.get("coding", [])
        if c.get("system", _INTERPRETATION) == _INTERPRETATION
    }
    if codes & _ELEVATED:
        return "elevated"
    if codes & _NORMAL:
        return "normal"
    return "unknown"


def liver_tests(
    observations: Iterable[dict[str, Any]], doses: list[Administration]
) -> list[LiverTest]:
    first = doses[0] if doses else None
    cited_first = set()
    if first is not None:
        cited_first = {i.get("reference") for i in first.resource.get("supportingInformation", [])}
    out = []
    for resource in observations:
        if resource.get("resourceType") != "Observation":
            continue
        if resource.get("status") in ("entered-in-error", "cancelled"):
            continue
        codes = [
            c.get("code")
            for c in resource.get("code", {}).get("coding", [])
            if c.get("system") == LOINC
        ]
        code = next((c for c in codes if c in ANALYTES or c == BILIRUBIN), None)
        if code is None:
            continue
        table = _MG_PER_DL if code == BILIRUBIN else _TO_UNITS_PER_L
        value = _converted(resource.get("valueQuantity"), table)
        ranges = resource.get("referenceRange", [])
        uln = _converted(ranges[0].get("high"), table) if ranges else None
        ratio = value / uln if value is not None and uln else None
        if ratio is not None:
            status = "elevated" if ratio > 1 else "normal"
        else:
            status = _interpretation(resource)
        event = event_of(resource, "effectiveDateTime", "effectivePeriod", "effectiveInstant")
        day = event.day if event else None
        this = key(resource)
        pre = (day is not None and first is not None and day < first.event.day) or (
            day is None and this in cited_first
        )
        since = (day - first.event.day).days if day is not None and first is not None else None
        analyte = "bilirubin" if code == BILIRUBIN else ANALYTES[code]
        out.append(LiverTest(resource, this, analyte, day, value, uln, ratio, status, pre, since))
    return sorted(out, key=lambda t: (t.day is not None, t.day or date.min, t.analyte))


def liver_safety(
    observations: Iterable[dict[str, Any]], doses: list[Administration]
) -> LiverSafety:
    tests = liver_tests(observations, doses)
    enzymes = [t for t in tests if t.analyte != "bilirubin"]
    computable = any(t.ratio is not None for t in tests)
    criteria: list[str] = []
    pattern = None
    r_ratio = None
    by_day: dict[date | None, dict[str, LiverTest]] = {}
    for test in tests:
        by_day.setdefault(test.day, {})[test.analyte] = test
    for day, found in sorted(by_day.items(), key=lambda i: i[0] or date.min):
        alt, alp, bili = (found.get(n) for n in ("ALT", "ALP", "bilirubin"))
        when = day.isoformat() if day else "undated"
        if alt and alt.ratio is not None and alt.ratio >= 5:
            criteria.append(f"ALT >= 5 x ULN ({when})")
        if alp and alp.ratio is not None and alp.ratio >= 2:
            criteria.append(f"ALP >= 2 x ULN ({when})")
        if (
            alt
            and bili
            and alt.ratio is not None
            and bili.ratio is not None
            and alt.ratio >= 3
            and bili.ratio > 2
        ):
            criteria.append(f"ALT >= 3 x ULN with bilirubin > 2 x ULN ({when})")
        if alt and alp and alt.ratio is not None and alp.ratio and criteria and r_ratio is None:
            r_ratio = alt.ratio / alp.ratio
            pattern = (
                "hepatocellular" if r_ratio >= 5 else "cholestatic" if r_ratio <= 2 else "mixed"
            )
    dated = [t.day for t in tests if t.day is not None]
    last = max(dated) if dated else None
    after = sum(1 for d in doses if last is None or d.event.day > last)
    return LiverSafety(
        tests=tests,
        abnormal=sum(1 for t in enzymes if t.status == "elevated"),
        uln_computable=computable,
        dili_signal=_signal(criteria, computable, enzymes),
        dili_criteria=criteria,
        pattern=pattern,
        r_ratio=r_ratio,
        last_dated_test=last,
        administrations_after_last_test=after,
    )


def _signal(criteria: list[str], computable: bool, enzymes: list[LiverTest]) -> bool | None:
    """True on any criterion; False when ratios rule it out or every test was read normal;
    None when a test is elevated or unread and no ratio can grade it."""
    if criteria:
        return True
    if computable or (enzymes and all(t.status == "normal" for t in enzymes)):
        return False
    return None
