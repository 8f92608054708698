"""PostgreSQL goes away in the middle of a write load and comes back (issue: reliability).

The outage is real but confined to this test's database, so the rest of a parallel test run
keeps its PostgreSQL: new connections to the database are refused (ALLOW_CONNECTIONS false)
and every backend serving it is terminated, as a stopped server would do; then connections are
allowed again. A backend terminated during a COMMIT may commit and die before answering; the
server then looks for the write once the database is back (test_commit_outcome), so each
write still has one known outcome.

Checked: during the outage writes are 503 with Retry-After and an OperationOutcome (never a
500); the server recovers by itself within seconds of the database coming back (10 s
allowed on a loaded machine); every write
answered 2xx is in the database, and every write answered otherwise left nothing behind."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import create_engine, make_url, text

from app.config import Settings
from tests.conftest import PG_SERVER_URL
from tests.helpers import JSON_HEADERS, patient
from tests.live_server import live_server

SYSTEM = "urn:example:outage"
WRITERS = 6  # more than a few: each write caught in COMMIT waits out the outage


@pytest.fixture
def postgres_only(database_url: str, settings: Settings) -> str:
    if database_url.startswith("sqlite"):
        pytest.skip("a PostgreSQL outage")
    return database_url


class Outage:
    def __init__(self, database: str) -> None:
        self.database = database
        self.admin = create_engine(make_url(PG_SERVER_URL), isolation_level="AUTOCOMMIT")

    def begin(self) -> None:
        """No new connection, and none left. A backend still starting up when the ALTER
        commits can pass its connection check and show up in pg_stat_activity only after the
        first sweep (a write answered 201 mid-outage in CI): sweep until two in a row, 50 ms
        apart, find none."""
        sweep = text(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = :db AND pid <> pg_backend_pid()"
        )
        with self.admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{self.database}" ALLOW_CONNECTIONS false'))
            quiet = 0
            deadline = time.monotonic() + 5
            while quiet < 2 and time.monotonic() < deadline:
                found = conn.execute(sweep, {"db": self.database}).scalar()
                quiet = quiet + 1 if found == 0 else 0
                time.sleep(0.05)

    def end(self) -> None:
        with self.admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{self.database}" ALLOW_CONNECTIONS true'))

    def close(self) -> None:
        self.end()
        self.admin.dispose()


@pytest.fixture
def outage(postgres_only: str) -> Iterator[Outage]:
    control = Outage(make_url(postgres_only).database or "")
    try:
        yield control
    finally:
        control.close()


def test_writes_during_an_outage_are_503_and_none_is_lost_or_half_written(
    postgres_only: str, outage: Outage
) -> None:
    # (sent, answered, identifier value, response)
    results: list[tuple[float, float, str, httpx.Response]] = []
    lock = threading.Lock()
    stop = threading.Event()

    with live_server(postgres_only, workers=1, FHIR_MIGRATE_ON_START="false") as base:

        def writer(number: int) -> None:
            with httpx.Client(base_url=base, timeout=30) as client:
                sequence = 0
                while not stop.is_set():
                    value = f"w{number}-{sequence}"
                    sequence += 1
                    body = patient(identifier=[{"system": SYSTEM, "value": value}])
                    sent = time.monotonic()
                    try:
                        response = client.post("/fhir/Patient", json=body, headers=JSON_HEADERS)
                    except httpx.TransportError as exc:  # the server itself must stay up
                        pytest.fail(f"the server dropped a request: {exc}")
                    with lock:
                        results.append((sent, time.monotonic(), value, response))

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(WRITERS)]
        for thread in threads:
            thread.start()
        try:
            time.sleep(1.5)
            outage.begin()
            began = time.monotonic()
            time.sleep(2.0)
            outage.end()
            ended = time.monotonic()
            time.sleep(4.0)
        finally:
            stop.set()
            for thread in threads:
                thread.join()

        statuses = {r.status_code for *_, r in results}
        assert statuses <= {201, 503}, statuses
        # sent and answered while the database was away (a request sent just before may still
        # commit and be answered late on a loaded machine)
        during = [r for sent, done, _, r in results if began + 0.2 < sent and done < ended]
        timeline = [
            (round(sent - began, 2), round(done - began, 2), r.status_code)
            for sent, done, _, r in results
            if done > began - 0.5 and sent < ended + 0.5
        ]
        assert during, f"outage 0..{ended - began:.2f} s; (sent, answered, status): {timeline}"
        assert all(r.status_code == 503 for r in during), timeline
        for response in (r for *_, r in results if r.status_code == 503):
            assert response.headers.get("retry-after")
            assert response.json()["resourceType"] == "OperationOutcome"
        recovered = [sent for sent, _, _, r in results if sent > ended and r.status_code == 201]
        assert recovered, "no write succeeded after the database came back"
        assert recovered[0] - ended < 10.0, f"recovered after {recovered[0] - ended:.1f} s"
        assert all(r.status_code == 201 for sent, _, _, r in results if sent > recovered[0])

        # every answered write is there once; every refused one left nothing
        with httpx.Client(base_url=base, timeout=30) as client:
            stored: dict[str, int] = {}
            url: str | None = f"/fhir/Patient?identifier={SYSTEM}|&_count=1000&_elements=identifier"
            while url:
                page = client.get(url).json()
                for entry in page.get("entry", []):
                    value = entry["resource"]["identifier"][0]["value"]
                    stored[value] = stored.get(value, 0) + 1
                url = next(
                    (link["url"] for link in page["link"] if link["relation"] == "next"), None
                )
        created = {v for _, _, v, r in results if r.status_code == 201}
        refused = {v for _, _, v, r in results if r.status_code != 201}
        assert len(created) > 10
        assert len(refused) > 0
        assert {v for v, n in stored.items() if n > 1} == set()
        assert set(stored) == created
