"""The server as a SMART resource server, on both databases: 401 without a valid token,
403 when the scopes do not allow the interaction, on every path that reads or writes, and
nothing written by a refused request."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from app.config import Settings
from app.main import create_app
from tests.asgi_client import asgi_client
from tests.conftest import empty_database
from tests.helpers import FHIR_JSON, assert_outcome, ketamine_administration, pain_observation
from tests.helpers import patient as patient_resource
from tests.security.keys import AUDIENCE, ISSUER, forged_tokens, token, trusted_jwks

PATCH = [{"op": "replace", "path": "/status", "value": "amended"}]


@contextmanager
def secured_server(
    database_url: str, engines: dict[str, Engine], tmp_path: Path, resources: list[dict[str, Any]]
) -> Iterator[httpx.Client]:
    """A server requiring tokens signed by tests/security/keys.py's trusted keys, on an emptied
    database holding `resources` (stored with their ids by a system/*.* token)."""
    empty_database(database_url, engines)
    settings = Settings(
        DATABASE_URL=database_url,
        FHIR_MIGRATE_ON_START=False,
        FHIR_AUTH_JWKS=str(trusted_jwks(tmp_path / "jwks.json")),
        FHIR_AUTH_ISSUER=ISSUER,
        FHIR_AUTH_AUDIENCE=AUDIENCE,
        FHIR_AUTH_TOKEN_URL="https://auth.example.org/token",
        FHIR_EXPORT_DIR=tmp_path / "exports",
    )
    with asgi_client(create_app(settings)) as client:
        admin = _as(client, "system/*.*")
        for resource in resources:
            response = admin("PUT", f"/fhir/{resource['resourceType']}/{resource['id']}", resource)
            assert response.status_code == 201, response.text
        yield client


@pytest.fixture
def server(
    database_url: str, admin_engines: dict[str, Engine], tmp_path: Path
) -> Iterator[httpx.Client]:
    """Patient p1, Observation o1 (pain, of p1) and MedicationAdministration m1."""
    resources = [
        {**patient_resource(), "id": "p1"},
        {**pain_observation(), "id": "o1"},
        {**ketamine_administration(), "id": "m1"},
    ]
    with secured_server(database_url, admin_engines, tmp_path, resources) as client:
        yield client


Call = Callable[..., httpx.Response]


def _as(client: httpx.Client, scope: str, **claims: Any) -> Call:
    bearer = {"Authorization": f"Bearer {token(scope, **claims)}"}

    def call(method: str, url: str, body: Any = None, **headers: str) -> httpx.Response:
        content_type = "application/json-patch+json" if method == "PATCH" else FHIR_JSON
        if url.endswith("/_search") and method == "POST":
            content_type = "application/x-www-form-urlencoded"
        kwargs: dict[str, Any] = {"headers": {**bearer, "Content-Type": content_type, **headers}}
        if isinstance(body, str):
            kwargs["content"] = body
        elif body is not None:
            kwargs["json"] = body
        return client.request(method, url, **kwargs)

    return call


def _state(client: httpx.Client) -> list[tuple[str, str, str]]:
    """Every resource's type, id and version, read with an all-powerful token (but the
    audit trail, which every request adds to)."""
    admin = _as(client, "system/*.* system/AuditEvent.rs")
    history = admin("GET", "/fhir/_history?_count=1000").json()
    return sorted(
        (
            e["request"]["method"],
            e["fullUrl"].rsplit("/fhir/", 1)[-1],
            e.get("response", {}).get("etag", ""),
        )
        for e in history.get("entry", [])
        if "/AuditEvent/" not in e["fullUrl"]
    )


# -- authentication ------------------------------------------------------------------------------
def test_metadata_and_discovery_need_no_token(server: httpx.Client) -> None:
    metadata = server.get("/fhir/metadata")
    assert metadata.status_code == 200
    security = metadata.json()["rest"][0]["security"]
    assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    uris = {e["url"]: e["valueUri"] for e in security["extension"][0]["extension"]}
    assert uris == {"token": "https://auth.example.org/token"}
    for path in ("/.well-known/smart-configuration", "/fhir/.well-known/smart-configuration"):
        found = server.get(path)
        assert found.status_code == 200
        assert found.json()["token_endpoint"] == "https://auth.example.org/token"
        assert "permission-v2" in found.json()["capabilities"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/fhir/Patient/p1"),
        ("GET", "/fhir/Observation?code=72514-3"),
        ("GET", "/fhir"),
        ("GET", "/fhir/_history"),
        ("POST", "/fhir/Observation"),
        ("DELETE", "/fhir/Patient/p1"),
        ("POST", "/fhir"),
        ("GET", "/fhir/Patient/p1/$everything"),
        ("GET", "/fhir/Patient/p1/$pain-response"),
        ("GET", "/fhir/Observation/$lastn?patient=p1"),
        ("GET", "/fhir/$export"),
        ("GET", "/fhir/$export-status/x"),
        ("GET", "/fhir/OperationDefinition/pain-response"),
        ("POST", "/fhir/Observation/$validate"),
    ],
)
def test_no_token_is_401_with_www_authenticate(
    server: httpx.Client, method: str, path: str
) -> None:
    response = server.request(method, path, json={"resourceType": "Observation"})
    assert_outcome(response, 401, "login")
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("case", sorted(forged_tokens()))
def test_forged_tokens_are_401_and_change_nothing(server: httpx.Client, case: str) -> None:
    before = _state(server)
    headers = {"Authorization": f"Bearer {forged_tokens()[case]}"}
    read = server.get("/fhir/Patient/p1", headers=headers)
    assert_outcome(read, 401, "login")
    assert 'error="invalid_token"' in read.headers["www-authenticate"]
    write = server.put(
        "/fhir/Patient/p1",
        json={**patient_resource("Mallory"), "id": "p1"},
        headers={**headers, "Content-Type": FHIR_JSON},
    )
    assert_outcome(write, 401, "login")
    assert _state(server) == before


def test_a_malformed_authorization_header_is_401(server: httpx.Client) -> None:
    for value in ("Basic dXNlcjpwYXNz", "Bearer", "Bearer ", token()):
        response = server.get("/fhir/Patient/p1", headers={"Authorization": value})
        assert_outcome(response, 401, "login")


# -- scopes --------------------------------------------------------------------------------------
def _write_paths() -> list[tuple[str, str, Any, dict[str, str]]]:
    observation = pain_observation(7)
    return [
        ("POST", "/fhir/Observation", observation, {}),
        ("POST", "/fhir/Observation", observation, {"If-None-Exist": "code=72514-3"}),
        ("PUT", "/fhir/Observation/o1", {**observation, "id": "o1"}, {}),
        ("PUT", "/fhir/Observation/new1", {**observation, "id": "new1"}, {}),
        ("PUT", "/fhir/Observation?code=72514-3", observation, {}),
        ("PATCH", "/fhir/Observation/o1", PATCH, {}),
        ("PATCH", "/fhir/Observation?code=72514-3", PATCH, {}),
        ("DELETE", "/fhir/Observation/o1", None, {}),
        ("DELETE", "/fhir/Observation?code=72514-3", None, {}),
        (
            "POST",
            "/fhir",
            {
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [
                    {"request": {"method": "GET", "url": "Observation/o1"}},
                    {"resource": observation, "request": {"method": "POST", "url": "Observation"}},
                ],
            },
            {},
        ),
        (
            "POST",
            "/fhir",
            {
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [{"request": {"method": "DELETE", "url": "Observation/o1"}}],
            },
            {},
        ),
    ]


@pytest.mark.parametrize(
    "scope", ["user/*.rs", "user/*.read", "system/Observation.rs", "user/Patient.cruds"]
)
@pytest.mark.parametrize("index", range(len(_write_paths())))
def test_read_only_tokens_cannot_write_anywhere(
    server: httpx.Client, scope: str, index: int
) -> None:
    method, path, body, headers = _write_paths()[index]
    before = _state(server)
    response = _as(server, scope)(method, path, body, **headers)
    outcome = assert_outcome(response, 403, "forbidden")
    assert "Observation" in outcome["issue"][0]["diagnostics"]
    assert _state(server) == before


def test_batch_entries_are_refused_one_by_one(server: httpx.Client) -> None:
    before = _state(server)
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"request": {"method": "GET", "url": "Observation/o1"}},
            {"resource": pain_observation(2), "request": {"method": "POST", "url": "Observation"}},
            {"request": {"method": "DELETE", "url": "Patient/p1"}},
            {"request": {"method": "GET", "url": "Patient/p1"}},
        ],
    }
    response = _as(server, "user/Observation.rs")("POST", "/fhir", bundle)
    assert response.status_code == 200, response.text
    statuses = [e["response"]["status"] for e in response.json()["entry"]]
    assert [s.split()[0] for s in statuses] == ["200", "403", "403", "403"]
    assert _state(server) == before


def test_scopes_allow_what_they_name(server: httpx.Client) -> None:
    write = _as(server, "user/Observation.cruds")
    created = write("POST", "/fhir/Observation", pain_observation(3))
    assert created.status_code == 201
    assert write("GET", created.headers["location"].split("/_history")[0]).status_code == 200
    assert write("PATCH", "/fhir/Observation/o1", PATCH).status_code == 200
    assert write("DELETE", "/fhir/Observation/o1").status_code == 204
    v1 = _as(server, "user/*.read user/*.write")
    assert v1("GET", "/fhir/Patient/p1").status_code == 200
    assert (
        v1(
            "POST",
            "/fhir/Condition",
            {
                "resourceType": "Condition",
                "subject": {"reference": "Patient/p1"},
                "code": {"text": "fibromyalgia"},
            },
        ).status_code
        == 201
    )


def test_update_without_create_cannot_create(server: httpx.Client) -> None:
    update_only = _as(server, "user/Patient.ru")
    existing = update_only("PUT", "/fhir/Patient/p1", {**patient_resource("Roe"), "id": "p1"})
    assert existing.status_code == 200
    before = _state(server)
    fresh = update_only("PUT", "/fhir/Patient/p2", {**patient_resource("Roe"), "id": "p2"})
    assert_outcome(fresh, 403, "forbidden")
    conditional = update_only("PUT", "/fhir/Patient?family=Nobody", patient_resource("Nobody"))
    assert_outcome(conditional, 403, "forbidden")  # conditional update also needs search
    assert _state(server) == before


def test_searches_return_only_what_the_token_may_read(server: httpx.Client) -> None:
    observations = _as(server, "user/Observation.rs")
    assert_outcome(observations("GET", "/fhir/Patient/p1"), 403, "forbidden")
    assert_outcome(observations("GET", "/fhir/Patient?name=doe"), 403, "forbidden")
    found = observations("GET", "/fhir/Observation?_include=Observation:subject")
    assert found.status_code == 200
    types = [e["resource"]["resourceType"] for e in found.json()["entry"]]
    assert types == ["Observation"]  # the included Patient is left out
    everything = observations("GET", "/fhir?_lastUpdated=gt2000")
    assert {e["resource"]["resourceType"] for e in everything.json()["entry"]} == {"Observation"}
    assert_outcome(observations("GET", "/fhir?_type=Patient"), 403, "forbidden")
    assert_outcome(observations("GET", "/fhir/_history"), 403, "forbidden")
    assert observations("GET", "/fhir/Observation/_history").status_code == 200
    assert observations("GET", "/fhir/Observation/o1/_history/1").status_code == 200
    posted = observations("POST", "/fhir/Observation/_search", "code=72514-3")
    assert posted.status_code == 200
    with_patient = _as(server, "user/Observation.rs user/Patient.r")
    included = with_patient("GET", "/fhir/Observation?_include=Observation:subject").json()
    assert sorted(e["resource"]["resourceType"] for e in included["entry"]) == [
        "Observation",
        "Patient",
    ]


def test_operations_need_the_scopes_of_what_they_read(server: httpx.Client) -> None:
    observations = _as(server, "user/Observation.rs")
    for path in (
        "/fhir/Patient/p1/$pain-response",
        "/fhir/Patient/p1/$liver-safety",
        "/fhir/Patient/p1/$everything",
        "/fhir/Patient/p1/$clinical-course",
        "/fhir/$export",
    ):
        assert_outcome(observations("GET", path, Prefer="respond-async"), 403, "forbidden")
    assert observations("GET", "/fhir/Observation/$lastn?patient=p1").status_code == 200
    assert (
        observations(
            "GET", "/fhir/Observation/$stats?subject=Patient/p1&code=72514-3&statistic=count"
        ).status_code
        == 200
    )
    clinical = _as(
        server,
        "user/Patient.r user/Observation.rs user/MedicationAdministration.rs user/Medication.r",
    )
    assert clinical("GET", "/fhir/Patient/p1/$pain-response").status_code == 200
    everything = clinical("GET", "/fhir/Patient/p1/$everything")
    assert everything.status_code == 200
    assert {e["resource"]["resourceType"] for e in everything.json()["entry"]} == {
        "Patient",
        "Observation",
        "MedicationAdministration",
    }
    narrow = _as(server, "user/Patient.rs user/Observation.rs")(
        "GET", "/fhir/Patient/p1/$everything"
    )
    assert {e["resource"]["resourceType"] for e in narrow.json()["entry"]} == {
        "Patient",
        "Observation",
    }


def _finish(call: Call, started: httpx.Response) -> httpx.Response:
    """Poll an export until it is done: its thread must not outlive the server."""
    status = started.headers["content-location"].split("/fhir", 1)[1]
    for _ in range(400):
        polled = call("GET", f"/fhir{status}")
        if polled.status_code != 202:
            return polled
        time.sleep(0.05)
    raise AssertionError("the export did not finish")


def test_export_jobs_belong_to_who_started_them(server: httpx.Client) -> None:
    exporter = _as(server, "system/*.rs")
    started = exporter("GET", "/fhir/$export?_type=Observation", Prefer="respond-async")
    assert started.status_code == 202
    status = started.headers["content-location"].split("/fhir", 1)[1]
    other = _as(server, "system/*.rs", sub="someone-else")
    assert_outcome(other("GET", f"/fhir{status}"), 404, "not-found")
    assert_outcome(other("DELETE", f"/fhir{status}"), 404, "not-found")
    assert _finish(exporter, started).status_code == 200
    only_observations = _as(server, "system/Observation.rs")
    second = only_observations("GET", "/fhir/$export?_type=Observation", Prefer="respond-async")
    assert second.status_code == 202
    assert _finish(only_observations, second).status_code == 200
    assert_outcome(
        only_observations("GET", "/fhir/$export", Prefer="respond-async"), 403, "forbidden"
    )
