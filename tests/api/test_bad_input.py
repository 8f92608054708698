"""Bad input: always a 4xx OperationOutcome naming what and where, never a 500, nothing stored."""

from __future__ import annotations

import json
import logging
from typing import Any

import anyio.from_thread
import httpx
import pytest

from app.config import Settings
from app.main import create_app
from tests.asgi_client import asgi_client
from tests.helpers import JSON_HEADERS, assert_outcome, pain_observation, patient

OBS = pain_observation()


def _with(**changes: object) -> bytes:
    return json.dumps({**OBS, **changes}).encode()


# (name, method, path, body, expected status, expected expression or None)
CORPUS: list[tuple[str, str, str, bytes, int, str | None]] = [
    ("malformed json", "POST", "/fhir/Observation", b'{"resourceType": "Observation",', 400, None),
    ("not json at all", "POST", "/fhir/Observation", b"hello", 400, None),
    ("json array", "POST", "/fhir/Observation", b"[1, 2]", 400, None),
    ("json string", "POST", "/fhir/Observation", b'"Observation"', 400, None),
    ("no resourceType", "POST", "/fhir/Observation", b'{"status": "final"}', 400, "resourceType"),
    (
        "resourceType mismatch",
        "POST",
        "/fhir/Observation",
        json.dumps(patient()).encode(),
        400,
        "Patient.resourceType",
    ),
    (
        "unknown resourceType in body",
        "POST",
        "/fhir/Observation",
        b'{"resourceType": "Unicorn"}',
        400,
        None,
    ),
    ("wrong element type", "POST", "/fhir/Observation", _with(status=7), 422, "Observation.status"),
    (
        "unknown element",
        "POST",
        "/fhir/Observation",
        _with(colour="blue"),
        422,
        "Observation.colour",
    ),
    (
        "bad date",
        "POST",
        "/fhir/Observation",
        _with(effectiveDateTime="2016-13-01"),
        422,
        "Observation.effectiveDateTime",
    ),
    (
        "invalid required code",
        "POST",
        "/fhir/Observation",
        _with(status="done"),
        422,
        "Observation.status",
    ),
    (
        "missing required element",
        "POST",
        "/fhir/Observation",
        json.dumps({k: v for k, v in OBS.items() if k != "code"}).encode(),
        422,
        "Observation.code",
    ),
    (
        "nested invalid code",
        "POST",
        "/fhir/Observation",
        _with(valueQuantity={"value": 1, "comparator": "about"}),
        422,
        "Observation.valueQuantity.comparator",
    ),
    (
        "bad decimal",
        "POST",
        "/fhir/Observation",
        _with(valueQuantity={"value": "six"}),
        422,
        "Observation.valueQuantity.value",
    ),
    (
        "NaN",
        "POST",
        "/fhir/Observation",
        b'{"resourceType":"Observation","status":"final","code":{"text":"x"},'
        b'"valueQuantity":{"value":NaN}}',
        400,
        None,
    ),
    (
        "Infinity",
        "POST",
        "/fhir/Observation",
        b'{"resourceType":"Observation","status":"final","code":{"text":"x"},'
        b'"valueQuantity":{"value":1.5e99999}}',
        400,
        None,
    ),
    ("null member", "POST", "/fhir/Observation", _with(issued=None), 400, "Observation.issued"),
    ("empty object", "POST", "/fhir/Observation", _with(code={}), 400, "Observation.code"),
    ("empty array", "POST", "/fhir/Observation", _with(category=[]), 400, "Observation.category"),
    ("empty string", "POST", "/fhir/Observation", _with(status=""), 422, "Observation.status"),
    (
        "invalid utf-8",
        "POST",
        "/fhir/Observation",
        b'{"resourceType":"Observation","x":"\xff"}',
        400,
        None,
    ),
    (
        "lone surrogate",
        "POST",
        "/fhir/Patient",
        b'{"resourceType":"Patient","name":[{"family":"\\ud800"}]}',
        400,
        None,
    ),
    ("deep nesting", "POST", "/fhir/Observation", b'{"a":' * 5000 + b"1" + b"}" * 5000, 400, None),
    ("empty body", "POST", "/fhir/Observation", b"", 400, None),
    ("whitespace body", "POST", "/fhir/Observation", b"  \n ", 400, None),
    (
        "bad contained resource",
        "POST",
        "/fhir/Observation",
        _with(contained=[{"resourceType": "Patient", "id": "p", "gender": "robot"}]),
        422,
        None,
    ),
    (
        "update id mismatch",
        "PUT",
        "/fhir/Patient/abc",
        json.dumps(patient(id="xyz")).encode(),
        400,
        "Patient.id",
    ),
    (
        "update id invalid",
        "PUT",
        "/fhir/Patient/a_b",
        json.dumps(patient(id="a_b")).encode(),
        400,
        None,
    ),
    (
        "update id too long",
        "PUT",
        f"/fhir/Patient/{'a' * 65}",
        json.dumps(patient(id="a" * 65)).encode(),
        400,
        None,
    ),
    (
        "update invalid resource",
        "PUT",
        "/fhir/Patient/abc",
        json.dumps(patient(id="abc", gender="robot")).encode(),
        422,
        "Patient.gender",
    ),
    ("unknown type create", "POST", "/fhir/Unicorn", b'{"resourceType":"Unicorn"}', 404, None),
    ("unknown type update", "PUT", "/fhir/Unicorn/1", b'{"resourceType":"Unicorn"}', 404, None),
    (
        "abstract type",
        "POST",
        "/fhir/DomainResource",
        b'{"resourceType":"DomainResource"}',
        404,
        None,
    ),
    ("no such route", "GET", "/fhir/Patient/1/_history/1/extra", b"", 404, None),
    ("method not allowed", "POST", "/fhir/Patient/1", json.dumps(patient()).encode(), 405, None),
]


@pytest.mark.parametrize(
    ("name", "method", "path", "body", "status", "expression"), CORPUS, ids=[c[0] for c in CORPUS]
)
def test_bad_input_is_a_clear_4xx_and_stores_nothing(
    client: httpx.Client,
    name: str,
    method: str,
    path: str,
    body: bytes,
    status: int,
    expression: str | None,
) -> None:
    response = client.request(method, path, content=body, headers=JSON_HEADERS)
    assert_outcome(response, status, expression=expression)
    history = client.get("/fhir/_history").json()
    assert "entry" not in history, f"{name} stored something"


def test_oversized_body_returns_413(settings: Settings) -> None:
    small = settings.model_copy(update={"max_body_bytes": 1000})
    with asgi_client(create_app(small)) as client:
        big = pain_observation(note=[{"text": "x" * 2000}])
        assert_outcome(
            client.post("/fhir/Observation", json=big, headers=JSON_HEADERS), 413, "too-costly"
        )
        assert "entry" not in client.get("/fhir/_history").json()
        assert (
            client.post(
                "/fhir/Observation", json=pain_observation(), headers=JSON_HEADERS
            ).status_code
            == 201
        )


def test_oversized_body_without_content_length_returns_413(settings: Settings) -> None:
    small = settings.model_copy(update={"max_body_bytes": 1000})

    def chunks():  # type: ignore[no-untyped-def]
        yield b'{"resourceType":"Observation","note":[{"text":"'
        for _ in range(50):
            yield b"x" * 100
        yield b'"}]}'

    with asgi_client(create_app(small)) as client:
        response = client.post("/fhir/Observation", content=chunks(), headers=JSON_HEADERS)
        assert_outcome(response, 413)


def test_many_validation_errors_are_all_reported(client: httpx.Client) -> None:
    body = _with(status="done", effectiveDateTime="yesterday", colour="blue")
    outcome = assert_outcome(
        client.post("/fhir/Observation", content=body, headers=JSON_HEADERS), 422
    )
    expressions = {e for issue in outcome["issue"] for e in issue.get("expression", [])}
    assert {"Observation.effectiveDateTime", "Observation.colour"} <= expressions


def test_a_client_gone_mid_body_is_not_a_server_error(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """The body stops half way and the client disconnects: no incident, no traceback, 499 in
    the request log, and nothing stored."""
    app = create_app(settings)
    sent: list[dict[str, Any]] = []
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": b'{"resourceType": "Pat', "more_body": True},
        {"type": "http.disconnect"},
    ]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/fhir/Patient",
        "raw_path": b"/fhir/Patient",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver"), (b"content-type", b"application/fhir+json")],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def call() -> None:
        await app(scope, receive, send)

    with (
        anyio.from_thread.start_blocking_portal() as portal,
        portal.wrap_async_context_manager(app.router.lifespan_context(app)),
        caplog.at_level(logging.INFO),
    ):
        portal.call(call)
    assert sent[0]["status"] == 499
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert any("status=499" in r.getMessage() for r in caplog.records if r.name == "app.access")
    with asgi_client(create_app(settings)) as client:
        assert client.get("/fhir/Patient").json()["total"] == 0
