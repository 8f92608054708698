"""The composition root: builds the app, wires storage to the FHIR service in the lifespan."""

from __future__ import annotations

import gc
import inspect
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import Depends, FastAPI, Request

from app.api import direct_routes, docs, errors, openapi
from app.api.audit import AuditMiddleware
from app.api.auth import authenticate
from app.api.auth import public as public_router
from app.api.context import Runtime, call_policy, check_query, usable_cpus
from app.api.export_routes import router as export_router
from app.api.health import router as health_router
from app.api.metrics import Metrics
from app.api.metrics import router as metrics_router
from app.api.operation_routes import definitions_router
from app.api.operation_routes import router as operation_router
from app.api.request_log import RequestLogMiddleware
from app.api.routes import public_router as public_fhir_router
from app.api.routes import router
from app.config import Settings, get_settings
from app.fhir import (  # noqa: F401 - they register their capabilities
    operation_definitions,
    search_capability,
)
from app.fhir.audit import AuditWriter
from app.fhir.service import ResourceService
from app.search.ucum import canonical
from app.security.setup import build_verifier
from app.storage.checkpoint import WalCheckpointer, needs_checkpointer
from app.storage.engine import is_sqlite, make_engine, wait_for_database
from app.storage.health import Readiness, migration_heads
from app.storage.migrate import upgrade
from app.storage.sql_store import SqlStore

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

    from app.api.tracing import Tracing

log = logging.getLogger("app")

# FastAPI 0.142+ traces, meters and logs requests itself whenever OpenTelemetry has a global
# provider (opentelemetry-instrument, FASTAPI_OTEL_AUTO_CONFIGURE=true, a library that sets
# one), with the raw path and query string (url.path, url.query) and exception messages: the
# log policy forbids them. Off, always; FHIR_OTEL's spans (app/api/tracing.py) are the server's.
_NO_FASTAPI_TELEMETRY = {
    "tracing": False,
    "metrics": False,
    "logs": False,
    "operation_spans": False,
    "auto_configure": False,
}
_FASTAPI_OPTIONS: dict[str, Any] = (
    {"telemetry": _NO_FASTAPI_TELEMETRY}
    if "telemetry" in inspect.signature(FastAPI).parameters
    else {}
)


def create_app(
    settings: Settings | None = None,
    *,
    span_exporter: SpanExporter | None = None,
    freeze_gc: bool = False,
) -> FastAPI:
    """`span_exporter`: where spans go when FHIR_OTEL is on, instead of the exporter the
    OTEL_* variables name (the tests' in-memory one). `freeze_gc`: the served app's (one per
    process); see the lifespan."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        verifier = build_verifier(settings)  # bad authorization settings stop start-up
        if verifier is None:
            log.warning(
                "NO AUTHORIZATION IS CONFIGURED: every request is answered, with every "
                "resource. Set FHIR_AUTH_JWKS, FHIR_AUTH_ISSUER and FHIR_AUTH_AUDIENCE to "
                "require SMART on FHIR access tokens."
            )
        engine = make_engine(settings)
        checkpointer: WalCheckpointer | None = None
        try:
            wait_for_database(engine, settings.db_wait_seconds)
            readiness = Readiness(engine, migration_heads())  # the head, read once
            if settings.migrate_on_start:
                upgrade(engine)  # at head it writes nothing: a read-only database starts too
            canonical(1, "mg")  # builds the UCUM registry now, not in the first request
            inline, inline_reads = call_policy(settings.db_calls, is_sqlite(engine), usable_cpus())
            checkpointer = WalCheckpointer(engine).start() if needs_checkpointer(engine) else None
            app.state.checkpointer = checkpointer
            store = SqlStore(engine, settings.search_timeout_ms)
            metrics.attach(store)  # its pool, resource counts and commits
            service = ResourceService(store)
            audit = AuditWriter(service) if settings.audit_enabled else None
            app.state.runtime = Runtime(
                settings, service, inline, store, verifier, audit, readiness, inline_reads
            )
            if freeze_gc:
                # Start-up leaves ~200k objects (the models' schemas and validators, the search
                # registry) that live as long as the process; a full collection scanned them all,
                # ~107 ms with the event loop stopped, and more as models load. Frozen, the
                # collector never scans them again (bench/gc_pause.py).
                gc.collect()
                gc.freeze()
            log.info("serving FHIR R4B at /fhir on %s", engine.url.render_as_string())
            try:
                yield
            finally:
                if audit is not None:
                    audit.close()  # what is queued is written before the engine closes
        finally:
            if checkpointer is not None:
                checkpointer.stop()
            engine.dispose()
            if tracing is not None:
                tracing.shutdown()  # exports what is queued

    app = FastAPI(
        title="Ketamine infusion FHIR server",
        version="0.1.0",
        summary="FHIR R4B RESTful API for ketamine infusion therapy and pain outcomes",
        lifespan=lifespan,
        docs_url=None,  # FastAPI's pages load their assets from a CDN: app/api/docs.py's do not
        redoc_url=None,
        **_FASTAPI_OPTIONS,
    )
    errors.install(app)
    openapi.install(app)  # names the schemas of /openapi.json as components
    metrics = app.state.metrics = Metrics(settings.metrics_count_seconds)
    if settings.audit_enabled:  # else a layer per request that records nothing
        app.add_middleware(AuditMiddleware)
    # added last, so outermost: it times everything and its request id is there for the rest
    app.add_middleware(RequestLogMiddleware, observe=metrics.observe)  # and counts for /metrics
    tracing: Tracing | None = None
    if settings.otel:  # only then are OpenTelemetry's SDK and exporter imported
        from app.api.tracing import install

        # added after the others, so its span is the outermost
        tracing = app.state.tracing = install(app, settings, span_exporter)
    fhir = [Depends(check_query)]

    async def guard(request: Request) -> None:
        await check_query(request)
        await authenticate(request)

    protected = [Depends(guard)]
    # Routes are matched in this order, one by one. The interactions (`router`, most requests)
    # are also mounted first as direct routes (app/api/direct_routes.py), which skip FastAPI's
    # per-request dependency solving. Their {resource_type} and {resource_id} never take an
    # `$operation` segment (app/api/routes.py), so the operations and $export keep their paths.
    app.include_router(health_router)  # no token, no audit: outside /fhir
    app.include_router(metrics_router)  # the same, and not in the OpenAPI document
    app.include_router(public_router, dependencies=fhir)
    app.include_router(public_fhir_router, dependencies=fhir)
    app.include_router(definitions_router, dependencies=protected)  # before router's read
    app.include_router(router, dependencies=protected)
    app.include_router(export_router, dependencies=protected)
    app.include_router(operation_router, dependencies=protected)
    docs.install(app)  # /docs, /redoc, / and their assets: no token, outside /fhir
    direct_routes.install(app, router.routes, protected)  # as `router` is included
    return app


app = create_app(freeze_gc=True)
