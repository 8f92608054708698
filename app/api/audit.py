"""Every request under /fhir (but the CapabilityStatement) becomes an AuditEvent: a pure ASGI
middleware notes the response's status and hands the access to the AuditWriter once the
response has gone out, whatever happened, so refused and failed requests are recorded too.
Handlers add what they touched that the URL does not show (search results, created ids)."""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.fhir.access import Access
from app.fhir.audit import AccessRecord
from app.fhir.ids import is_valid_id
from app.fhir.instants import now
from app.fhir.models import RESOURCE_TYPES

_TYPES = frozenset(RESOURCE_TYPES)
_UNAUDITED = {"/fhir/metadata", "/fhir/.well-known/smart-configuration"}


def classify(method: str, path: str) -> tuple[str, tuple[str, ...]]:
    """(restful-interaction code, Type/id the URL names) of a request to /fhir."""
    parts = [p for p in path.split("/")[2:] if p]  # after /fhir
    if any(p.startswith("$") for p in parts):
        named = _named(parts) if len(parts) > 2 else ()
        return "operation", named
    if not parts:
        return ("search-system" if method == "GET" else "transaction"), ()
    if parts == ["_history"]:
        return "history-system", ()
    if parts == ["_search"]:
        return "search-system", ()
    if len(parts) == 1:
        return {
            "GET": "search-type",
            "POST": "create",
            "PUT": "update",
            "PATCH": "patch",
            "DELETE": "delete",
        }.get(method, "search-type"), ()
    if parts[1] == "_history":
        return "history-type", ()
    if parts[1] == "_search":
        return "search-type", ()
    named = _named(parts)
    if len(parts) == 2:
        return {"PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(method, "read"), named
    if len(parts) == 3:
        return "history-instance", named
    return "vread", named


def _named(parts: list[str]) -> tuple[str, ...]:
    """Type/id the path names, when it is a resource type and a valid id (a refused request's
    path may hold anything: it is described by the query entity, not as a reference)."""
    if parts[0] in _TYPES and is_valid_id(parts[1]):
        return (f"{parts[0]}/{parts[1]}",)
    return ()


class AuditMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith("/fhir") or path in _UNAUDITED:
            await self.app(scope, receive, send)
            return
        status = 500

        async def noting(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, noting)
        finally:
            _record(scope, path, status)


def _record(scope: Scope, path: str, status: int) -> None:
    runtime = getattr(scope["app"].state, "runtime", None)
    writer = getattr(runtime, "audit", None)
    if writer is None:
        return
    state: dict[str, Any] = scope.get("state", {})
    access = state.get("access")
    method = scope["method"]
    interaction, named = classify(method, path)
    if interaction in ("transaction", "search-system") and state.get("bundle_kind") == "batch":
        interaction = "batch"
    touched = tuple(state.get("audit_entities", ()))
    client = scope.get("client")
    writer.record(
        AccessRecord(
            interaction=interaction,
            method=method,
            path=path,
            query=scope.get("query_string", b"").decode("latin-1"),
            status=status,
            entities=tuple(dict.fromkeys((*named, *touched))),
            subject=access.subject if isinstance(access, Access) else None,
            client_id=access.client_id if isinstance(access, Access) else None,
            address=client[0] if client else None,
            recorded=now(),
        )
    )
