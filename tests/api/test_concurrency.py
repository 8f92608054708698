"""Concurrent writers over real HTTP, two server processes: no lost update, If-Match exact."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from app.config import Settings
from tests.helpers import JSON_HEADERS, patient
from tests.live_server import live_server

WRITERS = 12


@pytest.fixture(scope="module")
def server(database_url: str) -> Iterator[str]:
    with live_server(database_url, workers=2, FHIR_MIGRATE_ON_START="false") as base:
        yield base


@pytest.fixture
def http(server: str, settings: Settings) -> Iterator[httpx.Client]:
    # `settings` empties the database before each test
    with httpx.Client(base_url=server, timeout=30) as client:
        yield client


def _parallel(count: int, work) -> list:  # type: ignore[no-untyped-def]
    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(work, range(count)))


def test_parallel_if_match_updates_let_exactly_one_through(http: httpx.Client, server: str) -> None:
    created = http.post("/fhir/Patient", json=patient(), headers=JSON_HEADERS).json()
    url = f"/fhir/Patient/{created['id']}"

    def attempt(i: int) -> int:
        with httpx.Client(base_url=server, timeout=30) as own:
            body = {**created, "name": [{"family": f"writer-{i}"}]}
            return own.put(
                url, json=body, headers={**JSON_HEADERS, "If-Match": 'W/"1"'}
            ).status_code

    statuses = _parallel(WRITERS, attempt)
    assert sorted(statuses) == [200] + [412] * (WRITERS - 1)
    assert http.get(url).json()["meta"]["versionId"] == "2"


def test_parallel_updates_lose_no_version(http: httpx.Client, server: str) -> None:
    created = http.post("/fhir/Patient", json=patient(), headers=JSON_HEADERS).json()
    url = f"/fhir/Patient/{created['id']}"

    def update(i: int) -> int:
        with httpx.Client(base_url=server, timeout=30) as own:
            body = {**created, "name": [{"family": f"writer-{i}"}]}
            return own.put(url, json=body, headers=JSON_HEADERS).status_code

    assert _parallel(WRITERS, update) == [200] * WRITERS
    history = http.get(f"{url}/_history", params={"_count": "100"}).json()
    versions = [int(e["response"]["etag"][3:-1]) for e in history["entry"]]
    assert versions == list(range(WRITERS + 1, 0, -1))
    families = sorted(e["resource"]["name"][0]["family"] for e in history["entry"][:-1])
    assert families == sorted(f"writer-{i}" for i in range(WRITERS))


def test_optimistic_read_modify_write_loses_no_increment(http: httpx.Client, server: str) -> None:
    created = http.post("/fhir/Patient", json=patient(), headers=JSON_HEADERS).json()
    url = f"/fhir/Patient/{created['id']}"
    increments = 4

    def worker(_: int) -> int:
        retries = 0
        with httpx.Client(base_url=server, timeout=30) as own:
            for _ in range(increments):
                while True:
                    current = own.get(url)
                    resource = current.json()
                    count = int(resource.get("multipleBirthInteger", 0))
                    resource["multipleBirthInteger"] = count + 1
                    response = own.put(
                        url,
                        json=resource,
                        headers={**JSON_HEADERS, "If-Match": current.headers["etag"]},
                    )
                    if response.status_code == 200:
                        break
                    assert response.status_code == 412, response.text
                    retries += 1
        return retries

    _parallel(6, worker)
    final = http.get(url).json()
    assert final["multipleBirthInteger"] == 6 * increments
    assert final["meta"]["versionId"] == str(6 * increments + 1)


def test_parallel_update_as_create_of_one_id_makes_one_resource(
    http: httpx.Client, server: str
) -> None:
    def put(i: int) -> int:
        with httpx.Client(base_url=server, timeout=30) as own:
            body = patient(f"w{i}", id="same-new-id")
            return own.put("/fhir/Patient/same-new-id", json=body, headers=JSON_HEADERS).status_code

    statuses = _parallel(WRITERS, put)
    assert statuses.count(201) == 1
    assert statuses.count(200) == WRITERS - 1
    history = http.get("/fhir/Patient/same-new-id/_history", params={"_count": "100"}).json()
    assert history["total"] == WRITERS
