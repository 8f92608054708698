"""The Patient compartment (CompartmentDefinition-patient of R4B, data/patient_compartment.json
written by compartment_gen.py): which resources belong to a patient, for patient-context
access. A resource is in patient X's compartment when it is Patient X, or when one of its
type's compartment parameters references Patient/X."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from app.search.aliases import stored_as
from app.search.indexer import index_rows

DATA = Path(__file__).parent / "data" / "patient_compartment.json"
PATIENT_COMPARTMENT: dict[str, tuple[str, ...]] = {
    resource_type: tuple(params)
    for resource_type, params in json.loads(DATA.read_text(encoding="utf-8"))["resources"].items()
}


@cache
def stored_params(resource_type: str) -> tuple[str, ...]:
    """The stored reference parameters holding the type's compartment references (aliases
    such as `patient` resolve to the rows they are read from: app/search/aliases.py)."""
    codes = {
        c
        for p in PATIENT_COMPARTMENT.get(resource_type, ())
        for c in stored_as(resource_type, p).codes
    }
    return tuple(sorted(codes))


def in_patient_compartment(resource: dict[str, Any], patient_id: str) -> bool:
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str):
        return False
    if resource_type == "Patient" and resource.get("id") == patient_id:
        return True
    codes = stored_params(resource_type)
    if not codes:
        return False
    return any(
        code in codes and target_type == "Patient" and target_id == patient_id
        for code, target_type, target_id, _ in index_rows(resource).reference
    )
