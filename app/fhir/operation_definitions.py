"""OperationDefinitions of the clinical operations, served at /fhir/OperationDefinition/{name}
and named in the CapabilityStatement (through its contributor hook)."""

from __future__ import annotations

from typing import Any

from app.fhir import capability

CANONICAL = "http://ketamine-fhir.example.org/fhir/OperationDefinition"


def _param(name: str, use: str, kind: str | None, low: int, high: str, doc: str) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "use": use, "min": low, "max": high, "documentation": doc}
    if kind is not None:
        out["type"] = kind
    return out


def _definition(
    name: str,
    title: str,
    description: str,
    resources: list[str],
    system: bool,
    instance: bool,
    parameters: list[dict[str, Any]],
) -> dict[str, Any]:
    return {
        "resourceType": "OperationDefinition",
        "id": name,
        "url": f"{CANONICAL}/{name}",
        "name": "".join(part.capitalize() for part in name.split("-")),
        "title": title,
        "status": "active",
        "kind": "operation",
        "description": description,
        "affectsState": False,
        "code": name,
        "resource": resources,
        "system": system,
        "type": False,
        "instance": instance,
        "parameter": parameters,
    }


_OUT = "out"
_IN = "in"
DEFINITIONS: dict[str, dict[str, Any]] = {
    "pain-response": _definition(
        "pain-response",
        "Pain response to ketamine",
        "Baseline, improvement from baseline, pain against cumulative ketamine dose, nadir, "
        "relapse and courses for a patient (rules: ../shared/CASE.md C.0-C.5).",
        ["Patient"],
        False,
        True,
        [
            _param("threshold", _IN, "decimal", 0, "1", "Relapse threshold, % of baseline; 30"),
            _param("baselineLookbackDays", _IN, "integer", 0, "1", "Baseline search window"),
            _param("medication", _IN, "token", 0, "1", "Medication code; ketamine by default"),
            _param("painCode", _IN, "token", 0, "1", "Pain observation code; LOINC 72514-3"),
            _param("baseline", _OUT, None, 0, "1", "observation, date, low, high, days"),
            _param("baselineStatus", _OUT, "code", 0, "1", "no-baseline | baseline-zero"),
            _param("point", _OUT, None, 0, "*", "One per pain observation, in clinical order"),
            _param("nadir", _OUT, None, 0, "1", "The lowest pain after the first dose"),
            _param("course", _OUT, None, 0, "*", "Per course: doses, escalationSteps, ..."),
            _param("protocolTotalMg", _OUT, "decimal", 0, "1", "Known mg of the first course"),
            _param("knownTotalMg", _OUT, "decimal", 1, "1", "Known mg of every course"),
            _param("totalIsLowerBound", _OUT, "boolean", 1, "1", "Some doses are unknown"),
            _param("daysToFirstRelapse", _OUT, "integer", 0, "1", "From the first course's end"),
        ],
    ),
    "liver-safety": _definition(
        "liver-safety",
        "Liver safety under ketamine",
        "Each liver test against its upper limit of normal (or its interpretation), the DILI "
        "signal and pattern, and administrations after the last test (CASE.md C.6).",
        ["Patient"],
        False,
        True,
        [
            _param("medication", _IN, "token", 0, "1", "Medication code; ketamine by default"),
            _param("test", _OUT, None, 0, "*", "One per liver test"),
            _param("diliSignal", _OUT, "boolean", 0, "1", "Any DILI criterion met"),
            _param("administrationsAfterLastLft", _OUT, "integer", 1, "1", "Monitoring gap"),
        ],
    ),
    "fibromyalgia-criteria": _definition(
        "fibromyalgia-criteria",
        "ACR fibromyalgia criteria",
        "ACR 2010 or 2016 criteria from the widespread pain index, symptom severity, duration "
        "and exclusion; met, not-met or indeterminate with the missing inputs (CASE.md C.7).",
        ["Patient"],
        True,
        True,
        [
            _param("wpi", _IN, "integer", 0, "1", "Widespread pain index, 0-19"),
            _param("ss", _IN, "integer", 0, "1", "Symptom severity, 0-12"),
            _param("symptomDurationMonths", _IN, "decimal", 0, "1", "Months with symptoms"),
            _param("otherDisorderExplainsPain", _IN, "boolean", 0, "1", "2010 criterion 3"),
            _param("generalizedPain", _IN, "boolean", 0, "1", "2016: 4 of 5 regions"),
            _param("version", _IN, "code", 0, "1", "2010 | 2016"),
            _param("result", _OUT, "code", 1, "1", "met | not-met | indeterminate"),
            _param("missing", _OUT, "string", 0, "*", "Inputs that were not given"),
        ],
    ),
    "clinical-course": _definition(
        "clinical-course",
        "Clinical course chart",
        "Pain over time with infusion doses, courses and liver tests, like the case report's "
        "Figure 1: image/svg+xml, text/html (chart and pain table), or a Binary.",
        ["Patient"],
        False,
        True,
        [
            _param("threshold", _IN, "decimal", 0, "1", "Relapse threshold for the table"),
            _param("return", _OUT, "Binary", 1, "1", "The chart (SVG) when a FHIR format is asked"),
        ],
    ),
}


def _standard(
    name: str,
    url: str,
    title: str,
    resources: list[str],
    type_level: bool,
    instance: bool,
    parameters: list[dict[str, Any]],
) -> dict[str, Any]:
    """The spec's operation as this server runs it: the spec's canonical url, our parameters."""
    definition = _definition(
        name,
        title,
        f"{title} (as in the FHIR R4B specification).",
        resources,
        False,
        instance,
        parameters,
    )
    definition.update(url=url, type=type_level, base=url)
    return definition


DEFINITIONS.update(
    {
        "validate": _standard(
            "validate",
            "http://hl7.org/fhir/OperationDefinition/Resource-validate",
            "Validate a resource",
            ["Resource"],
            True,
            True,
            [
                _param("resource", _IN, "Resource", 0, "1", "The resource (or the body)"),
                _param("return", _OUT, "OperationOutcome", 1, "1", "The issues found"),
            ],
        ),
        "lastn": _standard(
            "lastn",
            "http://hl7.org/fhir/OperationDefinition/Observation-lastn",
            "Last N observations per code",
            ["Observation"],
            True,
            False,
            [
                _param("max", _IN, "positiveInt", 0, "1", "Observations per code; 1"),
                _param("return", _OUT, "Bundle", 1, "1", "A searchset"),
            ],
        ),
        "stats": _standard(
            "stats",
            "http://hl7.org/fhir/OperationDefinition/Observation-stats",
            "Observation statistics",
            ["Observation"],
            True,
            False,
            [
                _param("subject", _IN, "uri", 1, "1", "The subject (or patient)"),
                _param("code", _IN, "string", 0, "*", "Codes (with system)"),
                _param("period", _IN, "Period", 0, "1", "start/end"),
                _param("statistic", _IN, "code", 1, "*", "average, maximum, minimum, ..."),
                _param("statistics", _OUT, "Observation", 0, "*", "One per code"),
            ],
        ),
        "everything": _standard(
            "everything",
            "http://hl7.org/fhir/OperationDefinition/Patient-everything",
            "Everything about a patient",
            ["Patient"],
            False,
            True,
            [
                _param("_since", _IN, "instant", 0, "1", "Changed after"),
                _param("_type", _IN, "code", 0, "*", "Resource types"),
                _param("_count", _IN, "integer", 0, "1", "Page size"),
                _param("return", _OUT, "Bundle", 1, "1", "A searchset, paged"),
            ],
        ),
    }
)
_STANDARD_NAMES = ("validate", "lastn", "stats", "everything")


# The spec's own operations this server runs: (name, definition, resource types or None = all)
STANDARD = (
    ("validate", "http://hl7.org/fhir/OperationDefinition/Resource-validate", None),
    ("lastn", "http://hl7.org/fhir/OperationDefinition/Observation-lastn", ("Observation",)),
    ("stats", "http://hl7.org/fhir/OperationDefinition/Observation-stats", ("Observation",)),
    ("everything", "http://hl7.org/fhir/OperationDefinition/Patient-everything", ("Patient",)),
)


def _contribute(rest: dict[str, Any]) -> None:
    for name, url, types in STANDARD:
        for resource in rest["resource"]:
            if types is None or resource["type"] in types:
                resource.setdefault("operation", []).append({"name": name, "definition": url})
    for name, definition in DEFINITIONS.items():
        if name in _STANDARD_NAMES:
            continue  # listed above, on every type they apply to
        entry = {"name": name, "definition": definition["url"]}
        if definition["system"]:
            rest.setdefault("operation", []).append(entry)
        for resource in rest["resource"]:
            if resource["type"] in definition["resource"] and definition["instance"]:
                resource.setdefault("operation", []).append(entry)


capability.contributors.append(_contribute)
