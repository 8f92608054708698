"""The CapabilityStatement, generated from what is registered, never written by hand.

Features add themselves through `contributors`: functions that receive the statement's rest
component and extend it (search parameters, operations), so metadata cannot drift from the code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from app.fhir import jsonio
from app.fhir.instants import format_instant, now
from app.fhir.models import FHIR_VERSION, RESOURCE_TYPES

SOFTWARE_NAME = "ketamine-fhir"
SOFTWARE_VERSION = "0.1.0"
TYPE_INTERACTIONS = (
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "create",
)
SYSTEM_INTERACTIONS = ("history-system", "transaction", "batch")
BULK_EXPORT = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"
PATIENT_EXPORT = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export"
FORMATS = ("json", "xml", "application/fhir+json", "application/fhir+xml")
PATCH_FORMATS = ("application/json-patch+json",)

Contributor = Callable[[dict[str, Any]], None]
contributors: list[Contributor] = []


def resource_capability(resource_type: str, multiple_delete: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": resource_type,
        "interaction": [{"code": code} for code in TYPE_INTERACTIONS],
        "versioning": "versioned-update",
        "readHistory": True,
        "updateCreate": True,
        "conditionalCreate": True,
        "conditionalRead": "full-support",
        "conditionalUpdate": True,
        "conditionalDelete": "multiple" if multiple_delete else "single",
    }
    if resource_type == "Patient":
        out["operation"] = [{"name": "export", "definition": PATIENT_EXPORT}]
    return out


OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"


@dataclass(frozen=True)
class Security:
    """What rest.security says: SMART on FHIR when tokens are required, and where to get one."""

    enabled: bool = False
    authorize_url: str = ""
    token_url: str = ""

    def component(self) -> dict[str, Any]:
        if not self.enabled:
            return {
                "cors": False,
                "description": "No authorization is configured: this server answers every "
                "request and listens on the loopback interface only.",
            }
        out: dict[str, Any] = {
            "cors": False,
            "service": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/"
                            "restful-security-service",
                            "code": "SMART-on-FHIR",
                        }
                    ],
                    "text": "OAuth2 bearer tokens (JWT) with SMART on FHIR v1 and v2 scopes",
                }
            ],
            "description": "Every request but GET /metadata and the .well-known/"
            "smart-configuration needs Authorization: Bearer <JWT access token>.",
        }
        uris = [
            {"url": name, "valueUri": url}
            for name, url in (("authorize", self.authorize_url), ("token", self.token_url))
            if url
        ]
        if uris:
            out["extension"] = [{"url": OAUTH_URIS, "extension": uris}]
        return out


@lru_cache(maxsize=8)
def capability_statement(
    base: str, multiple_delete: bool = False, security: Security = Security()
) -> bytes:
    rest: dict[str, Any] = {
        "mode": "server",
        "documentation": "FHIR R4B RESTful server for ketamine infusion therapy records",
        "security": security.component(),
        "resource": [resource_capability(t, multiple_delete) for t in RESOURCE_TYPES],
        "interaction": [{"code": code} for code in SYSTEM_INTERACTIONS],
        "operation": [{"name": "export", "definition": BULK_EXPORT}],
    }
    for contribute in contributors:
        contribute(rest)
    statement = {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": format_instant(now()),
        "publisher": SOFTWARE_NAME,
        "kind": "instance",
        "software": {"name": SOFTWARE_NAME, "version": SOFTWARE_VERSION},
        "implementation": {"description": "ketamine-fhir server", "url": base},
        "fhirVersion": FHIR_VERSION,
        "format": list(FORMATS),
        "patchFormat": list(PATCH_FORMATS),
        "rest": [rest],
    }
    return jsonio.dumps(statement)
