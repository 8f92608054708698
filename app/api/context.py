"""Per-app runtime (service, database call policy) and per-request helpers for handlers."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from app.api import negotiation
from app.config import Settings
from app.fhir import jsonio
from app.fhir.audit import AuditWriter
from app.fhir.errors import BadRequestError, PayloadTooLargeError, UriTooLongError
from app.fhir.export import ExportStore
from app.fhir.formats import parse_resource
from app.fhir.service import ResourceService
from app.security.tokens import TokenVerifier

T = TypeVar("T")


@dataclass
class Runtime:
    settings: Settings
    service: ResourceService
    inline: bool  # run blocking database work on the event loop (see Settings.db_calls)
    exports: ExportStore
    verifier: TokenVerifier | None = None  # None: no authorization configured
    audit: AuditWriter | None = None  # None: no audit trail kept
    # /readyz: None when the database answers at the schema's head, else why not
    readiness: Callable[[], str | None] | None = None

    # reads by id (read, vread) run inline too
    inline_reads: bool = False

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        if self.inline:
            return fn(*args)
        return await run_in_threadpool(fn, *args)

    async def call_read(self, fn: Callable[..., T], *args: Any) -> T:
        """`call` for a read by id: one statement on one row, no locks, no COMMIT."""
        if self.inline or self.inline_reads:
            return fn(*args)
        return await run_in_threadpool(fn, *args)


def call_policy(setting: str, sqlite: bool, cpus: int) -> tuple[bool, bool]:
    """(every call inline, reads by id inline) for FHIR_DB_CALLS, the dialect and the CPUs the
    process may run on.

    PostgreSQL, measured with bench/run.py (docs/architecture.md): a thread hop costs ~95 us of
    CPU per call, and when a worker's threads may run on two cores they hand the GIL to each
    other across cores, so the event loop thread and the database threads convoy: reads by id
    with two workers ran 2.4x faster inline, their p99 2-3 ms instead of 6-350 ms. On one core
    (taskset) the hop is cheap and overlaps the round trip with other requests' work: threads
    were ~20% faster there. Everything else stays in threads: a search, a Bundle or an
    operation can take seconds, and a write caught in COMMIT by an outage waits for the
    database to come back to learn its outcome (sql_store); inline, either would stall every
    request of the worker."""
    if setting == "inline" or (setting == "auto" and sqlite):
        return True, True
    if setting == "thread":
        return False, False
    return False, cpus > 1


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity: taskset, cpusets), else all of them."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else (os.cpu_count() or 1)


def runtime(request: Request) -> Runtime:
    value = request.app.state.runtime
    assert isinstance(value, Runtime)
    return value


def base_url(request: Request) -> str:
    configured = runtime(request).settings.base_url
    if configured:
        return configured.rstrip("/")
    return f"{str(request.base_url).rstrip('/')}/fhir"


async def check_query(request: Request) -> None:
    """Dependency of the /fhir routers: a query string over the limit is 414 before anything
    reads it. Async, though it awaits nothing: FastAPI runs a sync dependency in the thread
    pool, a thread hop per request (~8% of a create's time)."""
    limit = runtime(request).settings.max_query_bytes
    size = len(request.scope.get("query_string", b""))
    if size > limit:
        raise UriTooLongError(
            f"The query string is {size} bytes; the limit is {limit} (FHIR_MAX_QUERY_BYTES). "
            "Send a long search as POST {type}/_search with form-encoded parameters"
        )


def check_json_depth(request: Request, raw: bytes, what: str = "The body") -> None:
    limit = runtime(request).settings.max_json_depth
    if jsonio.nesting_exceeds(raw, limit):
        raise BadRequestError(
            f"{what} nests objects and arrays more than {limit} levels deep, the limit of "
            "this server (FHIR_MAX_JSON_DEPTH)",
            code="too-costly",
        )


async def read_body(request: Request, *, allow_empty: bool = False) -> bytes:
    """The body, refused over the size limit (413) and, when JSON, over the nesting limit."""
    settings = runtime(request).settings
    limit = settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(f"The body is {declared} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"The body is larger than the limit of {limit} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    if not body.strip():
        if allow_empty:
            return body
        raise BadRequestError("The request has an empty body; it must carry a resource")
    if "json" in request.headers.get("content-type", "").lower():
        check_json_depth(request, body)
    return body


def parse_body(request: Request, raw: bytes) -> Any:
    """A body read by read_body as a resource, in the format its Content-Type names (XML's
    nesting limited here; JSON's was checked by read_body)."""
    fmt = negotiation.body_format(request)
    return parse_resource(raw, fmt, max_depth=runtime(request).settings.max_json_depth)
