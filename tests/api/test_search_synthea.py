"""Searches over loaded Synthea bundles, checked against answers computed independently in
Python from the same files."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from tests.conftest import FIXTURES, loaded_client

BUNDLES = sorted((FIXTURES / "synthea").glob("*.json"))[:6] if FIXTURES.is_dir() else []
LOINC = "http://loinc.org"
pytestmark = pytest.mark.skipif(not BUNDLES, reason=f"{FIXTURES} is not beside this checkout")


def _local_references(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    """The bundle's resources with urn:uuid references rewritten to Type/id (what a server
    does when it processes the transaction)."""
    types = {e["resource"]["id"]: e["resource"]["resourceType"] for e in bundle["entry"]}
    text = json.dumps([e["resource"] for e in bundle["entry"]])
    for resource_id, resource_type in types.items():
        text = text.replace(f'"urn:uuid:{resource_id}"', f'"{resource_type}/{resource_id}"')
    return list(json.loads(text))


def _resources() -> list[dict[str, Any]]:
    return [r for path in BUNDLES for r in _local_references(json.loads(path.read_bytes()))]


@pytest.fixture(scope="module")
def loaded(
    database_url: str, admin_engines: dict[str, Engine]
) -> Iterator[tuple[httpx.Client, list[dict[str, Any]]]]:
    resources = _resources()
    with loaded_client(database_url, admin_engines, resources) as client:
        yield client, resources


def _of(resources: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [r for r in resources if r["resourceType"] == kind]


def _codes(concept: dict[str, Any] | None) -> set[tuple[str | None, str | None]]:
    return {(c.get("system"), c.get("code")) for c in (concept or {}).get("coding", [])}


def _total(client: httpx.Client, url: str) -> int:
    response = client.get(url, params={"_summary": "count"} if "?" not in url else None)
    assert response.status_code == 200, response.text
    return int(response.json()["total"])


def _instant(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def test_pain_scores_per_patient(loaded: tuple[httpx.Client, list[dict[str, Any]]]) -> None:
    client, resources = loaded
    for patient in _of(resources, "Patient"):
        expected = sum(
            1
            for o in _of(resources, "Observation")
            if o.get("subject", {}).get("reference") == f"Patient/{patient['id']}"
            and (LOINC, "72514-3") in _codes(o.get("code"))
        )
        got = _total(
            client, f"/fhir/Observation?patient={patient['id']}&code={LOINC}|72514-3&_summary=count"
        )
        assert got == expected, patient["id"]
        assert expected > 0


def test_each_patients_observations_of_a_code_listed(
    loaded: tuple[httpx.Client, list[dict[str, Any]]],
) -> None:
    """The page itself (not only the count) of patient + code, the code with and without its
    system, for every code a patient has: the search reads the code index narrowed to the
    patient's token rows."""
    client, resources = loaded
    for patient in _of(resources, "Patient"):
        subject = f"Patient/{patient['id']}"
        mine = [o for o in _of(resources, "Observation") if o["subject"]["reference"] == subject]
        for system, code in sorted({c for o in mine for c in _codes(o.get("code"))}, key=str):
            expected = sorted(o["id"] for o in mine if (system, code) in _codes(o.get("code")))
            for token in (f"{system}|{code}", code):
                response = client.get(
                    "/fhir/Observation",
                    params={"patient": patient["id"], "code": token, "_count": 1000},
                )
                assert response.status_code == 200, response.text
                got = sorted(e["resource"]["id"] for e in response.json().get("entry", []))
                assert got == expected, (patient["id"], token)


def test_newest_pain_scores_first(loaded: tuple[httpx.Client, list[dict[str, Any]]]) -> None:
    client, resources = loaded
    patient = _of(resources, "Patient")[0]["id"]
    expected = sorted(
        (
            _instant(o["effectiveDateTime"])
            for o in _of(resources, "Observation")
            if o.get("subject", {}).get("reference") == f"Patient/{patient}"
            and (LOINC, "72514-3") in _codes(o.get("code"))
        ),
        reverse=True,
    )
    bundle = client.get(
        f"/fhir/Observation?patient={patient}&code={LOINC}|72514-3&_sort=-date&_count=50"
    ).json()
    got = [_instant(e["resource"]["effectiveDateTime"]) for e in bundle["entry"]]
    assert got == expected


@pytest.mark.parametrize("cutoff", ["2010-01-01", "2019-06-15", "2020-12-31"])
def test_observations_on_or_after_a_date(
    loaded: tuple[httpx.Client, list[dict[str, Any]]], cutoff: str
) -> None:
    client, resources = loaded
    start = datetime.fromisoformat(cutoff).replace(tzinfo=UTC)
    expected = sum(
        1
        for o in _of(resources, "Observation")
        if "effectiveDateTime" in o and _instant(o["effectiveDateTime"]) >= start
    )
    assert _total(client, f"/fhir/Observation?date=ge{cutoff}&_summary=count") == expected


@pytest.mark.parametrize(
    ("code", "prefix", "value"),
    [
        ("8302-2", "gt", 170),
        ("29463-7", "le", 60),
        ("72514-3", "ge", 4),
        ("8867-4", "lt", 70),
    ],
)
def test_quantities_by_code_and_value(
    loaded: tuple[httpx.Client, list[dict[str, Any]]], code: str, prefix: str, value: float
) -> None:
    client, resources = loaded
    compare = {
        "gt": lambda v: v > value,
        "ge": lambda v: v >= value,
        "lt": lambda v: v < value,
        "le": lambda v: v <= value,
    }[prefix]
    expected = sum(
        1
        for o in _of(resources, "Observation")
        if (LOINC, code) in _codes(o.get("code"))
        and "valueQuantity" in o
        and compare(o["valueQuantity"]["value"])
    )
    got = _total(
        client,
        f"/fhir/Observation?code={LOINC}|{code}&value-quantity={prefix}{value}&_summary=count",
    )
    assert got == expected


def test_conditions_encounters_and_requests_per_patient(
    loaded: tuple[httpx.Client, list[dict[str, Any]]],
) -> None:
    client, resources = loaded
    for patient in _of(resources, "Patient"):
        ref = f"Patient/{patient['id']}"
        for kind, param in (
            ("Condition", "patient"),
            ("Encounter", "patient"),
            ("MedicationRequest", "patient"),
            ("Immunization", "patient"),
        ):
            field = "patient" if kind == "Immunization" else "subject"
            expected = sum(
                1 for r in _of(resources, kind) if r.get(field, {}).get("reference") == ref
            )
            got = _total(client, f"/fhir/{kind}?{param}={patient['id']}&_summary=count")
            assert got == expected, (kind, patient["id"])


def test_patients_by_gender_and_birthdate(
    loaded: tuple[httpx.Client, list[dict[str, Any]]],
) -> None:
    client, resources = loaded
    patients = _of(resources, "Patient")
    for gender in ("female", "male"):
        expected = sum(1 for p in patients if p["gender"] == gender)
        assert _total(client, f"/fhir/Patient?gender={gender}&_summary=count") == expected
    expected = sum(1 for p in patients if p["birthDate"] < "1960-01-01")
    assert _total(client, "/fhir/Patient?birthdate=lt1960-01-01&_summary=count") == expected


def test_has_active_condition(loaded: tuple[httpx.Client, list[dict[str, Any]]]) -> None:
    client, resources = loaded
    with_active = {
        c["subject"]["reference"].split("/")[1]
        for c in _of(resources, "Condition")
        if ("http://terminology.hl7.org/CodeSystem/condition-clinical", "active")
        in _codes(c.get("clinicalStatus"))
    }
    bundle = client.get(
        "/fhir/Patient?_has:Condition:patient:clinical-status=active&_count=100"
    ).json()
    assert {e["resource"]["id"] for e in bundle.get("entry", [])} == with_active


def test_every_reference_param_value_resolves_through_include(
    loaded: tuple[httpx.Client, list[dict[str, Any]]],
) -> None:
    client, resources = loaded
    encounters = {e["id"] for e in _of(resources, "Encounter")}
    bundle = client.get(
        "/fhir/Observation?code=http://loinc.org|72514-3&_include=Observation:encounter&_count=200"
    ).json()
    matched = [e["resource"] for e in bundle["entry"] if e["search"]["mode"] == "match"]
    wanted = {o["encounter"]["reference"].split("/")[1] for o in matched if "encounter" in o}
    included = {e["resource"]["id"] for e in bundle["entry"] if e["search"]["mode"] == "include"}
    assert included == wanted
    assert included <= encounters


def test_synthea_bundles_are_loaded(loaded: tuple[httpx.Client, list[dict[str, Any]]]) -> None:
    client, resources = loaded
    assert _total(client, "/fhir/Observation?_summary=count") == len(_of(resources, "Observation"))
    assert Path(BUNDLES[0]).exists()
