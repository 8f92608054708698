"""Per-app runtime (service, database call policy) and per-request helpers for handlers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from app.config import Settings
from app.fhir.audit import AuditWriter
from app.fhir.errors import BadRequestError, PayloadTooLargeError
from app.fhir.export import ExportStore
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

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        if self.inline:
            return fn(*args)
        return await run_in_threadpool(fn, *args)


def runtime(request: Request) -> Runtime:
    value = request.app.state.runtime
    assert isinstance(value, Runtime)
    return value


def base_url(request: Request) -> str:
    configured = runtime(request).settings.base_url
    if configured:
        return configured.rstrip("/")
    return f"{str(request.base_url).rstrip('/')}/fhir"


async def read_body(request: Request) -> bytes:
    limit = runtime(request).settings.max_body_bytes
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
        raise BadRequestError("The request has an empty body; it must carry a resource")
    return body
