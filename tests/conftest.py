"""Test infrastructure: every storage and API test runs on SQLite and on PostgreSQL.

PostgreSQL: a fresh database per test run (created on the server named by
FHIR_TEST_POSTGRES_URL, default the local `test` database's server), dropped afterwards, so runs
never collide. Where no PostgreSQL answers, those tests skip with the reason, unless
FHIR_TEST_REQUIRE_POSTGRES=1 (CI sets it) makes that a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from app.config import Settings
from app.main import create_app
from app.storage.engine import is_sqlite, make_engine
from app.storage.migrate import upgrade
from app.storage.tables import INDEX_TABLES
from tests.asgi_client import asgi_client

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
FIXTURES = SHARED / "fixtures"
PG_SERVER_URL = os.environ.get(
    "FHIR_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REQUIRE_PG = os.environ.get("FHIR_TEST_REQUIRE_POSTGRES") == "1"


def needs_shared() -> None:
    if not FIXTURES.is_dir():
        pytest.skip(
            f"../shared/fixtures is not beside this checkout ({FIXTURES}); "
            "fixture-based tests need it"
        )


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    server = make_url(PG_SERVER_URL)
    name = f"kfhir_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        admin.dispose()
        message = f"PostgreSQL at {server.render_as_string()} is not usable: {exc}"
        if REQUIRE_PG:
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(
    scope="session", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'fhir.sqlite3'}"
    else:
        url = request.getfixturevalue("postgres_url")
    engine = make_engine(Settings(DATABASE_URL=url))
    upgrade(engine)
    engine.dispose()
    return url


@pytest.fixture(scope="session")
def admin_engines() -> Iterator[dict[str, Engine]]:
    engines: dict[str, Engine] = {}
    yield engines
    for engine in engines.values():
        engine.dispose()


def empty_database(url: str, engines: dict[str, Engine]) -> None:
    engine = engines.get(url)
    if engine is None:
        engine = engines[url] = make_engine(Settings(DATABASE_URL=url))
    tables = [
        *(t.name for t in INDEX_TABLES.values()),
        "search_date_span",
        "export_job",
        "resource_version",
        "resource",
    ]
    with engine.begin() as conn:
        if is_sqlite(engine):
            for table in tables:
                conn.execute(text(f"DELETE FROM {table}"))
        else:
            conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY"))


@contextmanager
def loaded_client(
    database_url: str, engines: dict[str, Engine], resources: list[dict[str, Any]]
) -> Iterator[httpx.Client]:
    """A client of an app on an emptied database holding `resources` (stored by PUT, so their
    ids are kept): for modules whose tests only read one data set."""
    empty_database(database_url, engines)
    settings = Settings(DATABASE_URL=database_url, FHIR_MIGRATE_ON_START=False)
    with asgi_client(create_app(settings)) as client:
        for resource in resources:
            response = client.put(
                f"/fhir/{resource['resourceType']}/{resource['id']}",
                json=resource,
                headers={"Content-Type": "application/fhir+json"},
            )
            assert response.status_code in (200, 201), response.text
        yield client


@pytest.fixture
def settings(database_url: str, admin_engines: dict[str, Engine]) -> Settings:
    empty_database(database_url, admin_engines)
    return Settings(DATABASE_URL=database_url, FHIR_MIGRATE_ON_START=False)


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    """An engine of the test's (emptied) database, as the server makes it."""
    engine = make_engine(settings)
    yield engine
    engine.dispose()


@pytest.fixture
def client(settings: Settings) -> Iterator[httpx.Client]:
    with asgi_client(create_app(settings)) as test_client:
        yield test_client
