"""X-Provenance (http.html#provenance): the header's Provenance is stored with the write, in the
same transaction, targeting the version written; a bad header or a failed write stores neither."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from tests.helpers import JSON_HEADERS, assert_outcome, pain_observation, patient
from tests.security.test_auth_api import _as, secured_server

PROVENANCE: dict[str, Any] = {
    "resourceType": "Provenance",
    "recorded": "2026-11-29T08:00:00Z",
    "agent": [
        {
            "type": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                        "code": "author",
                    }
                ]
            },
            "who": {"display": "Infusion nurse"},
        }
    ],
    "reason": [{"text": "charted after the infusion"}],
}


def _headers(provenance: Any = PROVENANCE, **extra: str) -> dict[str, str]:
    value = provenance if isinstance(provenance, str) else json.dumps(provenance)
    return {**JSON_HEADERS, "X-Provenance": value, **extra}


def _provenances(client: httpx.Client) -> list[dict[str, Any]]:
    bundle = client.get("/fhir/Provenance?_count=100").json()
    return [e["resource"] for e in bundle.get("entry", [])]


def _targets(client: httpx.Client) -> list[str]:
    return sorted(t["reference"] for p in _provenances(client) for t in p["target"])


def _count(client: httpx.Client, resource_type: str) -> int:
    total: int = client.get(f"/fhir/{resource_type}?_summary=count").json()["total"]
    return total


def test_each_write_stores_its_provenance_targeting_the_version(client: httpx.Client) -> None:
    created = client.post("/fhir/Observation", json=pain_observation(), headers=_headers())
    assert created.status_code == 201, created.text
    oid = created.json()["id"]
    stored = _provenances(client)
    assert len(stored) == 1
    assert stored[0]["target"] == [{"reference": f"Observation/{oid}/_history/1"}]
    assert stored[0]["agent"] == PROVENANCE["agent"]
    assert stored[0]["reason"] == PROVENANCE["reason"]
    assert client.get(f"/fhir/Provenance?target=Observation/{oid}").json()["total"] == 1

    body = {**created.json(), "status": "amended"}
    assert client.put(f"/fhir/Observation/{oid}", json=body, headers=_headers()).status_code == 200
    patch = [{"op": "replace", "path": "/status", "value": "corrected"}]
    patched = client.patch(
        f"/fhir/Observation/{oid}",
        json=patch,
        headers=_headers(**{"Content-Type": "application/json-patch+json"}),
    )
    assert patched.status_code == 200, patched.text
    conditional = client.put(
        f"/fhir/Observation?_id={oid}", json={**body, "status": "final"}, headers=_headers()
    )
    assert conditional.status_code == 200, conditional.text
    assert _targets(client) == [f"Observation/{oid}/_history/{v}" for v in (1, 2, 3, 4)]


def test_a_target_in_the_header_is_replaced_by_the_written_version(client: httpx.Client) -> None:
    claimed = {**PROVENANCE, "id": "mine", "target": [{"reference": "Patient/someone-else"}]}
    created = client.post("/fhir/Patient", json=patient(), headers=_headers(claimed))
    assert created.status_code == 201, created.text
    assert _targets(client) == [f"Patient/{created.json()['id']}/_history/1"]
    assert _provenances(client)[0]["id"] != "mine"


@pytest.mark.parametrize(
    ("header", "status", "where"),
    [
        ("{not json", 400, "X-Provenance"),
        (json.dumps({"resourceType": "Observation"}), 400, "X-Provenance"),
        (json.dumps([PROVENANCE]), 400, "X-Provenance"),
        (json.dumps({k: v for k, v in PROVENANCE.items() if k != "agent"}), 422, "agent"),
        (json.dumps({**PROVENANCE, "recorded": "yesterday"}), 422, "recorded"),
    ],
    ids=["not-json", "not-provenance", "array", "no-agent", "bad-recorded"],
)
def test_a_bad_header_is_refused_and_nothing_is_written(
    client: httpx.Client, header: str, status: int, where: str
) -> None:
    response = client.post("/fhir/Observation", json=pain_observation(), headers=_headers(header))
    outcome = assert_outcome(response, status)
    assert where in json.dumps(outcome)
    assert "X-Provenance" in outcome["issue"][0]["diagnostics"]
    assert _count(client, "Observation") == 0
    assert _count(client, "Provenance") == 0


def test_a_failed_write_stores_no_provenance(client: httpx.Client) -> None:
    created = client.post("/fhir/Observation", json=pain_observation())
    oid = created.json()["id"]
    body = {**created.json(), "status": "amended"}
    stale = client.put(
        f"/fhir/Observation/{oid}", json=body, headers=_headers(**{"If-Match": 'W/"7"'})
    )
    assert_outcome(stale, 412)
    invalid = client.put(
        f"/fhir/Observation/{oid}", json={**body, "status": "nonsense"}, headers=_headers()
    )
    assert_outcome(invalid, 422)
    assert _count(client, "Provenance") == 0
    assert client.get(f"/fhir/Observation/{oid}").json()["meta"]["versionId"] == "1"


def test_a_conditional_create_that_matches_writes_nothing_and_no_provenance(
    client: httpx.Client,
) -> None:
    created = client.post("/fhir/Patient", json=patient(), headers=_headers())
    pid = created.json()["id"]
    again = client.post(
        "/fhir/Patient", json=patient(), headers=_headers(**{"If-None-Exist": f"_id={pid}"})
    )
    assert again.status_code == 200, again.text
    assert _targets(client) == [f"Patient/{pid}/_history/1"]


def test_the_provenance_needs_its_own_create_scope(
    database_url: str, admin_engines: dict[str, Engine], tmp_path: Path
) -> None:
    with secured_server(database_url, admin_engines, tmp_path, []) as server:
        without = _as(server, "user/Observation.cruds")
        refused = without("POST", "/fhir/Observation", pain_observation(), **_headers())
        assert_outcome(refused, 403, "forbidden")
        with_it = _as(server, "user/Observation.cruds user/Provenance.c")
        assert (
            with_it("POST", "/fhir/Observation", pain_observation(), **_headers()).status_code
            == 201
        )
        admin = _as(server, "system/*.*")
        assert admin("GET", "/fhir/Observation?_summary=count").json()["total"] == 1
        assert admin("GET", "/fhir/Provenance?_summary=count").json()["total"] == 1
