"""create, read, vread, update, patch and delete, per http.html, on both databases."""

from __future__ import annotations

import re

from httpx import Client

from tests.helpers import (
    JSON_HEADERS,
    assert_outcome,
    ketamine_administration,
    pain_observation,
    patient,
    without_server_fields,
)

INSTANT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def create(client: Client, resource: dict, **headers: str) -> dict:
    response = client.post(
        f"/fhir/{resource['resourceType']}", json=resource, headers={**JSON_HEADERS, **headers}
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_create_returns_201_with_location_etag_and_server_meta(client: Client) -> None:
    response = client.post("/fhir/Observation", json=pain_observation(), headers=JSON_HEADERS)
    assert response.status_code == 201
    body = response.json()
    assert body["meta"]["versionId"] == "1"
    assert INSTANT.match(body["meta"]["lastUpdated"])
    assert response.headers["location"] == (
        f"http://testserver/fhir/Observation/{body['id']}/_history/1"
    )
    assert response.headers["etag"] == 'W/"1"'
    assert response.headers["last-modified"].endswith(" GMT")
    assert response.headers["content-type"] == "application/fhir+json; charset=utf-8"
    assert without_server_fields(body) == pain_observation()


def test_create_replaces_a_client_id_and_client_meta_versions(client: Client) -> None:
    sent = patient(
        id="chosen-by-client",
        meta={"versionId": "99", "lastUpdated": "2001-01-01T00:00:00Z", "tag": [{"code": "kept"}]},
    )
    body = create(client, sent)
    assert body["id"] != "chosen-by-client"
    assert body["meta"]["versionId"] == "1"
    assert body["meta"]["lastUpdated"] != "2001-01-01T00:00:00Z"
    assert body["meta"]["tag"] == [{"code": "kept"}]


def test_server_ids_are_unique_and_valid(client: Client) -> None:
    ids = {create(client, patient())["id"] for _ in range(20)}
    assert len(ids) == 20
    assert all(re.match(r"^[A-Za-z0-9\-.]{1,64}$", i) for i in ids)


def test_read_returns_the_stored_resource_with_etag(client: Client) -> None:
    created = create(client, ketamine_administration())
    response = client.get(f"/fhir/MedicationAdministration/{created['id']}")
    assert response.status_code == 200
    assert response.json() == created
    assert response.headers["etag"] == 'W/"1"'


def test_read_unknown_returns_404(client: Client) -> None:
    assert_outcome(client.get("/fhir/Patient/does-not-exist"), 404, "not-found")


def test_read_with_an_invalid_id_returns_400(client: Client) -> None:
    assert_outcome(client.get("/fhir/Patient/bad_id!"), 400, "invalid")


def test_unknown_resource_type_returns_404(client: Client) -> None:
    assert_outcome(client.get("/fhir/Unicorn/1"), 404, "not-supported")
    assert_outcome(
        client.post("/fhir/Unicorn", json={"resourceType": "Unicorn"}, headers=JSON_HEADERS),
        404,
        "not-supported",
    )


def test_update_creates_a_new_version(client: Client) -> None:
    created = create(client, patient("Before"))
    changed = {**created, "name": [{"family": "After"}]}
    response = client.put(f"/fhir/Patient/{created['id']}", json=changed, headers=JSON_HEADERS)
    assert response.status_code == 200
    body = response.json()
    assert body["meta"]["versionId"] == "2"
    assert body["meta"]["lastUpdated"] > created["meta"]["lastUpdated"]
    assert response.headers["etag"] == 'W/"2"'
    assert response.headers["location"].endswith(f"/Patient/{created['id']}/_history/2")
    assert client.get(f"/fhir/Patient/{created['id']}").json()["name"][0]["family"] == "After"


def test_update_as_create_with_client_id_returns_201(client: Client) -> None:
    response = client.put(
        "/fhir/Patient/case-patient", json=patient(id="case-patient"), headers=JSON_HEADERS
    )
    assert response.status_code == 201
    assert response.json()["id"] == "case-patient"
    assert response.json()["meta"]["versionId"] == "1"
    assert client.get("/fhir/Patient/case-patient").status_code == 200


def test_update_with_mismatched_id_returns_400(client: Client) -> None:
    assert_outcome(
        client.put("/fhir/Patient/a", json=patient(id="b"), headers=JSON_HEADERS),
        400,
        "invalid",
        "Patient.id",
    )


def test_update_without_id_in_body_returns_400(client: Client) -> None:
    assert_outcome(
        client.put("/fhir/Patient/a", json=patient(), headers=JSON_HEADERS),
        400,
        "invalid",
        "Patient.id",
    )


def test_update_with_matching_if_match_succeeds(client: Client) -> None:
    created = create(client, patient())
    response = client.put(
        f"/fhir/Patient/{created['id']}",
        json=created,
        headers={**JSON_HEADERS, "If-Match": 'W/"1"'},
    )
    assert response.status_code == 200
    assert response.json()["meta"]["versionId"] == "2"


def test_update_with_stale_if_match_returns_412_and_writes_nothing(client: Client) -> None:
    created = create(client, patient())
    client.put(f"/fhir/Patient/{created['id']}", json=created, headers=JSON_HEADERS)
    response = client.put(
        f"/fhir/Patient/{created['id']}",
        json=created,
        headers={**JSON_HEADERS, "If-Match": 'W/"1"'},
    )
    assert_outcome(response, 412, "conflict")
    assert client.get(f"/fhir/Patient/{created['id']}").json()["meta"]["versionId"] == "2"


def test_malformed_if_match_returns_400(client: Client) -> None:
    created = create(client, patient())
    assert_outcome(
        client.put(
            f"/fhir/Patient/{created['id']}",
            json=created,
            headers={**JSON_HEADERS, "If-Match": "yesterday"},
        ),
        400,
    )


def test_vread_returns_each_version(client: Client) -> None:
    created = create(client, patient("One"))
    client.put(
        f"/fhir/Patient/{created['id']}",
        json={**created, "name": [{"family": "Two"}]},
        headers=JSON_HEADERS,
    )
    first = client.get(f"/fhir/Patient/{created['id']}/_history/1")
    second = client.get(f"/fhir/Patient/{created['id']}/_history/2")
    assert first.json()["name"][0]["family"] == "One"
    assert second.json()["name"][0]["family"] == "Two"
    assert first.headers["etag"] == 'W/"1"'
    assert_outcome(client.get(f"/fhir/Patient/{created['id']}/_history/3"), 404)
    assert_outcome(client.get(f"/fhir/Patient/{created['id']}/_history/x"), 404)


def test_delete_then_read_returns_410(client: Client) -> None:
    created = create(client, patient())
    response = client.delete(f"/fhir/Patient/{created['id']}")
    assert response.status_code == 204
    assert response.headers["etag"] == 'W/"2"'
    gone = client.get(f"/fhir/Patient/{created['id']}")
    assert_outcome(gone, 410, "deleted")
    assert gone.headers["etag"] == 'W/"2"'
    assert client.get(f"/fhir/Patient/{created['id']}/_history/1").status_code == 200
    assert_outcome(client.get(f"/fhir/Patient/{created['id']}/_history/2"), 410)


def test_delete_is_idempotent(client: Client) -> None:
    created = create(client, patient())
    assert client.delete(f"/fhir/Patient/{created['id']}").status_code == 204
    again = client.delete(f"/fhir/Patient/{created['id']}")
    assert again.status_code == 204
    history = client.get(f"/fhir/Patient/{created['id']}/_history").json()
    assert history["total"] == 2  # the second delete wrote no version


def test_delete_of_unknown_resource_returns_204(client: Client) -> None:
    assert client.delete("/fhir/Patient/never-existed").status_code == 204


def test_delete_with_stale_if_match_returns_412(client: Client) -> None:
    created = create(client, patient())
    assert_outcome(
        client.delete(f"/fhir/Patient/{created['id']}", headers={"If-Match": 'W/"7"'}), 412
    )
    assert client.get(f"/fhir/Patient/{created['id']}").status_code == 200


def test_update_after_delete_revives_the_resource(client: Client) -> None:
    created = create(client, patient())
    client.delete(f"/fhir/Patient/{created['id']}")
    response = client.put(f"/fhir/Patient/{created['id']}", json=created, headers=JSON_HEADERS)
    assert response.status_code == 201
    assert response.json()["meta"]["versionId"] == "3"


def test_patch_applies_json_patch_as_a_new_version(client: Client) -> None:
    created = create(client, pain_observation(6))
    response = client.patch(
        f"/fhir/Observation/{created['id']}",
        content=b'[{"op": "replace", "path": "/valueQuantity/value", "value": 4}]',
        headers={"Content-Type": "application/json-patch+json", "If-Match": 'W/"1"'},
    )
    assert response.status_code == 200, response.text
    assert response.json()["valueQuantity"]["value"] == 4
    assert response.json()["meta"]["versionId"] == "2"
    assert client.get(f"/fhir/Observation/{created['id']}").json()["valueQuantity"]["value"] == 4


def test_patch_result_is_validated_like_an_update(client: Client) -> None:
    created = create(client, pain_observation())
    response = client.patch(
        f"/fhir/Observation/{created['id']}",
        content=b'[{"op": "replace", "path": "/status", "value": "bogus"}]',
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert_outcome(response, 422, "code-invalid", "Observation.status")
    assert client.get(f"/fhir/Observation/{created['id']}").json()["status"] == "final"


def test_patch_that_cannot_apply_returns_422(client: Client) -> None:
    created = create(client, pain_observation())
    response = client.patch(
        f"/fhir/Observation/{created['id']}",
        content=b'[{"op": "test", "path": "/status", "value": "preliminary"}]',
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert_outcome(response, 422, "processing")


def test_patch_that_is_not_a_patch_document_returns_400(client: Client) -> None:
    created = create(client, pain_observation())
    response = client.patch(
        f"/fhir/Observation/{created['id']}",
        content=b'{"op": "add"}',
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert_outcome(response, 400)


def test_patch_with_wrong_media_type_returns_415(client: Client) -> None:
    created = create(client, pain_observation())
    response = client.patch(
        f"/fhir/Observation/{created['id']}",
        json=[],
        headers={"Content-Type": "application/fhir+json"},
    )
    assert_outcome(response, 415, "not-supported")


def test_patch_of_unknown_or_deleted_resource(client: Client) -> None:
    headers = {"Content-Type": "application/json-patch+json"}
    assert_outcome(client.patch("/fhir/Observation/nope", content=b"[]", headers=headers), 404)
    created = create(client, pain_observation())
    client.delete(f"/fhir/Observation/{created['id']}")
    assert_outcome(
        client.patch(f"/fhir/Observation/{created['id']}", content=b"[]", headers=headers), 410
    )


def test_patch_may_not_change_the_id(client: Client) -> None:
    created = create(client, pain_observation())
    response = client.patch(
        f"/fhir/Observation/{created['id']}",
        content=b'[{"op": "replace", "path": "/id", "value": "other"}]',
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert_outcome(response, 422)


def test_prefer_return_minimal_sends_no_body(client: Client) -> None:
    response = client.post(
        "/fhir/Patient", json=patient(), headers={**JSON_HEADERS, "Prefer": "return=minimal"}
    )
    assert response.status_code == 201
    assert response.content == b""
    assert response.headers["location"]
    assert response.headers["etag"] == 'W/"1"'


def test_prefer_return_operation_outcome(client: Client) -> None:
    response = client.post(
        "/fhir/Patient",
        json=patient(),
        headers={**JSON_HEADERS, "Prefer": "return=OperationOutcome"},
    )
    assert response.status_code == 201
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["severity"] == "information"
    deleted = client.delete(
        response.headers["location"].split("/_history")[0],
        headers={"Prefer": "return=OperationOutcome"},
    )
    assert deleted.status_code == 200
    assert deleted.json()["resourceType"] == "OperationOutcome"


def test_decimal_precision_is_kept(client: Client) -> None:
    body = (
        b'{"resourceType":"Observation","status":"final","code":{"text":"x"},'
        b'"valueQuantity":{"value":1.50,"unit":"mg"}}'
    )
    created = client.post("/fhir/Observation", content=body, headers=JSON_HEADERS)
    assert created.status_code == 201
    assert b'"value":1.50' in created.content
    read = client.get(created.headers["location"].split("/_history")[0])
    assert b'"value":1.50' in read.content
    assert b'"value": 1.50' in client.get(read.url, params={"_pretty": "true"}).content


def test_unicode_round_trips(client: Client) -> None:
    created = create(client, patient("Łukasiewicz-Ærø 患者 🩺"))
    read = client.get(f"/fhir/Patient/{created['id']}").json()
    assert read["name"][0]["family"] == "Łukasiewicz-Ærø 患者 🩺"
