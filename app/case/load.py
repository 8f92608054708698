"""Loading the shipped case (data/ketamine-case-bundle.json) into the server, once."""

from __future__ import annotations

import json
from pathlib import Path

from app.fhir.service import ResourceService
from app.fhir.transactions import BundleProcessor

BUNDLE_PATH = Path(__file__).resolve().parent / "data" / "ketamine-case-bundle.json"
# The case's patient is identified in the publication's namespace (CASE.md A.3).
PATIENT_IDENTIFIER = "https://doi.org/10.14740/jmc3017w|patient"


def case_patient_id(service: ResourceService) -> str | None:
    _, page, _ = service.search(("Patient",), [("identifier", PATIENT_IDENTIFIER)], 1, 1)
    return page.matches[0].resource_id if page.matches else None


def load_case(service: ResourceService) -> tuple[str, bool]:
    """The case patient's id, and whether it was loaded now (False: it was already there).

    Called by one process before the server's workers start (python -m app serve
    --load-case, python -m app load-case), so the check and the load do not race."""
    existing = case_patient_id(service)
    if existing is not None:
        return existing, False
    bundle = json.loads(BUNDLE_PATH.read_bytes())
    processor = BundleProcessor(
        service,
        max_entries=len(bundle["entry"]),
        multiple_delete=False,
        default_count=1,
        max_count=1,
    )
    processor.process(bundle, "", "minimal")
    loaded = case_patient_id(service)
    assert loaded is not None
    return loaded, True
