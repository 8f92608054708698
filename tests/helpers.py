"""Assertions and factories shared by the tests."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

FHIR_JSON = "application/fhir+json"
JSON_HEADERS = {"Content-Type": FHIR_JSON}


def assert_outcome(
    response: httpx.Response, status: int, code: str | None = None, expression: str | None = None
) -> dict[str, Any]:
    """The response is `status` with an OperationOutcome whose first issue is an error of
    `code`, with diagnostics, naming `expression` when given."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(FHIR_JSON)
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    issue = outcome["issue"][0]
    assert issue["severity"] in {"error", "fatal"}
    assert issue["diagnostics"]
    if code is not None:
        assert issue["code"] == code, outcome
    if expression is not None:
        expressions = [e for i in outcome["issue"] for e in i.get("expression", [])]
        assert expression in expressions, outcome
    return dict(outcome)


def patient(family: str = "Doe", **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "name": [{"family": family, "given": ["Jane"]}],
        "gender": "female",
        **extra,
    }


def pain_observation(
    value: float | int = 6, subject: str = "Patient/p1", **extra: Any
) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "survey",
                    }
                ]
            }
        ],
        "code": {
            "coding": [
                {
                    "system": "http://loinc.org",
                    "code": "72514-3",
                    "display": "Pain severity - 0-10 verbal numeric rating [Score] - Reported",
                }
            ]
        },
        "subject": {"reference": subject},
        "effectiveDateTime": "2016-08-22",
        "valueQuantity": {
            "value": value,
            "unit": "{score}",
            "system": "http://unitsofmeasure.org",
            "code": "{score}",
        },
        **extra,
    }


def ketamine_administration(dose_mg: int = 428, subject: str = "Patient/p1") -> dict[str, Any]:
    return {
        "resourceType": "MedicationAdministration",
        "status": "completed",
        "medicationCodeableConcept": {
            "coding": [
                {
                    "system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                    "code": "6130",
                    "display": "ketamine",
                }
            ]
        },
        "subject": {"reference": subject},
        "effectivePeriod": {"start": "2016-08-22", "end": "2016-08-22"},
        "dosage": {
            "route": {"text": "intravenous"},
            "dose": {
                "value": dose_mg,
                "unit": "mg",
                "system": "http://unitsofmeasure.org",
                "code": "mg",
            },
        },
    }


def without_server_fields(resource: dict[str, Any]) -> dict[str, Any]:
    """The resource minus what the server sets (id, meta.versionId, meta.lastUpdated)."""
    out = {k: v for k, v in resource.items() if k != "id"}
    meta = {k: v for k, v in out.pop("meta", {}).items() if k not in {"versionId", "lastUpdated"}}
    if meta:
        out["meta"] = meta
    return out


def run_cli(
    args: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    **env: str,
) -> tuple[int, str, str]:
    """`python -m app ARGS` in this process with `env` set: (exit status, stdout, stderr)."""
    from app import cli
    from app.config import get_settings

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    try:
        status = cli.main(args)
    finally:
        get_settings.cache_clear()
    out, err = capsys.readouterr()
    return status, out, err
