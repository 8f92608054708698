"""The audit trail: one AuditEvent (R4B) per access, written in batches outside the request's
own transaction, so recording never delays or loses the request's result, and a refused or
failed request is recorded too."""

from __future__ import annotations

import base64
import logging
import queue
import re
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from app.fhir.ids import new_id
from app.fhir.instants import format_instant, now
from app.fhir.service import ResourceService, stamp
from app.fhir.store import VersionRecord, WriteTx, run_write
from app.search.index_values import IndexRows
from app.search.indexer import index_rows

log = logging.getLogger("app.audit")

# restful-interaction code -> AuditEvent.action (C create, R read, U update, D delete, E execute)
ACTIONS = {
    "read": "R",
    "vread": "R",
    "history-instance": "R",
    "history-type": "R",
    "history-system": "R",
    "search-type": "R",
    "search-system": "R",
    "create": "C",
    "update": "U",
    "patch": "U",
    "delete": "D",
    "transaction": "E",
    "batch": "E",
    "operation": "E",
}
AGENT_SYSTEM = "urn:ketamine-fhir:token-subject"


@dataclass(frozen=True)
class AccessRecord:
    """One request, as the audit trail keeps it."""

    interaction: str  # a restful-interaction code (ACTIONS)
    method: str
    path: str
    query: str
    status: int
    entities: tuple[str, ...]  # Type/id of the resources read or written
    subject: str | None
    client_id: str | None
    address: str | None
    recorded: datetime


_CONTROL = re.compile(r"[\x00-\x1f]")


def _text(value: str) -> str:
    """Request-supplied text as a FHIR string (no control characters: an event must be a
    valid resource, and PostgreSQL cannot index U+0000)."""
    return _CONTROL.sub("\ufffd", value)


def audit_event(access: AccessRecord) -> dict[str, Any]:
    outcome = "0" if access.status < 400 else ("4" if access.status < 500 else "8")
    agent: dict[str, Any] = {
        "type": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/extra-security-role-type",
                    "code": "humanuser" if access.subject else "dataprocessor",
                }
            ]
        },
        "requestor": True,
        "who": {
            "identifier": {
                "system": AGENT_SYSTEM,
                "value": _text(access.subject) if access.subject else "anonymous",
            },
        },
    }
    if access.client_id:
        agent["altId"] = _text(access.client_id)
    if access.address:
        agent["network"] = {"address": access.address, "type": "2"}
    entities: list[dict[str, Any]] = [{"what": {"reference": e}} for e in access.entities]
    if access.query:
        entities.append(
            {
                "type": {
                    "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                    "code": "2",
                },
                "description": _text(f"{access.method} {access.path}"),
                "query": base64.b64encode(access.query.encode()).decode(),
            }
        )
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "type": {
            "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
            "code": "rest",
            "display": "RESTful Operation",
        },
        "subtype": [
            {"system": "http://hl7.org/fhir/restful-interaction", "code": access.interaction}
        ],
        "action": ACTIONS.get(access.interaction, "E"),
        "recorded": format_instant(access.recorded),
        "outcome": outcome,
        "outcomeDesc": f"HTTP {access.status}",
        "agent": [agent],
        "source": {
            "observer": {"display": "ketamine-fhir"},
            "type": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/security-source-type",
                    "code": "4",
                    "display": "Application Server",
                }
            ],
        },
    }
    if entities:
        event["entity"] = entities
    return event


def _insert(items: list[tuple[VersionRecord, IndexRows]], tx: WriteTx) -> None:
    tx.insert_many(items)


class AuditWriter:
    """A background thread writing queued AuditEvents, up to `batch` per transaction, each
    transaction holding what arrived within `linger_seconds` of its first event. close()
    writes what is queued before returning (the server's shutdown waits for it)."""

    def __init__(
        self, service: ResourceService, batch: int = 500, linger_seconds: float = 0.05
    ) -> None:
        self._service = service
        self._batch = batch
        self._linger = linger_seconds
        self._queue: queue.SimpleQueue[AccessRecord | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._thread.start()

    def record(self, access: AccessRecord) -> None:
        self._queue.put(access)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            pending: list[AccessRecord] = []
            if first is None:
                stopping = True
            else:
                pending.append(first)
            # Gather what arrives in the next moment: under load each transaction then holds
            # many events (a commit per request's event cost more than half a read's time).
            deadline = time.monotonic() + self._linger
            while not stopping and len(pending) < self._batch:
                try:
                    item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                pending.append(item)
            if pending:
                self._write(pending)

    def _write(self, pending: list[AccessRecord]) -> None:
        items = []
        stamped = now()
        for access in pending:
            event = audit_event(access)
            resource_id = new_id()
            record = VersionRecord(
                "AuditEvent", resource_id, 1, stamped, "POST", stamp(event, resource_id, 1, stamped)
            )
            items.append((record, index_rows(event)))
        for attempt in range(5):
            try:
                run_write(self._service.store, lambda tx: tx.insert_many(items))
                return
            except Exception:  # the database may be down for a moment: retry
                if attempt < 4:
                    threading.Event().wait(0.2 * (attempt + 1))
        # still failing: one event at a time, so an event the database refuses loses only itself
        lost = 0
        for item in items:
            try:
                run_write(self._service.store, partial(_insert, [item]))
            except Exception:
                lost += 1
        if lost:
            log.error("could not write %d of %d audit events", lost, len(items))
