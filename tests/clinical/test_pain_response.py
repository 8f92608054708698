"""Patient/$pain-response on the shipped case, on both databases: every value CASE.md C.1-C.5
gives for this case, the parameters, and bad input."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from app.case.load import load_case
from app.clinical.pain import RXNORM
from app.config import Settings
from app.fhir.service import ResourceService
from app.main import create_app
from app.storage.engine import make_engine
from app.storage.sql_store import SqlStore
from tests.asgi_client import asgi_client
from tests.conftest import empty_database
from tests.helpers import JSON_HEADERS, assert_outcome


@pytest.fixture(scope="module")
def case(database_url: str, admin_engines: dict[str, Engine]) -> Iterator[tuple[httpx.Client, str]]:
    empty_database(database_url, admin_engines)
    settings = Settings(DATABASE_URL=database_url, FHIR_MIGRATE_ON_START=False)
    engine = make_engine(settings)
    try:
        patient_id, loaded = load_case(ResourceService(SqlStore(engine)))
        assert loaded
        assert load_case(ResourceService(SqlStore(engine))) == (patient_id, False)  # once
    finally:
        engine.dispose()
    with asgi_client(create_app(settings)) as client:
        yield client, patient_id


def _parts(parameters: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [p for p in parameters["parameter"] if p["name"] == name]


def _value(part: dict[str, Any]) -> Any:
    return next(v for k, v in part.items() if k.startswith("value"))


def _fields(group: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for part in group["part"]:
        value = _value(part) if "part" not in part else part
        out.setdefault(part["name"], []).append(value)
    return {k: v[0] if len(v) == 1 else v for k, v in out.items()}


def _response(client: httpx.Client, patient_id: str, query: str = "") -> dict[str, Any]:
    response = client.get(f"/fhir/Patient/{patient_id}/$pain-response{query}")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["resourceType"] == "Parameters"
    return dict(body)


def test_the_case_reproduces_the_paper(case: tuple[httpx.Client, str]) -> None:
    client, patient_id = case
    result = _response(client, patient_id)
    baseline = _fields(_parts(result, "baseline")[0])
    assert baseline["date"] == "2016-01-27"
    assert (baseline["low"], baseline["high"]) == (10, 10)
    assert baseline["daysBeforeFirstDose"] == 208
    assert _parts(result, "baselineStatus") == []
    points = [_fields(p) for p in _parts(result, "point")]
    assert [p["date"] for p in points] == [
        "2016-01-27",
        "2016-08-22",
        "2016-08-31",
        "2016-09-21",
        "2016-12-21",
        "2017-03-22",
    ]
    assert [(p["low"], p["high"]) for p in points] == [
        (10, 10),
        (6, 6),
        (0, 1),
        (4, 4),
        (3, 4),
        (2, 2),
    ]
    assert [p["derived"] for p in points] == [False, False, False, True, True, False]
    assert [p["cumulativeKnownDoseMg"] for p in points] == [0, 428, 9581, 9581, 9581, 9581]
    assert [p["unknownDoseAdministrationsBefore"] for p in points] == [0, 0, 0, 0, 2, 4]
    assert [(p["improvementLow"], p["improvementHigh"]) for p in points] == [
        (0, 0),
        (40, 40),
        (90, 100),
        (60, 60),
        (60, 70),
        (80, 80),
    ]
    assert [p["relapse"] for p in points] == [
        "not-applicable",
        "not-applicable",
        "not-applicable",
        "definite",
        "definite",
        "none",
    ]
    assert all("orderUndecidableWith" not in p for p in points)
    nadir = _fields(_parts(result, "nadir")[0])
    assert (nadir["date"], nadir["low"], nadir["high"]) == ("2016-08-31", 0, 1)
    courses = [_fields(c) for c in _parts(result, "course")]
    assert [(c["start"], c["end"], c["administrations"]) for c in courses] == [
        ("2016-08-22", "2016-08-31", 10),
        ("2016-09-21", "2016-09-22", 2),
        ("2016-12-21", "2016-12-22", 2),
    ]
    protocol = courses[0]
    assert protocol["knownDoseMg"] == 9581
    assert protocol["escalationSteps"] == [2, 4]
    doses = [_fields(d)["doseMg"] for d in protocol["doses"]]
    assert doses == [428, 856, 856] + [1063] * 7
    assert protocol["relapseTriggered"] is False
    for booster in courses[1:]:
        assert booster["unknownDoseAdministrations"] == 2
        assert booster["knownDoseMg"] == 0
        assert all(_fields(d)["doseUnknown"] is True for d in booster["doses"])
        assert booster["relapseTriggered"] is True
        assert booster["procedure"]["reference"].startswith("Procedure/")
    scalars = {p["name"]: _value(p) for p in result["parameter"] if "part" not in p}
    assert scalars["protocolTotalMg"] == 9581
    assert scalars["knownTotalMg"] == 9581
    assert scalars["totalIsLowerBound"] is True
    assert scalars["daysToFirstRelapse"] == 21


def test_threshold_40_makes_the_range_a_possible_relapse(case: tuple[httpx.Client, str]) -> None:
    client, patient_id = case
    points = [_fields(p) for p in _parts(_response(client, patient_id, "?threshold=40"), "point")]
    assert [p["relapse"] for p in points][3:] == ["definite", "possible", "none"]
    assert [(p["percentOfBaselineLow"], p["percentOfBaselineHigh"]) for p in points][3:] == [
        (40, 40),
        (30, 40),
        (20, 20),
    ]


def test_a_30_day_lookback_finds_no_baseline(case: tuple[httpx.Client, str]) -> None:
    client, patient_id = case
    result = _response(client, patient_id, "?baselineLookbackDays=30")
    assert _value(_parts(result, "baselineStatus")[0]) == "no-baseline"
    assert _parts(result, "baseline") == []
    for point in (_fields(p) for p in _parts(result, "point")):
        assert "improvementLow" not in point
        assert point["relapse"] == "not-applicable"


def test_post_with_parameters_answers_like_get(case: tuple[httpx.Client, str]) -> None:
    client, patient_id = case
    body = {"resourceType": "Parameters", "parameter": [{"name": "threshold", "valueDecimal": 40}]}
    response = client.post(
        f"/fhir/Patient/{patient_id}/$pain-response", json=body, headers=JSON_HEADERS
    )
    assert response.status_code == 200, response.text
    assert _parts(response.json(), "point") == _parts(
        _response(client, patient_id, "?threshold=40"), "point"
    )


def test_other_medications_and_esketamine_never_match(case: tuple[httpx.Client, str]) -> None:
    client, patient_id = case
    result = _response(
        client, patient_id, "?medication=http://www.nlm.nih.gov/research/umls/rxnorm|1544952"
    )
    assert _parts(result, "course") == []
    assert _value(_parts(result, "baselineStatus")[0]) == "no-baseline"


@pytest.mark.parametrize(
    ("query", "status", "expression"),
    [
        ("?threshold=0", 400, "threshold"),
        ("?threshold=101", 400, "threshold"),
        ("?threshold=abc", 400, "threshold"),
        ("?baselineLookbackDays=1.5", 400, "baselineLookbackDays"),
        ("?baselineLookbackDays=-1", 400, "baselineLookbackDays"),
        ("?medication=", 400, "medication"),
        ("?nope=1", 400, "nope"),
        ("?threshold=30&threshold=40", 400, "threshold"),
    ],
)
def test_bad_parameters(
    case: tuple[httpx.Client, str], query: str, status: int, expression: str
) -> None:
    client, patient_id = case
    response = client.get(f"/fhir/Patient/{patient_id}/$pain-response{query}")
    assert_outcome(response, status, None, expression)


def test_unknown_patient(case: tuple[httpx.Client, str]) -> None:
    client, _ = case
    assert_outcome(client.get("/fhir/Patient/nobody/$pain-response"), 404)


def test_a_deleted_medication_is_an_unknown_one_not_a_410(
    database_url: str, admin_engines: dict[str, Engine]
) -> None:
    empty_database(database_url, admin_engines)
    settings = Settings(DATABASE_URL=database_url, FHIR_MIGRATE_ON_START=False)
    with asgi_client(create_app(settings)) as client:
        for resource in (
            {"resourceType": "Patient", "id": "p"},
            {
                "resourceType": "Medication",
                "id": "ket",
                "code": {"coding": [{"system": RXNORM, "code": "6130"}]},
            },
            {
                "resourceType": "MedicationAdministration",
                "id": "dose",
                "status": "completed",
                "medicationReference": {"reference": "Medication/ket"},
                "subject": {"reference": "Patient/p"},
                "effectiveDateTime": "2020-01-02",
            },
        ):
            url = f"/fhir/{resource['resourceType']}/{resource['id']}"
            assert client.put(url, json=resource, headers=JSON_HEADERS).is_success
        assert _response(client, "p")["resourceType"] == "Parameters"
        assert client.delete("/fhir/Medication/ket").is_success
        assert _response(client, "p")["resourceType"] == "Parameters"
