"""$validate, Observation/$lastn, $stats and Patient/$everything, on the case, on both
databases. Tests that empty the database (the `client` fixture) come before those on the case
(the module's `case` fixture loads it once)."""

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


def test_the_capability_statement_names_them(case: tuple[httpx.Client, str]) -> None:  # noqa: F811
    rest = case[0].get("/fhir/metadata").json()["rest"][0]
    operations = {r["type"]: {o["name"] for o in r.get("operation", [])} for r in rest["resource"]}
    assert {"validate", "lastn"} <= operations["Observation"]
    assert {"validate", "everything", "pain-response", "liver-safety"} <= operations["Patient"]
    assert "validate" in operations["Condition"]


def test_stats_of_the_case_pain_scores(case: tuple[httpx.Client, str]) -> None:  # noqa: F811
    client, patient_id = case
    response = client.get(
        f"/fhir/Observation/$stats?subject=Patient/{patient_id}&code=72514-3"
        "&system=http://loinc.org&statistic=average,maximum,minimum,count,median,total"
    )
    assert response.status_code == 200, response.text
    (statistics,) = response.json()["parameter"]
    components = {
        c["code"]["coding"][0]["code"]: c["valueQuantity"]["value"]
        for c in statistics["resource"]["component"]
    }
    # the four pain scores given as numbers (10, 6, 4, 2); the two ranges are not numbers
    assert components == {
        "average": 5.5,
        "maximum": 10,
        "minimum": 2,
        "count": 4,
        "median": 5,
        "sum": 22,
    }
    period = client.get(
        f"/fhir/Observation/$stats?patient={patient_id}&code=http://loinc.org|72514-3"
        "&period=2016-08-01/2016-12-31&statistic=count&include=true"
    ).json()
    names = [p["name"] for p in period["parameter"]]
    assert names == ["statistics", "source", "source"]
    assert_outcome(client.get(f"/fhir/Observation/$stats?subject={patient_id}&code=x"), 400)
    assert_outcome(
        client.get("/fhir/Observation/$stats?code=x&statistic=count"), 400, None, "subject"
    )


def test_their_definitions_are_served(client: httpx.Client) -> None:
    from app.fhir.models import validate

    for name in ("validate", "lastn", "stats", "everything"):
        definition = client.get(f"/fhir/OperationDefinition/{name}").json()
        validate(definition, "OperationDefinition")
        assert definition["url"].startswith("http://hl7.org/fhir/OperationDefinition/")
