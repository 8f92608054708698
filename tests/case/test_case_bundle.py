"""The ketamine case Bundle (app/case/build.py) against the inventory and rules of CASE.md."""

from __future__ import annotations

import json
from collections import Counter
from itertools import accumulate
from typing import Any

import pytest

from app.case.build import (
    BUNDLE_PATH,
    KEYS_PATH,
    build_bundle,
    bundle_keys,
    check,
    full_url,
    keyed_resources,
    render,
)
from app.fhir.models import validate

Resource = dict[str, Any]

KEYED = keyed_resources()


@pytest.fixture(scope="module")
def bundle() -> Resource:
    return build_bundle()


@pytest.fixture(scope="module")
def by_key() -> dict[str, Resource]:
    return dict(KEYED)


def _strings(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [s for value in node.values() for s in _strings(value)]
    if isinstance(node, list):
        return [s for item in node for s in _strings(item)]
    return [node] if isinstance(node, str) else []


def _targets(references: list[dict[str, str]]) -> list[str]:
    return [reference["reference"] for reference in references]


def _course(bundle: Resource, course_key: str) -> list[Resource]:
    """The MedicationAdministrations whose partOf is the course, in date order."""
    found = [
        entry["resource"]
        for entry in bundle["entry"]
        if entry["resource"]["resourceType"] == "MedicationAdministration"
        and _targets(entry["resource"]["partOf"]) == [full_url(course_key)]
    ]
    return sorted(found, key=lambda resource: resource["effectiveDateTime"])


def test_checked_in_files_are_current(bundle: Resource) -> None:
    text = BUNDLE_PATH.read_text(encoding="utf-8")
    assert json.loads(text) == bundle, "run: python -m app.case.build"
    assert text == render(bundle), "run: python -m app.case.build"
    assert KEYS_PATH.read_text(encoding="utf-8") == render(bundle_keys())


def test_build_is_deterministic(bundle: Resource) -> None:
    assert build_bundle() == bundle


def test_counts_match_the_inventory(bundle: Resource) -> None:
    assert len(bundle["entry"]) == 55
    assert Counter(entry["resource"]["resourceType"] for entry in bundle["entry"]) == {
        "Patient": 1,
        "Organization": 1,
        "Condition": 2,
        "Observation": 22,
        "MedicationAdministration": 14,
        "MedicationStatement": 7,
        "Procedure": 8,
    }


def test_every_entry_is_a_post_with_a_keyed_urn_uuid(bundle: Resource) -> None:
    assert bundle["resourceType"] == "Bundle"
    assert bundle["type"] == "transaction"
    keys = bundle_keys()
    assert [entry["fullUrl"] for entry in bundle["entry"]] == list(keys.values())
    assert len(set(keys.values())) == 55
    for entry in bundle["entry"]:
        resource = entry["resource"]
        assert entry["fullUrl"].startswith("urn:uuid:")
        assert entry["request"] == {"method": "POST", "url": resource["resourceType"]}
        assert "id" not in resource
        assert "meta" not in resource


def test_protocol_doses_and_cumulative_totals(bundle: Resource) -> None:
    protocol = _course(bundle, "proc-ketamine-protocol")
    assert [resource["effectiveDateTime"] for resource in protocol] == [
        f"2016-08-{day}" for day in range(22, 32)
    ]
    doses = [resource["dosage"]["dose"] for resource in protocol]
    assert all(dose["system"] == "http://unitsofmeasure.org" for dose in doses)
    assert all(dose["code"] == "mg" for dose in doses)
    mg = [dose["value"] for dose in doses]
    assert mg == [428, 856, 856, *[1063] * 7]
    assert sum(mg) == 9581
    assert list(accumulate(mg)) == [428, 1284, 2140, 3203, 4266, 5329, 6392, 7455, 8518, 9581]
    for resource, value in zip(protocol, mg, strict=True):
        expected = f"{value} mg ketamine HCl in 100 mL of 0.9% sodium chloride"
        assert resource["dosage"]["text"] == expected


def test_boosters_have_no_dose(bundle: Resource) -> None:
    boosters = [
        *_course(bundle, "proc-ketamine-booster1"),
        *_course(bundle, "proc-ketamine-booster2"),
    ]
    assert [resource["effectiveDateTime"] for resource in boosters] == [
        "2016-09-21",
        "2016-09-22",
        "2016-12-21",
        "2016-12-22",
    ]
    for resource in boosters:
        assert "dose" not in resource["dosage"]
        assert resource["dosage"]["text"] == "Dose not reported in the source"


def test_administrations_share_the_ketamine_coding(bundle: Resource) -> None:
    administrations = [
        entry["resource"]
        for entry in bundle["entry"]
        if entry["resource"]["resourceType"] == "MedicationAdministration"
    ]
    assert len(administrations) == 14
    for resource in administrations:
        assert resource["status"] == "completed"
        coding = resource["medicationCodeableConcept"]["coding"]
        assert [(c["system"], c["code"]) for c in coding] == [
            ("http://www.nlm.nih.gov/research/umls/rxnorm", "6130")
        ]
        route = resource["dosage"]["route"]["coding"]
        assert [(c["system"], c["code"]) for c in route] == [("http://snomed.info/sct", "47625008")]


def test_every_urn_uuid_points_to_an_entry(bundle: Resource) -> None:
    full_urls = {entry["fullUrl"] for entry in bundle["entry"]}
    used = {s for entry in bundle["entry"] for s in _strings(entry["resource"])}
    urns = {s for s in used if s.startswith("urn:uuid:")}
    assert urns, "the Bundle has no internal references"
    assert urns <= full_urls
    check(bundle)  # the module's own check resolves every Reference.reference too


@pytest.mark.parametrize(("key", "resource"), KEYED, ids=[key for key, _ in KEYED])
def test_resource_passes_server_validation(key: str, resource: Resource) -> None:
    validate(resource, resource["resourceType"])


PAIN = [
    ("obs-pain-baseline", "2016-01-27", (10, 10)),
    ("obs-pain-after-inf1", "2016-08-22", (6, 6)),
    ("obs-pain-after-inf10", "2016-08-31", (0, 1)),
    ("obs-pain-pre-booster1", "2016-09-21", (4, 4)),
    ("obs-pain-pre-booster2", "2016-12-21", (3, 4)),
    ("obs-pain-followup", "2017-03-22", (2, 2)),
]


def _bounds(resource: Resource) -> tuple[int, int]:
    if "valueRange" in resource:
        value_range = resource["valueRange"]
        for bound in (value_range["low"], value_range["high"]):
            assert (bound["system"], bound["code"]) == ("http://unitsofmeasure.org", "{score}")
        return value_range["low"]["value"], value_range["high"]["value"]
    quantity = resource["valueQuantity"]
    assert (quantity["system"], quantity["code"]) == ("http://unitsofmeasure.org", "{score}")
    return quantity["value"], quantity["value"]


@pytest.mark.parametrize(("key", "day", "bounds"), PAIN)
def test_pain_observations(
    by_key: dict[str, Resource], key: str, day: str, bounds: tuple[int, int]
) -> None:
    resource = by_key[key]
    assert resource["status"] == "final"
    assert [(c["system"], c["code"]) for c in resource["code"]["coding"]] == [
        ("http://loinc.org", "72514-3")
    ]
    assert resource["category"][0]["coding"][0]["code"] == "survey"
    assert resource["effectiveDateTime"] == day
    assert _bounds(resource) == bounds
    assert resource["subject"] == {"reference": full_url("patient")}


def test_pain_links_carry_same_day_order_and_derivation(by_key: dict[str, Resource]) -> None:
    pain = [
        key
        for key, resource in KEYED
        if any(c["code"] == "72514-3" for c in resource.get("code", {}).get("coding", []))
    ]
    assert pain == [key for key, _, _ in PAIN]
    assert _targets(by_key["obs-pain-after-inf1"]["partOf"]) == [full_url("ma-protocol-01")]
    assert _targets(by_key["obs-pain-after-inf10"]["partOf"]) == [full_url("ma-protocol-10")]
    for booster in (1, 2):
        observation = f"obs-pain-pre-booster{booster}"
        assert _targets(by_key[observation]["derivedFrom"]) == [full_url("obs-pain-baseline")]
        assert by_key[observation]["method"]["text"]
        for day in (1, 2):
            administration = by_key[f"ma-booster{booster}-{day:02d}"]
            assert _targets(administration["reasonReference"]) == [
                full_url(observation),
                full_url("cond-ra"),
                full_url("cond-fm"),
            ]
    for key in ("obs-pain-baseline", "obs-pain-followup"):
        assert "derivedFrom" not in by_key[key]
        assert "partOf" not in by_key[key]


def test_first_infusion_cites_the_pre_ketamine_clearance(by_key: dict[str, Resource]) -> None:
    cited = _targets(by_key["ma-protocol-01"]["supportingInformation"])
    expected = [f"obs-lft-pre-{analyte}" for analyte in ("alt", "alp", "ast", "ggt")]
    assert cited == [full_url(key) for key in [*expected, "proc-psych"]]
    for key in expected:
        assert not any(name.startswith("effective") for name in by_key[key])


def test_liver_tests_are_normal_without_values(by_key: dict[str, Resource]) -> None:
    days = {"pre": None, "d24": "2016-09-15", "d56": "2016-10-17"}
    lfts = [key for key, _ in KEYED if key.startswith("obs-lft-")]
    assert len(lfts) == 12
    for key in lfts:
        resource = by_key[key]
        assert resource["dataAbsentReason"]["coding"][0]["code"] == "unknown"
        assert resource["interpretation"][0]["coding"][0]["code"] == "N"
        assert not any(name.startswith("value") for name in resource)
        assert resource.get("effectiveDateTime") == days[key.split("-")[2]]


def test_patient_identity(by_key: dict[str, Resource]) -> None:
    patient = by_key["patient"]
    assert patient["identifier"] == [
        {"system": "https://doi.org/10.14740/jmc3017w", "value": "patient"}
    ]
    assert patient["gender"] == "female"
    assert "birthDate" not in patient
    assert patient["name"] == [
        {
            "extension": [
                {
                    "url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason",
                    "valueCode": "unknown",
                }
            ]
        }
    ]
    assert patient["managingOrganization"] == {"reference": full_url("org-fsi")}
    age = by_key["obs-age"]
    assert age["effectiveDateTime"] == "2016-01-27"
    assert age["valueQuantity"]["value"] == 49
    assert age["valueQuantity"]["code"] == "a"


def test_rules_travel_in_notes(by_key: dict[str, Resource]) -> None:
    names = {f"R{n}" for n in range(1, 8)}

    def rules_in(key: str) -> set[str]:
        return {note["text"][:2] for note in by_key[key]["note"]} & names

    assert rules_in("obs-pain-after-inf1") == {"R6"}
    assert rules_in("obs-pain-after-inf10") == {"R1", "R6"}
    assert rules_in("obs-lft-d24-alt") == {"R5"}
    assert rules_in("obs-pain-followup") == {"R1", "R2", "R3", "R4", "R7"}
    assert "R3" in rules_in("ma-booster2-01")
