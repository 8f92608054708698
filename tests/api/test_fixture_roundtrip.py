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


def _shape(node: object, path: str = "") -> frozenset[str]:
    """The element paths a resource uses, with each leaf's JSON type: two resources of one
    shape exercise the same parsing, validation and serialisation."""
    if isinstance(node, dict):
        return frozenset(
            p
            for key, value in node.items()
            for p in (f"{path}.{key}", *_shape(value, f"{path}.{key}"))
        )
    if isinstance(node, list):
        return frozenset(p for value in node for p in _shape(value, path))
    return frozenset({f"{path}:{type(node).__name__}"})


def _synthea_shapes() -> dict[str, list[dict]]:
    """One resource per distinct shape across every Synthea bundle, by type: ~70 of ~8,900
    entries. Round-tripping all of them one by one took 18-50 s per bundle on PostgreSQL and
    repeated the same shapes thousands of times; the transaction test still loads them all."""
    seen: set[tuple[str, frozenset[str]]] = set()
    by_type: dict[str, list[dict]] = {}
    for path in SYNTHEA:
        for entry in json.loads(path.read_bytes())["entry"]:
            resource = entry["resource"]
            key = (resource["resourceType"], _shape(resource))
            if key not in seen:
                seen.add(key)
                by_type.setdefault(resource["resourceType"], []).append(resource)
    return by_type


SYNTHEA_SHAPES = _synthea_shapes()


@pytest.mark.parametrize(
    "resource_type", sorted(SYNTHEA_SHAPES) or [None], ids=sorted(SYNTHEA_SHAPES) or ["absent"]
)
def test_each_synthea_resource_shape_roundtrips(
    client: httpx.Client, resource_type: str | None
) -> None:
    _skip_without_fixtures(SYNTHEA)
    assert resource_type is not None
    for resource in SYNTHEA_SHAPES[resource_type]:
        _roundtrip(client, resource)
