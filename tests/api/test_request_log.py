"""The request log policy, on both databases: one "app.access" line per request with its id,
method, route template, status, duration and client id, and nothing in any log record of the
server that names a patient, a resource id or a query value."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from app.api.request_log import UNMATCHED
from app.config import Settings
from app.fhir.service import ResourceService
from app.log_policy import RedactingFormatter, redacted_traceback, uvicorn_log_config
from app.main import create_app
from tests.asgi_client import asgi_client
from tests.conftest import ROOT
from tests.helpers import FHIR_JSON, patient
from tests.live_server import free_port
from tests.security.test_auth_api import _as, secured_server

# distinctive strings a request carries that no log line may repeat
FAMILY = "Qxvandermolenbeek"
IDENTIFIER = "MRN-77Zq4411"
CLIENT_ID = "Pw8kn1client"  # a resource id the client chooses (PUT)
MISSING_ID = "Nosuchid5521"
BAD_DATE = "Kq2notadate"
HEX = re.compile(r"[0-9a-f]{32}")


def _access(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "app.access"]


def _server_messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Every record of the server's. The test's own HTTP client (httpx, httpcore) logs the URLs
    it requests: that is the client's side, not the server's."""
    return [
        r.getMessage() + (r.exc_text or "")
        for r in caplog.records
        if not r.name.startswith(("httpx", "httpcore"))
    ]


def _one_line(caplog: pytest.LogCaptureFixture, response: httpx.Response) -> logging.LogRecord:
    records = _access(caplog)
    assert len(records) == 1, [r.getMessage() for r in records]
    record = records[0]
    assert record.levelno == logging.INFO
    assert record.__dict__["request_id"] == response.headers["X-Request-Id"]
    assert record.__dict__["status"] == response.status_code
    assert f"status={response.status_code} " in record.getMessage()
    assert f"request_id={response.headers['X-Request-Id']} " in record.getMessage()
    return record


@pytest.fixture
def logged(client: httpx.Client, caplog: pytest.LogCaptureFixture) -> httpx.Client:
    caplog.set_level(logging.INFO)
    return client


def test_one_line_per_request_with_the_route_template(
    logged: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    created = logged.post("/fhir/Patient", json=patient(), headers={"Content-Type": FHIR_JSON})
    assert created.status_code == 201
    record = _one_line(caplog, created)
    fields = record.__dict__
    assert (fields["method"], fields["route"], fields["resource_type"]) == (
        "POST",
        "/fhir/{resource_type}",
        "Patient",
    )
    assert isinstance(fields["duration_ms"], float)
    assert fields["duration_ms"] >= 0
    assert fields["client_id"] is None
    message = record.getMessage()
    assert re.fullmatch(
        r"request_id=[0-9a-f]{32} method=POST route=/fhir/\{resource_type\} "
        r"resource_type=Patient status=201 duration_ms=\d+\.\d client_id=-",
        message,
    ), message
    pid = created.json()["id"]

    cases: list[tuple[str, str, int, str, str | None]] = [
        ("GET", f"/fhir/Patient/{pid}", 200, "/fhir/{resource_type}/{resource_id}", "Patient"),
        (
            "GET",
            f"/fhir/Patient/{pid}/_history/1",
            200,
            "/fhir/{resource_type}/{resource_id}/_history/{version_id}",
            "Patient",
        ),
        ("GET", "/fhir/Patient?gender=female", 200, "/fhir/{resource_type}", "Patient"),
        ("GET", "/fhir/metadata", 200, "/fhir/metadata", None),
        ("DELETE", f"/fhir/Patient/{pid}", 204, "/fhir/{resource_type}/{resource_id}", "Patient"),
        # not a resource type: the route is logged, the text in the type's place is not
        ("GET", "/fhir/Secrettype/abc", 404, "/fhir/{resource_type}/{resource_id}", None),
        ("GET", "/no/such/path", 404, UNMATCHED, None),
    ]
    for method, url, status, route, resource_type in cases:
        caplog.clear()
        response = logged.request(method, url)
        assert response.status_code == status, (url, response.text)
        record = _one_line(caplog, response)
        assert (record.__dict__["method"], record.__dict__["route"]) == (method, route)
        assert record.__dict__["resource_type"] == resource_type
        assert f"route={route} " in record.getMessage()
        assert "Secrettype" not in record.getMessage()
        assert "/no/such" not in record.getMessage()


def test_a_sane_request_id_is_echoed(
    logged: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    for supplied in ("abc-123.DEF_4", "x", "7" * 64):
        caplog.clear()
        response = logged.get("/fhir/metadata", headers={"X-Request-Id": supplied})
        assert response.headers["X-Request-Id"] == supplied
        assert _one_line(caplog, response).__dict__["request_id"] == supplied


def test_an_insane_request_id_is_replaced(
    logged: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    for supplied in ("7" * 65, "has space", "line\nbreak", "tab\there", "semi;colon", "", "é"):
        caplog.clear()
        response = logged.get("/fhir/metadata", headers=[(b"X-Request-Id", supplied.encode())])
        assert response.status_code == 200
        replaced = response.headers["X-Request-Id"]
        assert HEX.fullmatch(replaced), replaced
        record = _one_line(caplog, response)
        assert record.__dict__["request_id"] == replaced
        if supplied:
            assert supplied not in record.getMessage()
        assert "\n" not in record.getMessage()


def test_each_request_gets_its_own_id(
    logged: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    ids = {logged.get("/fhir/metadata").headers["X-Request-Id"] for _ in range(5)}
    assert len(ids) == 5
    assert {r.__dict__["request_id"] for r in _access(caplog)} == ids


def test_no_log_record_names_a_patient_an_id_or_a_query_value(
    logged: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    body = patient(FAMILY, identifier=[{"system": "urn:example:mrn", "value": IDENTIFIER}])
    json_headers = {"Content-Type": FHIR_JSON}
    created = logged.post("/fhir/Patient", json=body, headers=json_headers)
    assert created.status_code == 201
    pid = created.json()["id"]
    put = logged.put(
        f"/fhir/Patient/{CLIENT_ID}", json={**body, "id": CLIENT_ID}, headers=json_headers
    )
    assert put.status_code == 201
    responses = [
        created,
        put,
        logged.get(f"/fhir/Patient/{pid}"),
        logged.get(f"/fhir/Patient/{CLIENT_ID}/_history"),
        logged.get(f"/fhir/Patient?family={FAMILY}&identifier={IDENTIFIER}"),
        logged.post(
            "/fhir/Patient/_search",
            content=f"family={FAMILY}",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        ),
        logged.get(f"/fhir/Patient/{MISSING_ID}"),
        logged.get(f"/fhir/Patient?birthdate={BAD_DATE}"),
        logged.get(f"/fhir/Patient/{pid}/{FAMILY}"),  # no such route
        # invalid content (422): the error answers with the bad value, the log must not
        logged.post("/fhir/Patient", json={**body, "gender": FAMILY}, headers=json_headers),
        logged.post("/fhir/Patient", content=f"{{{FAMILY}", headers=json_headers),  # 400
    ]
    statuses = [r.status_code for r in responses]
    assert statuses == [201, 201, 200, 200, 200, 200, 404, 400, 404, 422, 400]
    search = responses[4].json()
    assert search["total"] == 2  # the search found both: the values did reach the server

    records = _access(caplog)
    assert [r.__dict__["status"] for r in records] == statuses
    assert [r.__dict__["request_id"] for r in records] == [
        r.headers["X-Request-Id"] for r in responses
    ]
    messages = _server_messages(caplog)
    assert len(messages) >= len(responses)
    for secret in (FAMILY, IDENTIFIER, pid, CLIENT_ID, MISSING_ID, BAD_DATE, "Jane"):
        leaking = [m for m in messages if secret.lower() in m.lower()]
        assert not leaking, (secret, leaking)


def test_an_unexpected_error_is_logged_without_what_the_request_carried(
    settings: Settings, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_read(self: ResourceService, resource_type: str, resource_id: str) -> Any:
        raise RuntimeError(f"could not read {resource_id} of {FAMILY}")

    caplog.set_level(logging.INFO)
    monkeypatch.setattr(ResourceService, "read", failing_read)
    with asgi_client(create_app(settings), raise_app_exceptions=False) as client:
        response = client.get(f"/fhir/Patient/{MISSING_ID}?family={FAMILY}")
    assert response.status_code == 500
    assert "incident" in response.text
    rid = response.headers["X-Request-Id"]
    record = _one_line(caplog, response)
    assert record.__dict__["route"] == "/fhir/{resource_type}/{resource_id}"
    [error] = [r for r in caplog.records if r.name == "app.errors"]
    assert error.levelno == logging.ERROR
    text = error.getMessage()
    assert f"request_id={rid} " in text
    assert "route=/fhir/{resource_type}/{resource_id}" in text
    assert "RuntimeError: (message withheld by the log policy)" in text
    assert "failing_read" in text  # the frames are kept
    assert error.exc_info is None
    for message in _server_messages(caplog):
        assert FAMILY not in message
        assert MISSING_ID not in message


def test_with_a_token_the_client_id_is_logged(
    database_url: str,
    admin_engines: dict[str, Engine],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    resources = [{**patient(FAMILY), "id": CLIENT_ID}]
    with secured_server(database_url, admin_engines, tmp_path, resources) as server:
        caplog.set_level(logging.INFO)
        caplog.clear()
        call = _as(server, "system/Patient.rs", client_id="lab-client-9", sub="nurse-3")
        response = call("GET", f"/fhir/Patient/{CLIENT_ID}")
        assert response.status_code == 200
        record = _one_line(caplog, response)
        assert record.__dict__["client_id"] == "lab-client-9"
        assert record.getMessage().endswith(" client_id=lab-client-9")
        assert "nurse-3" not in record.getMessage()  # the subject is not logged

        caplog.clear()
        refused = server.get(f"/fhir/Patient/{CLIENT_ID}")  # no token
        assert refused.status_code == 401
        record = _one_line(caplog, refused)
        assert record.__dict__["client_id"] is None
        assert record.__dict__["route"] == "/fhir/{resource_type}/{resource_id}"

        caplog.clear()
        odd = _as(server, "system/Patient.rs", client_id="evil\nINFO app.access: forged")
        response = odd("GET", f"/fhir/Patient/{CLIENT_ID}")
        assert response.status_code == 200
        message = _one_line(caplog, response).getMessage()
        assert "\n" not in message
        assert message.endswith(' client_id="evil\\nINFO app.access: forged"')
        for text in _server_messages(caplog):
            assert FAMILY not in text
            assert CLIENT_ID not in text


# -- the formatter and the served process ---------------------------------------------------------
def _raise_chained() -> None:
    names: dict[str, str] = {}
    try:
        names[FAMILY]
    except KeyError as exc:
        raise ValueError(f"bad value {IDENTIFIER}") from exc


def test_tracebacks_are_logged_without_messages() -> None:
    try:
        _raise_chained()
    except ValueError as exc:
        error = exc
        text = redacted_traceback(exc)
    assert FAMILY not in text
    assert IDENTIFIER not in text
    assert "KeyError: (message withheld by the log policy)" in text
    assert "ValueError: (message withheld by the log policy)" in text
    assert "direct cause" in text
    assert "_raise_chained" in text
    record = logging.LogRecord(
        "uvicorn.error",
        logging.ERROR,
        __file__,
        1,
        "Exception in ASGI application",
        None,
        (type(error), error, error.__traceback__),
    )
    record.exc_text = f"cached by another handler: {IDENTIFIER}"
    formatted = RedactingFormatter().format(record)
    assert "Exception in ASGI application" in formatted
    assert "ValueError: (message withheld by the log policy)" in formatted
    assert IDENTIFIER not in formatted
    group = ExceptionGroup("several", [KeyError(FAMILY), ValueError(IDENTIFIER)])
    grouped = redacted_traceback(group)
    assert "KeyError" in grouped
    assert "ValueError" in grouped
    assert FAMILY not in grouped
    assert IDENTIFIER not in grouped


def test_the_log_configuration_silences_uvicorns_access_log() -> None:
    config = uvicorn_log_config("info")
    assert config["loggers"]["uvicorn.access"] == {
        "handlers": [],
        "level": "CRITICAL",
        "propagate": False,
    }
    assert config["loggers"]["app"]["level"] == "INFO"
    assert all(
        f["()"] == "app.log_policy.RedactingFormatter" for f in config["formatters"].values()
    )


def test_the_served_process_logs_our_line_and_not_uvicorns(tmp_path: Path) -> None:
    """`python -m app serve` for real: the request line is ours (route template), uvicorn's
    access line (path and query) is not written."""
    port = free_port()
    output = tmp_path / "server.log"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("FHIR_AUTH") and key != "FHIR_INSECURE_REMOTE_WITHOUT_AUTH"
    }
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'served.sqlite3'}"
    env["FHIR_EXPORT_DIR"] = str(tmp_path / "exports")
    with output.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "app", "serve", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                assert process.poll() is None, output.read_text()
                try:
                    if httpx.get(f"{base}/fhir/metadata", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "server did not start in 60 s"
                time.sleep(0.1)
            response = httpx.get(
                f"{base}/fhir/Patient?family={FAMILY}", headers={"X-Request-Id": "served-1"}
            )
            assert response.status_code == 200
            assert response.headers["X-Request-Id"] == "served-1"
        finally:
            process.terminate()
            process.wait(timeout=20)
    log = output.read_text()
    lines = [line for line in log.splitlines() if "request_id=served-1 " in line]
    assert len(lines) == 1, log
    assert " INFO app.access: " in lines[0]
    assert "route=/fhir/{resource_type} resource_type=Patient status=200" in lines[0]
    assert FAMILY not in log
    assert '"GET /fhir' not in log  # uvicorn's access line
