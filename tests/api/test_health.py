"""The probes, on both databases: /healthz answers without the database, /readyz checks that
the database answers at the migrations' head (read once at start-up) and says what is wrong
with a 503 OperationOutcome; neither needs a token nor leaves an AuditEvent."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, text

from app.config import Settings
from app.fhir.audit import AccessRecord
from app.main import create_app
from app.storage import health
from tests.asgi_client import asgi_client
from tests.helpers import assert_outcome
from tests.security.test_auth_api import secured_server


@pytest.fixture
def served(settings: Settings) -> Iterator[tuple[Any, httpx.Client]]:
    app = create_app(settings)
    with asgi_client(app) as client:
        yield app, client


def _engine(app: Any) -> Engine:
    engine: Engine = app.state.runtime.exports.engine  # the SqlStore
    return engine


def test_both_probes_answer_ok(client: httpx.Client) -> None:
    for path in ("/healthz", "/readyz"):
        response = client.get(path)
        assert response.status_code == 200, response.text
        assert response.json() == {"status": "ok"}
        assert response.headers["cache-control"] == "no-store"


def test_healthz_does_not_touch_the_database(
    served: tuple[Any, httpx.Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    app, client = served

    def unreachable(*_: Any, **__: Any) -> Any:
        raise OSError("connection refused")

    engine = _engine(app)
    monkeypatch.setattr(engine, "connect", unreachable)
    monkeypatch.setattr(engine, "raw_connection", unreachable)
    assert client.get("/healthz").json() == {"status": "ok"}
    outcome = assert_outcome(client.get("/readyz"), 503, "no-store")
    diagnostics = outcome["issue"][0]["diagnostics"]
    assert diagnostics == "The database is not reachable"  # the reason is logged, not told
    assert_outcome(client.get("/fhir/Patient/p1"), 503)  # and the API says so too


@contextmanager
def _changed_schema(engine: Engine, change: str, undo: str) -> Iterator[None]:
    with engine.begin() as conn:
        conn.execute(text(change))
    try:
        yield
    finally:
        with engine.begin() as conn:
            conn.execute(text(undo))


def test_readyz_names_a_schema_behind_or_ahead_of_head(served: tuple[Any, httpx.Client]) -> None:
    app, client = served
    engine = _engine(app)
    (head,) = health.migration_heads()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == head
    for other in ("0006", "9999"):
        with _changed_schema(
            engine,
            f"UPDATE alembic_version SET version_num = '{other}'",
            f"UPDATE alembic_version SET version_num = '{head}'",
        ):
            outcome = assert_outcome(client.get("/readyz"), 503, "no-store")
            diagnostics = outcome["issue"][0]["diagnostics"]
            assert f"revision {other}, not at this server's head {head}" in diagnostics
            assert "python -m app migrate" in diagnostics
    assert client.get("/readyz").status_code == 200


def test_readyz_names_a_database_without_schema(served: tuple[Any, httpx.Client]) -> None:
    app, client = served
    engine = _engine(app)
    with _changed_schema(
        engine,
        "ALTER TABLE alembic_version RENAME TO alembic_version_away",
        "ALTER TABLE alembic_version_away RENAME TO alembic_version",
    ):
        outcome = assert_outcome(client.get("/readyz"), 503, "no-store")
        assert "no schema" in outcome["issue"][0]["diagnostics"]
    assert client.get("/readyz").status_code == 200


def test_readyz_reads_no_migration_scripts_per_request(
    client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    def scanning(*_: Any, **__: Any) -> Any:
        raise AssertionError("migrations/ read again")

    monkeypatch.setattr(health.ScriptDirectory, "from_config", scanning)
    monkeypatch.setattr(health, "migration_heads", scanning)
    for _ in range(3):
        assert client.get("/readyz").status_code == 200


def test_probes_need_no_token(
    database_url: str, admin_engines: dict[str, Engine], tmp_path: Path
) -> None:
    with secured_server(database_url, admin_engines, tmp_path, []) as client:
        assert client.get("/fhir/Patient").status_code == 401
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 200


class _Recorder:
    def __init__(self) -> None:
        self.paths: list[str] = []

    def record(self, access: AccessRecord) -> None:
        self.paths.append(access.path)

    def close(self) -> None:
        pass


def test_probes_are_not_audited(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"audit": "on"}))
    with asgi_client(app) as client:
        recorder = _Recorder()
        app.state.runtime.audit = recorder
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 200
        assert client.get("/fhir/Patient").status_code == 200
    assert recorder.paths == ["/fhir/Patient"]
