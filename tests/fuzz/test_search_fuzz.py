"""Fuzzing search: parameters from the R4B definitions of Observation, Patient, Condition,
MedicationAdministration and Encounter with each type's values (prefixes, units, systems,
composites with `$`), random and nonsense modifiers, chains several levels deep, `_has`,
`_include`/`_revinclude`, `_sort`, `_count`, `_summary`, `_elements`, commas and escaped
commas, sloppy percent-encoding, by GET, POST _search and across types. Never a 5xx; a 4xx is
an OperationOutcome; a 200 is a searchset Bundle.

The searches run against a small linked data set (a patient with her organization,
practitioner, encounter, observations, condition and administrations), so chains, includes
and sorting have something to walk. Budget and a longer campaign: see tests/fuzz/strategies.py
(FUZZ_EXAMPLES=2000 .venv/bin/python -m pytest -q -n 2 tests/fuzz).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from hypothesis import currently_in_test_context, event, example, given
from hypothesis import strategies as st
from sqlalchemy import Engine

from tests.conftest import loaded_client
from tests.fuzz.strategies import (
    Query,
    fuzz_settings,
    search_query,
    system_query,
    typed_query,
)
from tests.helpers import ketamine_administration, pain_observation, patient

UCUM = "http://unitsofmeasure.org"
DATA: list[dict[str, Any]] = [
    {"resourceType": "Organization", "id": "org1", "name": "Pain Clinic"},
    {
        "resourceType": "Practitioner",
        "id": "pr1",
        "name": [{"family": "Hanna", "given": ["M"]}],
    },
    patient(
        "Doe",
        id="p1",
        birthDate="1960-05-04",
        identifier=[{"system": "https://example.org/mrn", "value": "123"}],
        managingOrganization={"reference": "Organization/org1"},
        generalPractitioner=[{"reference": "Practitioner/pr1"}],
    ),
    patient("Ölmez", id="p2", gender="other", deceasedDateTime="2020-02-29T23:59:60Z"),
    {
        "resourceType": "Encounter",
        "id": "e1",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": "Patient/p1"},
        "period": {"start": "2016-08-22T09:00:00+02:00", "end": "2016-08-22T17:00:00+02:00"},
        "serviceProvider": {"reference": "Organization/org1"},
        "length": {"value": 8, "unit": "h", "system": UCUM, "code": "h"},
    },
    {**pain_observation(6), "id": "o1", "encounter": {"reference": "Encounter/e1"}},
    {**pain_observation(2, effectiveDateTime="2017-03-22T10:00:00-05:00"), "id": "o2"},
    {
        **pain_observation(subject="Patient/p2", effectiveDateTime="0001-01-01"),
        "id": "o3",
        "valueQuantity": {"value": 1063, "unit": "mg", "system": UCUM, "code": "mg"},
        "component": [
            {
                "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                "valueQuantity": {"value": 120, "unit": "mm[Hg]", "system": UCUM, "code": "mm[Hg]"},
            }
        ],
    },
    {
        "resourceType": "Observation",
        "id": "o4",
        "status": "final",
        "code": {"text": "liver panel"},
        "subject": {"reference": "Patient/p1"},
        "effectivePeriod": {"start": "9999-12-31T23:59:59-13:59"},
        "valueCodeableConcept": {
            "coding": [{"system": "http://snomed.info/sct", "code": "17621005"}]
        },
        "hasMember": [{"reference": "Observation/o1"}],
    },
    {
        "resourceType": "Condition",
        "id": "c1",
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": "active",
                }
            ]
        },
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "203082005"}]},
        "subject": {"reference": "Patient/p1"},
        "encounter": {"reference": "Encounter/e1"},
        "onsetAge": {"value": 40, "unit": "a", "system": UCUM, "code": "a"},
        "recordedDate": "2016-01-27",
    },
    {**ketamine_administration(428), "id": "m1", "context": {"reference": "Encounter/e1"}},
    {**ketamine_administration(9581, subject="Patient/p2"), "id": "m2"},
]


@pytest.fixture(scope="module")
def http(database_url: str, admin_engines: dict[str, Engine]) -> Iterator[httpx.Client]:
    with loaded_client(database_url, admin_engines, DATA) as client:
        yield client


def send(client: httpx.Client, query: Query) -> httpx.Response:
    path = f"/fhir/{query.resource_type}" if query.resource_type else "/fhir"
    headers = {"Prefer": "handling=strict"} if query.strict else {}
    if query.post and query.resource_type:
        body = query.raw if query.raw is not None else urlencode(query.params)
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        return client.post(f"{path}/_search", content=body.encode(), headers=headers)
    if query.raw is not None:
        return client.get(httpx.URL(path, query=query.raw.encode()), headers=headers)
    return client.get(path, params=list(query.params), headers=headers)


def check(query: Query, response: httpx.Response) -> None:
    """Never a 5xx; a 4xx is an OperationOutcome; a 200 a searchset Bundle of the type."""
    status = response.status_code
    assert status < 500, (status, response.text[:2000])
    if currently_in_test_context():  # the regression tests below call this outside @given
        event(f"{'POST' if query.post else 'GET'} {status}")  # --hypothesis-show-statistics
    body = response.json()
    if status >= 400:
        assert body["resourceType"] == "OperationOutcome", body
        issue = body["issue"][0]
        assert issue["severity"] in {"error", "fatal"}, body
        assert issue["code"], body
        return
    assert status == 200, (status, response.text[:2000])
    assert body["resourceType"] == "Bundle", body
    assert body["type"] == "searchset", body
    total = body.get("total")
    assert total is None or (isinstance(total, int) and total >= 0), body
    for entry in body.get("entry", []):
        mode = entry["search"]["mode"]
        assert mode in {"match", "include", "outcome"}, entry
        resource = entry["resource"]
        if mode == "outcome":
            assert resource["resourceType"] == "OperationOutcome", entry
        elif mode == "match" and query.resource_type:
            assert resource["resourceType"] == query.resource_type, entry


@fuzz_settings(80)
@given(query=search_query())
# hand-picked: several chain levels, nested _has, escaped commas, a composite, iterate
@example(
    query=Query(
        "Observation",
        (
            ("subject:Patient.organization.name", "pain"),
            ("patient.general-practitioner:Practitioner.name", "hanna,x\\,y"),
            ("_has:Observation:has-member:code", "72514-3"),
            ("_include:iterate", "Observation:has-member"),
            ("_revinclude", "Observation:has-member"),
            ("_sort", "-date,value-quantity,_id"),
        ),
    )
)
@example(
    query=Query(
        "Patient",
        (
            ("_has:Observation:patient:_has:Observation:has-member:code", "http://loinc.org|"),
            ("_has:Condition:subject:onset-age", "ge39|http://unitsofmeasure.org|a"),
            ("birthdate", "sa1960-05,eb1960-05-04T00:00:00+14:00"),
            ("_summary", "count"),
        ),
    )
)
@example(
    query=Query(
        "Observation",
        (
            ("code-value-quantity", "http://loinc.org|72514-3$ge5.50"),
            ("component-code-value-quantity", "8480-6$lt1.2e2|http://unitsofmeasure.org|mm[Hg]"),
            ("combo-code-value-concept", "17621005$http://snomed.info/sct|17621005"),
            (
                "value-quantity",
                "ap1063|http://unitsofmeasure.org|mg,ne1.06|http://unitsofmeasure.org|g",
            ),
            ("date", "lt0002"),
            ("_elements", "status,valueQuantity"),
        ),
    )
)
def test_search_answers_bundle_or_outcome(http: httpx.Client, query: Query) -> None:
    check(query, send(http, query))


@pytest.mark.parametrize(
    "kind",
    ["string", "token", "reference", "date", "number", "quantity", "uri", "composite", "special"],
)
@fuzz_settings(10)
@given(data=st.data())
def test_each_parameter_type(http: httpx.Client, kind: str, data: st.DataObject) -> None:
    query = data.draw(typed_query(kind), label="query")
    check(query, send(http, query))


@fuzz_settings(15)
@given(query=system_query())
def test_search_across_types(http: httpx.Client, query: Query) -> None:
    check(query, send(http, query))


# -- bugs found here, fixed (issue 7): kept as regression tests, no longer xfail ---------------
@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/fhir/Location", "near:missing"),
        ("/fhir/Encounter", "location.near:missing"),
        ("/fhir/Location", "_has:Location:partof:near:missing"),
    ],
)
def test_missing_on_special_parameter_is_refused(http: httpx.Client, path: str, name: str) -> None:
    query = Query(path.removeprefix("/fhir/"), ((name, "true"),))
    response = send(http, query)
    check(query, response)


@pytest.mark.parametrize(
    ("resource_type", "name"),
    [
        ("Observation", "_lastUpdated"),
        (None, "_lastUpdated"),
        ("Patient", "_has:Observation:subject:_lastUpdated"),
    ],
)
def test_last_updated_ap_is_answered(
    http: httpx.Client, resource_type: str | None, name: str
) -> None:
    query = Query(resource_type, ((name, "ap2016"),))
    check(query, send(http, query))
