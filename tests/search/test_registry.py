"""The R4B search-parameter registry: the data file, the lookups, and agreement with R4."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from app.fhir.catalog_gen import CATALOG_PATH
from app.search import registry_gen
from app.search.registry import (
    ALL_PARAMS,
    REGISTRY_PATH,
    SearchParamDef,
    by_url,
    expression_for,
    param,
    params_for,
    split_union,
)

R4_SEARCH_PARAMETERS = (
    Path(__file__).resolve().parents[2].parent
    / "shared"
    / "fixtures"
    / "search-parameters"
    / "search-parameters.json"
)
RESOURCE_TYPES: list[str] = json.loads(CATALOG_PATH.read_text())["resourceTypes"]
SP = "http://hl7.org/fhir/SearchParameter/"
RESOURCE_CODES = {"_id", "_lastUpdated", "_profile", "_security", "_source", "_tag"}

# R4 (4.0.1) parameters, on bases R4B still has, that R4B (4.3.0) lacks or defines differently.
# Codes, types and bases agree for every url the two share; 50 further R4 parameters are out of
# scope because their bases (EffectEvidenceSynthesis, MedicinalProduct*, RiskEvidenceSynthesis,
# ...) are gone from R4B.
#   clinical-date: Immunization branch `Immunization.occurrence` became
#       `(Immunization.occurrence as dateTime)`
#   clinical-patient: DeviceUseStatement branch `DeviceUseStatement.subject` became
#       `DeviceUseStatement.subject.where(resolve() is Patient)`
#   clinical-encounter: DocumentReference branch `DocumentReference.context.encounter` became
#       `DocumentReference.context.encounter.where(resolve() is Encounter)`
#   Evidence-{composed-of, depends-on, derived-from, effective, jurisdiction, name, predecessor,
#       successor, topic}: missing in R4B (Evidence was redesigned; the elements are gone)
#   EvidenceVariable-{composed-of, depends-on, derived-from, effective, jurisdiction,
#       predecessor, successor, topic}: missing in R4B (EvidenceVariable was redesigned; it kept
#       `name`)
KNOWN_R4_R4B_DIFFERENCES = frozenset(
    SP + name
    for name in (
        "clinical-date",
        "clinical-patient",
        "clinical-encounter",
        "Evidence-composed-of",
        "Evidence-depends-on",
        "Evidence-derived-from",
        "Evidence-effective",
        "Evidence-jurisdiction",
        "Evidence-name",
        "Evidence-predecessor",
        "Evidence-successor",
        "Evidence-topic",
        "EvidenceVariable-composed-of",
        "EvidenceVariable-depends-on",
        "EvidenceVariable-derived-from",
        "EvidenceVariable-effective",
        "EvidenceVariable-jurisdiction",
        "EvidenceVariable-predecessor",
        "EvidenceVariable-successor",
        "EvidenceVariable-topic",
    )
)


def _must(resource_type: str, code: str) -> SearchParamDef:
    definition = param(resource_type, code)
    assert definition is not None, f"{resource_type} has no {code}"
    return definition


# --- the data file -------------------------------------------------------------------------------


def test_data_file_matches_what_the_generator_builds() -> None:
    try:
        built = registry_gen.build_registry()
    except registry_gen.DownloadError as exc:
        pytest.skip(f"cannot fetch the fhirstarter wheel to rebuild the registry: {exc}")
    text = REGISTRY_PATH.read_text(encoding="utf-8")
    assert json.loads(text) == built, "stale: run python -m app.search.registry_gen"
    assert text == registry_gen.dumps_registry(built)


def test_data_file_shape() -> None:
    data: dict[str, Any] = json.loads(REGISTRY_PATH.read_text(encoding="utf-8"))
    assert data["fhirVersion"] == "4.3.0"
    assert data["source"] == "fhirstarter 4.2.0 R4B search-parameters.json"
    parameters = data["parameters"]
    assert len(parameters) == 1414
    assert parameters == sorted(parameters, key=lambda p: (p["code"], p["url"]))
    allowed_keys = {
        "url",
        "code",
        "type",
        "base",
        "expression",
        "target",
        "multipleOr",
        "multipleAnd",
        "comparator",
        "modifier",
        "chain",
        "component",
        "description",
    }
    types = {"number", "date", "string", "token", "reference", "composite", "quantity", "uri"}
    allowed_bases = {*RESOURCE_TYPES, "Resource", "DomainResource"}
    for p in parameters:
        assert set(p) <= allowed_keys, p["url"]
        assert {"url", "code", "type", "base"} <= set(p), p["url"]
        assert p["type"] in {*types, "special"}, p["url"]
        assert p["base"], p["url"]
        assert set(p["base"]) <= allowed_bases, p["url"]
        assert all(v not in (None, "", []) for v in p.values()), p["url"]
        assert len(p.get("description", "")) <= 200
        assert "\n" not in p.get("description", "")
    assert len({p["url"] for p in parameters}) == len(parameters)


def test_build_registry_restricts_bases_and_compacts() -> None:
    def sp(url: str, base: list[str], **extra: Any) -> dict[str, Any]:
        return {
            "resource": {
                "resourceType": "SearchParameter",
                "url": url,
                "code": "c",
                "type": "token",
                "base": base,
                "description": "First line\r\nsecond line",
                **extra,
            }
        }

    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            sp("u:b", ["Observation", "MedicinalProduct"], expression="Observation.code"),
            sp("u:a", ["Resource"], multipleOr=True, target=[]),
            sp("u:gone", ["MedicinalProduct"]),
        ],
    }
    built = registry_gen.build_registry(bundle)
    assert built["parameters"] == [
        {
            "url": "u:a",
            "code": "c",
            "type": "token",
            "base": ["Resource"],
            "multipleOr": True,
            "description": "First line",
        },
        {
            "url": "u:b",
            "code": "c",
            "type": "token",
            "base": ["Observation"],
            "expression": "Observation.code",
            "description": "First line",
        },
    ]
    text = registry_gen.dumps_registry(built)
    assert json.loads(text) == built
    assert text.count("\n") == 4


# --- known parameters ----------------------------------------------------------------------------


def test_observation_parameters() -> None:
    patient = _must("Observation", "patient")
    assert patient.type == "reference"
    assert "Patient" in patient.targets
    assert _must("Observation", "code").type == "token"
    assert _must("Observation", "date").type == "date"
    assert _must("Observation", "value-quantity").type == "quantity"

    composite = _must("Observation", "code-value-quantity")
    assert composite.type == "composite"
    assert len(composite.components) == 2
    parts = [by_url(definition) for definition, _ in composite.components]
    assert [(p.code, p.type) for p in parts if p is not None] == [
        ("code", "token"),
        ("value-quantity", "quantity"),
    ]
    assert [expression for _, expression in composite.components] == ["code", "value.as(Quantity)"]


def test_patient_and_medication_administration_parameters() -> None:
    assert {"name", "birthdate", "identifier", "gender"} <= set(params_for("Patient"))
    assert _must("Patient", "birthdate").type == "date"
    assert {"medication", "effective-time", "patient"} <= set(
        params_for("MedicationAdministration")
    )


def test_spec_resource_parameters() -> None:
    resource_level = {p.code for p in ALL_PARAMS if p.base == ("Resource",) and p.expression}
    assert resource_level == RESOURCE_CODES


@pytest.mark.parametrize("resource_type", RESOURCE_TYPES)
def test_every_type_gets_the_common_parameters(resource_type: str) -> None:
    found = params_for(resource_type)
    assert set(found) >= RESOURCE_CODES
    assert found["_id"].type == "token"
    assert found["_lastUpdated"].type == "date"
    assert expression_for(found["_id"], resource_type) == f"{resource_type}.id"
    domain = resource_type not in {"Bundle", "Binary", "Parameters"}
    assert found["_text"].url == SP + ("DomainResource-text" if domain else "Resource-text")


def test_lookups() -> None:
    assert param("Observation", "no-such-code") is None
    assert by_url("http://example.org/nothing") is None
    assert by_url(SP + "clinical-code") is _must("Observation", "code")
    assert params_for("Observation") is params_for("Observation")
    assert "ge" in _must("Observation", "_lastUpdated").comparators


# --- expressions ---------------------------------------------------------------------------------


def test_expression_for() -> None:
    assert (
        expression_for(_must("Observation", "patient"), "Observation")
        == "Observation.subject.where(resolve() is Patient)"
    )
    assert expression_for(_must("Observation", "code"), "Observation") == "Observation.code"
    assert (
        expression_for(_must("Observation", "_lastUpdated"), "Observation")
        == "Observation.meta.lastUpdated"
    )
    assert (
        expression_for(_must("MedicationAdministration", "code"), "MedicationAdministration")
        == "(MedicationAdministration.medication as CodeableConcept)"
    )
    combo = _must("Observation", "combo-code-value-quantity")
    assert expression_for(combo, "Observation") == "Observation | Observation.component"
    assert expression_for(_must("Observation", "code-value-quantity"), "Observation") == (
        "Observation"
    )
    assert expression_for(_must("Observation", "code"), "Patient") is None
    assert expression_for(_must("Observation", "_text"), "Observation") is None
    # the spec writes this one unqualified: `name | alias`
    assert (
        expression_for(_must("InsurancePlan", "name"), "InsurancePlan")
        == "InsurancePlan.name | InsurancePlan.alias"
    )


def test_every_base_has_an_expression() -> None:
    for definition in ALL_PARAMS:
        if definition.expression is None:
            continue
        for base in definition.base:
            target = "Patient" if base in {"Resource", "DomainResource"} else base
            assert expression_for(definition, target), (definition.url, base)


def test_split_union_respects_brackets_and_strings() -> None:
    assert split_union("A.b | (A.c as X) | A.d.where(e = 'x|y' or f.exists() | g)") == [
        "A.b",
        "(A.c as X)",
        "A.d.where(e = 'x|y' or f.exists() | g)",
    ]
    assert split_union("A.b.where(c='it\\'s | no')|B.c") == ["A.b.where(c='it\\'s | no')", "B.c"]


# --- agreement with R4 ---------------------------------------------------------------------------


def test_agrees_with_r4_definitions() -> None:
    if not R4_SEARCH_PARAMETERS.is_file():
        pytest.skip(f"the R4 search-parameters fixture is absent ({R4_SEARCH_PARAMETERS})")
    bundle = json.loads(R4_SEARCH_PARAMETERS.read_text(encoding="utf-8"))
    allowed_bases = {*RESOURCE_TYPES, "Resource", "DomainResource"}
    r4 = [
        e["resource"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "SearchParameter"
        and set(e["resource"]["base"]) <= allowed_bases
    ]
    assert len(r4) > 1300
    differences: set[str] = set()
    for sp in r4:
        mine = by_url(sp["url"])
        if mine is None:
            differences.add(sp["url"])
            continue
        assert mine.code == sp["code"], sp["url"]
        if mine.type != sp["type"] or mine.expression != sp.get("expression"):
            differences.add(sp["url"])
    assert differences == KNOWN_R4_R4B_DIFFERENCES
