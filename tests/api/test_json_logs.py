"""FHIR_LOG_FORMAT=json: every record one JSON object on one line, the request line's fields as
its keys, the request id on every record written while a request is handled, and the log
policy kept (no patient, resource id or query value; tracebacks without messages), on both
databases and in the served process."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.config import Settings
from app.fhir.service import ResourceService
from app.log_policy import (
    FORMAT,
    JsonFormatter,
    RedactingFormatter,
    RequestContextFilter,
    uvicorn_log_config,
)
from app.main import create_app
from tests.asgi_client import asgi_client
from tests.conftest import ROOT
from tests.helpers import FHIR_JSON, patient
from tests.live_server import free_port

# distinctive strings a request carries that no log line may repeat
FAMILY = "Jzonvanderlog"
IDENTIFIER = "MRN-J50n7731"
CLIENT_ID = "Jl6client4id"  # a resource id the client chooses (PUT)
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
ACCESS_KEYS = {
    "timestamp",
    "level",
    "logger",
    "message",
    "request_id",
    "method",
    "route",
    "resource_type",
    "status",
    "duration_ms",
    "client_id",
}

Lines = Callable[[], list[dict[str, Any]]]


@pytest.fixture
def json_lines() -> Iterator[Lines]:
    """What serve's json configuration writes, captured: a handler with its formatter and
    filter on the root logger (the test process's loggers propagate to it). Returns every
    line written so far, each parsed (a line that is not one JSON object fails)."""
    config = uvicorn_log_config("info", "json")
    assert config["formatters"]["default"]["()"] == "app.log_policy.JsonFormatter"
    assert config["handlers"]["default"]["filters"] == ["request_context"]
    assert config["filters"]["request_context"]["()"] == "app.log_policy.RequestContextFilter"
    sink = io.StringIO()
    handler = logging.StreamHandler(sink)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestContextFilter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)

    def lines() -> list[dict[str, Any]]:
        handler.flush()
        parsed = []
        for line in sink.getvalue().splitlines():
            entry = json.loads(line)
            assert isinstance(entry, dict), line
            parsed.append(entry)
        return parsed

    try:
        yield lines
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def _server_lines(lines: Lines) -> list[dict[str, Any]]:
    """The server's records: the test's own HTTP client (httpx, httpcore) logs the URLs it
    requests, which is the client's side."""
    return [e for e in lines() if not e["logger"].startswith(("httpx", "httpcore"))]


def _access(lines: Lines) -> list[dict[str, Any]]:
    return [e for e in lines() if e["logger"] == "app.access"]


def _assert_no_secret(entries: list[dict[str, Any]], *secrets: str) -> None:
    text = "\n".join(json.dumps(e) for e in entries)
    for secret in secrets:
        assert secret.lower() not in text.lower(), (secret, text)


def test_the_request_line_is_one_json_object_with_its_fields(
    client: httpx.Client, json_lines: Lines
) -> None:
    created = client.post(
        "/fhir/Patient",
        json=patient(FAMILY),
        headers={"Content-Type": FHIR_JSON, "X-Request-Id": "json-req-1"},
    )
    assert created.status_code == 201
    assert created.headers["X-Request-Id"] == "json-req-1"
    pid = created.json()["id"]
    read = client.get(f"/fhir/Patient/{pid}")
    assert read.status_code == 200
    first, second = _access(json_lines)
    assert set(first) == ACCESS_KEYS
    assert first["request_id"] == "json-req-1"
    assert (first["method"], first["route"], first["resource_type"], first["status"]) == (
        "POST",
        "/fhir/{resource_type}",
        "Patient",
        201,
    )
    assert first["level"] == "INFO"
    assert isinstance(first["duration_ms"], float)
    assert first["client_id"] is None
    assert first["message"].startswith("request_id=json-req-1 method=POST ")
    assert second["request_id"] == read.headers["X-Request-Id"]
    assert second["route"] == "/fhir/{resource_type}/{resource_id}"
    assert second["status"] == 200
    for entry in (first, second):
        assert TIMESTAMP.fullmatch(entry["timestamp"]), entry
        when = datetime.fromisoformat(entry["timestamp"])
        assert when.utcoffset() == timedelta(0)
        assert abs(datetime.now(UTC) - when) < timedelta(minutes=5)
    _assert_no_secret(_server_lines(json_lines), FAMILY, pid)


def test_no_line_names_a_patient_an_id_or_a_query_value(
    client: httpx.Client, json_lines: Lines
) -> None:
    body = patient(FAMILY, identifier=[{"system": "urn:example:mrn", "value": IDENTIFIER}])
    headers = {"Content-Type": FHIR_JSON}
    created = client.post("/fhir/Patient", json=body, headers=headers)
    pid = created.json()["id"]
    responses = [
        created,
        client.put(f"/fhir/Patient/{CLIENT_ID}", json={**body, "id": CLIENT_ID}, headers=headers),
        client.get(f"/fhir/Patient/{pid}"),
        client.get(f"/fhir/Patient?family={FAMILY}&identifier={IDENTIFIER}"),
        client.post(
            "/fhir/Patient/_search",
            content=f"family={FAMILY}",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        ),
        client.get(f"/fhir/Patient/{pid}/{FAMILY}"),  # no such route
        client.post("/fhir/Patient", json={**body, "gender": FAMILY}, headers=headers),  # 422
    ]
    assert [r.status_code for r in responses] == [201, 201, 200, 200, 200, 404, 422]
    assert responses[3].json()["total"] == 2  # the values did reach the server
    access = _access(json_lines)
    assert [e["request_id"] for e in access] == [r.headers["X-Request-Id"] for r in responses]
    assert [e["status"] for e in access] == [r.status_code for r in responses]
    _assert_no_secret(_server_lines(json_lines), FAMILY, IDENTIFIER, pid, CLIENT_ID, "Jane")


def test_records_written_during_a_request_carry_its_id(
    settings: Settings, json_lines: Lines, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The error handler's record, a record of the service layer (in the thread pool where
    database calls go there: PostgreSQL) and one logged with its exception all carry the id
    of the request; the exception is written without its message."""
    service_log = logging.getLogger("app.fhir.service")

    def failing_read(self: ResourceService, resource_type: str, resource_id: str) -> Any:
        service_log.warning("reading before failing")
        try:
            raise ValueError(f"bad value {IDENTIFIER}")
        except ValueError:
            service_log.exception("caught one")
        raise RuntimeError(f"could not read {resource_id} of {FAMILY}")

    monkeypatch.setattr(ResourceService, "read", failing_read)
    with asgi_client(create_app(settings), raise_app_exceptions=False) as client:
        outside = len(json_lines())
        response = client.get(
            f"/fhir/Patient/{CLIENT_ID}?family={FAMILY}", headers={"X-Request-Id": "json-err-7"}
        )
        assert response.status_code == 500
        assert response.headers["X-Request-Id"] == "json-err-7"
        during = _server_lines(json_lines)
    by_message = {e["message"].split("\n", 1)[0]: e for e in during}
    warning = by_message["reading before failing"]
    assert warning["request_id"] == "json-err-7"
    assert warning["level"] == "WARNING"
    assert warning["logger"] == "app.fhir.service"
    caught = by_message["caught one"]
    assert caught["request_id"] == "json-err-7"
    assert "ValueError: (message withheld by the log policy)" in caught["exception"]
    assert "failing_read" in caught["exception"]  # the frames are kept
    [error] = [e for e in during if e["logger"] == "app.errors"]
    assert error["level"] == "ERROR"
    assert error["request_id"] == "json-err-7"
    assert "RuntimeError: (message withheld by the log policy)" in error["message"]
    [access] = [e for e in during if e["logger"] == "app.access"]
    assert (access["request_id"], access["status"]) == ("json-err-7", 500)
    # records written outside any request (start-up) carry no request id
    assert json_lines()[:outside]
    assert all("request_id" not in e for e in json_lines()[:outside])
    assert any(e["message"].startswith("serving FHIR R4B") for e in json_lines()[:outside])
    _assert_no_secret(during, FAMILY, IDENTIFIER, CLIENT_ID)


def test_the_formatter_keeps_the_policy_and_one_line() -> None:
    formatter = JsonFormatter()

    def record(message: str, *args: Any, exc_info: Any = None, **extra: Any) -> dict[str, Any]:
        entry = logging.LogRecord("app.x", logging.ERROR, __file__, 1, message, args, exc_info)
        entry.__dict__.update(extra)
        line = formatter.format(entry)
        assert "\n" not in line
        parsed: dict[str, Any] = json.loads(line)
        return parsed

    assert record("two\nlines %s", "here")["message"] == "two\nlines here"
    for created in (0.5, 1767323045.6789, 1767323046.001, 1767323045.9999999, 1767323046.0):
        entry = logging.LogRecord("app.x", logging.INFO, __file__, 1, "at", None, None)
        entry.created = created
        when = datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")
        assert json.loads(formatter.format(entry))["timestamp"] == when.replace("+00:00", "Z")
    # a lone surrogate (undecodable bytes of a file name, say) still makes a JSON line
    assert record("name \udcff")["message"] == "name \udcff"
    # only the listed keys: whatever else a record carries (uvicorn's color_message, a
    # library's extra) is not written; the request line's fields only on app.access records
    odd = record("plain", color_message=IDENTIFIER, route="/x", request_id="r-1", sql=FAMILY)
    assert set(odd) == {"timestamp", "level", "logger", "message", "request_id"}
    try:
        raise KeyError(IDENTIFIER)
    except KeyError:
        error = sys.exc_info()
    entry = logging.LogRecord("app.x", logging.ERROR, __file__, 1, "failed", None, error)
    entry.exc_text = f"cached by another handler: {IDENTIFIER}"
    parsed = json.loads(formatter.format(entry))
    assert "KeyError: (message withheld by the log policy)" in parsed["exception"]
    assert IDENTIFIER not in json.dumps(parsed)
    # text stays as it was
    text = uvicorn_log_config("info")
    assert text["formatters"]["default"] == {
        "()": "app.log_policy.RedactingFormatter",
        "fmt": FORMAT,
    }
    assert isinstance(RedactingFormatter(), logging.Formatter)
    with pytest.raises(ValueError, match="xml"):
        uvicorn_log_config("info", "xml")


def test_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FHIR_LOG_FORMAT", raising=False)
    monkeypatch.delenv("FHIR_OTEL", raising=False)
    assert (Settings().log_format, Settings().otel) == ("text", False)  # the defaults
    assert Settings(FHIR_OTEL="true").otel is True
    assert Settings(FHIR_LOG_FORMAT="json").log_format == "json"
    with pytest.raises(ValueError, match="FHIR_LOG_FORMAT"):
        Settings(FHIR_LOG_FORMAT="yaml")


def test_the_served_process_writes_json_lines_only(tmp_path: Path) -> None:
    """`python -m app serve` with FHIR_LOG_FORMAT=json and two workers: every line on stderr is
    a JSON object (its own, uvicorn's and every worker's, alembic's), the request line carries
    the client's request id, and no line the query value."""
    port = free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("FHIR_", "OTEL_")) and key != "DATABASE_URL"
    }
    env.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'served.sqlite3'}",
        FHIR_EXPORT_DIR=str(tmp_path / "exports"),
        FHIR_LOG_FORMAT="json",
    )
    stderr_path, stdout_path = tmp_path / "stderr.log", tmp_path / "stdout.log"
    with stderr_path.open("wb") as stderr, stdout_path.open("wb") as stdout:
        process = subprocess.Popen(
            [sys.executable, "-m", "app", "serve", "--port", str(port), "--workers", "2"],
            cwd=ROOT,
            env=env,
            stdout=stdout,
            stderr=stderr,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 90
            while True:
                assert process.poll() is None, stderr_path.read_text()
                try:
                    if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "server did not start in 90 s"
                time.sleep(0.1)
            # both workers started (each logs it), so both have written their start-up lines
            while stderr_path.read_text().count("Application startup complete") < 2:
                assert process.poll() is None, stderr_path.read_text()
                assert time.monotonic() < deadline, stderr_path.read_text()
                time.sleep(0.1)
            response = httpx.get(
                f"{base}/fhir/Patient?family={FAMILY}", headers={"X-Request-Id": "served-json"}
            )
            assert response.status_code == 200
            assert response.headers["X-Request-Id"] == "served-json"
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    raw = stderr_path.read_text()
    entries = []
    for line in raw.splitlines():
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"not a JSON line: {line!r}\n{raw}")
    assert all(TIMESTAMP.fullmatch(e["timestamp"]) for e in entries), raw
    [line] = [e for e in entries if e.get("request_id") == "served-json"]
    assert (line["logger"], line["route"], line["status"]) == (
        "app.access",
        "/fhir/{resource_type}",
        200,
    )
    loggers = {e["logger"] for e in entries}
    assert "uvicorn.error" in loggers, raw  # uvicorn's own lines
    assert any(name.startswith("alembic") for name in loggers), raw  # the start-up upgrade
    started = [e for e in entries if e["message"].startswith("Started server process")]
    assert len(started) >= 2, raw  # the supervisor's workers, each configured alike
    assert FAMILY not in raw
    assert '"GET /fhir' not in raw  # uvicorn's access line
    assert stdout_path.read_text() == ""
