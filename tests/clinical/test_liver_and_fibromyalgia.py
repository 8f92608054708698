"""$liver-safety (CASE.md C.6) and $fibromyalgia-criteria (C.7): the case's values on both
databases, and rules on data built for them."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import httpx
import pytest

from app.clinical import fibromyalgia, liver, pain
from tests.clinical.test_pain_response import _parts, _value, case  # noqa: F401 - fixture
from tests.clinical.test_pain_rules import _dose
from tests.helpers import assert_outcome


def _scalars(parameters: dict[str, Any]) -> dict[str, Any]:
    return {p["name"]: _value(p) for p in parameters["parameter"] if "part" not in p}


def test_liver_safety_of_the_case(case: tuple[httpx.Client, str]) -> None:  # noqa: F811
    client, patient_id = case
    response = client.get(f"/fhir/Patient/{patient_id}/$liver-safety")
    assert response.status_code == 200, response.text
    result = response.json()
    tests = [{p["name"]: _value(p) for p in t["part"]} for t in _parts(result, "test")]
    assert len(tests) == 12
    assert {t["status"] for t in tests} == {"normal"}
    assert {t["basis"] for t in tests} == {"interpretation"}
    assert all("ratioToUln" not in t for t in tests)
    pre = [t for t in tests if t.get("timing") == "pre-infusion"]
    assert sorted(t["analyte"] for t in pre) == ["ALP", "ALT", "AST", "GGT"]
    assert sorted({t.get("daysFromFirstDose") for t in tests if "date" in t}) == [24, 56]
    scalars = _scalars(result)
    assert scalars["testCount"] == 12
    assert scalars["abnormalCount"] == 0
    assert scalars["ulnComputable"] is False
    assert scalars["diliSignal"] is False
    assert scalars["lastDatedTest"] == "2016-10-17"
    assert scalars["administrationsAfterLastLft"] == 2


def test_fibromyalgia_for_the_case_is_indeterminate(case: tuple[httpx.Client, str]) -> None:  # noqa: F811
    client, patient_id = case
    result = client.get(f"/fhir/Patient/{patient_id}/$fibromyalgia-criteria").json()
    scalars = _scalars(result)
    assert scalars["result"] == "indeterminate"
    missing = [_value(p) for p in _parts(result, "missing")]
    assert missing == ["wpi", "ss", "symptomDurationMonths", "otherDisorderExplainsPain"]


@pytest.mark.parametrize(
    ("query", "result"),
    [
        ("wpi=7&ss=5&symptomDurationMonths=3&otherDisorderExplainsPain=false", "met"),
        ("wpi=3&ss=9&symptomDurationMonths=6&otherDisorderExplainsPain=false", "met"),
        ("wpi=3&ss=8&symptomDurationMonths=6&otherDisorderExplainsPain=false", "not-met"),
        ("wpi=2&ss=12&symptomDurationMonths=6&otherDisorderExplainsPain=false", "not-met"),
        ("wpi=7&ss=5&symptomDurationMonths=2&otherDisorderExplainsPain=false", "not-met"),
        ("wpi=7&ss=5&symptomDurationMonths=3&otherDisorderExplainsPain=true", "not-met"),
        ("wpi=7&ss=5&symptomDurationMonths=3", "indeterminate"),
        ("wpi=3&ss=9&symptomDurationMonths=6&generalizedPain=true&version=2016", "not-met"),
        ("wpi=4&ss=9&symptomDurationMonths=6&generalizedPain=true&version=2016", "met"),
        (
            "wpi=7&ss=5&symptomDurationMonths=3&otherDisorderExplainsPain=true&version=2016",
            "indeterminate",
        ),
    ],
)
def test_fibromyalgia_rules(client: httpx.Client, query: str, result: str) -> None:
    response = client.get(f"/fhir/$fibromyalgia-criteria?{query}")
    assert response.status_code == 200, response.text
    assert _scalars(response.json())["result"] == result


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("wpi=20&ss=5", "wpi"),
        ("wpi=-1&ss=5", "wpi"),
        ("wpi=7&ss=13", "ss"),
        ("wpi=7.5&ss=5", "wpi"),
        ("wpi=seven", "wpi"),
        ("version=2020", "version"),
        ("otherDisorderExplainsPain=maybe", "otherDisorderExplainsPain"),
        ("symptomDurationMonths=-2", "symptomDurationMonths"),
    ],
)
def test_fibromyalgia_out_of_range_is_400(client: httpx.Client, query: str, name: str) -> None:
    assert_outcome(client.get(f"/fhir/$fibromyalgia-criteria?{query}"), 400, None, name)


def _lft(id_: str, code: str, day: str | None, value: float | None, uln: float | None) -> Any:
    out: dict[str, Any] = {
        "resourceType": "Observation",
        "id": id_,
        "status": "final",
        "code": {"coding": [{"system": pain.LOINC, "code": code}]},
    }
    if day:
        out["effectiveDateTime"] = day
    if value is not None:
        out["valueQuantity"] = {"value": value, "system": pain.UCUM, "code": "U/L"}
    if uln is not None:
        out["referenceRange"] = [{"high": {"value": uln, "system": pain.UCUM, "code": "U/L"}}]
    return out


def test_dili_signal_and_pattern_from_ratios() -> None:
    doses = pain.administrations([_dose("d", "2020-01-01")])
    tests = [
        _lft("alt", "1742-6", "2020-02-01", 250, 40),  # 6.25 x ULN
        _lft("alp", "6768-6", "2020-02-01", 120, 100),  # 1.2 x ULN: R = 5.2
        _lft("ast", "1920-8", "2020-02-01", 30, None),  # no ULN: not computable
    ]
    result = liver.liver_safety(tests, doses)
    assert result.uln_computable
    assert result.dili_signal is True
    assert result.dili_criteria == ["ALT >= 5 x ULN (2020-02-01)"]
    assert result.pattern == "hepatocellular"
    assert result.r_ratio == Fraction(625, 100) / Fraction(120, 100)
    assert result.abnormal == 2
    assert result.administrations_after_last_test == 0
    ast = next(t for t in result.tests if t.analyte == "AST")
    assert ast.ratio is None
    assert ast.status == "unknown"


def test_microkatal_is_converted_and_a_normal_ratio_is_no_signal() -> None:
    test = _lft("alt", "1742-6", "2020-02-01", None, None)
    test["valueQuantity"] = {"value": 0.5, "system": pain.UCUM, "code": "ukat/L"}  # 30 U/L
    test["referenceRange"] = [{"high": {"value": 40, "system": pain.UCUM, "code": "U/L"}}]
    result = liver.liver_safety([test], pain.administrations([_dose("d", "2020-01-01")]))
    assert result.tests[0].ratio == Fraction(3, 4)
    assert result.dili_signal is False


def test_fibromyalgia_version_check() -> None:
    with pytest.raises(fibromyalgia.CriteriaInputError):
        fibromyalgia.evaluate(wpi=1, ss=1, symptom_months=1, other_disorder=False, version="x")


@pytest.mark.parametrize(
    "name", ["pain-response", "liver-safety", "fibromyalgia-criteria", "clinical-course"]
)
def test_operation_definitions_are_served_and_declared(client: httpx.Client, name: str) -> None:
    from app.fhir.models import validate

    response = client.get(f"/fhir/OperationDefinition/{name}")
    assert response.status_code == 200, response.text
    definition = response.json()
    validate(definition, "OperationDefinition")
    assert definition["code"] == name
    rest = client.get("/fhir/metadata").json()["rest"][0]
    patient = next(r for r in rest["resource"] if r["type"] == "Patient")
    assert {"name": name, "definition": definition["url"]} in patient["operation"]
    assert client.get("/fhir/OperationDefinition/not-ours").status_code == 404
