"""A connection that dies during COMMIT leaves the write's outcome unknown to the client side:
PostgreSQL may have committed and died before answering. The store then looks, on a new
connection, for a version the transaction wrote (SqlStore._commit_outcome): found, the write
is answered as done; not found, it is a 503 that wrote nothing; the database still away after
COMMIT_CHECK_SECONDS, a 503 saying the outcome is unknown. The death is simulated around the
real COMMIT (test_postgres_outage hits it by chance, about one run in four)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine

from app.config import Settings
from app.fhir.service import ResourceService
from app.fhir.store import CommitOutcomeUnknownError, StorageUnavailableError
from app.storage import sql_store
from app.storage.engine import make_engine
from app.storage.migrate import upgrade
from app.storage.sql_store import SqlStore
from tests.helpers import patient

_LOST = "server closed the connection unexpectedly"


class _DyingCursor:
    """A cursor whose connection dies at COMMIT: after the commit (`committed`) or before."""

    def __init__(self, cursor: Any, connection: Any, committed: bool) -> None:
        self._cursor, self._connection, self._committed = cursor, connection, committed

    def execute(self, statement: Any, *args: Any, **kwargs: Any) -> Any:
        if statement == "COMMIT":
            if self._committed:
                self._cursor.execute(statement)
            self._connection.close()  # the server's side of the story ends here
            raise psycopg.OperationalError(_LOST)
        return self._cursor.execute(statement, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)


@pytest.fixture
def store(database_url: str, settings: Settings) -> Iterator[SqlStore]:
    if database_url.startswith("sqlite"):
        pytest.skip("a network connection dying during COMMIT: PostgreSQL")
    engine: Engine = make_engine(settings)
    upgrade(engine)
    yield SqlStore(engine)
    engine.dispose()


def _dying_at_commit(store: SqlStore, committed: bool) -> Any:
    real = store._raw

    @contextmanager
    def raw() -> Iterator[Any]:
        with real() as connection:
            cursor = connection.cursor

            class Connection:
                def __getattr__(self, name: str) -> Any:
                    return getattr(connection, name)

                def cursor(self) -> _DyingCursor:
                    return _DyingCursor(cursor(), connection.dbapi_connection, committed)

            yield Connection()

    return raw


def _count(service: ResourceService) -> int:
    _, page, _ = service.search(("Patient",), [("_summary", "count")], 10, 10)
    assert page.total is not None
    return page.total


def test_a_commit_that_happened_is_answered_as_done(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    service = ResourceService(store)
    monkeypatch.setattr(store, "_raw", _dying_at_commit(store, committed=True))
    result = service.create("Patient", patient("Lost-Answer"))
    assert "which had succeeded" in caplog.text  # the connection did die at COMMIT
    assert result.record is not None
    monkeypatch.undo()
    stored = store.read("Patient", result.record.resource_id)
    assert stored is not None
    assert stored.content == result.record.content


def test_a_commit_that_did_not_happen_is_503_and_wrote_nothing(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = ResourceService(store)
    before = _count(service)
    monkeypatch.setattr(store, "_raw", _dying_at_commit(store, committed=False))
    with pytest.raises(StorageUnavailableError) as caught:
        service.create("Patient", patient("Never-Written"))
    assert not isinstance(caught.value, CommitOutcomeUnknownError)
    monkeypatch.undo()
    assert _count(service) == before


def test_a_database_that_stays_away_leaves_the_outcome_unknown(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = ResourceService(store)
    monkeypatch.setattr(store, "_raw", _dying_at_commit(store, committed=True))
    monkeypatch.setattr(sql_store, "COMMIT_CHECK_SECONDS", 0.5)

    def away(*args: Any, **kwargs: Any) -> Any:
        raise sql_store.OperationalError("SELECT 1", {}, psycopg.OperationalError(_LOST))

    monkeypatch.setattr(store._engine, "connect", away)
    with pytest.raises(CommitOutcomeUnknownError):
        service.create("Patient", patient("Maybe-Written"))
