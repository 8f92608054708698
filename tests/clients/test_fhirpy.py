"""fhirpy (the async client, AsyncFHIRClient on aiohttp) against the real server on each
database: create and read a pain score, the case's pain scores sorted by date, paging through
`next` links, a transaction."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from fhirpy import AsyncFHIRClient

from tests.clients.case_data import (
    PAIN_TOKEN,
    case_pain_scores,
    pages,
    score,
)
from tests.helpers import pain_observation


def test_create_and_read_a_pain_score(fhir_base: str, case_patient: str) -> None:
    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        client = AsyncFHIRClient(fhir_base)
        patient = await client.reference("Patient", case_patient).to_resource()
        sent = pain_observation(3, f"Patient/{case_patient}", effectiveDateTime="2017-04-19")
        observation = client.resource(
            "Observation",
            status=sent["status"],
            category=sent["category"],
            code=sent["code"],
            subject=patient.to_reference(),
            effectiveDateTime=sent["effectiveDateTime"],
            valueQuantity=sent["valueQuantity"],
        )
        await observation.save()  # POST Observation; the server's representation replaces it
        assert observation.id
        assert observation["meta"]["versionId"] == "1"
        read = await client.reference("Observation", observation.id).to_resource()
        return sent, json.loads(json.dumps(read))  # plain JSON: references are objects

    sent, read = asyncio.run(scenario())
    assert read["meta"]["versionId"] == "1"
    assert {k: v for k, v in read.items() if k not in ("id", "meta")} == sent


def test_search_pain_scores_sorted_by_date(fhir_base: str, case_patient: str) -> None:
    async def scenario() -> tuple[list[Any], list[Any], int]:
        client = AsyncFHIRClient(fhir_base)
        search = client.resources("Observation").search(patient=case_patient, code=PAIN_TOKEN)
        newest_first = await search.sort("-date").fetch()
        oldest_first = await search.sort("date").fetch()
        return newest_first, oldest_first, await search.count()

    newest_first, oldest_first, count = asyncio.run(scenario())
    expected = case_pain_scores()
    assert len(expected) == 6
    assert [score(r) for r in oldest_first] == expected
    assert [score(r) for r in newest_first] == expected[::-1]
    assert count == len(expected)
    assert {r["subject"]["reference"] for r in oldest_first} == {f"Patient/{case_patient}"}


def test_page_through_pain_scores(fhir_base: str, case_patient: str) -> None:
    async def scenario() -> tuple[Any, list[Any]]:
        client = AsyncFHIRClient(fhir_base)
        search = (
            client.resources("Observation")
            .search(patient=case_patient, code=PAIN_TOKEN)
            .sort("-date")
            .limit(2)
        )
        first_page = await search.fetch_raw()
        return first_page, await search.fetch_all()  # follows Bundle.link "next" to the end

    first_page, everything = asyncio.run(scenario())
    expected = case_pain_scores()[::-1]
    assert len(first_page["entry"]) == pages(len(expected), 2)[0]
    assert any(link["relation"] == "next" for link in first_page["link"])
    assert [score(r) for r in everything] == expected
    assert len({r["id"] for r in everything}) == len(expected)


def test_transaction_rewrites_urn_references(fhir_base: str, case_patient: str) -> None:
    patient_urn = f"urn:uuid:{uuid.uuid4()}"
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": patient_urn,
                "resource": {"resourceType": "Patient", "gender": "female"},
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "resource": pain_observation(7, patient_urn, effectiveDateTime="2017-05-02"),
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }

    async def scenario() -> tuple[Any, list[Any]]:
        client = AsyncFHIRClient(fhir_base)
        # fhirpy has no transaction API: execute() POSTs the Bundle to the base URL
        response = await client.execute("/", method="post", data=bundle)
        patient_id = response["entry"][0]["resource"]["id"]
        stored = (
            await client.resources("Observation")
            .search(patient=patient_id, code=PAIN_TOKEN)
            .fetch()
        )
        return response, stored

    response, stored = asyncio.run(scenario())
    assert response["type"] == "transaction-response"
    statuses = [entry["response"]["status"] for entry in response["entry"]]
    assert [status.split()[0] for status in statuses] == ["201", "201"]
    for entry in response["entry"]:
        resource = entry["resource"]
        assert entry["response"]["location"] == (
            f"{resource['resourceType']}/{resource['id']}/_history/1"
        )
    patient, observation = (entry["resource"] for entry in response["entry"])
    assert patient["id"] != case_patient
    assert observation["subject"] == {"reference": f"Patient/{patient['id']}"}
    assert [r["id"] for r in stored] == [observation["id"]]
    assert stored[0]["subject"]["reference"] == f"Patient/{patient['id']}"
    assert score(stored[0]) == score(bundle["entry"][1]["resource"])
