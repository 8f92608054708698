"""What the shipped case Bundle holds, read from the file itself: the expected answers of the
client tests are computed here, never written into them."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from app.case.load import BUNDLE_PATH, PATIENT_IDENTIFIER

LOINC = "http://loinc.org"
PAIN_CODE = "72514-3"  # Pain severity - 0-10 verbal numeric rating [Score] - Reported (PI-NRS)
PAIN_TOKEN = f"{LOINC}|{PAIN_CODE}"

# A pain score as the tests compare it: (effectiveDateTime, {"valueQuantity": ...} or
# {"valueRange": ...}), exactly as the JSON holds it.
Score = tuple[str, dict[str, Any]]


def score(resource: Mapping[str, Any]) -> Score:
    values = {key: value for key, value in resource.items() if key.startswith("value")}
    return str(resource["effectiveDateTime"]), json.loads(json.dumps(values))


def _is_case_patient(resource: Mapping[str, Any]) -> bool:
    system, value = PATIENT_IDENTIFIER.split("|")
    return resource["resourceType"] == "Patient" and any(
        i.get("system") == system and i.get("value") == value
        for i in resource.get("identifier", [])
    )


def case_pain_scores() -> list[Score]:
    """The case patient's PI-NRS Observations in the Bundle, oldest first."""
    bundle = json.loads(BUNDLE_PATH.read_bytes())
    patient_url = next(e["fullUrl"] for e in bundle["entry"] if _is_case_patient(e["resource"]))
    scores = [
        score(resource)
        for resource in (entry["resource"] for entry in bundle["entry"])
        if resource["resourceType"] == "Observation"
        and resource["subject"]["reference"] == patient_url
        and any(
            c.get("system") == LOINC and c.get("code") == PAIN_CODE
            for c in resource["code"].get("coding", [])
        )
    ]
    assert len({date for date, _ in scores}) == len(scores), "dates must order the scores"
    return sorted(scores, key=lambda s: s[0])


def pages(total: int, count: int) -> list[int]:
    """The number of entries on each page of a search of `total` matches, `count` a page."""
    return [min(count, total - start) for start in range(0, total, count)]
