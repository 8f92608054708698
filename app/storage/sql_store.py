"""The store on SQLAlchemy Core (SQLite and PostgreSQL). Hot paths are single Core statements:
an ORM session costs ~100 µs per get on this machine, a Core select a few."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import (
    ColumnElement,
    Connection,
    Dialect,
    Engine,
    Float,
    Table,
    and_,
    bindparam,
    delete,
    exists,
    false,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import InterfaceError, InternalError, OperationalError

from app.fhir.export import ExportJob, job_parameters
from app.fhir.store import (
    CommitOutcomeUnknownError,
    CurrentState,
    HistoryPage,
    HistoryQuery,
    QueryTimeoutError,
    SearchPage,
    StorageFullError,
    StorageReadOnlyError,
    StorageUnavailableError,
    VersionRecord,
    WriteConflictError,
)
from app.search.index_values import IndexRows
from app.search.query import SearchRequest
from app.storage import search_sql
from app.storage.derived import table_rows
from app.storage.engine import SQLITE_BEGIN, is_sqlite
from app.storage.prepared import Prepared
from app.storage.tables import INDEX_TABLES, date_span_table, export_job_table
from app.storage.tables import resource_table as r
from app.storage.tables import version_table as v

_CURRENT_JOIN = r.join(v, and_(v.c.res_key == r.c.res_key, v.c.version_id == r.c.version_id))
_VERSION_COLUMNS = (v.c.version_id, v.c.last_updated, v.c.method, v.c.content)
_RESOURCE_IS = (r.c.resource_type == bindparam("rt"), r.c.resource_id == bindparam("rid"))


class _Statements:
    """The hot statements, compiled once for the engine's dialect."""

    def __init__(self, dialect: Dialect) -> None:
        self.read = Prepared(
            select(*_VERSION_COLUMNS).select_from(_CURRENT_JOIN).where(*_RESOURCE_IS), dialect
        )
        self.vread = Prepared(
            select(*_VERSION_COLUMNS)
            .select_from(r.join(v, v.c.res_key == r.c.res_key))
            .where(*_RESOURCE_IS, v.c.version_id == bindparam("vid")),
            dialect,
        )
        current = select(r.c.res_key, r.c.version_id, r.c.last_updated, r.c.deleted).where(
            *_RESOURCE_IS
        )
        # PostgreSQL locks the row; SQLite's BEGIN IMMEDIATE already holds the database lock.
        self.current = Prepared(current.with_for_update(), dialect)
        self.content = Prepared(
            select(v.c.content).where(
                v.c.res_key == bindparam("key"), v.c.version_id == bindparam("vid")
            ),
            dialect,
        )
        new_row = insert(r).values(
            resource_type=bindparam("rt"),
            resource_id=bindparam("rid"),
            version_id=bindparam("vid"),
            last_updated=bindparam("lu"),
            deleted=bindparam("del"),
        )
        self.insert_resource = Prepared(new_row.returning(r.c.res_key), dialect)
        # executemany, with keys given out first (_new_keys)
        self.insert_resources = Prepared(new_row.values(res_key=bindparam("key")), dialect)
        self.insert_version = Prepared(
            insert(v).values(
                res_key=bindparam("key"),
                resource_type=bindparam("rt"),
                version_id=bindparam("vid"),
                last_updated=bindparam("lu"),
                method=bindparam("method"),
                content=bindparam("content"),
            ),
            dialect,
        )
        # Index rows: plain positional SQL, written with executemany.
        self.mark = mark = "?" if dialect.name == "sqlite" else "%s"
        self.insert_index = {
            kind: f"INSERT INTO {table.name} ({', '.join(c.name for c in table.columns)}) "
            f"VALUES ({', '.join(mark for _ in table.columns)})"
            for kind, table in INDEX_TABLES.items()
        }
        self.upsert_span = (
            f"INSERT INTO search_date_span (resource_type, param, max_span) "
            f"VALUES ({mark}, {mark}, {mark}) ON CONFLICT (resource_type, param) DO UPDATE "
            "SET max_span = excluded.max_span "
            "WHERE excluded.max_span > search_date_span.max_span"
        )
        self.delete_index = [
            f"DELETE FROM {table.name} WHERE res_key = {mark}" for table in INDEX_TABLES.values()
        ]
        self.update_resource = Prepared(
            update(r)
            .where(r.c.res_key == bindparam("key"))
            .values(
                version_id=bindparam("vid"), last_updated=bindparam("lu"), deleted=bindparam("del")
            ),
            dialect,
        )
        self.pg = _PgWrites() if dialect.name == "postgresql" else None


class _PgWrites:
    """PostgreSQL: a version written in one or two statements instead of one per table and per
    index row (each statement is psycopg's Python on the server's core and a Bind/Execute for
    PostgreSQL; in pipeline mode they no longer cost a round trip each, and the CRUD cycle's
    CPU per request went down a further ~5-8%). Index rows go in as one JSON array per table
    (json_populate_recordset of the table's own row type), so the statement text is fixed and
    psycopg prepares it once, however many rows each table gets. SQLite keeps a statement per
    table and executemany: its statements cost microseconds."""

    def __init__(self) -> None:
        tables = list(INDEX_TABLES.values())
        # INSERT ... SELECT from the JSON rows, the key taken from the CTE `k`
        inserts = []
        for table in tables:
            names = [c.name for c in table.columns]
            values = ", ".join(f"j.{name}" for name in names[1:])
            inserts.append(
                f"INSERT INTO {table.name} ({', '.join(names)}) SELECT k.res_key, {values} "
                f"FROM k, json_populate_recordset(NULL::{table.name}, %s::json) AS j"
            )
        *first, last = inserts
        index = "".join(f", i{n} AS ({sql})" for n, sql in enumerate(first)) + f" {last}"
        version = (
            "INSERT INTO resource_version "
            "(res_key, resource_type, version_id, last_updated, method, content) "
            "SELECT k.res_key, %s::varchar, %s::integer, %s::timestamptz, %s::varchar, %s::bytea "
            "FROM k"
        )
        # create: the current row, version 1 and the index rows, one statement
        self.create = (
            "WITH k AS (INSERT INTO resource "
            "(resource_type, resource_id, version_id, last_updated, deleted) "
            "VALUES (%s, %s, %s, %s, %s) RETURNING res_key), "
            f"v AS ({version}){index}"
        )
        # a next version: the version, the old index rows gone, the current row moved on (the
        # new index rows follow in a statement of their own, `index`: a statement cannot
        # insert the key it deletes, as its parts see one snapshot)
        deletes = "".join(
            f", d{n} AS (DELETE FROM {table.name} WHERE res_key = (SELECT res_key FROM k))"
            for n, table in enumerate(tables)
        )
        self.append = (
            f"WITH k AS (SELECT %s::bigint AS res_key), v AS ({version}){deletes} "
            "UPDATE resource SET version_id = %s, last_updated = %s, deleted = %s "
            "WHERE res_key = (SELECT res_key FROM k)"
        )
        self.index = f"WITH k AS (SELECT %s::bigint AS res_key){index}"
        # after res_key; str(): orjson takes no str subclass (quoted_name) as a key
        columns = {kind: list(table.columns)[1:] for kind, table in INDEX_TABLES.items()}
        self._columns = {kind: [str(c.name) for c in cs] for kind, cs in columns.items()}
        self._floats = {
            kind: [i for i, c in enumerate(cs) if isinstance(c.type, Float)]
            for kind, cs in columns.items()
        }

    def index_params(self, resource_type: str, index: IndexRows) -> list[str]:
        """The JSON parameter of each index table, in INDEX_TABLES order: the rows without
        res_key, which the statements take from `k`."""
        out = []
        for kind, names in self._columns.items():
            rows = table_rows(0, resource_type, index, kind)
            floats = self._floats[kind]
            out.append(
                orjson.dumps(
                    [dict(zip(names, _finite(row[1:], floats), strict=True)) for row in rows]
                ).decode()
                if rows
                else "[]"
            )
        return out


def _finite(row: tuple[Any, ...], floats: list[int]) -> tuple[Any, ...]:
    # JSON has no Infinity or NaN (orjson writes null); as strings, float8's input reads them
    for i in floats:
        value = row[i]
        if isinstance(value, float) and not math.isfinite(value):
            row = (
                *row[:i],
                str(value).replace("inf", "Infinity").replace("nan", "NaN"),
                *row[i + 1 :],
            )
    return row


def _utc(value: datetime) -> datetime:
    # SQLite hands back the naive UTC value that was stored; PostgreSQL an aware one.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _db_value(value: datetime) -> datetime:
    return value.astimezone(UTC)


class _Rows:
    """Rows from a cursor, with the parts of a SQLAlchemy Result the search code reads."""

    def __init__(self, rows: list[tuple[Any, ...]]) -> None:
        self._rows = rows

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return iter(self._rows)

    def all(self) -> list[tuple[Any, ...]]:
        return self._rows

    def scalars(self) -> _Rows:
        return _Rows([(row[0],) for row in self._rows])


class _CursorConnection:
    """Core statements run on the write transaction's own cursor, so a search inside a write
    sees that transaction's rows (a conditional create after a create in one Bundle)."""

    def __init__(self, cursor: Any, dialect: Dialect) -> None:
        self._cursor = cursor
        self._dialect = dialect

    def execute(self, statement: Any) -> _Rows:
        return _Rows(Prepared(statement, self._dialect).all(self._cursor, {}))


class _Pipeline:
    """psycopg's pipeline mode over a PostgreSQL write transaction: statements are sent without
    waiting for their answers, so BEGIN and everything a write does after its last read (the
    version, the index rows, the current row) cost one round trip together, where each was a
    round trip of its own. A read (fetch) waits for what was sent before it; an error of a
    statement whose answer was not waited for is raised by the next wait, at the latest by
    finish(), which the store calls before COMMIT, so COMMIT is never sent after a failed
    statement and stays a round trip of its own (its outcome is what _commit_outcome checks)."""

    def __init__(self, connection: Any) -> None:
        self._connection = connection
        self._mode: Any = None  # the entered psycopg pipeline() context

    def start(self) -> None:
        if self._mode is None:
            mode = self._connection.pipeline()
            mode.__enter__()
            self._mode = mode

    def finish(self) -> None:
        """Wait for every statement sent; the first error among them is raised."""
        mode, self._mode = self._mode, None
        if mode is not None:
            mode.__exit__(None, None, None)

    def abandon(self) -> None:
        """Leave pipeline mode after an error (the caller's error is the one to report)."""
        with suppress(Exception):
            self.finish()

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Out of pipeline mode for COPY, which psycopg refuses in it."""
        active = self._mode is not None
        self.finish()
        try:
            yield
        finally:
            if active:
                self.start()


class SqlWriteTx:
    def __init__(
        self,
        cursor: Any,
        statements: _Statements,
        known_spans: dict[tuple[str, str], int],
        dialect: Dialect,
        pipeline: _Pipeline | None = None,
    ) -> None:
        self._cursor = cursor
        self._sql = statements
        self._known_spans = known_spans
        self._dialect = dialect
        self._pipeline = pipeline
        self._pg = statements.pg
        self.new_spans: dict[tuple[str, str], int] = {}  # published to the cache on commit
        # A version this transaction writes: if the connection dies during COMMIT, whether
        # it is there tells whether the commit happened (SqlStore._commit_outcome).
        self.witness: VersionRecord | None = None
        # (resource type, "create" | "update" | "delete") of each version written, for the
        # store's on_commit observer
        self.written: list[tuple[str, str]] = []

    def find(self, request: SearchRequest, limit: int) -> list[tuple[str, str]]:
        conn = _CursorConnection(self._cursor, self._dialect)
        spans = {(t, p): s for t, p, s in conn.execute(select(date_span_table))}
        request = replace(
            request, criteria=[search_sql.resolve_links(conn, c, spans) for c in request.criteria]
        )
        source, conds = search_sql.from_clause(request, spans)
        statement = (
            select(r.c.resource_type, r.c.resource_id)
            .select_from(source)
            .where(*conds)
            .order_by(r.c.res_key)
            .limit(limit)
        )
        return [(row[0], row[1]) for row in conn.execute(statement)]

    def lock(self, key: str) -> None:
        if self._dialect.name == "postgresql":
            number = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")
            self._cursor.execute("SELECT pg_advisory_xact_lock(%s)", (number - (1 << 63),))
        # SQLite: BEGIN IMMEDIATE already made this the only writer

    def current(self, resource_type: str, resource_id: str) -> CurrentState | None:
        row = self._sql.current.one_or_none(self._cursor, {"rt": resource_type, "rid": resource_id})
        if row is None:
            return None
        key, version_id, last_updated, deleted = row
        return CurrentState(
            key, resource_type, resource_id, version_id, _utc(last_updated), bool(deleted)
        )

    def current_content(self, state: CurrentState) -> bytes | None:
        row = self._sql.content.one_or_none(
            self._cursor, {"key": state.key, "vid": state.version_id}
        )
        return bytes(row[0]) if row is not None and row[0] is not None else None

    def insert(self, record: VersionRecord, index: IndexRows) -> None:
        # A unique violation aborts the whole transaction; run_write starts it again.
        if self._pg is not None:
            self._cursor.execute(
                self._pg.create,
                (
                    record.resource_type,
                    record.resource_id,
                    record.version_id,
                    _db_value(record.last_updated),
                    record.deleted,
                    *self._version_params(record),
                    *self._pg.index_params(record.resource_type, index),
                ),
            )
            self._note_version(record)
            self._note_spans(record.resource_type, index)
            self.written.append((record.resource_type, "create"))
            return
        row = self._sql.insert_resource.one_or_none(
            self._cursor,
            {
                "rt": record.resource_type,
                "rid": record.resource_id,
                "vid": record.version_id,
                "lu": _db_value(record.last_updated),
                "del": record.deleted,
            },
        )
        assert row is not None
        self._insert_version(row[0], record)
        self._insert_index(row[0], record.resource_type, index)
        self.written.append((record.resource_type, "create"))

    def existing(self, pairs: list[tuple[str, str]]) -> set[tuple[str, str]]:
        by_type: dict[str, list[str]] = {}
        for resource_type, resource_id in pairs:
            by_type.setdefault(resource_type, []).append(resource_id)
        found: set[tuple[str, str]] = set()
        for resource_type, ids in by_type.items():
            for start in range(0, len(ids), _IN_CHUNK):
                chunk = ids[start : start + _IN_CHUNK]
                marks = ", ".join(self._sql.mark for _ in chunk)
                self._cursor.execute(
                    "SELECT resource_id FROM resource WHERE resource_type = "
                    f"{self._sql.mark} AND resource_id IN ({marks})",
                    (resource_type, *chunk),
                )
                found.update((resource_type, row[0]) for row in self._cursor.fetchall())
        return found

    def insert_many(self, items: list[tuple[VersionRecord, IndexRows]]) -> None:
        """insert() for many new resources: one statement per table, not per resource
        (COPY on PostgreSQL, where psycopg's executemany costs ~60 µs of Python per row)."""
        if not items:
            return
        keyed = list(zip(self._new_keys(len(items)), items, strict=True))
        if self.witness is None:
            self.witness = items[0][0]
        resources = [
            (
                key,
                rec.resource_type,
                rec.resource_id,
                rec.version_id,
                _db_value(rec.last_updated),
                rec.deleted,
            )
            for key, (rec, _) in keyed
        ]
        versions = [
            (
                key,
                rec.resource_type,
                rec.version_id,
                _db_value(rec.last_updated),
                rec.method,
                rec.content,
            )
            for key, (rec, _) in keyed
        ]
        index_rows = {
            kind: [
                row
                for key, (rec, index) in keyed
                for row in table_rows(key, rec.resource_type, index, kind)
            ]
            for kind in INDEX_TABLES
        }
        if self._dialect.name == "postgresql":
            with self._pipeline.paused() if self._pipeline is not None else nullcontext():
                self._copy(r, resources)
                self._copy(v, versions, skip=1)  # version_key: from its sequence
                for kind, table in INDEX_TABLES.items():
                    self._copy(table, index_rows[kind])
        else:
            names = ("key", "rt", "rid", "vid", "lu", "del")
            self._sql.insert_resources.execute_many(
                self._cursor, [dict(zip(names, row, strict=True)) for row in resources]
            )
            names = ("key", "rt", "vid", "lu", "method", "content")
            self._sql.insert_version.execute_many(
                self._cursor, [dict(zip(names, row, strict=True)) for row in versions]
            )
            for kind, sql in self._sql.insert_index.items():
                if index_rows[kind]:
                    self._cursor.executemany(sql, index_rows[kind])
        for _, (record, index) in keyed:
            self._note_spans(record.resource_type, index)
        self.written.extend((record.resource_type, "create") for record, _ in items)

    def _copy(self, table: Table, rows: list[tuple[Any, ...]], skip: int = 0) -> None:
        if not rows:
            return
        columns = ", ".join(c.name for c in list(table.columns)[skip:])
        with self._cursor.copy(f"COPY {table.name} ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)

    def _new_keys(self, count: int) -> list[int]:
        """Keys for `count` new resources, given out up front so one executemany can insert
        them and the versions and index rows that point at them (executemany returns no keys)."""
        if self._dialect.name == "postgresql":
            self._cursor.execute(
                "SELECT nextval(pg_get_serial_sequence('resource', 'res_key')) "
                "FROM generate_series(1, %s)",
                (count,),
            )
            return [row[0] for row in self._cursor.fetchall()]
        # SQLite: this transaction holds the write lock, so nobody else takes keys meanwhile
        self._cursor.execute("SELECT coalesce(max(res_key), 0) FROM resource")
        first = int(self._cursor.fetchone()[0]) + 1
        return list(range(first, first + count))

    def append(self, state: CurrentState, record: VersionRecord, index: IndexRows) -> None:
        if self._pg is not None:
            self._cursor.execute(
                self._pg.append,
                (
                    state.key,
                    *self._version_params(record),
                    record.version_id,
                    _db_value(record.last_updated),
                    record.deleted,
                ),
            )
            if index.count():
                self._cursor.execute(
                    self._pg.index, (state.key, *self._pg.index_params(record.resource_type, index))
                )
            self._note_version(record)
            self._note_spans(record.resource_type, index)
        else:
            self._append_statements(state, record, index)
        action = "delete" if record.deleted else ("create" if state.deleted else "update")
        self.written.append((record.resource_type, action))

    @staticmethod
    def _version_params(record: VersionRecord) -> tuple[Any, ...]:
        last_updated = _db_value(record.last_updated)
        return (
            record.resource_type,
            record.version_id,
            last_updated,
            record.method,
            record.content,
        )

    def _append_statements(
        self, state: CurrentState, record: VersionRecord, index: IndexRows
    ) -> None:
        self._insert_version(state.key, record)
        for statement in self._sql.delete_index:
            self._cursor.execute(statement, (state.key,))
        self._insert_index(state.key, record.resource_type, index)
        self._sql.update_resource.execute(
            self._cursor,
            {
                "key": state.key,
                "vid": record.version_id,
                "lu": _db_value(record.last_updated),
                "del": record.deleted,
            },
        )

    def _insert_index(self, key: int, resource_type: str, index: IndexRows) -> None:
        for kind, sql in self._sql.insert_index.items():
            rows = table_rows(key, resource_type, index, kind)
            if rows:
                self._cursor.executemany(sql, rows)
        self._note_spans(resource_type, index)

    def _note_spans(self, resource_type: str, index: IndexRows) -> None:
        for param, low, high in index.date:
            span_key = (resource_type, param)
            span = high - low
            if span > max(self._known_spans.get(span_key, -1), self.new_spans.get(span_key, -1)):
                self._cursor.execute(self._sql.upsert_span, (resource_type, param, span))
                self.new_spans[span_key] = span

    def _insert_version(self, key: int, record: VersionRecord) -> None:
        self._sql.insert_version.execute(self._cursor, _version_values(key, record))
        self._note_version(record)

    def _note_version(self, record: VersionRecord) -> None:
        if self.witness is None:
            self.witness = record


def _version_values(key: int, record: VersionRecord) -> dict[str, Any]:
    return {
        "key": key,
        "rt": record.resource_type,
        "vid": record.version_id,
        "lu": _db_value(record.last_updated),
        "method": record.method,
        "content": record.content,
    }


# How long a write whose connection died during COMMIT waits for the database to come back and
# tell whether it committed (sql_store.SqlStore._commit_outcome).
COMMIT_CHECK_SECONDS = 10.0
_log = logging.getLogger(__name__)

_IN_CHUNK = 500  # (type, id) pairs per lookup: well under SQLite's bound-parameter limit


class SqlStore:
    def __init__(self, engine: Engine, search_timeout_ms: int = 0) -> None:
        self._engine = engine
        self._sqlite = is_sqlite(engine)
        # The time budget of searches, history and $everything (0: none); see reading().
        self._budget_ms = search_timeout_ms
        self._sql = _Statements(engine.dialect)
        # Spans this process knows the database holds at least (never more than it holds).
        self._known_spans: dict[tuple[str, str], int] = {}
        dbapi = engine.dialect.dbapi
        assert dbapi is not None
        self._dbapi: Any = dbapi
        # psycopg's pipeline mode needs libpq 14+ (psycopg[binary] ships a newer one)
        pipeline = getattr(dbapi, "Pipeline", None)
        self._pipelined = not self._sqlite and pipeline is not None and pipeline.is_supported()
        # Told (resource type, action) of each version a transaction wrote, once it committed
        # (the API's metrics); it must not raise.
        self.on_commit: Callable[[list[tuple[str, str]]], None] | None = None

    @property
    def engine(self) -> Engine:
        return self._engine

    @contextmanager
    def _raw(self) -> Iterator[Any]:
        """A pooled DBAPI connection; database outages become StorageUnavailableError."""
        dbapi = self._dbapi
        try:
            connection = self._engine.raw_connection()
        except Exception as exc:
            raise StorageUnavailableError(_reason(exc)) from exc
        driver: Any = connection.dbapi_connection
        try:
            if not self._sqlite:
                # Autocommit: a read is its statement alone, and write() says BEGIN itself.
                # In psycopg's default mode a BEGIN round trip would precede the first
                # statement and the pool's ROLLBACK follow the last, and a ROLLBACK also
                # makes psycopg drop the connection's prepared statements.
                driver.autocommit = True
            yield connection
        except (dbapi.OperationalError, dbapi.InterfaceError, dbapi.InternalError) as exc:
            if _sqlstate(exc) in _RETRYABLE:
                raise WriteConflictError(_reason(exc)) from exc
            if isinstance(exc, dbapi.InternalError) and _sqlstate(exc) not in _READ_ONLY:
                raise
            if self._engine.dialect.is_disconnect(exc, connection.dbapi_connection, None):
                connection.invalidate(exc)
            raise storage_error(exc) from exc
        finally:
            if not self._sqlite and connection.is_valid:
                try:
                    driver.autocommit = False  # as the engine's other users expect it
                except dbapi.Error:
                    connection.invalidate()  # still in a transaction, or broken: not reused
            connection.close()

    @contextmanager
    def reading(self, *, budget: bool = False) -> Iterator[Connection]:
        """A connection for reads. `budget`: the statements are stopped once they run past
        the store's time budget (QueryTimeoutError) -- on SQLite the whole block, by a progress
        handler; on PostgreSQL each statement, by `SET LOCAL statement_timeout` in a
        transaction that ends with the block, so nothing stays set on the pooled connection."""
        budget_ms = self._budget_ms if budget else 0
        try:
            with self._engine.connect() as conn:
                # Reads run without a transaction: each statement sees its own snapshot, as it
                # would under READ COMMITTED anyway, and BEGIN and ROLLBACK (two round trips
                # on PostgreSQL, two statements on SQLite) are saved.
                if self._sqlite:
                    conn = conn.execution_options(**{SQLITE_BEGIN: None})
                    if budget_ms:
                        with _sqlite_deadline(conn, budget_ms):
                            yield conn
                    else:
                        yield conn
                else:
                    conn = conn.execution_options(isolation_level="AUTOCOMMIT")
                    if budget_ms:
                        with _pg_statement_timeout(conn, budget_ms):
                            yield conn
                    else:
                        yield conn
        except (OperationalError, InterfaceError) as exc:
            if budget_ms and _timed_out(exc):
                raise QueryTimeoutError(budget_ms) from exc
            raise storage_error(exc) from exc

    @contextmanager
    def _engine_writing(self) -> Iterator[None]:
        """Around writes through the engine (export jobs): a database that is away, full or
        read-only is StorageUnavailableError (or a subclass), as on the write path."""
        try:
            yield
        except (OperationalError, InterfaceError) as exc:
            raise storage_error(exc) from exc
        except InternalError as exc:
            if _sqlstate(exc) in _READ_ONLY:
                raise storage_error(exc) from exc
            raise

    @contextmanager
    def write(self) -> Iterator[SqlWriteTx]:
        """One transaction: BEGIN IMMEDIATE on SQLite (the write lock up front, so a
        read-then-write never fails on lock upgrade), BEGIN on PostgreSQL (rows locked by
        SELECT ... FOR UPDATE as they are read; statements pipelined up to COMMIT, _Pipeline):
        a create is two round trips there, an update or delete three."""
        with self._raw() as connection:
            driver: Any = connection.dbapi_connection
            cursor = connection.cursor()
            pipeline = _Pipeline(driver) if self._pipelined else None
            try:
                if pipeline is not None:
                    pipeline.start()
                cursor.execute("BEGIN IMMEDIATE" if self._sqlite else "BEGIN")
                try:
                    tx = SqlWriteTx(
                        cursor, self._sql, self._known_spans, self._engine.dialect, pipeline
                    )
                    yield tx
                    if pipeline is not None:
                        pipeline.finish()  # every statement answered, or its error raised
                    try:
                        cursor.execute("COMMIT")
                    except (self._dbapi.OperationalError, self._dbapi.InterfaceError) as exc:
                        dbapi_connection = connection.dbapi_connection
                        if not self._engine.dialect.is_disconnect(exc, dbapi_connection, cursor):
                            raise
                        connection.invalidate(exc)
                        self._commit_outcome(tx, exc)  # raises unless it did commit
                    for span_key, span in tx.new_spans.items():
                        self._known_spans[span_key] = max(span, self._known_spans.get(span_key, -1))
                    if self.on_commit is not None and tx.written:
                        self.on_commit(tx.written)
                except BaseException:
                    if pipeline is not None:
                        pipeline.abandon()
                    _rollback(cursor, self._dbapi, None if self._sqlite else driver.pgconn)
                    raise
            except self._dbapi.IntegrityError as exc:
                if _is_unique_violation(exc):
                    raise WriteConflictError(_reason(exc)) from exc
                raise
            finally:
                if pipeline is not None:
                    pipeline.abandon()  # never back to the pool in pipeline mode
                cursor.close()

    def _commit_outcome(self, tx: SqlWriteTx, exc: BaseException) -> None:
        """The connection died during COMMIT: the server may have committed and died before
        answering, so look (on a new connection, while the database comes back) for a version
        the transaction wrote. Returns when it is there (the write happened); raises
        StorageUnavailableError when it is not (nothing was written) and
        CommitOutcomeUnknownError when the database stays away past COMMIT_CHECK_SECONDS."""
        witness = tx.witness
        if witness is None:
            raise storage_error(exc) from exc  # nothing was written
        deadline = time.monotonic() + COMMIT_CHECK_SECONDS
        statement = (
            select(v.c.last_updated, v.c.content)
            .select_from(r.join(v, v.c.res_key == r.c.res_key))
            .where(
                r.c.resource_type == witness.resource_type,
                r.c.resource_id == witness.resource_id,
                v.c.version_id == witness.version_id,
            )
        )
        while True:
            try:
                with self._engine.connect() as conn:
                    found = conn.execute(statement).first()
            except (OperationalError, InterfaceError):
                if time.monotonic() > deadline:
                    raise CommitOutcomeUnknownError(_reason(exc)) from exc
                time.sleep(0.2)
                continue
            # the same instant and bytes (a delete's are None): this transaction's version
            if (
                found is not None
                and _utc(found[0]) == witness.last_updated
                and (bytes(found[1]) if found[1] is not None else None) == witness.content
            ):
                _log.warning("the connection died during COMMIT, which had succeeded")
                return
            raise storage_error(exc) from exc

    def count_by_type(self) -> dict[str, int]:
        """How many current (not deleted) resources of each type there are: one grouped
        count over `resource`, so callers cache it (the API's metrics refresh it at most every
        FHIR_METRICS_COUNT_SECONDS)."""
        statement = (
            select(r.c.resource_type, func.count())
            .where(r.c.deleted == false())
            .group_by(r.c.resource_type)
        )
        with self.reading() as conn:
            return {str(t): int(n) for t, n in conn.execute(statement)}

    def pool_usage(self) -> dict[str, int]:
        """The connection pool's state (QueuePool on both databases; another pool tells what
        it has): size, checked_out, checked_in, overflow (open beyond size), max_overflow."""
        pool: Any = self._engine.pool
        out: dict[str, int] = {}
        for name, method in (
            ("size", "size"),
            ("checked_out", "checkedout"),
            ("checked_in", "checkedin"),
            ("overflow", "overflow"),
        ):
            fn = getattr(pool, method, None)
            if callable(fn):
                out[name] = max(0, int(fn()))  # QueuePool's overflow is negative until used
        max_overflow = getattr(pool, "_max_overflow", None)
        if isinstance(max_overflow, int):
            out["max_overflow"] = max_overflow
        return out

    def read(self, resource_type: str, resource_id: str) -> VersionRecord | None:
        with self._raw() as connection:
            cursor = connection.cursor()
            row = self._sql.read.one_or_none(cursor, {"rt": resource_type, "rid": resource_id})
            cursor.close()
        return _record(resource_type, resource_id, row) if row is not None else None

    def vread(self, resource_type: str, resource_id: str, version_id: int) -> VersionRecord | None:
        with self._raw() as connection:
            cursor = connection.cursor()
            row = self._sql.vread.one_or_none(
                cursor, {"rt": resource_type, "rid": resource_id, "vid": version_id}
            )
            cursor.close()
        return _record(resource_type, resource_id, row) if row is not None else None

    def search(self, request: SearchRequest) -> SearchPage:
        return search_store(self, request)

    def history(self, query: HistoryQuery) -> HistoryPage:
        conditions: list[Any] = []
        if query.resource_type is not None:
            conditions.append(v.c.resource_type == query.resource_type)
        if query.resource_id is not None:
            conditions.append(r.c.resource_id == query.resource_id)
        if query.since is not None:
            conditions.append(v.c.last_updated >= _db_value(query.since))
        compartment = search_sql.compartment_condition(
            v.c.res_key, query.compartment, query.compartment_types
        )
        if compartment is not None:
            conditions.append(compartment)
        if query.at is not None:
            low, high = (_db_value(t) for t in query.at)
            successor = v.alias("successor")
            # A version is current from its own lastUpdated until the next version's.
            conditions.append(v.c.last_updated < high)
            conditions.append(
                ~exists().where(
                    successor.c.res_key == v.c.res_key,
                    successor.c.version_id == v.c.version_id + 1,
                    successor.c.last_updated <= low,
                )
            )
        page_conditions = list(conditions)
        if query.before is not None:
            page_conditions.append(v.c.version_key < query.before)
        statement = (
            select(
                v.c.version_key,
                v.c.resource_type,
                r.c.resource_id,
                v.c.version_id,
                v.c.last_updated,
                v.c.method,
                v.c.content,
            )
            .select_from(v.join(r, r.c.res_key == v.c.res_key))
            .where(*page_conditions)
            .order_by(v.c.version_key.desc())
            .limit(query.count + 1)
        )
        with self.reading(budget=True) as conn:
            rows = conn.execute(statement).all()
            total = None
            if query.resource_id is not None:
                total = conn.execute(
                    select(func.count())
                    .select_from(v.join(r, r.c.res_key == v.c.res_key))
                    .where(*conditions)
                ).scalar_one()
        more = len(rows) > query.count
        rows = rows[: query.count]
        # columns: version_key, resource_type, resource_id, then the version's four
        entries = [(row[0], _record(row[1], row[2], tuple(row[3:]))) for row in rows]
        return HistoryPage(entries, rows[-1].version_key if more and rows else None, total)

    # -- Patient/$everything ---------------------------------------------------------------------
    def everything(
        self,
        patient_id: str,
        types: tuple[str, ...],
        since: datetime | None,
        count: int,
        offset: int,
    ) -> SearchPage:
        """The patient and every current resource with a reference to it, in key order."""
        x = INDEX_TABLES["reference"]
        pointing = select(x.c.res_key).where(
            x.c.target_type == "Patient", x.c.target_id == patient_id
        )
        conds: list[ColumnElement[bool]] = [
            r.c.deleted == false(),
            or_(
                and_(r.c.resource_type == "Patient", r.c.resource_id == patient_id),
                r.c.res_key.in_(pointing),
            ),
        ]
        if types:
            conds.append(r.c.resource_type.in_(types))
        if since is not None:
            conds.append(r.c.last_updated > _db_value(since))
        statement = (
            select(*_PAGE_COLUMNS)
            .select_from(_CURRENT_JOIN)
            .where(*conds)
            .order_by(r.c.res_key)
            .limit(count + 1)
            .offset(offset)
        )
        with self.reading(budget=True) as conn:
            rows = list(conn.execute(statement).all())
            total = None
            if len(rows) <= count:
                total = offset + len(rows)
            else:
                capped = select(r.c.res_key).select_from(r).where(*conds).limit(_COUNT_CAP)
                counted = conn.execute(
                    select(func.count()).select_from(capped.subquery())
                ).scalar_one()
                total = counted if counted < _COUNT_CAP else None
        return SearchPage([_page_record(row) for row in rows[:count]], [], total, len(rows) > count)

    # -- bulk export jobs (app.fhir.export.ExportStore) --------------------------------------
    def save_job(self, job: ExportJob) -> None:
        values = {
            "status": job.status,
            "request_url": job.request_url,
            "parameters": job_parameters(job),
            "transaction_time": _db_value(job.transaction_time),
            "progress": job.progress,
            "output": json.dumps(job.output),
            "error": job.error,
            "updated": _db_value(datetime.now(UTC)),
        }
        with self._engine_writing(), self._engine.begin() as conn:
            changed = conn.execute(
                update(export_job_table)
                .where(export_job_table.c.job_id == job.job_id)
                .values(**values)
            ).rowcount
            if not changed:
                conn.execute(insert(export_job_table).values(job_id=job.job_id, **values))

    def get_job(self, job_id: str) -> ExportJob | None:
        with self.reading() as conn:
            row = conn.execute(
                select(export_job_table).where(export_job_table.c.job_id == job_id)
            ).first()
        if row is None:
            return None
        parameters = json.loads(row.parameters)
        since = parameters.get("since")
        return ExportJob(
            row.job_id,
            row.status,
            row.request_url,
            parameters["level"],
            tuple(parameters["types"]),
            datetime.fromisoformat(since) if since else None,
            _utc(row.transaction_time),
            row.progress,
            json.loads(row.output or "[]"),
            row.error,
            parameters.get("owner"),
        )

    def delete_job(self, job_id: str) -> None:
        with self._engine_writing(), self._engine.begin() as conn:
            conn.execute(delete(export_job_table).where(export_job_table.c.job_id == job_id))

    def scan(
        self,
        types: tuple[str, ...],
        since: datetime | None,
        until: datetime,
        patient_compartment: bool,
        after_key: int,
        limit: int,
    ) -> list[tuple[int, str, bytes]]:
        conds: list[ColumnElement[bool]] = [
            r.c.res_key > after_key,
            r.c.deleted == false(),
            r.c.last_updated <= _db_value(until),
        ]
        if types:
            conds.append(r.c.resource_type.in_(types))
        if since is not None:
            conds.append(r.c.last_updated > _db_value(since))
        if patient_compartment:
            # Patients, and resources with a reference to a Patient (a superset of the
            # Patient CompartmentDefinition's parameters, which all point at the Patient)
            x = INDEX_TABLES["reference"]
            conds.append(
                or_(
                    r.c.resource_type == "Patient",
                    exists().where(x.c.res_key == r.c.res_key, x.c.target_type == "Patient"),
                )
            )
        statement = (
            select(r.c.res_key, r.c.resource_type, v.c.content)
            .select_from(_CURRENT_JOIN)
            .where(*conds)
            .order_by(r.c.res_key)
            .limit(limit)
        )
        with self.reading() as conn:
            return [(row[0], row[1], bytes(row[2])) for row in conn.execute(statement)]


_COUNT_CAP = 10_000  # a total past this is not counted (answered without `total`)
# Included resources per page, all _include/_revinclude steps together; one more is read to
# tell that the page was cut (answered with a warning in the Bundle, search.html#errors).
MAX_INCLUDES = 1_000
_MAX_ITERATIONS = 4
_PAGE_COLUMNS = (r.c.res_key, r.c.resource_type, r.c.resource_id, *_VERSION_COLUMNS)


def _page_record(row: Any) -> VersionRecord:
    return _record(row[1], row[2], tuple(row[3:]))


def search_store(store: SqlStore, request: SearchRequest) -> SearchPage:
    with store.reading(budget=True) as conn:
        spans: dict[tuple[str, str], int] = {}
        if search_sql.needs_spans(request.criteria):
            spans = {(t, p): s for t, p, s in conn.execute(select(date_span_table))}
        request = replace(
            request, criteria=[search_sql.resolve_links(conn, c, spans) for c in request.criteria]
        )
        found = search_sql.plan(request, spans)
        compartment = search_sql.compartment_condition(
            found.key, request.compartment, request.resource_types
        )
        if compartment is not None:
            found = replace(found, conds=[*found.conds, compartment])
        source, conds = found.source, found.conds
        rows: list[Any] = []
        if request.summary != "count" and request.count > 0:
            if found.keys_only:
                rows = _page_by_keys(conn, request, found)
            else:
                statement = (
                    select(*_PAGE_COLUMNS)
                    .select_from(source)
                    .where(*conds)
                    .order_by(*search_sql.order_by(request))
                    .limit(request.count + 1)
                    .offset(request.offset)
                )
                rows = list(conn.execute(statement).all())
        has_more = len(rows) > request.count
        rows = rows[: request.count]
        total = None
        if request.total != "none" or request.summary == "count":
            if not has_more and rows and request.summary != "count":
                total = request.offset + len(rows)
            else:
                capped = (
                    select(found.key).select_from(source).where(*conds).limit(_COUNT_CAP)
                ).subquery()
                counted = conn.execute(select(func.count()).select_from(capped)).scalar_one()
                total = counted if counted < _COUNT_CAP else None
        includes = _includes(conn, request, rows) if request.includes and rows else []
    cut = MAX_INCLUDES if len(includes) > MAX_INCLUDES else 0
    return SearchPage(
        [_page_record(row) for row in rows], includes[:MAX_INCLUDES], total, has_more, cut
    )


def _page_by_keys(conn: Connection, request: SearchRequest, found: search_sql.Plan) -> list[Any]:
    """The page's keys from the index rows alone, joined to their resources in the same
    statement: the keys, with their sort values, are limited first, so only the page's rows
    are read from `resource` and `resource_version`."""
    values = search_sql.sort_values(request, found.key)
    keys = (
        select(found.key.label("k"), *(value.label(f"s{i}") for i, (value, _) in enumerate(values)))
        .select_from(found.source)
        .where(*found.conds)
        .order_by(*search_sql.ordered(values, found.key))
        .limit(request.count + 1)
        .offset(request.offset)
        .subquery()
    )
    outer = [(keys.c[f"s{i}"], descending) for i, (_, descending) in enumerate(values)]
    return list(
        conn.execute(
            select(*_PAGE_COLUMNS)
            .select_from(keys.join(_CURRENT_JOIN, r.c.res_key == keys.c.k))
            .order_by(*search_sql.ordered(outer, keys.c.k))
        ).all()
    )


def _includes(conn: Connection, request: SearchRequest, rows: list[Any]) -> list[VersionRecord]:
    """Up to MAX_INCLUDES + 1 included resources (the extra one only tells there are more)."""
    seen = {(row[1], row[2]) for row in rows}
    keys = [row[0] for row in rows]
    refs = [(row[1], row[2]) for row in rows]
    found: list[VersionRecord] = []
    for step in range(_MAX_ITERATIONS):
        new_rows: list[Any] = []
        for include in request.includes:
            if step > 0 and not include.iterate:
                continue
            if include.reverse:
                sources = search_sql.revinclude_sources(refs, include)
                condition: ColumnElement[bool] = r.c.res_key.in_(sources)
            else:
                found_pairs = conn.execute(search_sql.include_targets(keys, include))
                pairs = [(t, i) for t, i in found_pairs if i is not None and (t, i) not in seen]
                if not pairs:
                    continue
                condition = search_sql.by_type_and_id(r.c.resource_type, r.c.resource_id, pairs)
            statement = (
                select(*_PAGE_COLUMNS)
                .select_from(_CURRENT_JOIN)
                .where(condition, r.c.deleted == false())
                .limit(MAX_INCLUDES + 1)
            )
            for row in conn.execute(statement):
                if (row[1], row[2]) not in seen:
                    seen.add((row[1], row[2]))
                    new_rows.append(row)
        if not new_rows:
            break
        found.extend(_page_record(row) for row in new_rows)
        if len(found) > MAX_INCLUDES:
            break
        keys = [row[0] for row in new_rows]
        refs = [(row[1], row[2]) for row in new_rows]
    return found[: MAX_INCLUDES + 1]


def _record(resource_type: str, resource_id: str, row: tuple[Any, ...]) -> VersionRecord:
    version_id, last_updated, method, content = row
    return VersionRecord(
        resource_type,
        resource_id,
        version_id,
        _utc(last_updated),
        method,
        bytes(content) if content is not None else None,
    )


_RETRYABLE = {"40001", "40P01"}  # serialization failure, deadlock


def _rollback(cursor: Any, dbapi: Any, pgconn: Any = None) -> None:
    # If the connection is gone or the transaction already ended, there is nothing to undo.
    with suppress(dbapi.Error):
        if pgconn is None:
            cursor.execute("ROLLBACK")
        else:
            # On libpq directly: after a ROLLBACK run through psycopg it forgets the
            # connection's prepared statements (in case one names an object the transaction
            # created; a write creates none), and the next writes would re-parse theirs. A
            # failure leaves the connection in its transaction, so _raw discards it.
            pgconn.exec_(b"ROLLBACK")


def _sqlstate(exc: BaseException) -> str | None:
    orig = getattr(exc, "orig", None)  # SQLAlchemy's wrapper of the driver's exception
    return getattr(orig if orig is not None else exc, "sqlstate", None)


def _sqlite_error(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    return getattr(orig if orig is not None else exc, "sqlite_errorname", None) or ""


_FULL = {"53100"}  # PostgreSQL disk_full
_READ_ONLY = {"25006"}  # read_only_sql_transaction (a standby, default_transaction_read_only)


def storage_error(exc: BaseException) -> StorageUnavailableError:
    """What a driver error that is not the request's fault means to the client: the database
    is full (507), refuses writes (503, reads still work) or is away (503)."""
    sqlite = _sqlite_error(exc)
    if _sqlstate(exc) in _FULL or sqlite == "SQLITE_FULL":
        return StorageFullError(_reason(exc))
    if _sqlstate(exc) in _READ_ONLY or sqlite.startswith("SQLITE_READONLY"):
        return StorageReadOnlyError(_reason(exc))
    return StorageUnavailableError(_reason(exc))


def _timed_out(exc: BaseException) -> bool:
    # query_canceled: statement_timeout (or an administrator's pg_cancel_backend)
    return _sqlstate(exc) == "57014" or _sqlite_error(exc) == "SQLITE_INTERRUPT"


# SQLite calls the progress handler every this many virtual machine instructions (well under a
# millisecond of work), so a budget is kept to about a millisecond at little cost.
_PROGRESS_STEPS = 10_000


@contextmanager
def _sqlite_deadline(conn: Connection, budget_ms: int) -> Iterator[None]:
    raw: Any = conn.connection.dbapi_connection  # the sqlite3.Connection
    deadline = time.monotonic() + budget_ms / 1000
    raw.set_progress_handler(lambda: time.monotonic() > deadline, _PROGRESS_STEPS)
    try:
        yield
    finally:
        raw.set_progress_handler(None, 0)  # the pooled connection is used without a budget next


@contextmanager
def _pg_statement_timeout(conn: Connection, budget_ms: int) -> Iterator[None]:
    # One round trip for both (simple query protocol), one for the end: SET LOCAL ends with
    # the transaction, and a cancelled statement's aborted transaction ends with it too. The
    # end is COMMIT, which is ROLLBACK to a transaction that only read (or failed): psycopg
    # drops the connection's prepared statements (the writes') after a ROLLBACK.
    conn.exec_driver_sql(f"BEGIN; SET LOCAL statement_timeout = {int(budget_ms)}")
    done = False
    try:
        yield
        done = True
    finally:
        try:
            conn.exec_driver_sql("COMMIT")
        except Exception:
            with suppress(Exception):
                conn.invalidate()  # in an unknown state: not back to the pool
            if done:  # else the block's own error is the one to report
                raise


def _is_unique_violation(exc: BaseException) -> bool:
    return _sqlstate(exc) == "23505" or "UNIQUE constraint failed" in str(exc)


def _reason(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    return str(orig if orig is not None else exc).strip().splitlines()[0]
