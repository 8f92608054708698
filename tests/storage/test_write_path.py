"""The store's write path and connection handling on PostgreSQL: round trips per interaction
(libpq's own trace of every message), prepared statements kept across failed writes, pooled
connections pinged only when they may be stale, autocommit restored for the engine's other
users; on both databases, index rows written as app.storage.derived derives them (also
non-finite floats, which JSON cannot carry) and a delete whose COMMIT outcome had to be
looked up."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, event, select, text
from sqlalchemy.engine import make_url

from app.config import Settings
from app.fhir.errors import GoneError, PreconditionFailedError
from app.fhir.service import ResourceService
from app.fhir.store import StorageUnavailableError, VersionRecord
from app.search.index_values import IndexRows
from app.storage import engine as engine_module
from app.storage.derived import table_rows
from app.storage.engine import make_engine
from app.storage.sql_store import SqlStore
from app.storage.tables import INDEX_TABLES
from tests.conftest import PG_SERVER_URL
from tests.faults.test_commit_outcome import _dying_at_commit
from tests.helpers import pain_observation, patient


def _postgres_only(settings: Settings) -> None:
    if settings.database_url.startswith("sqlite"):
        pytest.skip("PostgreSQL's round trips and connection pool")


class _Trace:
    """libpq's trace of every connection the engine opens: what the client sent and when it
    waited. A round trip is the client sending, then reading the server's answer."""

    def __init__(self, engine: Engine, folder: Path) -> None:
        self._files: list[Any] = []
        self._marks: list[int] = []

        @event.listens_for(engine, "connect")
        def _trace(dbapi_connection: Any, _record: Any) -> None:
            from psycopg.pq import Trace

            file = (folder / f"trace-{len(self._files)}.txt").open("w")
            self._files.append(file)
            dbapi_connection.pgconn.trace(file.fileno())
            dbapi_connection.pgconn.set_trace_flags(Trace.SUPPRESS_TIMESTAMPS | Trace.REGRESS_MODE)

    def mark(self) -> None:
        self._marks = [Path(f.name).stat().st_size for f in self._files]

    def since_mark(self) -> tuple[int, list[str]]:
        """(round trips, the messages the client sent) since mark()."""
        trips = 0
        sent: list[str] = []
        for number, file in enumerate(self._files):
            with open(file.name) as reading:
                reading.seek(self._marks[number] if number < len(self._marks) else 0)
                previous = ""
                for line in reading.read().splitlines():
                    direction, _, message = line.partition("\t")
                    if direction == "F":
                        if previous != "F":
                            trips += 1
                        sent.append(message)
                    if direction in ("F", "B"):
                        previous = direction
        return trips, sent

    def close(self) -> None:
        for file in self._files:
            file.close()


def test_round_trips_per_interaction(
    settings: Settings, engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A create is BEGIN and its one statement, then COMMIT; a read one statement; an update
    or delete the locking read, the writes, COMMIT. Every statement is prepared once a
    connection has run it a few times, also after a failed write's ROLLBACK."""
    _postgres_only(settings)
    monkeypatch.setattr(engine_module, "PING_IDLE_SECONDS", 3600.0)  # no ping on a slow run
    trace = _Trace(engine, tmp_path)
    service = ResourceService(SqlStore(engine))
    subject = service.create("Patient", patient()).record
    assert subject is not None

    def cycle() -> dict[str, tuple[int, list[str]]]:
        seen: dict[str, tuple[int, list[str]]] = {}
        trace.mark()
        created = service.create(
            "Observation", pain_observation(5, f"Patient/{subject.resource_id}")
        )
        seen["create"] = trace.since_mark()
        assert created.record is not None
        rid = created.record.resource_id
        trace.mark()
        service.read("Observation", rid)
        seen["read"] = trace.since_mark()
        trace.mark()
        body = {**pain_observation(6, f"Patient/{subject.resource_id}"), "id": rid}
        service.update("Observation", rid, body)
        seen["update"] = trace.since_mark()
        trace.mark()
        service.delete("Observation", rid)
        seen["delete"] = trace.since_mark()
        return seen

    for _ in range(6):  # psycopg prepares a statement on its 6th run
        cycle()
    with pytest.raises(PreconditionFailedError):  # a failed write: ROLLBACK
        service.update("Patient", subject.resource_id, {**patient(), "id": subject.resource_id}, 9)
    seen = cycle()
    trips = {name: count for name, (count, _) in seen.items()}
    assert trips == {"create": 2, "read": 1, "update": 3, "delete": 3}
    for name, (_, sent) in seen.items():
        assert not [m for m in sent if m.startswith(("Parse", "Query"))], (name, sent)
    trace.close()


def test_pooled_connections_are_pinged_when_stale(
    settings: Settings, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection used within PING_IDLE_SECONDS is not pinged; once one connection of the
    pool is found dead (the request that found it is a 503), the others are pinged before
    use and replaced, so a database restart fails one request, not one per connection."""
    _postgres_only(settings)
    pings: list[int] = []
    real_ping = engine.dialect.do_ping

    def ping(dbapi_connection: Any) -> bool:
        pings.append(1)
        return real_ping(dbapi_connection)

    monkeypatch.setattr(engine.dialect, "do_ping", ping)
    store = SqlStore(engine)
    service = ResourceService(store)
    created = service.create("Patient", patient()).record
    assert created is not None
    for _ in range(3):
        assert store.read("Patient", created.resource_id) is not None
    assert pings == []

    monkeypatch.setattr(engine_module, "PING_IDLE_SECONDS", 0.0)
    assert store.read("Patient", created.resource_id) is not None
    assert pings == [1]
    monkeypatch.setattr(engine_module, "PING_IDLE_SECONDS", 3600.0)

    # two pooled connections, both ended by the server
    first, second = engine.raw_connection(), engine.raw_connection()
    drivers: list[Any] = [first.dbapi_connection, second.dbapi_connection]
    pids = [driver.info.backend_pid for driver in drivers]
    first.close()
    second.close()
    admin = create_engine(make_url(PG_SERVER_URL), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            for pid in pids:
                conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    finally:
        admin.dispose()
    with pytest.raises(StorageUnavailableError):
        store.read("Patient", created.resource_id)  # used a moment ago: not pinged
    pings.clear()
    assert store.read("Patient", created.resource_id) is not None  # the other one: pinged
    assert pings == [1]
    assert service.update("Patient", created.resource_id, {**patient(), "id": created.resource_id})


def test_the_engine_gets_its_connections_back_as_it_lent_them(
    settings: Settings, engine: Engine
) -> None:
    """The store runs PostgreSQL connections in autocommit; the engine's other users (export
    jobs, migrations, the check) expect transactions, so each goes back to the pool without."""
    _postgres_only(settings)
    engine.pool.dispose()
    store = SqlStore(engine)
    service = ResourceService(store)
    created = service.create("Patient", patient()).record
    assert created is not None
    store.read("Patient", created.resource_id)
    with pytest.raises(PreconditionFailedError):
        service.update("Patient", created.resource_id, {**patient(), "id": created.resource_id}, 7)
    pool: Any = engine.pool
    assert pool.checkedin() == 1  # the failed write's connection too
    with engine.connect() as conn:
        driver: Any = conn.connection.dbapi_connection
        assert driver.autocommit is False


_INF = float("inf")


def test_index_rows_are_stored_as_derived(settings: Settings, engine: Engine) -> None:
    """Each index table holds table_rows() of the version's IndexRows, after a create and
    after the next version, with values JSON cannot carry as numbers (±Infinity)."""
    store = SqlStore(engine)
    now = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    first = IndexRows(
        token={("code", "http://loinc.org", "72514-3", "pain")},
        string={("name", "doe", "Doe")},
        date={("date", 1, 2)},
        number={("n", -_INF)},
        quantity={("value-quantity", _INF, "http://unitsofmeasure.org", "mg", 1e300, "g")},
        reference={("subject", "Patient", "p1", None)},
        uri={("url", "http://example.org/a")},
        composite={("cv", "s", "c", None, None, 0.5, 0.5, "g", None, None, None)},
        patient=42,
    )
    second = IndexRows(token={("code", None, "x", None)}, number={("n", 2.5)})

    def record(version: int) -> VersionRecord:
        return VersionRecord("Basic", "b1", version, now, "PUT", b"{}")

    with store.write() as tx:
        tx.insert(record(1), first)
    assert _stored(engine) == _derived(engine, first)
    with store.write() as tx:
        state = tx.current("Basic", "b1")
        assert state is not None
        tx.append(state, record(2), second)
    assert _stored(engine) == _derived(engine, second)
    with store.write() as tx:
        state = tx.current("Basic", "b1")
        assert state is not None
        tx.append(state, VersionRecord("Basic", "b1", 3, now, "DELETE", None), IndexRows())
    assert _stored(engine) == {kind: [] for kind in INDEX_TABLES}


def _key(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT res_key FROM resource")).scalar_one())


def _derived(engine: Engine, index: IndexRows) -> dict[str, list[tuple[Any, ...]]]:
    key = _key(engine)
    return {kind: sorted(table_rows(key, "Basic", index, kind), key=repr) for kind in INDEX_TABLES}


def _stored(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    with engine.connect() as conn:
        found = {
            kind: sorted((tuple(row) for row in conn.execute(select(table))), key=repr)
            for kind, table in INDEX_TABLES.items()
        }
    for rows in found.values():  # the values compared as stored, infinities included
        assert all(not (isinstance(v, float) and math.isnan(v)) for row in rows for v in row)
    return found


def test_a_delete_whose_commit_was_cut_off_is_answered_by_what_is_stored(
    settings: Settings, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The version a delete writes has no content: its instant tells it apart."""
    _postgres_only(settings)
    store = SqlStore(engine)
    service = ResourceService(store)
    kept = service.create("Patient", patient("Kept")).record
    gone = service.create("Patient", patient("Gone")).record
    assert kept is not None
    assert gone is not None

    monkeypatch.setattr(store, "_raw", _dying_at_commit(store, committed=False))
    with pytest.raises(StorageUnavailableError):
        service.delete("Patient", kept.resource_id)
    monkeypatch.undo()
    monkeypatch.setattr(store, "_raw", _dying_at_commit(store, committed=True))
    result = service.delete("Patient", gone.resource_id)
    monkeypatch.undo()

    assert result.record is not None
    assert result.record.deleted
    assert service.read("Patient", kept.resource_id).version_id == 1
    with pytest.raises(GoneError):
        service.read("Patient", gone.resource_id)


@pytest.mark.parametrize(("query", "expected"), [("", "10"), ("?connect_timeout=3", "3")])
def test_a_new_connection_gives_up_on_a_silent_server(
    settings: Settings, query: str, expected: str
) -> None:
    """One-resource interactions may wait for a connection on the event loop: libpq's
    connect_timeout bounds that wait (10 s unless the URL says otherwise)."""
    _postgres_only(settings)
    engine = make_engine(Settings(DATABASE_URL=settings.database_url + query))
    try:
        with engine.connect() as conn:
            info = conn.connection.dbapi_connection.info  # type: ignore[union-attr]
            assert info.get_parameters()["connect_timeout"] == expected
    finally:
        engine.dispose()
