"""fhirclient (SMART on FHIR's Python client, its R4 models) against the real server on each
database: the CapabilityStatement, create and read a pain score, the case's pain scores sorted
by date, paging through `next` links, a transaction."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fhirclient import client
from fhirclient.models.bundle import Bundle
from fhirclient.models.codeableconcept import CodeableConcept
from fhirclient.models.fhirdatetime import FHIRDateTime
from fhirclient.models.fhirreference import FHIRReference
from fhirclient.models.observation import Observation
from fhirclient.models.quantity import Quantity
from fhirclient.server import FHIRServer

from tests.clients.case_data import (
    PAIN_TOKEN,
    case_pain_scores,
    pages,
    score,
)
from tests.helpers import pain_observation


@pytest.fixture
def smart(fhir_base: str) -> Iterator[client.FHIRClient]:
    smart = client.FHIRClient(settings={"app_id": "ketamine-fhir-tests", "api_base": fhir_base})
    yield smart
    smart.server.session.close()


def _server(smart: client.FHIRClient) -> FHIRServer:
    server: FHIRServer = smart.server
    return server


def test_capability_statement_reads_and_needs_no_authorization(smart: client.FHIRClient) -> None:
    # prepare() reads /metadata into the R4 CapabilityStatement model (strict: an element the
    # model does not know fails) and sets up authorization from rest[0].security: none here
    assert smart.prepare() is True
    capability = _server(smart).capabilityStatement
    assert capability.fhirVersion == "4.3.0"
    assert _server(smart).auth is not None
    assert _server(smart).auth.auth_type == "none"  # no OAuth2 endpoints announced: no token
    types = {resource.type for resource in capability.rest[0].resource}
    assert {"Observation", "Patient"} <= types


def test_create_and_read_a_pain_score(smart: client.FHIRClient, case_patient: str) -> None:
    sent = pain_observation(3, f"Patient/{case_patient}", effectiveDateTime="2017-04-19")
    observation = Observation()
    observation.status = "final"
    observation.category = [CodeableConcept(sent["category"][0])]
    observation.code = CodeableConcept(sent["code"])
    observation.subject = FHIRReference({"reference": f"Patient/{case_patient}"})
    observation.effectiveDateTime = FHIRDateTime("2017-04-19")
    observation.valueQuantity = Quantity(sent["valueQuantity"])
    assert observation.as_json() == sent

    created = observation.create(_server(smart))  # POST Observation; the JSON answered
    assert created is not None
    assert created["meta"]["versionId"] == "1"
    read = Observation.read(created["id"], _server(smart))
    assert read.meta.versionId == "1"
    assert read.subject.reference == f"Patient/{case_patient}"
    assert {k: v for k, v in read.as_json().items() if k not in ("id", "meta")} == sent


def test_search_pain_scores_sorted_by_date(smart: client.FHIRClient, case_patient: str) -> None:
    query: dict[str, Any] = {"patient": case_patient, "code": PAIN_TOKEN}
    newest_first = list(
        Observation.where({**query, "_sort": "-date"}).perform_resources_iter(_server(smart))
    )
    oldest_first = list(
        Observation.where({**query, "_sort": "date"}).perform_resources_iter(_server(smart))
    )
    expected = case_pain_scores()
    assert len(expected) == 6
    assert [score(r.as_json()) for r in oldest_first] == expected
    assert [score(r.as_json()) for r in newest_first] == expected[::-1]
    assert {r.subject.reference for r in oldest_first} == {f"Patient/{case_patient}"}


def test_page_through_pain_scores(smart: client.FHIRClient, case_patient: str) -> None:
    search = Observation.where(
        {"patient": case_patient, "code": PAIN_TOKEN, "_sort": "date", "_count": "2"}
    )
    bundles = list(search.perform_iter(_server(smart)))  # follows Bundle.link "next" to the end
    expected = case_pain_scores()
    assert [len(bundle.entry) for bundle in bundles] == pages(len(expected), 2)
    assert {bundle.total for bundle in bundles} <= {None, len(expected)}
    resources = [entry.resource for bundle in bundles for entry in bundle.entry]
    assert [score(r.as_json()) for r in resources] == expected
    assert len({r.id for r in resources}) == len(expected)


def test_transaction_rewrites_urn_references(smart: client.FHIRClient, case_patient: str) -> None:
    patient_urn = f"urn:uuid:{uuid.uuid4()}"
    sent_observation = pain_observation(7, patient_urn, effectiveDateTime="2017-05-02")
    transaction = Bundle(
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "fullUrl": patient_urn,
                    "resource": {"resourceType": "Patient", "gender": "female"},
                    "request": {"method": "POST", "url": "Patient"},
                },
                {
                    "resource": sent_observation,
                    "request": {"method": "POST", "url": "Observation"},
                },
            ],
        }
    )
    # fhirclient POSTs a transaction (or batch) Bundle to the base URL: Bundle.createPath()
    response = Bundle(transaction.create(_server(smart)))
    assert response.type == "transaction-response"
    assert [entry.response.status.split()[0] for entry in response.entry] == ["201", "201"]
    for entry in response.entry:
        assert entry.response.location == (
            f"{entry.resource.resource_type}/{entry.resource.id}/_history/1"
        )
    patient, observation = (entry.resource for entry in response.entry)
    assert patient.id != case_patient
    assert observation.subject.reference == f"Patient/{patient.id}"

    stored = Observation.read(observation.id, _server(smart))
    assert stored.subject.reference == f"Patient/{patient.id}"
    assert score(stored.as_json()) == score(sent_observation)
    found = Observation.where({"patient": patient.id}).perform_resources_iter(_server(smart))
    assert [r.id for r in found] == [observation.id]
