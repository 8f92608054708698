"""Patient-context tokens (`patient/...` scopes with a `patient` claim) see and create only
their patient's compartment (R4B CompartmentDefinition-patient), on both databases: another
patient's resources are 404 to reads and absent from searches, includes, chains, _has and
operations and history; writes (direct, conditional and in Bundles) reach only the
compartment, and what they store stays in it."""

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
        # o3 is p1's (p1 performed it), but its subject p2 is not: a chain cannot test p2's
        # name (the chain's far side is bounded to the compartment too)
        ("Observation?subject:Patient.name=roe", []),
        ("Observation?performer:Patient.name=doe", ["Observation/o3"]),
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


def _versions(server: httpx.Client, *names: str) -> dict[str, str]:
    """Type/id -> current versionId (or the status when absent), read with a system token."""
    admin = _as(server, "system/*.*")
    found = {}
    for name in names:
        response = admin("GET", f"/fhir/{name}")
        found[name] = (
            response.json()["meta"]["versionId"]
            if response.status_code == 200
            else str(response.status_code)
        )
    return found


OTHERS = ("Patient/p2", "Observation/o2", "MedicationAdministration/m2", "Encounter/e2")


def test_patient_context_writes_stay_in_the_compartment(server: httpx.Client) -> None:
    writer = _as(server, "patient/*.cruds", patient="p1")
    others = _versions(server, *OTHERS)
    amended = _observation("o1", "Patient/p1", status="amended")
    assert writer("PUT", "/fhir/Observation/o1", amended).status_code == 200
    # another patient's resource is not known, whatever the write would do to it
    assert_outcome(writer("PUT", "/fhir/Observation/o2", _observation("o2", "Patient/p1")), 404)
    status = [{"op": "replace", "path": "/status", "value": "amended"}]
    assert_outcome(writer("PATCH", "/fhir/Observation/o2", status), 404, "not-found")
    assert_outcome(writer("PATCH", "/fhir/Observation/o2", status, **{"If-Match": 'W/"9"'}), 404)
    assert_outcome(writer("DELETE", "/fhir/Observation/o2"), 404, "not-found")
    assert_outcome(writer("DELETE", "/fhir/Patient/p2"), 404, "not-found")
    # nor may the own resource be moved out of the compartment
    moved = _observation("o1", "Patient/p2")
    assert_outcome(writer("PUT", "/fhir/Observation/o1", moved), 403, "forbidden")
    to_p2 = [{"op": "replace", "path": "/subject/reference", "value": "Patient/p2"}]
    assert_outcome(writer("PATCH", "/fhir/Observation/o1", to_p2), 403, "forbidden")
    assert writer("PATCH", "/fhir/Observation/o1", status).status_code == 200
    # a new id: created only in the compartment
    assert (
        writer("PUT", "/fhir/Observation/o9", _observation("o9", "Patient/p1")).status_code == 201
    )
    assert_outcome(
        writer("PUT", "/fhir/Observation/o8", _observation("o8", "Patient/p2")), 403, "forbidden"
    )
    assert writer("DELETE", "/fhir/Observation/o9").status_code == 204
    assert_outcome(
        writer("PUT", "/fhir/Observation/o9", _observation("o9", "Patient/p1")), 403, "forbidden"
    )
    assert _versions(server, *OTHERS, "Observation/o8") == {**others, "Observation/o8": "404"}
    assert _versions(server, "Observation/o1", "Observation/o9") == {
        "Observation/o1": "3",
        "Observation/o9": "410",
    }


def test_patient_context_conditional_writes_match_only_the_compartment(
    server: httpx.Client,
) -> None:
    writer = _as(server, "patient/*.cruds", patient="p1")
    others = _versions(server, *OTHERS)
    # o2 (p2's) has the same code; within p1's compartment the condition matches o1 and o3
    assert_outcome(
        writer("PUT", "/fhir/Observation?code=72514-3", _observation("x", "Patient/p1")), 412
    )
    only = writer(
        "PUT", "/fhir/Observation?_id=o1,o2", _observation("o1", "Patient/p1", status="amended")
    )
    assert only.status_code == 200, only.text
    # o2 is not in the compartment: no match, so the body creates (in the compartment only)
    created = writer("PUT", "/fhir/Observation?_id=o2", {**pain_observation(subject="Patient/p1")})
    assert created.status_code == 201, created.text
    assert created.json()["id"] != "o2"
    patch = [{"op": "replace", "path": "/status", "value": "amended"}]
    assert_outcome(writer("PATCH", "/fhir/Observation?_id=o2", patch), 404, "not-found")
    matched = writer(
        "POST",
        "/fhir/Observation",
        pain_observation(subject="Patient/p1"),
        **{"If-None-Exist": "_id=o2"},
    )
    assert matched.status_code == 201  # o2 was not found, so a new one was created
    assert writer("DELETE", "/fhir/Observation?_id=o2").status_code == 204
    assert writer("DELETE", "/fhir/Encounter?status=finished").status_code == 204
    assert _versions(server, *OTHERS) == others


def test_patient_context_bundles_stay_in_the_compartment(server: httpx.Client) -> None:
    writer = _as(server, "patient/*.cruds", patient="p1")
    others = _versions(server, *OTHERS)

    def bundle(kind: str, *entries: dict[str, Any]) -> dict[str, Any]:
        return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}

    def get(url: str) -> dict[str, Any]:
        return {"request": {"method": "GET", "url": url}}

    def put(resource: dict[str, Any]) -> dict[str, Any]:
        url = f"{resource['resourceType']}/{resource['id']}"
        return {"resource": resource, "request": {"method": "PUT", "url": url}}

    read = writer(
        "POST",
        "/fhir",
        bundle("batch", get("Observation/o2"), get("Observation/o1"), get("Observation")),
    )
    assert read.status_code == 200, read.text
    first, second, third = (e for e in read.json()["entry"])
    assert first["response"]["status"].startswith("404")
    assert second["response"]["status"].startswith("200")
    found = sorted(e["resource"]["id"] for e in third["resource"].get("entry", []))
    assert found == ["o1", "o3"]
    # one entry outside the compartment fails the whole transaction
    for entry in (
        put(_observation("o2", "Patient/p1")),
        put(_observation("o7", "Patient/p2")),
        {"request": {"method": "DELETE", "url": "Observation/o2"}},
        {"request": {"method": "DELETE", "url": "Observation?_id=o2"}},
        {
            "resource": {**pain_observation(), "subject": {"reference": "Patient?name=roe"}},
            "request": {"method": "POST", "url": "Observation"},
        },
    ):
        response = writer(
            "POST", "/fhir", bundle("transaction", put(_observation("o6", "Patient/p1")), entry)
        )
        if entry["request"]["url"] == "Observation?_id=o2":
            assert response.status_code == 200, response.text  # matches nothing: no-op
            continue
        assert response.status_code in (400, 403, 404), response.text
        assert response.json()["resourceType"] == "OperationOutcome"
    assert _versions(server, *OTHERS) == others
    assert _versions(server, "Observation/o7") == {"Observation/o7": "404"}


def test_patient_context_history_shows_only_the_compartment(server: httpx.Client) -> None:
    admin = _as(server, "system/*.*")
    # o5 was p2's, then moved to p1: p1 sees the versions that are p1's only
    assert admin("PUT", "/fhir/Observation/o5", _observation("o5", "Patient/p2")).status_code == 201
    assert admin("PUT", "/fhir/Observation/o5", _observation("o5", "Patient/p1")).status_code == 200
    reader = _as(server, "patient/*.rs", patient="p1")

    def versions(url: str) -> list[str]:
        response = reader("GET", url)
        assert response.status_code == 200, response.text
        return sorted(
            f"{e['request']['url'].split('/_history')[0]}@{e['resource']['meta']['versionId']}"
            if "resource" in e
            else e["request"]["url"]
            for e in response.json().get("entry", [])
        )

    assert versions("/fhir/Observation/o5/_history") == ["Observation/o5@2"]
    assert versions("/fhir/Observation/_history") == [
        "Observation/o1@1",
        "Observation/o3@1",
        "Observation/o5@2",
    ]
    every = versions("/fhir/_history")
    assert "Patient/p1@1" in every
    assert "MedicationAdministration/m1@1" in every
    assert not [v for v in every if v.split("@")[0] in OTHERS]
    assert not [v for v in every if v.startswith("AuditEvent/")]  # patient/*.rs: not audits
    assert_outcome(reader("GET", "/fhir/Observation/o5/_history/1"), 404, "not-found")
    assert reader("GET", "/fhir/Observation/o5/_history/2").status_code == 200


def test_deleted_resources_of_other_patients_are_404_not_410(server: httpx.Client) -> None:
    admin = _as(server, "system/*.*")
    assert admin("DELETE", "/fhir/Observation/o2").status_code == 204
    assert admin("DELETE", "/fhir/Observation/o1").status_code == 204
    reader = _as(server, "patient/*.rs", patient="p1")
    assert_outcome(reader("GET", "/fhir/Observation/o2"), 404, "not-found")
    assert_outcome(reader("GET", "/fhir/Observation/o2/_history"), 404, "not-found")
    assert reader("GET", "/fhir/Observation/o1").status_code == 410
    assert reader("GET", "/fhir/Observation/o1/_history").status_code == 200


def test_lastn_and_stats_see_only_the_compartment(server: httpx.Client) -> None:
    admin = _as(server, "system/*.*")
    reader = _as(server, "patient/*.rs", patient="p1")
    for who in (admin, reader):
        assert who("GET", "/fhir/Observation/$lastn?patient=p1").status_code == 200
    lastn = reader("GET", "/fhir/Observation/$lastn?patient=p2&max=5")
    assert sorted(e["resource"]["id"] for e in lastn.json()["entry"]) == ["o3"]
    assert len(admin("GET", "/fhir/Observation/$lastn?patient=p2&max=5").json()["entry"]) == 2
    stats = "/fhir/Observation/$stats?subject=Patient/p2&code=72514-3&statistic=count"

    def count(response: httpx.Response) -> Any:
        assert response.status_code == 200, response.text
        text = json.dumps(response.json())
        return [c["valueQuantity"]["value"] for c in _components(response.json())] or text

    assert count(reader("GET", stats)) == [1]
    assert count(admin("GET", stats)) == [2]


def _components(parameters: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        component
        for part in parameters.get("parameter", [])
        for component in part.get("resource", {}).get("component", [])
    ]


def test_export_is_refused_to_patient_context_tokens(server: httpx.Client) -> None:
    """Bulk export is a system-level interaction (SMART Backend Services)."""
    writer = _as(server, "patient/*.cruds", patient="p1")
    response = writer("GET", "/fhir/$export?_type=Observation", Prefer="respond-async")
    assert_outcome(response, 403, "forbidden")


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
