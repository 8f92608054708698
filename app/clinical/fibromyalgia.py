"""ACR fibromyalgia criteria, 2010 and 2016 (../shared/CASE.md C.7).

`met` needs every criterion met, `not-met` needs one failed; anything unknown leaves the
result `indeterminate`, with the missing inputs named. Out-of-range input is an error, never
`not-met`.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class CriteriaInputError(ValueError):
    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


@dataclass
class Criteria:
    result: str  # met | not-met | indeterminate
    version: str
    missing: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def _severity_met(wpi: int, ss: int, version: str) -> bool:
    low_band = 4 if version == "2016" else 3  # the 2016 revision raised the lower WPI band
    return (wpi >= 7 and ss >= 5) or (low_band <= wpi <= 6 and ss >= 9)


def evaluate(
    *,
    wpi: int | None,
    ss: int | None,
    symptom_months: float | None,
    other_disorder: bool | None,
    generalized_pain: bool | None = None,
    version: str = "2010",
) -> Criteria:
    if version not in ("2010", "2016"):
        raise CriteriaInputError("version", f"version '{version}' is not 2010 or 2016")
    if wpi is not None and not 0 <= wpi <= 19:
        raise CriteriaInputError("wpi", f"wpi {wpi} is outside 0-19 (19 body areas)")
    if ss is not None and not 0 <= ss <= 12:
        raise CriteriaInputError("ss", f"ss {ss} is outside 0-12")
    if symptom_months is not None and symptom_months < 0:
        raise CriteriaInputError("symptomDurationMonths", "symptomDurationMonths is negative")
    verdicts: dict[str, bool | None] = {
        "wpi/ss": None if wpi is None or ss is None else _severity_met(wpi, ss, version),
        "symptomDurationMonths": None if symptom_months is None else symptom_months >= 3,
    }
    if version == "2010":
        # criterion 3: no other disorder that would otherwise explain the pain
        verdicts["otherDisorderExplainsPain"] = (
            None if other_disorder is None else not other_disorder
        )
    else:
        # 2016: pain in at least 4 of 5 regions; valid irrespective of other diagnoses
        verdicts["generalizedPain"] = generalized_pain
    missing = [name for name, verdict in verdicts.items() if verdict is None]
    if "wpi/ss" in missing:
        missing.remove("wpi/ss")
        missing[:0] = [n for n, v in (("wpi", wpi), ("ss", ss)) if v is None]
    failed = [name for name, verdict in verdicts.items() if verdict is False]
    if failed:
        return Criteria("not-met", version, missing, failed)
    return Criteria("indeterminate" if missing else "met", version, missing, failed)
