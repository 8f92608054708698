"""Storage faults answered as OperationOutcomes, with nothing half-written:

- a full SQLite database (PRAGMA max_page_count at the file's size on every connection the
  server takes) answers writes 507 and keeps every earlier byte (integrity_check ok);
- a read-only SQLite file (opened `mode=ro`: the tests run as root, whom chmod does not stop)
  serves reads and answers writes 503; the server starts on it even with migrations on;
- PostgreSQL refusing writes (default_transaction_read_only, as on a standby) is the same 503,
  and its disk_full is classified as 507 like SQLite's."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, event

from app.config import Settings
from app.fhir.store import StorageFullError, StorageReadOnlyError, StorageUnavailableError
from app.main import create_app
from app.storage.sql_store import storage_error
from tests.asgi_client import asgi_client
from tests.helpers import JSON_HEADERS, assert_outcome, pain_observation, patient


def _engine(app: Any) -> Engine:
    engine: Engine = app.state.runtime.exports.engine
    return engine


def _transaction(count: int, note: str = "") -> dict[str, Any]:
    entries = [
        {
            "fullUrl": f"urn:uuid:00000000-0000-4000-8000-{i:012d}",
            "resource": {**pain_observation(i % 11), "note": [{"text": note or f"n{i}"}]},
            "request": {"method": "POST", "url": "Observation"},
        }
        for i in range(count)
    ]
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _integrity(conn: sqlite3.Connection) -> list[str]:
    """PRAGMA integrity_check's findings, less SQLite 3.40's false "NULL value in t.c" on
    WITHOUT ROWID tables (the index tables), each confirmed false by a query."""
    found = []
    for (line,) in conn.execute("PRAGMA integrity_check").fetchall():
        null = re.fullmatch(r"NULL value in (\w+)\.(\w+)", line)
        if (
            null
            and not conn.execute(
                f"SELECT count(*) FROM {null[1]} WHERE {null[2]} IS NULL"
            ).fetchone()[0]
        ):
            continue
        found.append(line)
    return found or ["ok"]


def _snapshot(path: Path) -> tuple[list[str], list[tuple[Any, ...]]]:
    with sqlite3.connect(path) as conn:
        check = _integrity(conn)
        rows = conn.execute(
            "SELECT r.resource_type, r.resource_id, v.version_id, v.content FROM resource r "
            "JOIN resource_version v USING (res_key) ORDER BY v.version_key"
        ).fetchall()
    return check, rows


@pytest.fixture
def sqlite_file(tmp_path: Path) -> tuple[Path, Settings]:
    """A SQLite database holding Patient p1 and two versions of Observation o1."""
    path = tmp_path / "fhir.sqlite3"
    settings = Settings(DATABASE_URL=f"sqlite:///{path}", FHIR_EXPORT_DIR=tmp_path / "exports")
    with asgi_client(create_app(settings)) as client:
        for resource, status in (
            ({**patient(), "id": "p1"}, 201),
            ({**pain_observation(4), "id": "o1"}, 201),
            ({**pain_observation(5), "id": "o1"}, 200),
        ):
            url = f"/fhir/{resource['resourceType']}/{resource['id']}"
            assert client.put(url, json=resource, headers=JSON_HEADERS).status_code == status
    return path, settings


def test_a_full_database_answers_507_and_keeps_what_it_had(
    sqlite_file: tuple[Path, Settings],
) -> None:
    path, settings = sqlite_file
    before = _snapshot(path)
    assert before[0] == ["ok"]
    app = create_app(settings)
    with asgi_client(app) as client:
        engine = _engine(app)

        @event.listens_for(engine, "checkout")
        def _full(dbapi_connection: Any, *_: Any) -> None:
            # max_page_count cannot go below the current size: the file is full from here on
            dbapi_connection.execute("PRAGMA max_page_count = 1")

        big = {**pain_observation(), "note": [{"text": "x" * 200_000}]}  # needs new pages
        outcome = assert_outcome(
            client.post("/fhir/Observation", json=big, headers=JSON_HEADERS), 507, "no-store"
        )
        assert "no room left" in outcome["issue"][0]["diagnostics"]
        # a transaction that fills the file part way through leaves nothing
        assert_outcome(
            client.post("/fhir", json=_transaction(300, "y" * 2000), headers=JSON_HEADERS),
            507,
        )
        update = {**big, "id": "o1"}
        assert_outcome(client.put("/fhir/Observation/o1", json=update, headers=JSON_HEADERS), 507)
        # reads still work
        assert client.get("/fhir/Observation/o1").json()["valueQuantity"]["value"] == 5
        assert client.get("/fhir/Observation?_summary=count").json()["total"] == 1
        assert client.get("/readyz").status_code == 200
        event.remove(engine, "checkout", _full)
    after = _snapshot(path)
    assert after == before  # integrity_check ok, every version's bytes as they were
    # with room again, writes work
    with asgi_client(create_app(settings)) as client:
        created = client.post("/fhir", json=_transaction(3), headers=JSON_HEADERS)
        assert created.status_code == 200, created.text


def test_a_read_only_database_serves_reads_and_refuses_writes(
    sqlite_file: tuple[Path, Settings],
) -> None:
    path, settings = sqlite_file
    before = _snapshot(path)
    read_only = settings.model_copy(
        update={"database_url": f"sqlite:///file:{path}?mode=ro&uri=true"}
    )
    assert read_only.migrate_on_start  # at head, the upgrade writes nothing: it starts
    with asgi_client(create_app(read_only)) as client:
        assert client.get("/readyz").status_code == 200
        assert client.get("/fhir/Observation/o1").json()["valueQuantity"]["value"] == 5
        assert client.get("/fhir/Observation/o1/_history").json()["total"] == 2
        assert client.get("/fhir/Observation?subject=Patient/p1").json()["total"] == 1
        writes = [
            ("POST", "/fhir/Observation", pain_observation()),
            ("PUT", "/fhir/Observation/o1", {**pain_observation(7), "id": "o1"}),
            ("PUT", "/fhir/Observation/new", {**pain_observation(7), "id": "new"}),
            ("DELETE", "/fhir/Observation/o1", None),
            ("POST", "/fhir", _transaction(5)),
        ]
        for method, url, body in writes:
            response = client.request(method, url, json=body, headers=JSON_HEADERS)
            outcome = assert_outcome(response, 503, "no-store")
            assert "read-only" in outcome["issue"][0]["diagnostics"], (method, url)
            assert response.headers["retry-after"]
        kickoff = client.get("/fhir/$export", headers={"Prefer": "respond-async"})
        assert_outcome(kickoff, 503, "no-store")
    assert _snapshot(path) == before


def test_postgresql_refusing_writes_is_503(settings: Settings, database_url: str) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite's read-only file is tested above")
    app = create_app(settings)
    with asgi_client(app) as client:
        stored = client.put(
            "/fhir/Patient/p1", json={**patient(), "id": "p1"}, headers=JSON_HEADERS
        )
        assert stored.status_code == 201
        engine = _engine(app)

        @event.listens_for(engine, "checkout")
        def _standby(dbapi_connection: Any, *_: Any) -> None:
            with dbapi_connection.cursor() as cursor:
                cursor.execute("SET default_transaction_read_only = on")
            dbapi_connection.commit()  # the SET outlives the implicit transaction it ran in

        try:
            for method, url, body in (
                ("POST", "/fhir/Observation", pain_observation()),
                ("POST", "/fhir", _transaction(3)),
                ("DELETE", "/fhir/Patient/p1", None),
            ):
                response = client.request(method, url, json=body, headers=JSON_HEADERS)
                assert (
                    "read-only"
                    in assert_outcome(response, 503, "no-store")["issue"][0]["diagnostics"]
                )
            assert client.get("/fhir/Patient/p1").status_code == 200
            assert client.get("/fhir/Patient?_summary=count").json()["total"] == 1
        finally:
            event.remove(engine, "checkout", _standby)
            engine.dispose()  # no read-only session goes back to another test


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (psycopg.errors.DiskFull("could not extend file"), StorageFullError),
        (psycopg.errors.ReadOnlySqlTransaction("read-only transaction"), StorageReadOnlyError),
        (psycopg.errors.AdminShutdown("terminating connection"), StorageUnavailableError),
    ],
)
def test_driver_errors_are_classified(error: Exception, kind: type[Exception]) -> None:
    assert type(storage_error(error)) is kind


def test_sqlite_error_names_are_classified(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "x.sqlite3")
    conn.execute("CREATE TABLE t (x)")
    conn.execute("PRAGMA max_page_count = 1")
    with pytest.raises(sqlite3.OperationalError) as full:
        conn.execute("INSERT INTO t VALUES (randomblob(100000))")
    conn.close()
    assert type(storage_error(full.value)) is StorageFullError
    read_only = sqlite3.connect(f"file:{tmp_path / 'x.sqlite3'}?mode=ro", uri=True)
    with pytest.raises(sqlite3.OperationalError) as refused:
        read_only.execute("INSERT INTO t VALUES (1)")
    read_only.close()
    assert type(storage_error(refused.value)) is StorageReadOnlyError
