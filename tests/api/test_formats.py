"""Content negotiation: Accept and _format, XML both ways, _pretty, media types, metadata."""

from __future__ import annotations

from httpx import Client
from lxml import etree

from tests.helpers import JSON_HEADERS, assert_outcome, pain_observation, patient

FHIR_XML = "application/fhir+xml"


def _location(response) -> str:  # type: ignore[no-untyped-def]
    return str(response.headers["location"]).split("/_history")[0]


def test_json_media_types_are_accepted(client: Client) -> None:
    for media in (
        "application/fhir+json",
        "application/json",
        "application/fhir+json; fhirVersion=4.3; charset=utf-8",
    ):
        response = client.post("/fhir/Patient", json=patient(), headers={"Content-Type": media})
        assert response.status_code == 201, media


def test_unsupported_content_type_returns_415(client: Client) -> None:
    for media in ("text/plain", "application/x-www-form-urlencoded"):
        response = client.post(
            "/fhir/Patient", content=b'{"resourceType":"Patient"}', headers={"Content-Type": media}
        )
        assert_outcome(response, 415, "not-supported")
    response = client.post("/fhir/Patient", content=b'{"resourceType":"Patient"}')
    assert_outcome(response, 415)


def test_xml_can_be_requested_by_accept_and_by_format(client: Client) -> None:
    url = _location(client.post("/fhir/Observation", json=pain_observation(), headers=JSON_HEADERS))
    for response in (
        client.get(url, headers={"Accept": FHIR_XML}),
        client.get(url, params={"_format": "xml"}),
        client.get(url, params={"_format": "application/fhir+xml"}),
    ):
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/fhir+xml; charset=utf-8"
        root = etree.fromstring(response.content)
        assert root.tag == "{http://hl7.org/fhir}Observation"
        assert root.find("{http://hl7.org/fhir}status").get("value") == "final"


def test_format_overrides_accept(client: Client) -> None:
    response = client.get(
        "/fhir/metadata", params={"_format": "json"}, headers={"Accept": FHIR_XML}
    )
    assert response.headers["content-type"].startswith("application/fhir+json")


def test_xml_body_is_accepted_and_stored_as_json(client: Client) -> None:
    xml = (
        b'<Patient xmlns="http://hl7.org/fhir"><name><family value="Xml"/></name>'
        b'<gender value="female"/><birthDate value="1967-01-01"/></Patient>'
    )
    response = client.post(
        "/fhir/Patient", content=xml, headers={"Content-Type": FHIR_XML, "Accept": FHIR_XML}
    )
    assert response.status_code == 201, response.text
    assert etree.fromstring(response.content).tag == "{http://hl7.org/fhir}Patient"
    stored = client.get(_location(response)).json()
    assert stored["name"] == [{"family": "Xml"}]
    assert stored["birthDate"] == "1967-01-01"


def test_invalid_xml_bodies_are_rejected(client: Client) -> None:
    headers = {"Content-Type": FHIR_XML}
    assert_outcome(client.post("/fhir/Patient", content=b"<Patient", headers=headers), 400)
    assert_outcome(client.post("/fhir/Patient", content=b"<Patient/>", headers=headers), 400)
    bad = b'<Patient xmlns="http://hl7.org/fhir"><gender value="robot"/></Patient>'
    assert_outcome(
        client.post("/fhir/Patient", content=bad, headers=headers), 422, expression="Patient.gender"
    )


def test_xml_entities_are_not_expanded(client: Client) -> None:
    xxe = (
        b'<?xml version="1.0"?><!DOCTYPE p [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b'<Patient xmlns="http://hl7.org/fhir"><name><family value="&x;"/></name></Patient>'
    )
    response = client.post("/fhir/Patient", content=xxe, headers={"Content-Type": FHIR_XML})
    assert response.status_code in {400, 422, 201}
    assert b"root:" not in response.content
    if response.status_code == 201:
        assert b"root:" not in client.get(_location(response)).content


def test_unacceptable_accept_returns_406(client: Client) -> None:
    assert_outcome(client.get("/fhir/metadata", headers={"Accept": "image/png"}), 406)
    assert_outcome(client.get("/fhir/metadata", params={"_format": "yaml"}), 406)


def test_browsers_get_json(client: Client) -> None:
    accept = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    response = client.get("/fhir/metadata", headers={"Accept": accept})
    assert response.headers["content-type"].startswith("application/fhir+json")


def test_pretty_indents_json(client: Client) -> None:
    compact = client.get("/fhir/metadata")
    pretty = client.get("/fhir/metadata", params={"_pretty": "true"})
    assert b"\n  " in pretty.content
    assert b"\n" not in compact.content
    assert pretty.json()["rest"] == compact.json()["rest"]


def test_errors_follow_the_requested_format(client: Client) -> None:
    response = client.get("/fhir/Patient/missing", headers={"Accept": FHIR_XML})
    assert response.status_code == 404
    assert etree.fromstring(response.content).tag == "{http://hl7.org/fhir}OperationOutcome"


def test_capability_statement_describes_what_is_implemented(client: Client) -> None:
    from fhir.resources.R4B.capabilitystatement import CapabilityStatement

    response = client.get("/fhir/metadata")
    assert response.status_code == 200
    statement = response.json()
    CapabilityStatement.model_validate(statement)
    assert statement["fhirVersion"] == "4.3.0"
    assert statement["kind"] == "instance"
    assert {"json", "xml"} <= set(statement["format"])
    assert "application/json-patch+json" in statement["patchFormat"]
    rest = statement["rest"][0]
    by_type = {r["type"]: r for r in rest["resource"]}
    assert len(by_type) == 141
    for name in (
        "Patient",
        "Observation",
        "MedicationAdministration",
        "Condition",
        "SubscriptionTopic",
    ):
        codes = {i["code"] for i in by_type[name]["interaction"]}
        assert codes == {
            "search-type",
            "read",
            "vread",
            "update",
            "patch",
            "delete",
            "history-instance",
            "history-type",
            "create",
        }
    assert {"code": "history-system"} in rest["interaction"]


def test_every_capability_resource_type_accepts_create(client: Client) -> None:
    """Each advertised type has a live endpoint (a minimal body of each is validated)."""
    statement = client.get("/fhir/metadata").json()
    for entry in statement["rest"][0]["resource"][:141:20]:
        response = client.post(
            f"/fhir/{entry['type']}", json={"resourceType": entry["type"]}, headers=JSON_HEADERS
        )
        assert response.status_code in {201, 422}, (entry["type"], response.text)
        if response.status_code == 422:
            assert response.json()["resourceType"] == "OperationOutcome"
