"""The store on SQLAlchemy Core (SQLite and PostgreSQL). Hot paths are single Core statements:
an ORM session costs ~100 µs per get on this machine, a Core select a few."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    and_,
    bindparam,
    exists,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from app.fhir.store import (
    CurrentState,
    HistoryPage,
    HistoryQuery,
    StorageUnavailableError,
    VersionRecord,
    WriteConflictError,
)
from app.storage.engine import SQLITE_BEGIN, is_sqlite
from app.storage.tables import resource_table as r
from app.storage.tables import version_table as v

_CURRENT_JOIN = r.join(v, and_(v.c.res_key == r.c.res_key, v.c.version_id == r.c.version_id))
_READ = (
    select(v.c.version_id, v.c.last_updated, v.c.method, v.c.content)
    .select_from(_CURRENT_JOIN)
    .where(r.c.resource_type == bindparam("rt"), r.c.resource_id == bindparam("rid"))
)
_VREAD = (
    select(v.c.version_id, v.c.last_updated, v.c.method, v.c.content)
    .select_from(r.join(v, v.c.res_key == r.c.res_key))
    .where(
        r.c.resource_type == bindparam("rt"),
        r.c.resource_id == bindparam("rid"),
        v.c.version_id == bindparam("vid"),
    )
)
_CURRENT_ROW = select(r.c.res_key, r.c.version_id, r.c.last_updated, r.c.deleted).where(
    r.c.resource_type == bindparam("rt"), r.c.resource_id == bindparam("rid")
)
_CONTENT = select(v.c.content).where(
    v.c.res_key == bindparam("key"), v.c.version_id == bindparam("vid")
)
_INSERT_RESOURCE = insert(r).returning(r.c.res_key)
_INSERT_VERSION = insert(v)
_UPDATE_RESOURCE = (
    update(r)
    .where(r.c.res_key == bindparam("key"))
    .values(version_id=bindparam("vid"), last_updated=bindparam("lu"), deleted=bindparam("del"))
)


def _utc(value: datetime) -> datetime:
    # SQLite hands back the naive UTC value that was stored; PostgreSQL an aware one.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _db_value(value: datetime) -> datetime:
    return value.astimezone(UTC)


class SqlWriteTx:
    def __init__(self, connection: Connection, lock_rows: bool) -> None:
        self._conn = connection
        self._current = _CURRENT_ROW.with_for_update() if lock_rows else _CURRENT_ROW

    def current(self, resource_type: str, resource_id: str) -> CurrentState | None:
        row = self._conn.execute(self._current, {"rt": resource_type, "rid": resource_id}).first()
        if row is None:
            return None
        return CurrentState(
            row.res_key,
            resource_type,
            resource_id,
            row.version_id,
            _utc(row.last_updated),
            bool(row.deleted),
        )

    def current_content(self, state: CurrentState) -> bytes | None:
        content = self._conn.execute(_CONTENT, {"key": state.key, "vid": state.version_id}).scalar()
        return bytes(content) if content is not None else None

    def insert(self, record: VersionRecord) -> None:
        # A unique violation aborts the whole transaction (PostgreSQL); run_write starts it again.
        try:
            key = self._conn.execute(
                _INSERT_RESOURCE,
                {
                    "resource_type": record.resource_type,
                    "resource_id": record.resource_id,
                    "version_id": record.version_id,
                    "last_updated": _db_value(record.last_updated),
                    "deleted": record.deleted,
                },
            ).scalar_one()
        except IntegrityError as exc:
            raise WriteConflictError(f"{record.resource_type}/{record.resource_id} exists") from exc
        self._insert_version(key, record)

    def append(self, state: CurrentState, record: VersionRecord) -> None:
        self._insert_version(state.key, record)
        self._conn.execute(
            _UPDATE_RESOURCE,
            {
                "key": state.key,
                "vid": record.version_id,
                "lu": _db_value(record.last_updated),
                "del": record.deleted,
            },
        )

    def _insert_version(self, key: int, record: VersionRecord) -> None:
        self._conn.execute(
            _INSERT_VERSION,
            {
                "res_key": key,
                "resource_type": record.resource_type,
                "version_id": record.version_id,
                "last_updated": _db_value(record.last_updated),
                "method": record.method,
                "content": record.content,
            },
        )


class SqlStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._sqlite = is_sqlite(engine)

    @property
    def engine(self) -> Engine:
        return self._engine

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        try:
            with self._engine.connect() as conn:
                # A lone SELECT needs no transaction on SQLite; skipping BEGIN saves two statements.
                yield conn.execution_options(**{SQLITE_BEGIN: None}) if self._sqlite else conn
        except OperationalError as exc:
            raise StorageUnavailableError(_reason(exc)) from exc

    @contextmanager
    def write(self) -> Iterator[SqlWriteTx]:
        try:
            with self._engine.connect() as conn:
                if self._sqlite:
                    conn = conn.execution_options(**{SQLITE_BEGIN: "IMMEDIATE"})
                with conn.begin():
                    yield SqlWriteTx(conn, lock_rows=not self._sqlite)
        except IntegrityError as exc:
            raise WriteConflictError(_reason(exc)) from exc
        except DBAPIError as exc:
            if _sqlstate(exc) in {"40001", "40P01"}:
                raise WriteConflictError(_reason(exc)) from exc
            if isinstance(exc, OperationalError):
                raise StorageUnavailableError(_reason(exc)) from exc
            raise

    def read(self, resource_type: str, resource_id: str) -> VersionRecord | None:
        with self._reading() as conn:
            row = conn.execute(_READ, {"rt": resource_type, "rid": resource_id}).first()
        return _record(resource_type, resource_id, row) if row is not None else None

    def vread(self, resource_type: str, resource_id: str, version_id: int) -> VersionRecord | None:
        with self._reading() as conn:
            row = conn.execute(
                _VREAD, {"rt": resource_type, "rid": resource_id, "vid": version_id}
            ).first()
        return _record(resource_type, resource_id, row) if row is not None else None

    def history(self, query: HistoryQuery) -> HistoryPage:
        conditions: list[Any] = []
        if query.resource_type is not None:
            conditions.append(v.c.resource_type == query.resource_type)
        if query.resource_id is not None:
            conditions.append(r.c.resource_id == query.resource_id)
        if query.since is not None:
            conditions.append(v.c.last_updated >= _db_value(query.since))
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
        with self._reading() as conn:
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
        entries = [
            (
                row.version_key,
                VersionRecord(
                    row.resource_type,
                    row.resource_id,
                    row.version_id,
                    _utc(row.last_updated),
                    row.method,
                    bytes(row.content) if row.content is not None else None,
                ),
            )
            for row in rows
        ]
        return HistoryPage(entries, rows[-1].version_key if more and rows else None, total)

    def iter_current(self, resource_type: str | None = None) -> Iterator[VersionRecord]:
        statement = select(
            r.c.resource_type,
            r.c.resource_id,
            v.c.version_id,
            v.c.last_updated,
            v.c.method,
            v.c.content,
        ).select_from(_CURRENT_JOIN)
        if resource_type is not None:
            statement = statement.where(r.c.resource_type == resource_type)
        with self._reading() as conn:
            for row in conn.execution_options(yield_per=500).execute(
                statement.order_by(r.c.res_key)
            ):
                yield VersionRecord(
                    row.resource_type,
                    row.resource_id,
                    row.version_id,
                    _utc(row.last_updated),
                    row.method,
                    bytes(row.content) if row.content is not None else None,
                )


def _record(resource_type: str, resource_id: str, row: Any) -> VersionRecord:
    content = row.content
    return VersionRecord(
        resource_type,
        resource_id,
        row.version_id,
        _utc(row.last_updated),
        row.method,
        bytes(content) if content is not None else None,
    )


def _sqlstate(exc: DBAPIError) -> str | None:
    return getattr(exc.orig, "sqlstate", None)


def _reason(exc: Exception) -> str:
    orig = getattr(exc, "orig", None)
    return str(orig if orig is not None else exc).strip().splitlines()[0]
