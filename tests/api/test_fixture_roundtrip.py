"""Every resource in ../shared/fixtures (HL7 examples, and each Synthea bundle's entries one by
one) can be created, read back equal apart from id and meta, updated and deleted."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.conftest import FIXTURES
from tests.helpers import JSON_HEADERS, assert_outcome, without_server_fields


def _files(folder: str) -> list[Path]:
    path = FIXTURES / folder
    return sorted(path.glob("*.json")) if path.is_dir() else []


def _roundtrip(client: httpx.Client, resource: dict) -> None:
    resource_type = resource["resourceType"]
    created = client.post(f"/fhir/{resource_type}", json=resource, headers=JSON_HEADERS)
    assert created.status_code == 201, (resource_type, resource.get("id"), created.text)
    url = created.headers["location"].split("/_history")[0]
    read = client.get(url)
    assert read.status_code == 200
    assert without_server_fields(read.json()) == without_server_fields(resource)
    stored = read.json()
    updated = client.put(url, json=stored, headers=JSON_HEADERS)
    assert updated.status_code == 200, updated.text
    assert updated.json()["meta"]["versionId"] == "2"
    assert without_server_fields(updated.json()) == without_server_fields(resource)
    assert client.delete(url).status_code == 204
    assert client.get(url).status_code == 410


def _skip_without_fixtures(files: list[Path]) -> None:
    if not files:
        pytest.skip(f"{FIXTURES} is not beside this checkout: the shared fixtures are needed")


HL7 = _files("hl7-examples")
SYNTHEA = _files("synthea")
# Spec examples that break the R4 definitions themselves: refused with a 422 naming the element.
INVALID_EXAMPLES = {
    # Observation.performer allows CareTeam, Organization, Patient, Practitioner,
    # PractitionerRole and RelatedPerson; the example points at an Encounter.
    "Observation-clinical-gender": "Observation.performer[0]",
}


@pytest.mark.parametrize("path", HL7 or [None], ids=[p.stem for p in HL7] or ["absent"])
def test_hl7_example_roundtrips(client: httpx.Client, path: Path | None) -> None:
    _skip_without_fixtures(HL7)
    assert path is not None
    resource = json.loads(path.read_bytes())
    if path.stem in INVALID_EXAMPLES:
        response = client.post(
            f"/fhir/{resource['resourceType']}", json=resource, headers=JSON_HEADERS
        )
        assert_outcome(response, 422, "invalid", INVALID_EXAMPLES[path.stem])
        return
    _roundtrip(client, resource)


@pytest.mark.slow
@pytest.mark.parametrize(
    "path", SYNTHEA or [None], ids=[p.stem[:20] for p in SYNTHEA] or ["absent"]
)
def test_synthea_bundle_entries_roundtrip_one_by_one(
    client: httpx.Client, path: Path | None
) -> None:
    _skip_without_fixtures(SYNTHEA)
    assert path is not None
    bundle = json.loads(path.read_bytes())
    for entry in bundle["entry"]:
        _roundtrip(client, entry["resource"])
