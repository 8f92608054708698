"""Background WAL checkpoints (app/storage/checkpoint.py): the thread copies the WAL back into
the database file without any request's COMMIT doing it, stops when told, and survives a
database it cannot checkpoint; the served app runs one for a SQLite file only."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

from app.config import Settings
from app.main import create_app
from app.storage.checkpoint import WalCheckpointer, needs_checkpointer
from app.storage.engine import make_engine
from tests.asgi_client import asgi_client


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(Settings(DATABASE_URL=f"sqlite:///{tmp_path / 'wal.sqlite3'}"))
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (x TEXT)"))
    yield engine
    engine.dispose()


def _write(engine: Engine, rows: int) -> None:
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO t VALUES (:x)"), [{"x": "x" * 500}] * rows)


def test_the_thread_copies_the_wal_back(sqlite_engine: Engine) -> None:
    checkpointer = WalCheckpointer(sqlite_engine, interval=0.05).start()
    try:
        # ~250 pages: far below wal_autocheckpoint's 10,000, so no COMMIT checkpoints them
        _write(sqlite_engine, 2000)
        deadline = time.monotonic() + 10
        while checkpointer.last is None or checkpointer.last[2] == 0:
            assert time.monotonic() < deadline, "no checkpoint copied anything"
            time.sleep(0.05)
        busy, frames, copied = checkpointer.last
        assert busy == 0
        assert copied == frames > 0  # all of the WAL, by the thread
    finally:
        checkpointer.stop()
    assert not checkpointer._thread.is_alive()


def test_a_database_it_cannot_checkpoint_ends_the_thread_quietly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine = make_engine(Settings(DATABASE_URL=f"sqlite:///{tmp_path / 'gone' / 'x.sqlite3'}"))
    checkpointer = WalCheckpointer(engine, interval=0.01)
    (tmp_path / "gone").rmdir()  # make_engine made the folder; without it no file can open
    checkpointer.start()
    checkpointer._thread.join(timeout=10)
    assert not checkpointer._thread.is_alive()
    assert "background WAL checkpoints stopped" in caplog.text
    engine.dispose()


def test_the_served_app_checkpoints_sqlite_files_only(settings: Settings) -> None:
    app = create_app(settings)
    with asgi_client(app) as client:
        assert client.get("/fhir/metadata").status_code == 200
        checkpointer = app.state.checkpointer
        if settings.database_url.startswith("sqlite"):
            assert isinstance(checkpointer, WalCheckpointer)
            assert checkpointer._thread.is_alive()
        else:
            assert checkpointer is None
    if checkpointer is not None:
        assert not checkpointer._thread.is_alive()  # stopped with the app
    assert needs_checkpointer(create_engine("sqlite://")) is False  # :memory: has no WAL
