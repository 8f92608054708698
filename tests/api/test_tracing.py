"""Optional OpenTelemetry tracing (FHIR_OTEL): off, nothing of OpenTelemetry is imported and
no middleware added; on, one SERVER span per request named by its route template, with the
request line's attributes only (no path, query, resource id or exception message), a client's
traceparent continued, and the trace id in the JSON log line; on without the packages, a
clear failure at start."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from app.api.tracing import SERVICE_NAME, TracingMiddleware
from app.config import Settings
from app.fhir.service import ResourceService
from app.log_policy import JsonFormatter, RequestContextFilter
from app.main import create_app
from tests.asgi_client import asgi_client
from tests.conftest import ROOT
from tests.helpers import FHIR_JSON, patient

FAMILY = "Trazevandersp"
IDENTIFIER = "MRN-Tr4c3991"
CLIENT_ID = "Tr8client5id"
PARENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN = "00f067aa0ba902b7"
Traced = tuple[httpx.Client, Callable[[], None]]


def _without_otel_env() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OTEL_", "FHIR_")) and k != "DATABASE_URL"
    }


def _run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**_without_otel_env(), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def traced(settings: Settings, exporter: InMemorySpanExporter) -> Iterator[Traced]:
    """A client of an app tracing to `exporter`, and what flushes its spans there."""
    app = create_app(settings.model_copy(update={"otel": True}), span_exporter=exporter)
    with asgi_client(app, raise_app_exceptions=False) as client:
        yield client, app.state.tracing.flush


def _finished(flush: Callable[[], None], exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    flush()
    return list(exporter.get_finished_spans())


def _everything(span: ReadableSpan) -> str:
    """All a span would export: name, attributes, events, links, status."""
    parts = [span.name, span.status.description or ""]
    parts += [f"{k}={v}" for k, v in (span.attributes or {}).items()]
    for event in span.events:
        parts += [event.name, *(f"{k}={v}" for k, v in (event.attributes or {}).items())]
    parts += [str(link.attributes) for link in span.links]
    return "\n".join(parts)


def test_off_nothing_of_opentelemetry_is_imported(tmp_path: Any) -> None:
    """FHIR_OTEL unset (the default): importing, building and starting the app and answering
    a request load no OpenTelemetry module beyond the API that FastAPI itself imports (0.142+
    depends on opentelemetry-api): no SDK, no exporter, and no tracing middleware."""
    code = f"""
import json, sys
def loaded():
    return sorted(m for m in sys.modules if m.split(".")[0] == "opentelemetry")
import fastapi
by_fastapi = loaded()
from app.config import Settings
from app.main import create_app
from tests.asgi_client import asgi_client
app = create_app(Settings(DATABASE_URL="sqlite:///{tmp_path / "off.sqlite3"}"))
with asgi_client(app) as client:
    assert client.get("/fhir/metadata").status_code == 200
print(json.dumps({{
    "added": sorted(set(loaded()) - set(by_fastapi)),
    "middleware": [m.cls.__name__ for m in app.user_middleware],
}}))
"""
    result = _run(code)
    assert result.returncode == 0, result.stderr
    off = json.loads(result.stdout)
    # (the audit middleware is there only with the audit trail on: off without authorization)
    assert off == {"added": [], "middleware": ["RequestLogMiddleware"]}
    # the same program with FHIR_OTEL=true: the check can tell
    result = _run(code, FHIR_OTEL="true", OTEL_TRACES_EXPORTER="none")
    assert result.returncode == 0, result.stderr
    on = json.loads(result.stdout)
    assert "opentelemetry.sdk.trace" in on["added"]
    assert on["middleware"][0] == "TracingMiddleware"


def test_on_without_the_packages_start_up_fails_saying_what_to_install(tmp_path: Any) -> None:
    for missing in ("opentelemetry.sdk", "opentelemetry.exporter"):
        code = f"""
import sys
sys.modules[{missing!r}] = None  # as if the otel extra were not installed
from app.config import Settings
from app.main import create_app
create_app(Settings(DATABASE_URL="sqlite:///{tmp_path / "missing.sqlite3"}", FHIR_OTEL=True))
"""
        result = _run(code)
        assert result.returncode != 0
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith("RuntimeError: FHIR_OTEL=true needs the OpenTelemetry SDK"), last
        assert f"(no module '{missing}." in last
        assert "pip install 'ketamine-fhir[otel]'" in last


def test_fastapis_own_telemetry_stays_off(tmp_path: Any) -> None:
    """FastAPI 0.142+ traces requests itself once OpenTelemetry has a global provider
    (opentelemetry-instrument sets one), with url.path and url.query: the app turns that off.
    A bare FastAPI app in the same process shows what it would have exported."""
    code = f"""
import json
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)
from app.config import Settings
from app.main import create_app
from tests.asgi_client import asgi_client
app = create_app(Settings(DATABASE_URL="sqlite:///{tmp_path / "global.sqlite3"}"))
with asgi_client(app) as client:
    client.get("/fhir/Patient/{CLIENT_ID}?family={FAMILY}")
ours = [dict(s.attributes) for s in exporter.get_finished_spans()]
exporter.clear()
bare = FastAPI()
bare.get("/fhir/Patient/{{pid}}")(lambda pid: {{}})
with asgi_client(bare) as client:
    client.get("/fhir/Patient/{CLIENT_ID}?family={FAMILY}")
bare = [dict(s.attributes) for s in exporter.get_finished_spans()]
print(json.dumps({{"ours": ours, "bare": bare}}))
"""
    result = _run(code)
    assert result.returncode == 0, result.stderr
    spans = json.loads(result.stdout)
    assert spans["ours"] == []
    bare = json.dumps(spans["bare"])
    assert FAMILY in bare
    assert CLIENT_ID in bare


def test_a_request_is_one_span_named_by_its_route_template(
    traced: Traced, exporter: InMemorySpanExporter
) -> None:
    client, flush = traced
    body = patient(FAMILY, identifier=[{"system": "urn:example:mrn", "value": IDENTIFIER}])
    created = client.post("/fhir/Patient", json=body, headers={"Content-Type": FHIR_JSON})
    assert created.status_code == 201
    pid = created.json()["id"]
    responses = [
        created,
        client.get(
            f"/fhir/Patient/{pid}?_elements=name",
            headers={"traceparent": f"00-{PARENT_TRACE}-{PARENT_SPAN}-01"},
        ),
        client.get(f"/fhir/Patient?family={FAMILY}&identifier={IDENTIFIER}"),
        client.get(f"/no/such/{FAMILY}"),
        client.request("BREW", f"/fhir/Patient/{CLIENT_ID}"),
    ]
    assert [r.status_code for r in responses] == [201, 200, 200, 404, 405]
    spans = _finished(flush, exporter)
    assert [s.name for s in spans] == [
        "POST /fhir/{resource_type}",
        "GET /fhir/{resource_type}/{resource_id}",
        "GET /fhir/{resource_type}",
        "GET",  # no route matched: the method alone, never the path
        "HTTP /fhir/{resource_type}/{resource_id}",  # a method outside the list
    ]
    for span, response in zip(spans, responses, strict=True):
        attributes = dict(span.attributes or {})
        assert span.kind == SpanKind.SERVER
        assert attributes["http.response.status_code"] == response.status_code
        assert attributes["fhir.request_id"] == response.headers["X-Request-Id"]
        assert span.status.status_code == StatusCode.UNSET  # 4xx is the client's
        assert not span.events
        if span.name != "GET":
            assert attributes["http.route"] == span.name.split(" ", 1)[1]
        assert set(attributes) <= {
            "http.request.method",
            "http.route",
            "http.response.status_code",
            "url.scheme",
            "fhir.resource_type",
            "fhir.request_id",
        }, attributes
        text = _everything(span)
        for secret in (pid, FAMILY, IDENTIFIER, CLIENT_ID, "_elements", "family=", "/no/such"):
            assert secret not in text, (secret, text)
    assert dict(spans[0].attributes or {})["fhir.resource_type"] == "Patient"
    assert dict(spans[0].attributes or {})["http.request.method"] == "POST"
    assert "http.route" not in dict(spans[3].attributes or {})
    assert dict(spans[4].attributes or {})["http.request.method"] == "_OTHER"
    # the client's traceparent: the span continues its trace
    read = spans[1]
    assert read.parent is not None
    assert format(read.context.trace_id, "032x") == PARENT_TRACE
    assert format(read.parent.span_id, "016x") == PARENT_SPAN
    assert spans[0].parent is None
    assert spans[0].resource.attributes["service.name"] == SERVICE_NAME


def test_an_unexpected_error_is_an_error_span_without_its_message(
    settings: Settings, exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_read(self: ResourceService, resource_type: str, resource_id: str) -> Any:
        raise RuntimeError(f"could not read {resource_id} of {FAMILY}")

    monkeypatch.setattr(ResourceService, "read", failing_read)
    sink = io.StringIO()
    handler = logging.StreamHandler(sink)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestContextFilter())
    access = logging.getLogger("app")
    access.addHandler(handler)
    level = access.level
    access.setLevel(logging.INFO)
    try:
        app = create_app(settings.model_copy(update={"otel": True}), span_exporter=exporter)
        with asgi_client(app, raise_app_exceptions=False) as client:
            response = client.get(f"/fhir/Patient/{CLIENT_ID}?family={FAMILY}")
            app.state.tracing.flush()
    finally:
        access.removeHandler(handler)
        access.setLevel(level)
    assert response.status_code == 500
    [span] = exporter.get_finished_spans()
    attributes = dict(span.attributes or {})
    assert span.name == "GET /fhir/{resource_type}/{resource_id}"
    assert attributes["http.response.status_code"] == 500
    assert attributes["error.type"] == "RuntimeError"
    assert span.status.status_code == StatusCode.ERROR
    assert not span.events  # no exception event: its message would be exported
    assert FAMILY not in _everything(span)
    assert CLIENT_ID not in _everything(span)
    # the log lines of the request carry the span's trace and span ids
    lines = [json.loads(line) for line in sink.getvalue().splitlines()]
    during = [e for e in lines if e.get("request_id") == response.headers["X-Request-Id"]]
    assert {e["logger"] for e in during} == {"app.access", "app.errors"}
    for entry in during:
        assert entry["trace_id"] == format(span.context.trace_id, "032x")
        assert entry["span_id"] == format(span.context.span_id, "016x")
    assert all("trace_id" not in e for e in lines if "request_id" not in e)


def test_the_environment_chooses_or_disables_it(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    on = settings.model_copy(update={"otel": True})
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    app = create_app(on)
    assert app.state.tracing is None
    assert all(m.cls is not TracingMiddleware for m in app.user_middleware)
    monkeypatch.delenv("OTEL_SDK_DISABLED")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    app = create_app(on)
    assert app.user_middleware[0].cls is TracingMiddleware  # the outermost
    with asgi_client(app) as client:
        assert client.get("/fhir/metadata").status_code == 200
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "jaeger")
    with pytest.raises(RuntimeError, match="OTEL_TRACES_EXPORTER='jaeger' is not supported"):
        create_app(on)
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    with pytest.raises(RuntimeError, match="'grpc' is not supported"):
        create_app(on)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "fhir-east")
    app = create_app(on)
    assert app.state.tracing.provider.resource.attributes["service.name"] == "fhir-east"
    app.state.tracing.shutdown()
