"""Route order (app/main.py, app/api/routes.py): the interactions are matched first, yet no
operation, reserved word or stored OperationDefinition path is taken by their
`{resource_type}`/`{resource_id}`."""

from __future__ import annotations

import httpx
import pytest

from tests.helpers import JSON_HEADERS, assert_outcome, patient


def test_operations_and_reserved_words_keep_their_routes(client: httpx.Client) -> None:
    created = client.post("/fhir/Patient", json=patient("Route"), headers=JSON_HEADERS)
    pid = created.json()["id"]
    assert client.get(f"/fhir/Patient/{pid}").json()["id"] == pid
    lastn = client.get(f"/fhir/Observation/$lastn?patient={pid}").json()
    assert lastn["type"] == "searchset"
    stats = client.get("/fhir/Observation/$stats?code=72514-3&patient=x")  # the operation's 400
    assert "statistic must name" in stats.json()["issue"][0]["diagnostics"]
    assert client.get("/fhir/Patient/_history").json()["type"] == "history"
    assert client.get("/fhir/_history").json()["type"] == "history"
    definition = client.get("/fhir/OperationDefinition/pain-response").json()
    assert definition["resourceType"] == "OperationDefinition"
    assert client.get(f"/fhir/Patient/{pid}/$everything").json()["total"] == 1
    # $export's own answers (no job is started: without Prefer: respond-async it refuses)
    refused = client.get("/fhir/Patient/$export").json()["issue"][0]["diagnostics"]
    assert "respond-async" in refused
    assert "No export job" in client.get("/fhir/$export-status/x").text
    assert client.get("/fhir/metadata").json()["resourceType"] == "CapabilityStatement"


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/fhir/Patient/$nope"), ("PUT", "/fhir/Patient/$nope"), ("GET", "/fhir/$nope")],
)
def test_an_unknown_operation_is_no_endpoint(client: httpx.Client, method: str, path: str) -> None:
    response = client.request(method, path, json=patient("X") if method == "PUT" else None)
    assert_outcome(response, 404)
    assert "No FHIR endpoint" in response.json()["issue"][0]["diagnostics"]
