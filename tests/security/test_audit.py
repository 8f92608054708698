"""The audit trail, on both databases: N accesses give N AuditEvents with the right who, what
and outcome (refused and unauthenticated ones included); AuditEvents cannot be changed or
deleted through the API."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from sqlalchemy import Engine

from app.api.audit import classify
from app.fhir.audit import AccessRecord, AuditWriter, audit_event
from app.fhir.instants import now
from app.fhir.models import validate
from app.fhir.service import ResourceService
from app.fhir.store import VersionRecord
from tests.helpers import assert_outcome, pain_observation
from tests.helpers import patient as patient_resource
from tests.security.test_auth_api import Call, _as, secured_server


@pytest.fixture
def server(
    database_url: str, admin_engines: dict[str, Engine], tmp_path: Path
) -> Iterator[httpx.Client]:
    resources = [{**patient_resource(), "id": "p1"}, {**pain_observation(), "id": "o1"}]
    with secured_server(database_url, admin_engines, tmp_path, resources) as client:
        yield client


def _events(server: httpx.Client, client_id: str, expected: int) -> list[dict[str, object]]:
    """The AuditEvents of one client, once the background writer has written `expected`."""
    auditor = _as(server, "system/AuditEvent.rs", client_id="audit-viewer", sub="auditor")
    for _ in range(200):
        found = auditor("GET", f"/fhir/AuditEvent?altid={client_id}&_count=100").json()
        entries = [e["resource"] for e in found.get("entry", [])]
        if len(entries) >= expected:
            return entries
        time.sleep(0.05)
    raise AssertionError(f"{len(entries)} audit events of {client_id}, expected {expected}")


def test_every_access_is_one_audit_event(server: httpx.Client) -> None:
    nurse = _as(server, "user/Patient.r user/Observation.crus", client_id="ward-app")
    assert nurse("GET", "/fhir/Patient/p1").status_code == 200
    assert nurse("GET", "/fhir/Observation?code=72514-3").status_code == 200
    created = nurse("POST", "/fhir/Observation", pain_observation(4))
    assert created.status_code == 201
    new_id = created.json()["id"]
    assert (
        nurse("PUT", "/fhir/Observation/o1", {**pain_observation(5), "id": "o1"}).status_code == 200
    )
    assert_outcome(nurse("DELETE", "/fhir/Observation/o1"), 403, "forbidden")
    assert_outcome(nurse("GET", "/fhir/Patient/nobody"), 404)
    events = _events(server, "ward-app", 6)
    assert len(events) == 6
    for event in events:
        validate(event, "AuditEvent")
        agent = event["agent"][0]  # type: ignore[index]
        assert agent["who"]["identifier"]["value"] == "nurse-7"
        assert agent["altId"] == "ward-app"
        assert agent["requestor"] is True
    seen = Counter(
        (
            e["subtype"][0]["code"],  # type: ignore[index]
            e["action"],
            e["outcome"],
            tuple(sorted(x["what"]["reference"] for x in e.get("entity", []) if "what" in x)),  # type: ignore[attr-defined]
        )
        for e in events
    )
    assert seen == Counter(
        {
            ("read", "R", "0", ("Patient/p1",)): 1,
            ("search-type", "R", "0", ("Observation/o1",)): 1,
            ("create", "C", "0", (f"Observation/{new_id}",)): 1,
            ("update", "U", "0", ("Observation/o1",)): 1,
            ("delete", "D", "4", ("Observation/o1",)): 1,
            ("read", "R", "4", ("Patient/nobody",)): 1,
        }
    )
    search = next(e for e in events if e["subtype"][0]["code"] == "search-type")  # type: ignore[index]
    query = next(x for x in search["entity"] if "query" in x)  # type: ignore[attr-defined]
    assert query["description"] == "GET /fhir/Observation"


def test_unauthenticated_requests_are_recorded(server: httpx.Client) -> None:
    assert server.get("/fhir/Patient/p1").status_code == 401
    auditor = _as(server, "system/AuditEvent.rs", client_id="audit-viewer")
    for _ in range(200):
        found = auditor("GET", "/fhir/AuditEvent?outcome=4&subtype=read").json()
        if found.get("entry"):
            break
        time.sleep(0.05)
    event = found["entry"][0]["resource"]
    assert event["agent"][0]["who"]["identifier"]["value"] == "anonymous"
    assert event["outcomeDesc"] == "HTTP 401"


def test_audit_events_cannot_be_changed_or_deleted(server: httpx.Client) -> None:
    # even a token allowed everything on AuditEvent cannot change one
    admin: Call = _as(server, "system/*.* system/AuditEvent.cruds", client_id="admin-console")
    admin("GET", "/fhir/Patient/p1")
    event = _events(server, "admin-console", 1)[0]
    url = f"/fhir/AuditEvent/{event['id']}"
    assert_outcome(admin("PUT", url, {**event, "outcome": "0"}), 405)
    assert_outcome(admin("PATCH", url, [{"op": "replace", "path": "/outcome", "value": "8"}]), 405)
    assert_outcome(admin("DELETE", url), 405)
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"request": {"method": "DELETE", "url": f"AuditEvent/{event['id']}"}}],
    }
    assert_outcome(admin("POST", "/fhir", bundle), 405)
    assert admin("GET", url).json()["meta"]["versionId"] == "1"


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/fhir/Patient/p1", ("read", ("Patient/p1",))),
        ("GET", "/fhir/Patient/p1/_history/2", ("vread", ("Patient/p1",))),
        ("GET", "/fhir/Patient/p1/_history", ("history-instance", ("Patient/p1",))),
        ("GET", "/fhir/Patient/_history", ("history-type", ())),
        ("GET", "/fhir/_history", ("history-system", ())),
        ("GET", "/fhir/Patient", ("search-type", ())),
        ("POST", "/fhir/Patient/_search", ("search-type", ())),
        ("GET", "/fhir", ("search-system", ())),
        ("POST", "/fhir", ("transaction", ())),
        ("POST", "/fhir/Patient", ("create", ())),
        ("PUT", "/fhir/Patient", ("update", ())),
        ("DELETE", "/fhir/Patient/p1", ("delete", ("Patient/p1",))),
        ("PATCH", "/fhir/Patient/p1", ("patch", ("Patient/p1",))),
        ("GET", "/fhir/Patient/p1/$everything", ("operation", ("Patient/p1",))),
        ("GET", "/fhir/$export", ("operation", ())),
        # a path naming no valid resource names no entity (it is described by the query)
        ("GET", "/fhir/Patient/a\x00", ("read", ())),
        ("GET", "/fhir/Nonsense/p1", ("read", ())),
        ("DELETE", "/fhir/Patient/..", ("delete", ())),
    ],
)
def test_requests_are_classified(
    method: str, path: str, expected: tuple[str, tuple[str, ...]]
) -> None:
    assert classify(method, path) == expected


def test_an_audit_event_is_a_valid_r4b_resource() -> None:
    record = AccessRecord(
        "search-type",
        "GET",
        "/fhir/Observation",
        "code=1",
        200,
        ("Observation/o1",),
        None,
        None,
        None,
        now(),
    )
    event = audit_event(record)
    validate(event, "AuditEvent")
    assert event["agent"][0]["who"]["identifier"]["value"] == "anonymous"


def test_request_text_in_an_event_is_a_valid_fhir_string() -> None:
    record = AccessRecord(
        "read", "GET", "/fhir/Patient/a\x00b", "x=\x01", 400, (), "sub\x00", "app\n", None, now()
    )
    event = audit_event(record)
    validate(event, "AuditEvent")  # control characters would be a 422 (and U+0000 a PG error)
    assert event["agent"][0]["who"]["identifier"]["value"] == "sub\ufffd"


def test_an_event_the_database_refuses_loses_only_itself() -> None:
    """The writer writes a failing batch one event at a time: the others are kept."""
    stored: list[str] = []

    class Tx:
        def insert_many(self, items: list[tuple[VersionRecord, Any]]) -> None:
            paths = [json.loads(r.content or b"{}")["entity"][0]["description"] for r, _ in items]
            if any("refused" in p for p in paths):
                raise RuntimeError("the database refuses this one")
            stored.extend(paths)

    class Store:
        @contextmanager
        def write(self) -> Iterator[Tx]:
            yield Tx()

    class Service:
        store = Store()

    writer = AuditWriter(cast(ResourceService, Service()), batch=10)
    try:
        writer._write(  # one batch, as the writer thread would take it
            [
                AccessRecord("read", "GET", f"/fhir/{p}", "q=1", 200, (), None, None, None, now())
                for p in ("Patient/a", "Patient/refused", "Patient/b")
            ]
        )
    finally:
        writer.close()
    assert stored == ["GET /fhir/Patient/a", "GET /fhir/Patient/b"]
