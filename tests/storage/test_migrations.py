"""Migrations: an empty database upgrades to head, and head matches the tables' metadata."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, select, update

from app.config import Settings
from app.storage.engine import make_engine
from app.storage.migrate import alembic_config, current_revision, refresh_index, upgrade
from app.storage.tables import index_state_table, metadata, string_table


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


def test_resources_stored_before_the_index_are_indexed_by_the_upgrade(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A database at 0001 holding a resource reaches head with that resource's index rows."""
    engine = make_engine(Settings(DATABASE_URL=f"sqlite:///{tmp_path / 'old.sqlite3'}"))
    try:
        upgrade(engine, "0001")
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO resource (res_key, resource_type, resource_id, version_id, "
                "last_updated, deleted) VALUES (1, 'Patient', 'p1', 1, '2026-01-01 00:00:00', 0)"
            )
            conn.exec_driver_sql(
                "INSERT INTO resource_version (res_key, resource_type, version_id, last_updated,"
                " method, content) VALUES (1, 'Patient', 1, '2026-01-01 00:00:00', 'PUT', ?)",
                (b'{"resourceType":"Patient","id":"p1","name":[{"family":"Doe"}]}',),
            )
        upgrade(engine)
        with engine.connect() as conn:
            rows = conn.execute(
                select(string_table.c.norm).where(string_table.c.param == "family")
            ).all()
        assert rows == [("doe",)]
    finally:
        engine.dispose()


def test_index_written_by_other_rules_is_rebuilt(database_url: str) -> None:
    engine = make_engine(Settings(DATABASE_URL=database_url))
    try:
        with engine.begin() as conn:
            assert refresh_index(conn) is False  # at head, the index follows today's rules
            conn.execute(update(index_state_table).values(fingerprint="older rules"))
            assert refresh_index(conn) is True
            assert refresh_index(conn) is False
    finally:
        engine.dispose()
