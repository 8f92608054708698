"""Where database calls run (FHIR_DB_CALLS, app/api/context.py): the policy, and that a read by
id runs on the event loop's thread when it says so, and a write or a search never does."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from app.api.context import Runtime, call_policy, usable_cpus
from app.config import Settings
from app.fhir.service import ResourceService
from app.main import create_app
from tests.asgi_client import asgi_client
from tests.helpers import JSON_HEADERS, patient


@pytest.mark.parametrize(
    ("setting", "sqlite", "cpus", "policy"),
    [
        ("auto", True, 2, (True, True)),
        ("auto", True, 1, (True, True)),
        ("auto", False, 2, (False, True)),  # PostgreSQL, cores to convoy on: reads inline
        ("auto", False, 1, (False, False)),  # confined to one core: every call in a thread
        ("inline", False, 1, (True, True)),
        ("thread", True, 2, (False, False)),
        ("thread", False, 2, (False, False)),
    ],
)
def test_the_policy(setting: str, sqlite: bool, cpus: int, policy: tuple[bool, bool]) -> None:
    assert call_policy(setting, sqlite, cpus) == policy


def test_usable_cpus_is_the_affinity() -> None:
    import os

    expected = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    assert usable_cpus() == (expected or os.cpu_count())


def _on_the_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # a thread of the pool has no running loop
        return False
    return True


@pytest.fixture
def threads(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """The app over `settings`, recording whether each service read, search and create ran on
    the event loop's thread."""
    seen: dict[str, Any] = {}
    read, search, create = ResourceService.read, ResourceService.search, ResourceService.create

    def recording_read(self: ResourceService, *args: Any) -> Any:
        seen["read on the loop"] = _on_the_event_loop()
        return read(self, *args)

    def recording_search(self: ResourceService, *args: Any, **kwargs: Any) -> Any:
        seen["search on the loop"] = _on_the_event_loop()
        return search(self, *args, **kwargs)

    def recording_create(self: ResourceService, *args: Any, **kwargs: Any) -> Any:
        seen["create on the loop"] = _on_the_event_loop()
        return create(self, *args, **kwargs)

    monkeypatch.setattr(ResourceService, "read", recording_read)
    monkeypatch.setattr(ResourceService, "create", recording_create)
    monkeypatch.setattr(ResourceService, "search", recording_search)
    app = create_app(settings)
    with asgi_client(app) as client:
        seen["client"] = client
        seen["runtime"] = app.state.runtime
        yield seen


@pytest.mark.parametrize("inline_reads", [True, False])
def test_a_read_runs_where_the_policy_says(threads: dict[str, Any], inline_reads: bool) -> None:
    client: httpx.Client = threads["client"]
    runtime: Runtime = threads["runtime"]
    runtime.inline, runtime.inline_reads = False, inline_reads
    created = client.post("/fhir/Patient", json=patient("Where"), headers=JSON_HEADERS)
    pid = created.json()["id"]
    assert client.get(f"/fhir/Patient/{pid}").status_code == 200
    assert client.get("/fhir/Patient", params={"_id": pid}).json()["total"] == 1
    assert threads["read on the loop"] is inline_reads
    # a search may take seconds, a write wait out an outage to learn its COMMIT's outcome
    assert threads["search on the loop"] is False
    assert threads["create on the loop"] is False
