"""Optional OpenTelemetry tracing (FHIR_OTEL=true; the `otel` extra): one SERVER span per
request, exported over OTLP/HTTP as the standard OTEL_* variables say.

Off (the default) nothing imports this module, so neither OpenTelemetry's SDK nor an exporter
is loaded (FastAPI 0.142+ imports the API itself) and no middleware is added: tracing costs
nothing. On, with the packages missing, start-up fails saying which extra to install.
OTEL_SDK_DISABLED=true turns it off again (the SDK's own switch), OTEL_TRACES_EXPORTER picks
`otlp` (the default), `console` or `none`, and OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT, _HEADERS,
_TIMEOUT, OTEL_SERVICE_NAME (default `ketamine-fhir`), OTEL_RESOURCE_ATTRIBUTES,
OTEL_TRACES_SAMPLER and OTEL_BSP_* are read by the SDK as everywhere.

The span follows the log policy (app/log_policy.py), which is why it is ours and not
opentelemetry-instrumentation-asgi/-fastapi's: those name the span by the raw path until a
route matches, record `http.url`/`url.full` and `http.target` with the query string, the
client's address and user agent, request headers named in an environment variable, and
exception messages (`record_exception`). Ours has an allowlist of attributes, the request
line's: `http.request.method` (`_OTHER` for an unknown one), `http.route` (the matched route's
template; absent when none matched), `http.response.status_code`, `url.scheme`,
`fhir.resource_type` (an R4B type only), `fhir.request_id`, and on a 5xx `error.type` (the
exception's class, never its message). Its name is `{method} {route}` as the semantic
conventions say (`GET /fhir/{resource_type}/{resource_id}`), just the method when no route
matched. A `traceparent` from the client makes the span its child.

The middleware is the outermost, so the span covers the request log, and while it is open the
trace and span ids are in app/log_policy.py's TRACE_IDS: JSON log lines carry them.

No database spans: SQLAlchemy's instrumentation sees only what runs through a Connection
(searches, history, export), while reads by id and every write go to the DBAPI cursor
directly (storage/prepared.py); the drivers' instrumentations wrap the connections the store
drives with driver specifics (SQLite progress handlers, COMMIT recovery)."""

from __future__ import annotations

import os

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.request_log import UNMATCHED, resource_type, route_template
from app.config import Settings
from app.log_policy import TRACE_IDS


def _missing(exc: ImportError) -> RuntimeError:
    return RuntimeError(
        "FHIR_OTEL=true needs the OpenTelemetry SDK and OTLP exporter, which are not installed "
        f"(no module {exc.name!r}): install the `otel` extra (pip install "
        "'ketamine-fhir[otel]'), or set FHIR_OTEL=false"
    )


try:
    from opentelemetry import propagate, trace
    from opentelemetry.propagators.textmap import Getter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SpanExporter,
    )
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise _missing(exc) from None

SERVICE_NAME = "ketamine-fhir"
# Any other method (HTTP allows any token) is `_OTHER`, as the semantic conventions say.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class _ScopeHeaders(Getter[Scope]):
    """Reads `traceparent` and `tracestate` (and `baggage`) from the ASGI scope's headers."""

    def get(self, carrier: Scope, key: str) -> list[str] | None:
        name = key.lower().encode("latin-1")
        found = [v.decode("latin-1") for n, v in carrier.get("headers", ()) if n == name]
        return found or None

    def keys(self, carrier: Scope) -> list[str]:
        return [n.decode("latin-1") for n, _ in carrier.get("headers", ())]


_HEADERS = _ScopeHeaders()


class Tracing:
    """The process's tracer provider (not installed as OpenTelemetry's global one: each app
    has its own, so several apps in one process, as in the tests, do not clash)."""

    def __init__(self, exporter: SpanExporter | None) -> None:
        self.provider = TracerProvider(resource=_resource())
        if exporter is not None:
            self.provider.add_span_processor(BatchSpanProcessor(exporter))
        self.tracer = self.provider.get_tracer(__name__)

    def flush(self) -> None:
        self.provider.force_flush()

    def shutdown(self) -> None:
        self.provider.shutdown()  # what is queued is exported first


def _resource() -> Resource:
    named = "OTEL_SERVICE_NAME" in os.environ or "service.name=" in os.environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    )
    # Resource.create reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES; what it is given
    # overrides them, so the default name is given only when they name none.
    return Resource.create({} if named else {"service.name": SERVICE_NAME})


def _exporter() -> SpanExporter | None:
    kind = os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() or "otlp"
    if kind == "none":
        return None
    if kind == "console":
        return ConsoleSpanExporter()
    if kind != "otlp":
        raise RuntimeError(
            f"OTEL_TRACES_EXPORTER={kind!r} is not supported: use otlp (OTLP over HTTP), "
            "console or none"
        )
    protocol = os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "")
    ).strip()
    if protocol not in ("", "http/protobuf"):
        raise RuntimeError(
            f"OTLP protocol {protocol!r} is not supported: the server exports OTLP over HTTP "
            "(http/protobuf, port 4318)"
        )
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError as exc:
        raise _missing(exc) from None
    return OTLPSpanExporter()


def install(
    app: FastAPI, settings: Settings, exporter: SpanExporter | None = None
) -> Tracing | None:
    """Adds the tracing middleware (call it after the other middlewares: it must be the
    outermost). `exporter` replaces the one the environment names (the tests' in-memory
    exporter). None when OTEL_SDK_DISABLED=true."""
    assert settings.otel
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    tracing = Tracing(exporter if exporter is not None else _exporter())
    app.add_middleware(TracingMiddleware, tracer=tracing.tracer)
    return tracing


class TracingMiddleware:
    """Pure ASGI: one SERVER span per HTTP request (see the module's doc)."""

    def __init__(self, app: ASGIApp, tracer: trace.Tracer) -> None:
        self.app = app
        self.tracer = tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope.get("method", "")
        if method not in METHODS:
            method = "_OTHER"
        span = self.tracer.start_span(
            "HTTP" if method == "_OTHER" else method,
            context=propagate.extract(scope, getter=_HEADERS),
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "url.scheme": scope.get("scheme", "http")},
        )
        ids = span.get_span_context()
        token = TRACE_IDS.set(
            (trace.format_trace_id(ids.trace_id), trace.format_span_id(ids.span_id))
        )
        status = 500
        error: str | None = None

        async def noting(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            # no record_exception: an exception's message may quote what the request carried
            with trace.use_span(
                span, end_on_exit=False, record_exception=False, set_status_on_exception=False
            ):
                await self.app(scope, receive, noting)
        except BaseException as exc:
            kind = type(exc)
            error = kind.__qualname__
            if kind.__module__ != "builtins":
                error = f"{kind.__module__}.{error}"
            raise
        finally:
            _finish(span, scope, method, status, error)
        TRACE_IDS.reset(token)  # kept on an exception, for the 500 handler's log record


def _finish(span: trace.Span, scope: Scope, method: str, status: int, error: str | None) -> None:
    route = route_template(scope)
    if route != UNMATCHED:
        span.update_name(f"{'HTTP' if method == '_OTHER' else method} {route}")
        span.set_attribute("http.route", route)
    span.set_attribute("http.response.status_code", status)
    named = resource_type(scope)
    if named is not None:
        span.set_attribute("fhir.resource_type", named)
    request_id = scope.get("state", {}).get("request_id")
    if isinstance(request_id, str):
        span.set_attribute("fhir.request_id", request_id)
    if status >= 500:
        span.set_attribute("error.type", error or str(status))
        span.set_status(Status(StatusCode.ERROR))
    span.end()
