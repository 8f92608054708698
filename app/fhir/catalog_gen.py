"""Writes data/r4b.json from fhir.resources' R4B models: the resource types, and the codes that
required bindings on `code` elements allow. Importing all 700 model classes takes seconds, so the
server reads this file instead; tests/fhir/test_catalog.py checks it still matches the models.

    python -m app.fhir.catalog_gen      # rewrite the file
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CATALOG_PATH = Path(__file__).parent / "data" / "r4b.json"

_OBSERVATION_STATUS = [
    "registered",
    "preliminary",
    "final",
    "amended",
    "corrected",
    "cancelled",
    "entered-in-error",
    "unknown",
]
_COMPARATOR = ["<", "<=", ">=", ">"]
_ENCOUNTER_STATUS = [
    "planned",
    "arrived",
    "triaged",
    "in-progress",
    "onleave",
    "finished",
    "cancelled",
    "entered-in-error",
    "unknown",
]
# The model titles list a value set's first codes followed by "+" when it has more; these are the
# complete R4B value sets for those elements (and the Quantity comparator, which has no list).
COMPLETED_VALUE_SETS: dict[str, dict[str, list[str]]] = {
    "DetectedIssue": {"status": _OBSERVATION_STATUS},
    "DeviceUdiCarrier": {
        "entryType": ["barcode", "rfid", "manual", "card", "self-reported", "unknown"]
    },
    "DeviceUseStatement": {
        "status": ["active", "completed", "entered-in-error", "intended", "stopped", "on-hold"]
    },
    "DiagnosticReport": {
        "status": [
            "registered",
            "partial",
            "preliminary",
            "final",
            "amended",
            "corrected",
            "appended",
            "cancelled",
            "entered-in-error",
            "unknown",
        ]
    },
    "Encounter": {"status": _ENCOUNTER_STATUS},
    "EncounterStatusHistory": {"status": _ENCOUNTER_STATUS},
    "Observation": {"status": _OBSERVATION_STATUS},
    "QuestionnaireItem": {
        "type": [
            "group",
            "display",
            "question",
            "boolean",
            "decimal",
            "integer",
            "date",
            "dateTime",
            "time",
            "string",
            "text",
            "url",
            "choice",
            "open-choice",
            "attachment",
            "reference",
            "quantity",
        ]
    },
    "RiskAssessment": {"status": _OBSERVATION_STATUS},
    "StructureMapGroupRuleTarget": {
        "transform": [
            "create",
            "copy",
            "truncate",
            "escape",
            "cast",
            "append",
            "translate",
            "reference",
            "dateOp",
            "uuid",
            "pointer",
            "evaluate",
            "cc",
            "c",
            "qty",
            "id",
            "cp",
        ]
    },
    "SupplyRequest": {
        "status": [
            "draft",
            "active",
            "suspended",
            "cancelled",
            "completed",
            "entered-in-error",
            "unknown",
        ]
    },
    "Task": {
        "status": [
            "draft",
            "requested",
            "received",
            "accepted",
            "rejected",
            "ready",
            "cancelled",
            "in-progress",
            "on-hold",
            "failed",
            "completed",
            "entered-in-error",
        ]
    },
    "Quantity": {"comparator": _COMPARATOR},
    "Age": {"comparator": _COMPARATOR},
    "Count": {"comparator": _COMPARATOR},
    "Distance": {"comparator": _COMPARATOR},
    "Duration": {"comparator": _COMPARATOR},
    "MoneyQuantity": {"comparator": _COMPARATOR},
    "SimpleQuantity": {"comparator": _COMPARATOR},
}


def build_catalog() -> dict[str, Any]:
    import fhir.resources.R4B as r4b
    import fhir.resources.R4B.fhirtypes as fhirtypes
    from fhir.resources.R4B import get_fhir_model_class
    from fhir.resources.R4B.resource import Resource

    resource_types: list[str] = []
    required: dict[str, dict[str, list[str]]] = {}
    for name in sorted(n[:-4] for n in dir(fhirtypes) if n.endswith("Type") and n[0].isupper()):
        try:
            model = get_fhir_model_class(name)
        except ValueError:
            continue
        if model.__name__ != name:
            continue
        if issubclass(model, Resource) and name not in {"Resource", "DomainResource"}:
            resource_types.append(name)
        codes: dict[str, list[str]] = {}
        for field in model.model_fields.values():
            extra = field.json_schema_extra
            enum_values = extra.get("enum_values") if isinstance(extra, dict) else None
            if isinstance(enum_values, list):
                values = [str(v) for v in enum_values]
                if "+" not in values:
                    codes[str(field.alias)] = values
        codes.update(COMPLETED_VALUE_SETS.get(name, {}))
        if codes:
            required[name] = codes
    return {
        "fhirVersion": r4b.__fhir_version__,
        "resourceTypes": resource_types,
        "requiredCodes": required,
    }


def main() -> None:
    CATALOG_PATH.write_text(json.dumps(build_catalog(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {CATALOG_PATH}")


if __name__ == "__main__":
    main()
