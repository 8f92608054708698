"""Readiness: the database answers and its schema is the one this code was written for.

The migrations' head is read from migrations/ once, when the server starts (ScriptDirectory
imports every script); each check is then two trivial statements."""

from __future__ import annotations

import logging

from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from app.storage.engine import SQLITE_BEGIN, is_sqlite
from app.storage.migrate import alembic_config

log = logging.getLogger(__name__)


def migration_heads() -> frozenset[str]:
    """The head revision(s) of migrations/ (one, unless the history branches)."""
    return frozenset(ScriptDirectory.from_config(alembic_config()).get_heads())


class Readiness:
    """Callable: None when the server can answer, else why not (for a 503)."""

    def __init__(self, engine: Engine, heads: frozenset[str]) -> None:
        self._engine = engine
        self._heads = heads
        self._options = (
            {SQLITE_BEGIN: None} if is_sqlite(engine) else {"isolation_level": "AUTOCOMMIT"}
        )

    def __call__(self) -> str | None:
        try:
            with self._engine.connect() as connection:
                conn = connection.execution_options(**self._options)
                conn.execute(text("SELECT 1"))
                try:
                    found = {row[0] for row in conn.execute(text(_VERSIONS))}
                except DBAPIError as exc:
                    if not _no_table(exc):
                        raise
                    return (
                        "The database has no schema (no alembic_version table): "
                        "run `python -m app migrate`"
                    )
        except Exception as exc:
            # the reason is logged, not answered: the probe needs no credentials
            log.warning("not ready, the database is not reachable: %s", _first_line(exc))
            return "The database is not reachable"
        if found == set(self._heads):
            return None
        want = ", ".join(sorted(self._heads))
        have = ", ".join(sorted(found)) or "none"
        return (
            f"The database schema is at revision {have}, not at this server's head {want}: "
            "run `python -m app migrate`"
        )


_VERSIONS = "SELECT version_num FROM alembic_version"


def _no_table(exc: DBAPIError) -> bool:
    sqlstate = getattr(exc.orig, "sqlstate", None)
    return sqlstate == "42P01" or "no such table" in str(exc.orig)


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    text_ = str(orig if orig is not None else exc).strip()
    return text_.splitlines()[0] if text_ else type(exc).__name__
