"""Transaction and batch Bundles (http.html#transaction) on both databases: an infusion visit
posted as one transaction, atomicity counted by type, urn: and conditional references rewritten,
conditional creates inside Bundles, batch entries failing alone, and the entry limit."""

from __future__ import annotations

import base64
import json
from collections import Counter
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from app.config import Settings
from app.main import create_app
from tests.asgi_client import asgi_client
from tests.helpers import JSON_HEADERS, assert_outcome, ketamine_administration, pain_observation

HOSPITAL = "http://hospital.example/mrn"
PATIENT_URN = "urn:uuid:6a2d0e52-6b1f-4f1e-9c7b-2d7a4b1e0f01"
XHTML = "http://www.w3.org/1999/xhtml"
ENCOUNTER_URN = "urn:uuid:6a2d0e52-6b1f-4f1e-9c7b-2d7a4b1e0f02"


def _visit(mrn: str = "123", pain_before: int = 8, pain_after: int = 3) -> dict[str, Any]:
    """One infusion visit as an EHR sends it: patient (if new), encounter, dose, pain scores."""
    patient = {
        "resourceType": "Patient",
        "identifier": [
            {"system": HOSPITAL, "value": mrn},
            {"system": "urn:ietf:rfc:3986", "value": PATIENT_URN},  # an identifier, not a link
        ],
        "name": [{"family": "Doe", "given": ["Jane"]}],
        "text": {
            "status": "generated",
            "div": f'<div xmlns="{XHTML}"><a href="{PATIENT_URN}">Jane</a></div>',
        },
    }
    encounter = {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": PATIENT_URN},
    }
    dose = ketamine_administration(428, PATIENT_URN)
    dose["context"] = {"reference": ENCOUNTER_URN}
    dose["extension"] = [
        {"url": "http://example.org/fhir/StructureDefinition/visit", "valueUri": ENCOUNTER_URN}
    ]
    before = pain_observation(pain_before, PATIENT_URN)
    before["encounter"] = {"reference": ENCOUNTER_URN}
    after = pain_observation(pain_after, PATIENT_URN)
    after["contained"] = [
        {
            "resourceType": "Provenance",
            "id": "p",
            "target": [{"reference": ENCOUNTER_URN}],
            "recorded": "2016-08-22T10:00:00Z",
            "agent": [{"who": {"reference": PATIENT_URN}}],
        }
    ]
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": PATIENT_URN,
                "resource": patient,
                "request": {
                    "method": "POST",
                    "url": "Patient",
                    "ifNoneExist": f"identifier={HOSPITAL}|{mrn}",
                },
            },
            {
                "fullUrl": ENCOUNTER_URN,
                "resource": encounter,
                "request": {"method": "POST", "url": "Encounter"},
            },
            {"resource": dose, "request": {"method": "POST", "url": "MedicationAdministration"}},
            {"resource": before, "request": {"method": "POST", "url": "Observation"}},
            {"resource": after, "request": {"method": "POST", "url": "Observation"}},
        ],
    }


def _counts(settings: Settings) -> Counter[str]:
    from sqlalchemy import create_engine

    url = settings.database_url.replace("postgresql://", "postgresql+psycopg://")
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT resource_type, count(*) FROM resource GROUP BY resource_type")
            ).all()
            versions = conn.execute(text("SELECT count(*) FROM resource_version")).scalar_one()
            tokens = conn.execute(text("SELECT count(*) FROM search_token")).scalar_one()
    finally:
        engine.dispose()
    counts: Counter[str] = Counter(dict(rows))
    counts["(versions)"] = versions
    counts["(token rows)"] = tokens
    return counts


def _post(client: httpx.Client, bundle: dict[str, Any], **headers: str) -> httpx.Response:
    return client.post("/fhir", json=bundle, headers={**JSON_HEADERS, **headers})


def test_a_visit_is_stored_whole_with_every_link_rewritten(client: httpx.Client) -> None:
    response = _post(client, _visit())
    assert response.status_code == 200, response.text
    bundle = response.json()
    assert bundle["type"] == "transaction-response"
    statuses = [e["response"]["status"] for e in bundle["entry"]]
    assert statuses == ["201 Created"] * 5
    for entry in bundle["entry"]:
        assert entry["response"]["location"].endswith("/_history/1")
        assert entry["response"]["etag"] == 'W/"1"'
        assert entry["response"]["lastModified"]
    patient_id = bundle["entry"][0]["resource"]["id"]
    encounter_id = bundle["entry"][1]["resource"]["id"]
    everything = json.dumps([e["resource"] for e in bundle["entry"][1:]])
    assert "urn:uuid" not in everything
    assert bundle["entry"][0]["resource"]["identifier"][1]["value"] == PATIENT_URN
    dose = bundle["entry"][2]["resource"]
    assert dose["subject"] == {"reference": f"Patient/{patient_id}"}
    assert dose["context"] == {"reference": f"Encounter/{encounter_id}"}
    assert dose["extension"][0]["valueUri"] == f"Encounter/{encounter_id}"
    after = bundle["entry"][4]["resource"]
    assert after["contained"][0]["target"][0]["reference"] == f"Encounter/{encounter_id}"
    assert f'href="Patient/{patient_id}"' in bundle["entry"][0]["resource"]["text"]["div"]
    # stored as returned, and searchable by the rewritten reference
    found = client.get(f"/fhir/Observation?patient={patient_id}&code=72514-3").json()
    assert found["total"] == 2


def test_the_same_visit_sent_twice_makes_no_second_patient(client: httpx.Client) -> None:
    first = _post(client, _visit()).json()
    second = _post(client, _visit(pain_before=7)).json()
    assert second["entry"][0]["response"]["status"] == "200 OK"
    patient_id = first["entry"][0]["resource"]["id"]
    assert second["entry"][0]["resource"]["id"] == patient_id
    assert second["entry"][3]["resource"]["subject"]["reference"] == f"Patient/{patient_id}"
    assert client.get("/fhir/Patient").json()["total"] == 1
    assert client.get(f"/fhir/Observation?patient={patient_id}").json()["total"] == 4


@pytest.mark.parametrize(
    ("breakage", "status", "where"),
    [
        (lambda b: b["entry"][3]["resource"].update(status="bogus"), 422, "Bundle.entry[3]"),
        (lambda b: b["entry"][2]["request"].update(method="FETCH"), 400, "Bundle.entry[2]"),
        (
            lambda b: b["entry"][4]["resource"].update(subject={"reference": "urn:uuid:nope"}),
            404,
            "Bundle.entry[4]",
        ),
        (
            lambda b: b["entry"][1]["resource"].update(
                subject={"reference": "Patient?identifier=unknown|1"}
            ),
            400,
            "Bundle.entry[1]",
        ),
        (
            lambda b: (
                b["entry"].append({"request": {"method": "DELETE", "url": "Patient/missing"}})
                or b["entry"].append(
                    {
                        "resource": {"resourceType": "Patient", "id": "x"},
                        "request": {"method": "PUT", "url": "Patient/x"},
                    }
                )
                or b["entry"].append(
                    {
                        "resource": {"resourceType": "Patient", "id": "x"},
                        "request": {"method": "PUT", "url": "Patient/x"},
                    }
                )
            ),
            400,
            "Bundle.entry[7]",
        ),
        (
            lambda b: b["entry"][4].update(
                request={"method": "PUT", "url": "Observation/o1", "ifMatch": 'W/"4"'}
            ),
            412,
            "Bundle.entry[4]",
        ),
    ],
)
def test_one_bad_entry_leaves_the_database_exactly_as_it_was(
    client: httpx.Client, settings: Settings, breakage: Any, status: int, where: str
) -> None:
    _post(client, _visit(mrn="999"))  # something already there
    before = _counts(settings)
    bundle = _visit()
    bundle["entry"][4]["resource"]["id"] = "o1"
    breakage(bundle)
    response = _post(client, bundle)
    assert response.status_code == status, response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert any(e.startswith(where) for e in outcome["issue"][0]["expression"]), outcome
    assert where[13:-1] in outcome["issue"][0]["diagnostics"]  # the entry number
    assert _counts(settings) == before


def test_conditional_references_resolve_to_the_one_match(client: httpx.Client) -> None:
    created = _post(client, _visit(mrn="555")).json()
    patient_id = created["entry"][0]["resource"]["id"]
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": pain_observation(2, f"Patient?identifier={HOSPITAL}|555"),
                "request": {"method": "POST", "url": "Observation"},
            }
        ],
    }
    response = _post(client, bundle)
    assert response.status_code == 200, response.text
    stored = response.json()["entry"][0]["resource"]
    assert stored["subject"]["reference"] == f"Patient/{patient_id}"
    # two matches: an error naming the entry
    _post(client, _visit(mrn="556"))
    bundle["entry"][0]["resource"]["subject"]["reference"] = "Patient?family=doe"
    response = _post(client, bundle)
    outcome = assert_outcome(response, 400, "invalid", "Bundle.entry[0].resource.subject.reference")
    assert "several resources" in outcome["issue"][0]["diagnostics"]


def test_processing_order_and_the_other_interactions(client: httpx.Client) -> None:
    client.put(
        "/fhir/Patient/gone",
        json={"resourceType": "Patient", "id": "gone"},
        headers=JSON_HEADERS,
    )
    client.put(
        "/fhir/Patient/kept",
        json={"resourceType": "Patient", "id": "kept", "gender": "male"},
        headers=JSON_HEADERS,
    )
    patch = [{"op": "replace", "path": "/gender", "value": "female"}]
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            # reads come last whatever their place: this one sees the PUT below
            {"request": {"method": "GET", "url": "Patient/upserted"}},
            {"request": {"method": "GET", "url": "Patient?_id=gone"}},
            {
                "resource": {"resourceType": "Patient", "id": "upserted", "gender": "other"},
                "request": {"method": "PUT", "url": "Patient/upserted"},
            },
            {"request": {"method": "DELETE", "url": "Patient/gone"}},
            {
                "resource": {
                    "resourceType": "Binary",
                    "contentType": "application/json-patch+json",
                    "data": base64.b64encode(json.dumps(patch).encode()).decode(),
                },
                "request": {"method": "PATCH", "url": "Patient/kept"},
            },
        ],
    }
    response = _post(client, bundle)
    assert response.status_code == 200, response.text
    entries = response.json()["entry"]
    assert [e["response"]["status"] for e in entries] == [
        "200 OK",
        "200 OK",
        "201 Created",
        "204 No Content",
        "200 OK",
    ]
    assert entries[0]["resource"]["gender"] == "other"
    assert entries[1]["resource"]["total"] == 0
    assert entries[4]["resource"]["gender"] == "female"
    assert client.get("/fhir/Patient/gone").status_code == 410


def test_prefer_minimal_leaves_resources_out(client: httpx.Client) -> None:
    response = _post(client, _visit(), Prefer="return=minimal")
    assert response.status_code == 200
    for entry in response.json()["entry"]:
        assert "resource" not in entry
        assert entry["response"]["location"]


def test_batch_entries_succeed_and_fail_on_their_own(client: httpx.Client) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {
                "resource": pain_observation(5),
                "request": {"method": "POST", "url": "Observation"},
            },
            {
                "resource": {**pain_observation(5), "status": "bogus"},
                "request": {"method": "POST", "url": "Observation"},
            },
            {"request": {"method": "GET", "url": "Patient/nobody"}},
            {"request": {"method": "FETCH", "url": "Patient"}},
            {
                "resource": {"resourceType": "Patient", "id": "b1"},
                "request": {"method": "PUT", "url": "Patient/b1"},
            },
            {"request": {"method": "GET", "url": "Observation?code=72514-3"}},
        ],
    }
    response = _post(client, bundle)
    assert response.status_code == 200, response.text
    entries = response.json()["entry"]
    assert response.json()["type"] == "batch-response"
    assert [e["response"]["status"][:3] for e in entries] == [
        "201",
        "422",
        "404",
        "400",
        "201",
        "200",
    ]
    for failed in (entries[1], entries[2], entries[3]):
        assert failed["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert entries[5]["resource"]["total"] == 1
    assert client.get("/fhir/Patient/b1").status_code == 200


@pytest.mark.parametrize(
    ("body", "status", "text_"),
    [
        ({"resourceType": "Patient"}, 400, "transaction or batch"),
        ({"resourceType": "Bundle", "type": "collection"}, 400, "python -m app load"),
        (
            {"resourceType": "Bundle", "type": "transaction", "entry": [{"fullUrl": "urn:x"}]},
            400,
            "no request",
        ),
        (
            {
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [{"request": {"method": "POST", "url": "Patient"}}],
            },
            400,
            "needs a resource",
        ),
        (
            {
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [
                    {
                        "resource": {"resourceType": "Patient"},
                        "request": {"method": "POST", "url": "Observation"},
                    }
                ],
            },
            400,
            "its url names Observation",
        ),
        (
            {
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [{"request": {"method": "GET", "url": "http://elsewhere.org/Patient"}}],
            },
            400,
            "not on this server",
        ),
    ],
)
def test_bad_bundles_are_refused_clearly(
    client: httpx.Client, body: dict[str, Any], status: int, text_: str
) -> None:
    outcome = assert_outcome(_post(client, body), status)
    assert text_ in outcome["issue"][0]["diagnostics"]


def test_too_many_entries_is_413(settings: Settings) -> None:
    small = settings.model_copy(update={"max_bundle_entries": 3})
    with asgi_client(create_app(small)) as client:
        response = _post(client, _visit())
        outcome = assert_outcome(response, 413, None, "Bundle.entry")
        assert "at most 3" in outcome["issue"][0]["diagnostics"]
        assert client.get("/fhir/Patient").json()["total"] == 0
