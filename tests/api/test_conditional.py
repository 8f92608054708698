"""Conditional interactions (http.html#cond-update, #ccreate, #cdelete, #cread) on both
databases: the 0 / 1 / many match rules with their statuses, If-None-Match on PUT and reads."""

from __future__ import annotations

import httpx
import pytest

from app.config import Settings
from app.main import create_app
from tests.asgi_client import asgi_client
from tests.helpers import JSON_HEADERS, assert_outcome, patient

MRN = "http://hospital.example/mrn"
PATCH_HEADERS = {"Content-Type": "application/json-patch+json"}


def _with_mrn(mrn: str, family: str = "Doe") -> dict[str, object]:
    return patient(family, identifier=[{"system": MRN, "value": mrn}])


def _create(client: httpx.Client, mrn: str, family: str = "Doe") -> dict[str, object]:
    response = client.post("/fhir/Patient", json=_with_mrn(mrn, family), headers=JSON_HEADERS)
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_conditional_create(client: httpx.Client) -> None:
    headers = {**JSON_HEADERS, "If-None-Exist": f"identifier={MRN}|1"}
    first = client.post("/fhir/Patient", json=_with_mrn("1"), headers=headers)
    assert first.status_code == 201
    again = client.post("/fhir/Patient", json=_with_mrn("1", "Other"), headers=headers)
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["name"][0]["family"] == "Doe"  # the existing one, untouched
    _create(client, "2", "Twin")
    _create(client, "3", "Twin")
    many = client.post(
        "/fhir/Patient",
        json=_with_mrn("4"),
        headers={**JSON_HEADERS, "If-None-Exist": "family=twin"},
    )
    assert_outcome(many, 412, None, "If-None-Exist")
    unknown = client.post(
        "/fhir/Patient", json=_with_mrn("4"), headers={**JSON_HEADERS, "If-None-Exist": "nope=1"}
    )
    assert_outcome(unknown, 400, "not-supported", "nope")
    assert client.get("/fhir/Patient").json()["total"] == 3


def test_conditional_update(client: httpx.Client) -> None:
    url = f"/fhir/Patient?identifier={MRN}|7"
    created = client.put(url, json=_with_mrn("7"), headers=JSON_HEADERS)
    assert created.status_code == 201  # no match, no id: created
    pid = created.json()["id"]
    updated = client.put(url, json=_with_mrn("7", "Changed"), headers=JSON_HEADERS)
    assert updated.status_code == 200
    assert updated.json()["id"] == pid
    assert updated.json()["meta"]["versionId"] == "2"
    wrong_id = client.put(url, json={**_with_mrn("7"), "id": "other"}, headers=JSON_HEADERS)
    assert_outcome(wrong_id, 400, None, "Patient.id")
    with_id = client.put(
        f"/fhir/Patient?identifier={MRN}|8",
        json={**_with_mrn("8"), "id": "p8"},
        headers=JSON_HEADERS,
    )
    assert with_id.status_code == 201
    assert with_id.json()["id"] == "p8"
    _create(client, "9", "Twin")
    _create(client, "10", "Twin")
    assert_outcome(
        client.put("/fhir/Patient?family=twin", json=_with_mrn("11"), headers=JSON_HEADERS), 412
    )
    assert_outcome(client.put("/fhir/Patient", json=_with_mrn("11"), headers=JSON_HEADERS), 405)


def test_conditional_patch(client: httpx.Client) -> None:
    created = _create(client, "20")
    ops = [{"op": "replace", "path": "/gender", "value": "male"}]
    patched = client.patch(f"/fhir/Patient?identifier={MRN}|20", json=ops, headers=PATCH_HEADERS)
    assert patched.status_code == 200
    assert patched.json()["id"] == created["id"]
    assert patched.json()["gender"] == "male"
    none = client.patch(f"/fhir/Patient?identifier={MRN}|21", json=ops, headers=PATCH_HEADERS)
    assert_outcome(none, 404)
    _create(client, "22", "Twin")
    _create(client, "23", "Twin")
    assert_outcome(client.patch("/fhir/Patient?family=twin", json=ops, headers=PATCH_HEADERS), 412)


def test_conditional_delete_single(client: httpx.Client) -> None:
    created = _create(client, "30")
    gone = client.delete(f"/fhir/Patient?identifier={MRN}|30")
    assert gone.status_code == 204
    assert client.get(f"/fhir/Patient/{created['id']}").status_code == 410
    assert client.delete(f"/fhir/Patient?identifier={MRN}|30").status_code == 204  # no match
    _create(client, "31", "Twin")
    _create(client, "32", "Twin")
    assert_outcome(client.delete("/fhir/Patient?family=twin"), 412)
    assert client.get("/fhir/Patient?family=twin").json()["total"] == 2
    assert_outcome(client.delete("/fhir/Patient"), 405)


def test_conditional_delete_multiple_when_enabled(settings: Settings) -> None:
    enabled = settings.model_copy(update={"conditional_delete_multiple": True})
    with asgi_client(create_app(enabled)) as client:
        for mrn in ("40", "41", "42"):
            _create(client, mrn, "Triplet")
        _create(client, "43", "Other")
        assert client.delete("/fhir/Patient?family=triplet").status_code == 204
        assert client.get("/fhir/Patient?family=triplet").json()["total"] == 0
        assert client.get("/fhir/Patient").json()["total"] == 1


def test_if_none_match_star_creates_only_when_absent(client: httpx.Client) -> None:
    headers = {**JSON_HEADERS, "If-None-Match": "*"}
    body = {**patient(), "id": "only-once"}
    assert client.put("/fhir/Patient/only-once", json=body, headers=headers).status_code == 201
    again = client.put("/fhir/Patient/only-once", json=body, headers=headers)
    assert_outcome(again, 412, None, "If-None-Match")
    assert client.get("/fhir/Patient/only-once").json()["meta"]["versionId"] == "1"


def test_conditional_read(client: httpx.Client) -> None:
    created = _create(client, "50")
    url = f"/fhir/Patient/{created['id']}"
    current = client.get(url)
    etag, modified = current.headers["ETag"], current.headers["Last-Modified"]
    not_modified = client.get(url, headers={"If-None-Match": etag})
    assert not_modified.status_code == 304
    assert not_modified.content == b""
    assert not_modified.headers["ETag"] == etag
    assert client.get(url, headers={"If-None-Match": 'W/"9"'}).status_code == 200
    assert client.get(url, headers={"If-Modified-Since": modified}).status_code == 304
    before = "Mon, 01 Jan 2001 00:00:00 GMT"
    assert client.get(url, headers={"If-Modified-Since": before}).status_code == 200
    assert client.get(url, headers={"If-Modified-Since": "yesterday"}).status_code == 200
    client.put(url, json={**created, "gender": "other"}, headers=JSON_HEADERS)
    assert client.get(url, headers={"If-None-Match": etag}).status_code == 200


@pytest.mark.parametrize(
    ("query", "status", "expression"), [("", 405, "url"), ("?nope=1", 400, "nope")]
)
def test_conditional_without_usable_criteria_is_refused(
    client: httpx.Client, query: str, status: int, expression: str
) -> None:
    response = client.put(f"/fhir/Patient{query}", json=patient(), headers=JSON_HEADERS)
    assert_outcome(response, status, None, expression)
    assert client.get("/fhir/Patient").json()["total"] == 0


def test_the_capability_statement_says_what_is_supported(client: httpx.Client) -> None:
    statement = client.get("/fhir/metadata").json()
    rest = statement["rest"][0]
    assert {"transaction", "batch"} <= {i["code"] for i in rest["interaction"]}
    assert {"name": "export", "definition": EXPORT} in rest["operation"]
    patient_capability = next(r for r in rest["resource"] if r["type"] == "Patient")
    assert patient_capability["conditionalCreate"] is True
    assert patient_capability["conditionalUpdate"] is True
    assert patient_capability["conditionalRead"] == "full-support"
    assert patient_capability["conditionalDelete"] == "single"
    assert patient_capability["operation"][0]["name"] == "export"


EXPORT = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"
