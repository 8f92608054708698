"""Engines: SQLite tuned for a server (WAL, synchronous=NORMAL, explicit BEGIN), PostgreSQL
(pooled connections pinged only when they may have gone stale)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, exc, text
from sqlalchemy.engine import make_url

from app.config import Settings

# Execution option naming how a SQLite transaction begins: "IMMEDIATE" takes the write lock up
# front (so a read-then-write never fails on upgrade), "DEFERRED" for reads, None: autocommit.
SQLITE_BEGIN = "sqlite_begin"


log = logging.getLogger(__name__)


def wait_for_database(engine: Engine, timeout_s: float) -> None:
    """Block until the database answers (a container may start before its database does)."""
    deadline = time.monotonic() + timeout_s
    delay = 0.2
    while True:
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            return
        except Exception as exc:
            if time.monotonic() >= deadline:
                raise
            log.warning("database not ready (%s); retrying", str(exc).splitlines()[0])
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def make_engine(settings: Settings) -> Engine:
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(settings, url)
    if url.get_backend_name() == "postgresql" and url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    # A server that does not answer fails a new connection in 10 s, not the OS's minutes: a
    # read by id may wait for it on the event loop (Runtime.call_read). A
    # connect_timeout in the URL's query wins.
    connect = {} if "connect_timeout" in url.query else {"connect_timeout": 10}
    engine = create_engine(
        url,
        connect_args=connect,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_size,
    )
    _ping_when_stale(engine)
    return engine


# A pooled connection used this recently is taken as alive, unpinged. SQLAlchemy's pool_pre_ping
# pings on every checkout: a round trip on every request (a read is one round trip without it).
PING_IDLE_SECONDS = 1.0


def _ping_when_stale(engine: Engine) -> None:
    """Ping a connection at checkout only when it has been idle PING_IDLE_SECONDS or longer, or
    was checked in before any connection of the pool was found dead (a restart or outage ends
    them all; the request that finds the first one dead is answered 503 by the store, and the
    rest are pinged, so they are replaced instead of failing a request each). A failed ping
    invalidates the pool, as pool_pre_ping does."""
    pool = engine.pool
    dialect = engine.dialect
    last_invalidation = [0.0]

    @event.listens_for(pool, "checkin")
    def _checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["checked_in"] = time.monotonic()

    @event.listens_for(pool, "invalidate")
    def _invalidate(_dbapi_connection: Any, _record: Any, _exception: Any) -> None:
        last_invalidation[0] = time.monotonic()

    @event.listens_for(pool, "checkout")
    def _checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        # record.info belongs to the DBAPI connection: a new one has no check-in time
        checked_in = record.info.get("checked_in")
        if checked_in is None:
            return
        if time.monotonic() - checked_in < PING_IDLE_SECONDS and checked_in > last_invalidation[0]:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as error:
            if dialect.is_disconnect(error, dbapi_connection, None):
                raise exc.InvalidatePoolError() from error
            raise


def _sqlite_engine(settings: Settings, url: Any) -> Engine:
    database = url.database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        connect_args={
            "check_same_thread": False,
            "timeout": settings.sqlite_busy_timeout_ms / 1000,
        },
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_size,
    )
    busy_ms = settings.sqlite_busy_timeout_ms

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        # The driver's own implicit BEGIN would start every transaction deferred; take over.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        # Checkpoint every ~40 MB of WAL, not every 4 MB: a create writes ~37 pages (index
        # entries on random pages), and each checkpoint copies the distinct pages back once,
        # so fewer, larger checkpoints write hot pages fewer times (bench/index_cost.py).
        cursor.execute("PRAGMA wal_autocheckpoint=10000")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_ms)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        mode = connection.get_execution_options().get(SQLITE_BEGIN, "DEFERRED")
        if mode:
            connection.exec_driver_sql(f"BEGIN {mode}")

    return engine
