"""Migrations: an empty database upgrades to head, and head matches the tables' metadata."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from app.config import Settings
from app.storage.engine import make_engine
from app.storage.migrate import alembic_config, current_revision, upgrade
from app.storage.tables import metadata


def test_database_is_at_head_and_matches_the_models(database_url: str) -> None:
    engine = make_engine(Settings(DATABASE_URL=database_url))
    try:
        head = ScriptDirectory.from_config(alembic_config()).get_current_head()
        assert current_revision(engine) == head
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
        assert diff == []
        assert {"resource", "resource_version"} <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_is_idempotent(database_url: str) -> None:
    engine = make_engine(Settings(DATABASE_URL=database_url))
    try:
        upgrade(engine)
        upgrade(engine)
        assert current_revision(engine) is not None
    finally:
        engine.dispose()


def test_fresh_sqlite_file_upgrades_from_empty(tmp_path) -> None:  # type: ignore[no-untyped-def]
    engine = make_engine(Settings(DATABASE_URL=f"sqlite:///{tmp_path / 'new' / 'db.sqlite3'}"))
    try:
        assert current_revision(engine) is None
        upgrade(engine)
        assert current_revision(engine) is not None
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
    finally:
        engine.dispose()
