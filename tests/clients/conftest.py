"""Fixtures of the third-party client tests: the real server (a uvicorn process) on each
database, and the shipped case loaded afresh for every test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from app.case.load import load_case
from app.config import Settings
from app.fhir.service import ResourceService
from app.storage.engine import make_engine
from app.storage.sql_store import SqlStore
from tests.conftest import empty_database
from tests.live_server import live_server


@pytest.fixture(scope="package")
def fhir_base(database_url: str) -> Iterator[str]:
    """The FHIR base URL of a server process on `database_url` (no authorization configured,
    bound to loopback: no token needed)."""
    with live_server(database_url, workers=1, FHIR_MIGRATE_ON_START="false") as base:
        yield f"{base}/fhir"


@pytest.fixture
def case_patient(database_url: str, admin_engines: dict[str, Engine], fhir_base: str) -> str:
    """The id of the case patient, on a database holding the shipped case and nothing else."""
    empty_database(database_url, admin_engines)
    engine = make_engine(Settings(DATABASE_URL=database_url, FHIR_MIGRATE_ON_START=False))
    try:
        patient_id, loaded = load_case(ResourceService(SqlStore(engine)))
    finally:
        engine.dispose()
    assert loaded
    return patient_id
