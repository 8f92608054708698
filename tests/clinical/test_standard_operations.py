"""$validate, Observation/$lastn and Patient/$everything, on the case, on both databases."""

from __future__ import annotations

from typing import Any

import httpx

from tests.clinical.test_pain_response import case  # noqa: F401 - fixture
from tests.helpers import JSON_HEADERS, assert_outcome, pain_observation


def _ids(bundle: dict[str, Any]) -> list[tuple[str, str]]:
    return [(e["resource"]["resourceType"], e["resource"]["id"]) for e in bundle.get("entry", [])]


def test_validate_reports_problems_with_200(client: httpx.Client) -> None:
    good = client.post("/fhir/Observation/$validate", json=pain_observation(), headers=JSON_HEADERS)
    assert good.status_code == 200
    assert good.json()["issue"][0]["severity"] == "information"
    bad = {**pain_observation(), "status": "done"}
    response = client.post("/fhir/Observation/$validate", json=bad, headers=JSON_HEADERS)
    assert response.status_code == 200
    issue = response.json()["issue"][0]
    assert issue["severity"] == "error"
    assert issue["expression"] == ["Observation.status"]
    wrapped = {"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": bad}]}
    response = client.post("/fhir/Observation/$validate", json=wrapped, headers=JSON_HEADERS)
    assert response.json()["issue"][0]["expression"] == ["Observation.status"]
    assert client.get("/fhir/Observation").json()["total"] == 0  # nothing stored


def test_validate_an_instance(case: tuple[httpx.Client, str]) -> None:  # noqa: F811
    client, patient_id = case
    stored = client.get(f"/fhir/Patient/{patient_id}/$validate")
    assert stored.status_code == 200
    assert stored.json()["issue"][0]["severity"] == "information"
    other = {"resourceType": "Patient", "id": "someone-else"}
    response = client.post(
        f"/fhir/Patient/{patient_id}/$validate", json=other, headers=JSON_HEADERS
    )
    assert response.json()["issue"][0]["expression"] == ["Patient.id"]
    assert_outcome(client.get("/fhir/Patient/nobody/$validate"), 404)


def test_lastn_gives_the_latest_per_code(case: tuple[httpx.Client, str]) -> None:  # noqa: F811
    client, patient_id = case
    bundle = client.get(f"/fhir/Observation/$lastn?patient={patient_id}&code=72514-3").json()
    assert bundle["type"] == "searchset"
    assert [e["resource"]["effectiveDateTime"] for e in bundle["entry"]] == ["2017-03-22"]
    bundle = client.get(
        f"/fhir/Observation/$lastn?patient={patient_id}&category=laboratory&max=2"
    ).json()
    codes: dict[str, int] = {}
    for entry in bundle["entry"]:
        code = entry["resource"]["code"]["coding"][0]["code"]
        codes[code] = codes.get(code, 0) + 1
    assert set(codes) >= {"1742-6", "1920-8", "6768-6", "2324-2"}
    assert max(codes.values()) == 2
    assert_outcome(client.get("/fhir/Observation/$lastn?code=72514-3"), 400, None, "patient")
    assert_outcome(client.get(f"/fhir/Observation/$lastn?patient={patient_id}&max=0"), 400)


def test_everything_pages_through_the_case(case: tuple[httpx.Client, str]) -> None:  # noqa: F811
    client, patient_id = case
    first = client.get(f"/fhir/Patient/{patient_id}/$everything?_count=20").json()
    assert first["total"] == 54  # every entry of the case but the Organization
    seen = _ids(first)
    url = next(link["url"] for link in first["link"] if link["relation"] == "next")
    while url:
        page = client.get("/fhir" + url.split("/fhir", 1)[1]).json()
        seen += _ids(page)
        url = next((link["url"] for link in page["link"] if link["relation"] == "next"), "")
    assert len(seen) == len(set(seen)) == 54
    assert ("Patient", patient_id) in seen
    only = client.get(f"/fhir/Patient/{patient_id}/$everything?_type=Condition").json()
    assert {t for t, _ in _ids(only)} == {"Condition"}
    assert only["total"] == 2
    assert_outcome(client.get(f"/fhir/Patient/{patient_id}/$everything?_type=Nope"), 400)
    assert_outcome(client.get("/fhir/Patient/nobody/$everything"), 404)


def test_the_capability_statement_names_them(client: httpx.Client) -> None:
    rest = client.get("/fhir/metadata").json()["rest"][0]
    operations = {r["type"]: {o["name"] for o in r.get("operation", [])} for r in rest["resource"]}
    assert {"validate", "lastn"} <= operations["Observation"]
    assert {"validate", "everything", "pain-response", "liver-safety"} <= operations["Patient"]
    assert "validate" in operations["Condition"]
