"""Online backup of the SQLite database (`python -m app backup DEST`).

sqlite3's backup API copies every page in one step under one read transaction: in WAL mode
that is a consistent snapshot which writers do not wait for (they append to the WAL
meanwhile), so the server may keep running. The copy is written beside DEST, checked with
PRAGMA integrity_check, switched to a rollback journal (one self-contained file: a server
opened on it turns WAL back on), and only then renamed to DEST.

PostgreSQL is backed up with its own tools (pg_dump / pg_restore); `postgres_commands` gives
the commands for a database URL.
"""

from __future__ import annotations

import os
import re
import sqlite3
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.engine import URL, make_url


class BackupError(Exception):
    """The backup could not be made (the message says why); nothing was left at DEST."""


class BackupRefused(BackupError):
    """Nothing was copied: the source or destination is not one a backup can use."""


@dataclass(frozen=True, slots=True)
class BackupResult:
    path: Path
    pages: int
    size: int
    seconds: float
    dismissed: int = 0  # integrity_check's false reports of SQLite 3.40.0-3.41.0 (see below)

    def summary(self) -> str:
        note = ""
        if self.dismissed:
            note = (
                f"; {self.dismissed:,} 'NULL value in' reports of SQLite "
                f"{sqlite3.sqlite_version}'s integrity_check dismissed, the columns hold no NULL"
            )
        return (
            f"backed up to {self.path}: {self.pages:,} pages, {self.size:,} bytes, "
            f"integrity ok{note} ({self.seconds:.2f} s)"
        )


def sqlite_path(database_url: str) -> str | None:
    """The database file of a SQLite URL; None for another database. A file: URI is kept as
    is. Raises BackupError for an in-memory database."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        return None
    database = url.database
    if not database or database == ":memory:" or "mode=memory" in database:
        raise BackupRefused("an in-memory SQLite database cannot be backed up")
    return database


def backup_sqlite(source: str, dest: Path, *, busy_timeout_s: float = 10.0) -> BackupResult:
    """Copy the SQLite database `source` (a path or a file: URI) to `dest` (a new file; a
    directory receives fhir-<UTC time>.sqlite3), online and consistent, and check the copy."""
    began = time.perf_counter()
    if dest.is_dir():
        dest = dest / f"fhir-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.sqlite3"
    if dest.exists():
        raise BackupRefused(f"{dest} exists; give a new file name (a backup never overwrites)")
    if not dest.parent.is_dir():
        raise BackupRefused(f"{dest.parent} is not a directory")
    uri = source if source.startswith("file:") else f"{Path(source).resolve().as_uri()}?mode=ro"
    if not source.startswith("file:") and not Path(source).is_file():
        raise BackupRefused(f"no database at {source}")
    partial = dest.with_name(f".{dest.name}.partial-{os.getpid()}")
    try:
        src = sqlite3.connect(uri, uri=True, timeout=busy_timeout_s)
        try:
            copy = sqlite3.connect(partial)
            try:
                src.backup(copy)  # every page in one step: one snapshot
                problems, dismissed = integrity_check(copy)
                if problems:
                    raise BackupError(
                        "the copy failed PRAGMA integrity_check: " + "; ".join(problems[:10])
                    )
                (mode,) = copy.execute("PRAGMA journal_mode=DELETE").fetchone()
                if mode != "delete":
                    raise BackupError(f"the copy stayed in journal mode {mode}")
                (pages,) = copy.execute("PRAGMA page_count").fetchone()
            finally:
                copy.close()
        finally:
            src.close()
        partial.replace(dest)
        _sync_directory(dest.parent)
    except sqlite3.Error as exc:
        raise BackupError(f"the backup failed: {exc}") from exc
    finally:
        for leftover in (partial, *(Path(f"{partial}-{end}") for end in ("journal", "wal", "shm"))):
            leftover.unlink(missing_ok=True)
    return BackupResult(
        dest, int(pages), dest.stat().st_size, time.perf_counter() - began, dismissed
    )


# SQLite 3.40.0 to 3.41.0 report "NULL value in t.c" from integrity_check and quick_check for
# every row of a WITHOUT ROWID table whose primary key's column order differs from the table's
# (all the search index tables), though the column holds a value. `c IS NULL` cannot tell (the
# planner answers it from the NOT NULL constraint); typeof() reads the stored value.
_NULL_FALSE_POSITIVES = (3, 40, 0) <= sqlite3.sqlite_version_info < (3, 41, 1)
_NULL_VALUE = re.compile(r"NULL value in ([A-Za-z_][A-Za-z0-9_]*)\.([A-Za-z_][A-Za-z0-9_]*)")
_MAX_PROBLEMS = 100


def integrity_check(connection: sqlite3.Connection) -> tuple[list[str], int]:
    """PRAGMA integrity_check's problems (empty: ok), and how many of its messages were
    dismissed as the false NULL reports of an affected SQLite, each (table, column) only after
    counting that it holds no NULL."""
    if not _NULL_FALSE_POSITIVES:
        found = [row[0] for row in connection.execute("PRAGMA integrity_check")]
        return ([] if found == ["ok"] else found), 0
    problems: list[str] = []
    suspects: Counter[tuple[str, str]] = Counter()
    # every message (one per row of an affected table), streamed: the real ones among them
    for (message,) in connection.execute(f"PRAGMA integrity_check({2**31 - 1})"):
        null = _NULL_VALUE.fullmatch(message)
        if null is not None:
            suspects[(null[1], null[2])] += 1
        elif message != "ok" and len(problems) < _MAX_PROBLEMS:
            problems.append(message)
    dismissed = 0
    for (table, column), count in suspects.items():
        (nulls,) = connection.execute(
            f'SELECT count(*) FROM "{table}" WHERE typeof("{column}") = \'null\''
        ).fetchone()
        if nulls:
            problems.append(f"NULL value in {table}.{column} ({nulls:,} rows)")
        else:
            dismissed += count
    return problems, dismissed


def _sync_directory(directory: Path) -> None:
    """Make the rename durable (POSIX; a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def libpq_url(database_url: str) -> str:
    """The database URL as libpq (psql, pg_dump, pg_restore) takes it: no SQLAlchemy driver
    suffix such as +psycopg, and no password (libpq reads PGPASSWORD or ~/.pgpass)."""
    url = make_url(database_url)
    return URL.create(
        "postgresql",
        username=url.username,
        host=url.host,
        port=url.port,
        database=url.database,
        query=url.query,
    ).render_as_string(hide_password=False)


def postgres_commands(database_url: str) -> tuple[str, str]:
    """The pg_dump and pg_restore commands for this database."""
    plain = libpq_url(database_url)
    return (
        f'pg_dump -Fc "{plain}" > fhir.dump',
        f'pg_restore --clean --if-exists -d "{plain}" fhir.dump',
    )
