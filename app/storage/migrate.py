"""Bring a database to the newest schema with Alembic, safely when several workers start at once."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, delete, insert, select, text

from app.search.indexer import index_fingerprint
from app.storage.engine import SQLITE_BEGIN, is_sqlite
from app.storage.reindex import reindex
from app.storage.tables import index_state_table

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
_ADVISORY_LOCK = 7_061_300  # any constant: serialises concurrent upgrades on PostgreSQL


def alembic_config(url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    config = alembic_config()
    with engine.connect() as connection:
        if is_sqlite(engine):
            # BEGIN IMMEDIATE: a second process starting at the same time waits, then finds head.
            connection = connection.execution_options(**{SQLITE_BEGIN: "IMMEDIATE"})
        else:
            # The engine is autocommit; a migration must be one transaction.
            connection = connection.execution_options(isolation_level="READ COMMITTED")
        with connection.begin():
            if not is_sqlite(engine):
                connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _ADVISORY_LOCK})
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
            if revision == "head":
                refresh_index(connection)


def refresh_index(connection: Connection) -> bool:
    """Rebuild the search index if it was written by other extraction rules (a new registry,
    new aliases, a migration that emptied it); returns whether it did."""
    fingerprint = index_fingerprint()
    stored = connection.execute(select(index_state_table.c.fingerprint)).scalar()
    if stored == fingerprint:
        return False
    reindex(connection)
    connection.execute(delete(index_state_table))
    connection.execute(insert(index_state_table).values(id=1, fingerprint=fingerprint))
    return True


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
