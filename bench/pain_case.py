"""The $pain-response workload's patient: 200 pain scores (LOINC 72514-3, shaped like the
Synthea fixtures' pain Observations) over two years and 50 ketamine infusions (RxNorm 6130, IV,
dose in mg, shaped like the shipped case's MedicationAdministrations): 10 courses of 5 daily
infusions, 5 weeks apart, starting after a year of baseline scores."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

SCORES = 200
INFUSIONS = 50
START = datetime(2015, 1, 5, 9, 0, tzinfo=UTC)
FIRST_INFUSION = START + timedelta(days=365)


def patient() -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:bench", "value": "pain-response"}],
        "name": [{"family": "Bench", "given": ["Pain"]}],
        "gender": "female",
        "birthDate": "1972-03-14",
    }


def score(patient_id: str, number: int) -> dict[str, Any]:
    when = START + timedelta(hours=number * 87.6)  # 200 over two years
    value = 8 - (3 if when > FIRST_INFUSION else 0) + (number * 7 % 5) / 2
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs",
                        "display": "vital-signs",
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
            ],
            "text": "Pain severity - 0-10 verbal numeric rating [Score] - Reported",
        },
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": when.strftime("%Y-%m-%dT%H:%M:%S+00:00"),
        "issued": when.strftime("%Y-%m-%dT%H:%M:%S.000+00:00"),
        "valueQuantity": {
            "value": min(value, 10),
            "unit": "{score}",
            "system": "http://unitsofmeasure.org",
            "code": "{score}",
        },
    }


def infusion(patient_id: str, number: int) -> dict[str, Any]:
    course, day = divmod(number, 5)
    when = FIRST_INFUSION + timedelta(days=course * 35 + day)
    dose = 428 if day == 0 else 856 if day < 3 else 1063
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
            ],
            "text": "Ketamine HCl in 100 mL of 0.9% sodium chloride (IV admixture)",
        },
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": when.strftime("%Y-%m-%d"),
        "dosage": {
            "text": f"{dose} mg ketamine HCl in 100 mL of 0.9% sodium chloride",
            "route": {
                "coding": [
                    {
                        "system": "http://snomed.info/sct",
                        "code": "47625008",
                        "display": "Intravenous route (qualifier value)",
                    }
                ]
            },
            "dose": {
                "value": dose,
                "unit": "mg",
                "system": "http://unitsofmeasure.org",
                "code": "mg",
            },
        },
    }


def bundle(patient_id: str) -> dict[str, Any]:
    """The scores and infusions of Patient/`patient_id` as one transaction Bundle."""
    resources = [score(patient_id, n) for n in range(SCORES)]
    resources += [infusion(patient_id, n) for n in range(INFUSIONS)]
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": r, "request": {"method": "POST", "url": r["resourceType"]}}
            for r in resources
        ],
    }
