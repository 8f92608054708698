"""The X-Provenance header (http.html#provenance): a Provenance resource, as JSON, sent with a
create, update or patch. The server stores it in the same transaction as the write, with its
target set to the version the write made, so the record of who and why never exists without
the change it describes, nor the change without it."""

from __future__ import annotations

from typing import Any

from app.fhir import jsonio
from app.fhir.errors import BadRequestError, FhirError
from app.fhir.models import validate
from app.fhir.store import VersionRecord

HEADER = "X-Provenance"
# Provenance.target is required (1..*); the real one is known only once the write has run.
_PLACEHOLDER = [{"reference": "Basic/x-provenance-target"}]


def parse_provenance(raw: str) -> dict[str, Any]:
    """The header's Provenance, validated; its target is the server's to set."""
    try:
        data = jsonio.loads(raw.encode("latin-1"))  # header bytes, as received
    except (FhirError, UnicodeError):
        raise BadRequestError(
            f"The {HEADER} header is not JSON: it must hold a Provenance resource",
            (HEADER,),
        ) from None
    if not isinstance(data, dict) or data.get("resourceType") != "Provenance":
        raise BadRequestError(f"The {HEADER} header must hold a Provenance resource", (HEADER,))
    data = {k: v for k, v in data.items() if k not in ("id", "target")}
    try:
        validate({**data, "target": _PLACEHOLDER}, "Provenance")
    except FhirError as exc:
        exc.diagnostics = f"{HEADER}: {exc.diagnostics}"
        raise
    return data


def targeting(provenance: dict[str, Any], record: VersionRecord) -> dict[str, Any]:
    """The Provenance of the version `record`, version-specific as the spec asks."""
    reference = f"{record.resource_type}/{record.resource_id}/_history/{record.version_id}"
    return {**provenance, "target": [{"reference": reference}]}
