"""Patient-context tokens (`patient/...` scopes with a `patient` claim) see and create only
their patient's compartment (R4B CompartmentDefinition-patient), on both databases: another
patient's resources are 404 to reads and absent from searches, includes, chains, _has and
operations; what is not built for patient context yet is refused, never run unchecked."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from app.fhir.compartment import PATIENT_COMPARTMENT, in_patient_compartment, stored_params
from tests.helpers import assert_outcome, ketamine_administration, pain_observation
from tests.helpers import patient as patient_resource
from tests.security.test_auth_api import Call, _as, _state, secured_server

R4B_COMPARTMENT = Path("/tmp/r4b/package/CompartmentDefinition-patient.json")


def _observation(id_: str, subject: str, **extra: Any) -> dict[str, Any]:
    return {**pain_observation(subject=subject), "id": id_, **extra}


DATA = [
    {**patient_resource("Doe"), "id": "p1"},
    {**patient_resource("Roe"), "id": "p2"},
    _observation("o1", "Patient/p1"),
    _observation("o2", "Patient/p2"),
    # p2's observation that p1 performed: in both compartments (Observation.performer)
    _observation("o3", "Patient/p2", performer=[{"reference": "Patient/p1"}]),
    {**ketamine_administration(subject="Patient/p1"), "id": "m1"},
    {**ketamine_administration(subject="Patient/p2"), "id": "m2"},
    {
        "resourceType": "Encounter",
        "id": "e2",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": "Patient/p2"},
    },
]


@pytest.fixture
def server(
    database_url: str, admin_engines: dict[str, Engine], tmp_path: Path
) -> Iterator[httpx.Client]:
    with secured_server(database_url, admin_engines, tmp_path, DATA) as client:
        yield client


@pytest.fixture
def p1(server: httpx.Client) -> Call:
    return _as(server, "patient/*.rs patient/Observation.c launch/patient", patient="p1")


def _ids(response: httpx.Response, mode: str | None = None) -> list[str]:
    assert response.status_code == 200, response.text
    return sorted(
        f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in response.json().get("entry", [])
        if mode is None or e.get("search", {}).get("mode") == mode
    )


def test_reads_outside_the_compartment_are_404(p1: Call) -> None:
    for path in ("Patient/p1", "Observation/o1", "Observation/o3", "MedicationAdministration/m1"):
        assert p1("GET", f"/fhir/{path}").status_code == 200, path
    for path in (
        "Patient/p2",
        "Observation/o2",
        "MedicationAdministration/m2",
        "Encounter/e2",
        "Observation/o2/_history/1",
        "Observation/o2/_history",
        "Patient/nobody",
    ):
        assert_outcome(p1("GET", f"/fhir/{path}"), 404, "not-found")


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("Observation", ["Observation/o1", "Observation/o3"]),
        ("Observation?patient=p2", ["Observation/o3"]),  # p1 performed it
        ("Observation?subject=Patient/p2", ["Observation/o3"]),
        ("Observation?code=72514-3&_sort=-date", ["Observation/o1", "Observation/o3"]),
        ("Patient", ["Patient/p1"]),
        ("Patient?_id=p2", []),
        ("Patient?name=roe", []),
        ("MedicationAdministration", ["MedicationAdministration/m1"]),
        ("Encounter", []),
        ("Observation?subject:Patient.name=roe", ["Observation/o3"]),
        ("Observation?subject:Patient.name=doe", ["Observation/o1"]),
        ("Observation?patient=p2&performer:missing=true", []),
        ("Patient?_has:Observation:patient:code=72514-3", ["Patient/p1"]),
        ("?_type=Patient,Observation", ["Observation/o1", "Observation/o3", "Patient/p1"]),
        (
            "",
            ["MedicationAdministration/m1", "Observation/o1", "Observation/o3", "Patient/p1"],
        ),
    ],
)
def test_searches_see_only_the_compartment(p1: Call, query: str, expected: list[str]) -> None:
    assert _ids(p1("GET", f"/fhir/{query}"), "match") == expected


def test_includes_leave_out_other_patients(p1: Call) -> None:
    found = p1("GET", "/fhir/Observation?_include=Observation:subject")
    assert _ids(found, "match") == ["Observation/o1", "Observation/o3"]
    assert _ids(found, "include") == ["Patient/p1"]  # o3's subject, p2, is left out
    revinclude = p1("GET", "/fhir/Patient?_revinclude=Observation:subject")
    assert _ids(revinclude, "include") == ["Observation/o1"]
    posted = p1("POST", "/fhir/Observation/_search", "_include=Observation:subject")
    assert _ids(posted, "include") == ["Patient/p1"]


def test_operations_run_only_on_the_own_patient(p1: Call) -> None:
    everything = _ids(p1("GET", "/fhir/Patient/p1/$everything"))
    assert everything == [
        "MedicationAdministration/m1",
        "Observation/o1",
        "Observation/o3",
        "Patient/p1",
    ]
    assert p1("GET", "/fhir/Patient/p1/$pain-response").status_code == 200
    for path in ("$everything", "$pain-response", "$liver-safety", "$clinical-course"):
        assert_outcome(p1("GET", f"/fhir/Patient/p2/{path}"), 404, "not-found")


def test_creates_only_for_the_own_patient(server: httpx.Client, p1: Call) -> None:
    assert (
        p1("POST", "/fhir/Observation", pain_observation(subject="Patient/p1")).status_code == 201
    )
    before = _state(server)
    other = p1("POST", "/fhir/Observation", pain_observation(subject="Patient/p2"))
    assert_outcome(other, 403, "forbidden")
    nobody = p1("POST", "/fhir/Observation", {**pain_observation(), "subject": None})
    assert nobody.status_code in (400, 403, 422)
    assert _state(server) == before


def test_what_is_not_built_for_patient_context_is_refused(server: httpx.Client, p1: Call) -> None:
    writer = _as(server, "patient/*.cruds", patient="p1")
    before = _state(server)
    refused = [
        writer("PUT", "/fhir/Observation/o1", _observation("o1", "Patient/p1")),
        writer(
            "PATCH",
            "/fhir/Observation/o1",
            [{"op": "replace", "path": "/status", "value": "amended"}],
        ),
        writer("DELETE", "/fhir/Observation/o2"),
        writer("DELETE", "/fhir/Observation?code=72514-3"),
        writer("PUT", "/fhir/Observation?code=72514-3", pain_observation()),
        writer(
            "POST",
            "/fhir/Observation",
            pain_observation(subject="Patient/p1"),
            **{"If-None-Exist": "code=1"},
        ),
        writer(
            "POST",
            "/fhir",
            {
                "resourceType": "Bundle",
                "type": "batch",
                "entry": [{"request": {"method": "GET", "url": "Observation/o2"}}],
            },
        ),
        writer("GET", "/fhir/Observation/_history"),
        writer("GET", "/fhir/_history"),
        writer("GET", "/fhir/Observation/$lastn?patient=p1"),
        writer("GET", "/fhir/$export?_type=Observation", Prefer="respond-async"),
    ]
    for response in refused:
        if response.status_code == 200:  # a batch answers 200 with each entry's outcome
            entry = response.json()["entry"][0]["response"]
            assert entry["status"].startswith("403"), entry
        else:
            assert_outcome(response, 403, "forbidden")
    assert _state(server) == before


def test_patient_scopes_without_a_patient_claim_grant_nothing(server: httpx.Client) -> None:
    assert_outcome(_as(server, "patient/*.rs")("GET", "/fhir/Observation"), 403, "forbidden")


def test_the_compartment_data_is_r4b_and_every_parameter_is_a_reference() -> None:
    assert PATIENT_COMPARTMENT["Observation"] == ("subject", "performer")
    assert stored_params("Observation") == ("performer", "subject")
    assert stored_params("Encounter") == ("subject",)  # `patient` is read from subject rows
    assert in_patient_compartment(DATA[2], "p1")
    assert not in_patient_compartment(DATA[3], "p1")
    assert in_patient_compartment(DATA[4], "p1")
    assert in_patient_compartment(DATA[4], "p2")
    assert in_patient_compartment(DATA[0], "p1")
    assert not in_patient_compartment(DATA[1], "p1")
    if not R4B_COMPARTMENT.exists():
        pytest.skip(f"the R4B package is not unpacked at {R4B_COMPARTMENT.parent}")
    official = json.loads(R4B_COMPARTMENT.read_text())
    expected = {r["code"]: tuple(r["param"]) for r in official["resource"] if r.get("param")}
    assert expected == PATIENT_COMPARTMENT
