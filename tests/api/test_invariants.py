"""Validation beyond fhir.resources (CASE.md B.3 item 9): invariants, UCUM units, required
CodeableConcept bindings and reference target types, each a 422 naming the element."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from app.fhir.invariants import BINDINGS_PATH, invariant_issues
from tests.helpers import JSON_HEADERS, assert_outcome, pain_observation

UCUM = "http://unitsofmeasure.org"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"


def _condition(**extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "subject": {"reference": "Patient/p1"},
        "code": {"text": "Fibromyalgia"},
        **extra,
    }


def _concept(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


PROBLEM = [_concept(CATEGORY, "problem-list-item")]
SEVERITY = "http://terminology.hl7.org/CodeSystem/adverse-event-severity"


def _adverse_event() -> dict[str, Any]:
    return {
        "resourceType": "AdverseEvent",
        "actuality": "actual",
        "subject": {"reference": "Patient/p1"},
    }


def _research_element_with_unit(unit: str) -> dict[str, Any]:
    """A ResearchElementDefinition whose second characteristic's unit is `unit` (UCUM)."""
    characteristic = {"definitionCodeableConcept": {"text": "dose"}}
    return {
        "resourceType": "ResearchElementDefinition",
        "status": "active",
        "type": "exposure",
        "characteristic": [
            characteristic,
            {**characteristic, "unitOfMeasure": _concept(UCUM, unit)},
        ],
    }


BAD = [
    (
        "obs-6",
        {**pain_observation(), "dataAbsentReason": {"text": "asked, not answered"}},
        "Observation.dataAbsentReason",
    ),
    (
        "rng-2",
        {
            **{k: v for k, v in pain_observation().items() if k != "valueQuantity"},
            "valueRange": {
                "low": {"value": 4, "system": UCUM, "code": "{score}"},
                "high": {"value": 3, "system": UCUM, "code": "{score}"},
            },
        },
        "Observation.valueRange",
    ),
    (
        "qty-3",
        {**pain_observation(), "valueQuantity": {"value": 6, "code": "{score}"}},
        "Observation.valueQuantity",
    ),
    (
        "ucum",
        {**pain_observation(), "valueQuantity": {"value": 6, "system": UCUM, "code": "mEq/L"}},
        "Observation.valueQuantity.code",
    ),
    (
        "con-3",
        _condition(category=PROBLEM, verificationStatus=_concept(VERIFICATION, "confirmed")),
        "Condition.clinicalStatus",
    ),
    (
        "con-5",
        _condition(
            clinicalStatus=_concept(CLINICAL, "active"),
            verificationStatus=_concept(VERIFICATION, "entered-in-error"),
        ),
        "Condition.clinicalStatus",
    ),
    (
        "required binding",
        _condition(clinicalStatus=_concept(CLINICAL, "better")),
        "Condition.clinicalStatus",
    ),
    (
        "required binding, no coding from the value set",
        _condition(clinicalStatus={"text": "active"}),
        "Condition.clinicalStatus",
    ),
    (
        "required binding beyond the main types",
        {**_adverse_event(), "severity": _concept(SEVERITY, "catastrophic")},
        "AdverseEvent.severity",
    ),
    (
        "required binding, nested and repeating",
        _research_element_with_unit("kilo-nothing"),
        "ResearchElementDefinition.characteristic[1].unitOfMeasure",
    ),
    (
        "reference target",
        {**pain_observation(), "subject": {"reference": "Encounter/e1"}},
        "Observation.subject",
    ),
    (
        "reference target, absolute",
        pain_observation(subject="http://elsewhere.org/fhir/Encounter/e1"),
        "Observation.subject",
    ),
    (
        "contained reference target",
        {
            **pain_observation(subject="#e"),
            "contained": [
                {
                    "resourceType": "Encounter",
                    "id": "e",
                    "status": "finished",
                    "class": {"code": "AMB"},
                }
            ],
        },
        "Observation.subject",
    ),
]


@pytest.mark.parametrize(("rule", "resource", "expression"), BAD, ids=[b[0] for b in BAD])
def test_each_rule_is_a_422_naming_the_element(
    client: httpx.Client, rule: str, resource: dict[str, Any], expression: str
) -> None:
    response = client.post(f"/fhir/{resource['resourceType']}", json=resource, headers=JSON_HEADERS)
    assert_outcome(response, 422, None, expression)
    assert client.get(f"/fhir/{resource['resourceType']}").json()["total"] == 0


GOOD = [
    {
        **{k: v for k, v in pain_observation().items() if k != "valueQuantity"},
        "dataAbsentReason": {"text": "not asked"},
    },
    {
        **{k: v for k, v in pain_observation().items() if k != "valueQuantity"},
        "valueRange": {
            "low": {"value": 0, "system": UCUM, "code": "{score}"},
            "high": {"value": 1, "system": UCUM, "code": "{score}"},
        },
    },
    {**pain_observation(), "valueQuantity": {"value": 36.6, "system": UCUM, "code": "Cel"}},
    pain_observation(subject="Group/g1"),
    pain_observation(subject="urn:uuid:4f0c6d0e-8a39-4b5e-9d51-5a1c4f8f0d3e"),
    _condition(category=PROBLEM, clinicalStatus=_concept(CLINICAL, "active")),
    _condition(verificationStatus=_concept(VERIFICATION, "entered-in-error")),
    {**_adverse_event(), "severity": _concept(SEVERITY, "moderate")},
    _research_element_with_unit("mg/kg"),
]


@pytest.mark.parametrize("resource", GOOD, ids=range(len(GOOD)))
def test_what_the_rules_allow(client: httpx.Client, resource: dict[str, Any]) -> None:
    response = client.post(f"/fhir/{resource['resourceType']}", json=resource, headers=JSON_HEADERS)
    assert response.status_code == 201, response.text


def _at_path(path: str, concept: dict[str, Any]) -> dict[str, Any]:
    """A resource holding `concept` at `path`, each element below the first in a list."""
    resource_type, *elements = path.split(".")
    node: Any = concept
    for element in reversed(elements[1:]):
        node = [{element: node}]
    return {"resourceType": resource_type, elements[0]: node}


def test_every_required_binding_of_r4b_with_known_codes_is_checked() -> None:
    """Each binding of the table, at its path (lists on the way included), refuses a code
    outside the value set and accepts one inside it."""
    table = json.loads(BINDINGS_PATH.read_text())
    assert len(table) == 14  # R4B's required bindings on CodeableConcept and Coding elements
    checked = 0
    for entry in table:
        if entry["codes"] is None:
            continue
        good = _at_path(entry["path"], _concept(entry["system"], entry["codes"][0]))
        bad = _at_path(entry["path"], _concept(entry["system"], "not-in-the-value-set"))
        assert invariant_issues(good) == [], entry["path"]
        issues = invariant_issues(bad)
        assert [i.code for i in issues] == ["code-invalid"], entry["path"]
        assert issues[0].expression[0].replace("[0]", "") == entry["path"]
        checked += 1
    assert checked == 10


@pytest.mark.parametrize(
    ("resource", "where"),
    [
        (pain_observation(note=[{"text": "a\u0000b"}]), "Observation.note[0].text"),
        (
            {**pain_observation(), "code": {"coding": [{"code": "7251\u00014-3"}]}},
            "Observation.code.coding[0].code",
        ),
        (
            {"resourceType": "Patient", "name": [{"given": ["ok", "bell\u0007"]}]},
            "Patient.name[0].given[1]",
        ),
        (
            {
                "resourceType": "Patient",
                "contained": [{"resourceType": "Patient", "name": [{"family": "\u001b[31m"}]}],
            },
            "Patient.contained[0].name[0].family",
        ),
    ],
    ids=["nul", "soh-in-code", "bell-in-list", "escape-in-contained"],
)
def test_control_characters_in_strings_are_422_naming_the_element(
    client: httpx.Client, resource: dict[str, Any], where: str
) -> None:
    """datatypes.html#string: no code point below U+0020 but tab, LF and CR (PostgreSQL
    could not store U+0000 in its text columns: this was a 500 there)."""
    response = client.post(f"/fhir/{resource['resourceType']}", json=resource)
    assert_outcome(response, 422, "invalid", where)
    assert client.get(f"/fhir/{resource['resourceType']}?_summary=count").json()["total"] == 0


def test_tab_line_feed_and_carriage_return_are_allowed(client: httpx.Client) -> None:
    observation = pain_observation(note=[{"text": "line one\r\n\tline two"}])
    response = client.post("/fhir/Observation", json=observation, headers=JSON_HEADERS)
    assert response.status_code == 201, response.text
    assert response.json()["note"][0]["text"] == "line one\r\n\tline two"


@pytest.mark.parametrize(
    "query",
    ["family=a%00b", "_id=a%00b", "subject=Patient/a%00b", "birthdate=2020%01", "fam%00ily=x"],
)
def test_control_characters_in_search_values_are_400(client: httpx.Client, query: str) -> None:
    resource_type = "Observation" if query.startswith("subject") else "Patient"
    assert_outcome(client.get(f"/fhir/{resource_type}?{query}"), 400, "invalid")
