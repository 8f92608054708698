"""SMART v2 filtered scopes (`user/Observation.rs?category=...|laboratory`): the token reaches
only resources matching the filter's search, on every path, on both databases. Outside the
filter a resource is 404 to reads and writes and absent from searches, includes and
$everything; what a write stores must match (403, nothing written); paths that would read
past the filter ($pain-response, type history, $export) are refused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from tests.helpers import assert_outcome, pain_observation
from tests.helpers import patient as patient_resource
from tests.security.test_auth_api import Call, _as, _state, secured_server

CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
LAB = f"{CATEGORY}|laboratory"


def _observation(id_: str, category: str, subject: str = "Patient/p1") -> dict[str, Any]:
    return {
        **pain_observation(subject=subject),
        "id": id_,
        "category": [{"coding": [{"system": CATEGORY, "code": category}]}],
    }


DATA = [
    {**patient_resource("Doe"), "id": "p1"},
    {**patient_resource("Roe"), "id": "p2"},
    _observation("lab1", "laboratory"),
    _observation("vital1", "vital-signs"),
    _observation("survey1", "survey"),
    _observation("lab2", "laboratory", "Patient/p2"),
]


@pytest.fixture
def server(
    database_url: str, admin_engines: dict[str, Engine], tmp_path: Path
) -> Iterator[httpx.Client]:
    with secured_server(database_url, admin_engines, tmp_path, DATA) as client:
        yield client


def _ids(response: httpx.Response, mode: str = "match") -> list[str]:
    assert response.status_code == 200, response.text
    return sorted(
        f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in response.json().get("entry", [])
        if e.get("search", {}).get("mode", "match") == mode
    )


def test_reads_and_searches_see_only_what_the_filter_matches(server: httpx.Client) -> None:
    lab = _as(server, f"user/Observation.rs?category={LAB} user/Patient.rs")
    assert lab("GET", "/fhir/Observation/lab1").status_code == 200
    for other in ("vital1", "survey1"):
        assert_outcome(lab("GET", f"/fhir/Observation/{other}"), 404, "not-found")
        assert_outcome(lab("GET", f"/fhir/Observation/{other}/_history/1"), 404, "not-found")
        assert_outcome(lab("GET", f"/fhir/Observation/{other}/_history"), 404, "not-found")
    assert lab("GET", "/fhir/Observation/lab1/_history").status_code == 200
    assert _ids(lab("GET", "/fhir/Observation")) == ["Observation/lab1", "Observation/lab2"]
    assert _ids(lab("GET", "/fhir/Observation?subject=Patient/p1")) == ["Observation/lab1"]
    assert _ids(lab("GET", "/fhir/Observation?category=vital-signs")) == []
    assert _ids(lab("POST", "/fhir/Observation/_search", "code=72514-3")) == [
        "Observation/lab1",
        "Observation/lab2",
    ]
    revincluded = lab("GET", "/fhir/Patient?_id=p1&_revinclude=Observation:subject")
    assert _ids(revincluded, "include") == ["Observation/lab1"]
    # _has reaches Observations: only those the filter matches can be tested
    assert _ids(lab("GET", "/fhir/Patient?_has:Observation:subject:category=vital-signs")) == []
    assert _ids(lab("GET", "/fhir/Patient?_has:Observation:subject:code=72514-3")) == [
        "Patient/p1",
        "Patient/p2",
    ]
    assert _ids(lab("GET", "/fhir/Patient?_has:Observation:subject:_id=vital1")) == []
    everything = _ids(lab("GET", "/fhir/Patient/p1/$everything"))
    assert everything == ["Observation/lab1", "Patient/p1"]
    lastn = lab("GET", "/fhir/Observation/$lastn?patient=p1&max=9")
    assert _ids(lastn) == ["Observation/lab1"]


def test_filters_of_one_parameter_combine(server: httpx.Client) -> None:
    both = _as(
        server,
        f"user/Observation.rs?category={LAB} user/Observation.rs?category={CATEGORY}|survey",
    )
    assert _ids(both("GET", "/fhir/Observation?subject=Patient/p1")) == [
        "Observation/lab1",
        "Observation/survey1",
    ]
    mixed = _as(server, f"user/Observation.rs?category={LAB} user/Observation.rs?status=final")
    assert_outcome(mixed("GET", "/fhir/Observation"), 403, "forbidden")
    unknown = _as(server, "user/Observation.rs?colour=blue")
    assert_outcome(unknown("GET", "/fhir/Observation"), 403, "forbidden")


def test_filters_and_the_compartment_bound_together(server: httpx.Client) -> None:
    mine = _as(server, f"patient/Observation.rs?category={LAB} patient/Patient.r", patient="p1")
    assert _ids(mine("GET", "/fhir/Observation")) == ["Observation/lab1"]
    assert_outcome(mine("GET", "/fhir/Observation/lab2"), 404, "not-found")
    assert_outcome(mine("GET", "/fhir/Observation/vital1"), 404, "not-found")


def test_what_would_read_past_the_filter_is_refused(server: httpx.Client) -> None:
    lab = _as(server, f"user/Observation.rs?category={LAB} user/*.rs")
    assert lab("GET", "/fhir/Observation/vital1").status_code == 200  # user/*.rs lifts it
    only = _as(
        server,
        f"user/Observation.rs?category={LAB} user/Patient.rs user/MedicationAdministration.rs "
        "user/Medication.rs",
    )
    for path in ("/fhir/Observation/_history", "/fhir/Patient/p1/$pain-response"):
        assert_outcome(only("GET", path), 403, "forbidden")
    kick_off = only("GET", "/fhir/$export?_type=Observation", Prefer="respond-async")
    assert_outcome(kick_off, 403, "forbidden")
    # a search of several types, one of them filtered: each type on its own
    assert_outcome(only("GET", "/fhir?_type=Patient,Observation"), 403, "forbidden")


def test_writes_stay_inside_the_filter(server: httpx.Client) -> None:
    writer: Call = _as(server, f"user/Observation.cruds?category={LAB}")
    before = _state(server)
    assert_outcome(
        writer("POST", "/fhir/Observation", _observation("x", "vital-signs")), 403, "forbidden"
    )
    assert_outcome(
        writer("PUT", "/fhir/Observation/lab1", _observation("lab1", "vital-signs")),
        403,
        "forbidden",
    )
    assert_outcome(
        writer("PUT", "/fhir/Observation/vital1", _observation("vital1", "laboratory")), 404
    )
    status = [{"op": "replace", "path": "/status", "value": "amended"}]
    assert_outcome(writer("PATCH", "/fhir/Observation/survey1", status), 404, "not-found")
    assert_outcome(writer("DELETE", "/fhir/Observation/vital1"), 404, "not-found")
    transaction = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": _observation("new-lab", "laboratory"),
                "request": {"method": "PUT", "url": "Observation/new-lab"},
            },
            {
                "resource": _observation("new-vital", "vital-signs"),
                "request": {"method": "PUT", "url": "Observation/new-vital"},
            },
        ],
    }
    assert_outcome(writer("POST", "/fhir", transaction), 403, "forbidden")
    assert _state(server) == before  # nothing of the refused writes is stored
    created = writer("POST", "/fhir/Observation", _observation("x", "laboratory"))
    assert created.status_code == 201, created.text
    assert writer("PATCH", "/fhir/Observation/lab1", status).status_code == 200
    deleted = writer("DELETE", "/fhir/Observation?subject=Patient/p1")
    assert deleted.status_code in (204, 412), deleted.text  # lab1 and x match; vital1 does not
    admin = _as(server, "system/*.*")
    for kept in ("vital1", "survey1", "lab2"):
        assert admin("GET", f"/fhir/Observation/{kept}").status_code == 200
