"""The request log. By the log policy a log line may carry the request id, method, route
template, resource type, status, duration and client id; never resource content, names, ids in
paths or query values, any of which may identify a patient.

RequestLogMiddleware is a pure ASGI middleware, the outermost, so it times everything. It
gives each request an id (a sane `X-Request-Id` from the client, else a new one), echoes it in
the response's `X-Request-Id`, leaves it in `scope["state"]["request_id"]`, and when the
response is out writes one INFO record to the "app.access" logger:

    request_id=3f0c... method=GET route=/fhir/{resource_type}/{resource_id}
    resource_type=Patient status=200 duration_ms=1.2 client_id=infusion-app

The route is the matched route's template; a path no route matched is `<unmatched>`, never the
path itself. The same fields are on the record as attributes (`record.route`, ...) for
structured handlers: with FHIR_LOG_FORMAT=json they are the line's top-level keys.

While the request is handled its id is in app/log_policy.py's REQUEST_ID context variable, so
RequestContextFilter puts it on any record written meanwhile (the error handler's, the
database layer's, uvicorn's "Exception in ASGI application").

The rest of the policy (tracebacks without messages, the served process's log configuration)
is app/log_policy.py."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.fhir.access import Access
from app.fhir.models import RESOURCE_TYPES
from app.log_policy import ACCESS_LOGGER, REQUEST_ID

log = logging.getLogger(ACCESS_LOGGER)

HEADER = "X-Request-Id"
_HEADER_KEY = HEADER.lower().encode("latin-1")
_SANE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
# values written bare in a line; anything else is quoted (a newline cannot forge a line)
_BARE = re.compile(r"[A-Za-z0-9._:/@{}<>$*+-]{1,200}")
_TYPES = frozenset(RESOURCE_TYPES)
UNMATCHED = "<unmatched>"


def request_id(scope: Scope) -> str:
    """The client's X-Request-Id when it is a sane token, else a new one."""
    for name, value in scope.get("headers", ()):
        if name == _HEADER_KEY:
            supplied: str = value.decode("latin-1")
            if _SANE_ID.fullmatch(supplied):
                return supplied
            break
    return uuid.uuid4().hex


def route_template(scope: Scope) -> str:
    """The matched route's path template (`/fhir/{resource_type}/{resource_id}`), or
    `<unmatched>`: the raw path may hold ids, so it is never returned."""
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    return template if isinstance(template, str) and template else UNMATCHED


def resource_type(scope: Scope) -> str | None:
    """The resource type the route names, when it is one of R4B's (any other text in that
    place of the path is not logged)."""
    params = scope.get("path_params") or {}
    named = params.get("resource_type")
    return named if named in _TYPES else None


def _value(value: object) -> str:
    if value is None:
        return "-"
    text = str(value)
    if _BARE.fullmatch(text):
        return text
    return '"' + text.encode("unicode_escape").decode("ascii").replace('"', '\\"') + '"'


class RequestLogMiddleware:
    """`observe(scope, status, seconds)`, when given, is told each request too (the metrics,
    app/api/metrics.py): one middleware times and notes the status for both."""

    def __init__(
        self, app: ASGIApp, observe: Callable[[Scope, int, float], None] | None = None
    ) -> None:
        self.app = app
        self.observe = observe

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        rid = request_id(scope)
        scope.setdefault("state", {})["request_id"] = rid
        token = REQUEST_ID.set(rid)
        status = 500
        header = (_HEADER_KEY, rid.encode("latin-1"))

        async def noting(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), header]}
            await send(message)

        try:
            await self.app(scope, receive, noting)
        finally:
            seconds = time.perf_counter() - began
            if self.observe is not None:
                self.observe(scope, status, seconds)
            _emit(scope, rid, status, seconds * 1000)
        # Reset only when the request ended normally. An exception goes on to Starlette's
        # ServerErrorMiddleware, outside this one, whose 500 handler (api/errors.py) and then
        # uvicorn log it in this same task: they keep the id. Each request runs in a task of
        # its own (uvicorn, httpx's ASGITransport), so the id ends with it either way.
        REQUEST_ID.reset(token)


def _emit(scope: Scope, rid: str, status: int, duration_ms: float) -> None:
    if not log.isEnabledFor(logging.INFO):
        return
    access = scope.get("state", {}).get("access")
    fields: dict[str, Any] = {
        "request_id": rid,
        "method": scope.get("method"),
        "route": route_template(scope),
        "resource_type": resource_type(scope),
        "status": status,
        "duration_ms": round(duration_ms, 1),
        "client_id": access.client_id if isinstance(access, Access) else None,
    }
    log.info(" ".join(f"{k}={_value(v)}" for k, v in fields.items()), extra=fields)
