"""Bulk Data export ($export) on both databases: kick-off, polling, manifest, NDJSON files,
_type/_since, the Patient level, cancelling, and a round trip into an empty database."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.config import Settings
from app.fhir.loading import load
from app.fhir.service import ResourceService
from app.main import create_app
from app.storage.engine import make_engine
from app.storage.sql_store import SqlStore
from tests.api.test_transactions import _visit
from tests.asgi_client import asgi_client
from tests.conftest import empty_database
from tests.helpers import JSON_HEADERS, assert_outcome

ASYNC = {"Prefer": "respond-async", "Accept": "application/fhir+json"}


@pytest.fixture
def http(settings: Settings, tmp_path: Path) -> Iterator[httpx.Client]:
    exporting = settings.model_copy(update={"export_dir": tmp_path / "exports"})
    with asgi_client(create_app(exporting)) as client:
        assert client.post("/fhir", json=_visit(), headers=JSON_HEADERS).status_code == 200
        organization = {"resourceType": "Organization", "id": "org", "name": "Clinic"}
        client.put("/fhir/Organization/org", json=organization, headers=JSON_HEADERS)
        yield client


def _finished(client: httpx.Client, kick_off: httpx.Response) -> dict[str, Any]:
    assert kick_off.status_code == 202, kick_off.text
    status_url = kick_off.headers["Content-Location"]
    assert "/fhir/$export-status/" in status_url
    deadline = time.monotonic() + 30
    while True:
        status = client.get(status_url)
        if status.status_code == 200:
            return dict(status.json())
        assert status.status_code == 202, status.text
        assert status.headers["X-Progress"]
        assert time.monotonic() < deadline, "export did not finish"
        time.sleep(0.05)


def _files(client: httpx.Client, manifest: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out = {}
    for item in manifest["output"]:
        response = client.get(item["url"])
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/fhir+ndjson")
        lines = [json.loads(line) for line in response.text.splitlines()]
        assert len(lines) == item["count"]
        assert {r["resourceType"] for r in lines} == {item["type"]}
        out[item["type"]] = lines
    return out


def test_system_export(http: httpx.Client) -> None:
    manifest = _finished(http, http.get("/fhir/$export", headers=ASYNC))
    assert manifest["requiresAccessToken"] is False
    assert manifest["request"].endswith("/fhir/$export")
    assert manifest["transactionTime"]
    counts = {item["type"]: item["count"] for item in manifest["output"]}
    assert counts == {
        "Encounter": 1,
        "MedicationAdministration": 1,
        "Observation": 2,
        "Organization": 1,
        "Patient": 1,
    }
    files = _files(http, manifest)
    assert files["Organization"][0]["name"] == "Clinic"


def test_type_since_and_patient_level(http: httpx.Client) -> None:
    manifest = _finished(http, http.get("/fhir/$export?_type=Patient,Observation", headers=ASYNC))
    assert sorted(item["type"] for item in manifest["output"]) == ["Observation", "Patient"]
    later = http.get("/fhir/Organization/org").json()["meta"]["lastUpdated"]
    manifest = _finished(http, http.get(f"/fhir/$export?_since={later}", headers=ASYNC))
    assert manifest["output"] == []  # _since is exclusive: nothing changed after the last write
    manifest = _finished(http, http.get("/fhir/Patient/$export", headers=ASYNC))
    types = sorted(item["type"] for item in manifest["output"])
    assert types == ["Encounter", "MedicationAdministration", "Observation", "Patient"]


@pytest.mark.parametrize(
    ("query", "headers", "expression"),
    [
        ("", {"Accept": "application/fhir+json"}, "Prefer"),
        ("?_outputFormat=text/csv", ASYNC, "_outputFormat"),
        ("?_type=Nope", ASYNC, "_type"),
        ("?_typeFilter=Patient%3Fgender%3Dmale", ASYNC, "_typeFilter"),
        ("?_since=yesterday", ASYNC, "_since"),
    ],
)
def test_bad_kick_offs(
    http: httpx.Client, query: str, headers: dict[str, str], expression: str
) -> None:
    assert_outcome(http.get(f"/fhir/$export{query}", headers=headers), 400, None, expression)


def test_cancel_and_unknown_jobs(http: httpx.Client) -> None:
    kick_off = http.get("/fhir/$export", headers=ASYNC)
    status_url = kick_off.headers["Content-Location"]
    _finished(http, kick_off)
    assert http.delete(status_url).status_code == 202
    assert_outcome(http.get(status_url), 404)
    assert_outcome(http.delete(status_url), 404)
    assert_outcome(http.get("/fhir/$export-file/nope/Patient.ndjson"), 404)


def test_round_trip_into_an_empty_database(
    http: httpx.Client, settings: Settings, tmp_path: Path, admin_engines: Any
) -> None:
    manifest = _finished(http, http.get("/fhir/$export", headers=ASYNC))
    exported = _files(http, manifest)
    folder = tmp_path / "round-trip"
    folder.mkdir()
    for resource_type, resources in exported.items():
        lines = "\n".join(json.dumps(r) for r in resources)
        (folder / f"{resource_type}.ndjson").write_text(lines + "\n")
    empty_database(settings.database_url, admin_engines)
    assert http.get("/fhir/Patient").json()["total"] == 0
    engine = make_engine(settings)
    try:
        totals = load(ResourceService(SqlStore(engine)), [folder], workers=1)
    finally:
        engine.dispose()
    assert totals.failed == 0
    assert totals.stored == sum(len(r) for r in exported.values())
    for resources in exported.values():
        for resource in resources:
            stored = http.get(f"/fhir/{resource['resourceType']}/{resource['id']}").json()
            assert _without_meta(stored) == _without_meta(resource)


def _without_meta(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k != "meta"}
