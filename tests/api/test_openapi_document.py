"""The OpenAPI document (/openapi.json) for a FHIR integrator: every operation's summary and FHIR
interaction, each documented type's search parameters as the CapabilityStatement lists them,
and examples from the shipped case that the R4B models accept and that the server, on SQLite
and PostgreSQL, really answers (a read, a search, the errors)."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from sqlalchemy import Engine

from app.api import openapi_examples, openapi_search
from app.api.openapi import INTERACTIONS
from app.case.load import BUNDLE_PATH
from app.config import Settings
from app.fhir.errors import FhirError
from app.fhir.models import model_class, validate
from app.main import create_app
from tests.api.test_docs_browser import (  # and its fixtures: Chromium, a server with the case
    CASE_SCORES,
    Offline,
    _pain_scores,
    artifacts,  # noqa: F401
    browser,  # noqa: F401
    offline,  # noqa: F401
    playwright_api,  # noqa: F401
    server,  # noqa: F401
)
from tests.asgi_client import asgi_client
from tests.conftest import ROOT, empty_database
from tests.helpers import JSON_HEADERS

PAIN = ("http://loinc.org", "72514-3")
KETAMINE = ("http://www.nlm.nih.gov/research/umls/rxnorm", "6130")
RESULT_PARAMETERS = {"_count", "_offset", "_sort", "_total", "_summary", "_elements", "_format"}
METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}


# -- the document, built as the app builds it (no database) --------------------------------------
@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    built: dict[str, Any] = create_app().openapi()
    return built


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, declared in item.items():
            if method in METHODS:
                yield method, path, declared


def resolve(document: dict[str, Any], node: Any) -> Any:
    """`node`, or what its $ref points at."""
    while isinstance(node, dict) and "$ref" in node:
        found: Any = document
        for part in node["$ref"].removeprefix("#/").split("/"):
            found = found[part.replace("~1", "/").replace("~0", "~")]
        node = found
    return node


def example(document: dict[str, Any], name: str) -> Any:
    return document["components"]["examples"][name]["value"]


# -- the case, independently of the code under test ---------------------------------------------
CASE = json.loads(BUNDLE_PATH.read_bytes())


def case_id(entry: dict[str, Any]) -> str:
    return str(entry["fullUrl"]).removeprefix("urn:uuid:")


def codes(concept: dict[str, Any] | None) -> set[tuple[str, str]]:
    return {(c["system"], c["code"]) for c in (concept or {}).get("coding", [])}


CASE_PATIENT = next(
    f"Patient/{case_id(e)}" for e in CASE["entry"] if e["resource"]["resourceType"] == "Patient"
)
CASE_PAIN = sorted(
    (
        e
        for e in CASE["entry"]
        if e["resource"]["resourceType"] == "Observation" and PAIN in codes(e["resource"]["code"])
    ),
    key=lambda e: str(e["resource"]["effectiveDateTime"]),
)


def case_as_puts() -> dict[str, Any]:
    """The case as a transaction of PUTs: each resource's id its entry's urn:uuid."""
    bundle: dict[str, Any] = copy.deepcopy(CASE)
    for entry in bundle["entry"]:
        resource = entry["resource"]
        resource["id"] = case_id(entry)
        entry["request"] = {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"}
    return bundle


@pytest.fixture
def case_client(settings: Settings) -> Iterator[httpx.Client]:
    """The app on an emptied database holding the case, loaded with ids as in the examples."""
    with asgi_client(create_app(settings)) as client:
        loaded = client.post("/fhir", json=case_as_puts(), headers=JSON_HEADERS)
        assert loaded.status_code == 200, loaded.text
        yield client


# -- a valid, self-contained document ------------------------------------------------------------
def test_document_is_valid_openapi_and_every_reference_resolves(document: dict[str, Any]) -> None:
    schemathesis.openapi.from_dict(document).validate()  # OpenAPI 3.1's own schema
    references: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                references.append(node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document)
    assert len(references) > 100
    for reference in set(references):
        assert resolve(document, {"$ref": reference}) is not None, reference


def test_served_document_is_the_built_one_and_stays_small(client: httpx.Client) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    served = response.json()
    assert served["paths"].keys() >= {"/fhir/{resource_type}", "/fhir/Observation"}
    # The FHIR schemas are the server's small ones, not fhir.resources' 141 expanded models
    # (megabytes); the per-type searches are for the documented types only.
    assert set(served["components"]["schemas"]) <= {
        "Resource",
        "OperationOutcome",
        "Bundle",
        "TransactionBundle",
        "Parameters",
        "CapabilityStatement",
        "JsonPatch",
        "ExportManifest",
        "SmartConfiguration",
        "ResourceType",
        "Status",
    }
    assert len(response.content) < 400_000


def test_building_the_document_loads_no_r4b_model() -> None:
    """What keeps the first build fast (~60 ms): the examples are made without fhir.resources'
    models (~0.2 s to load Observation's), which only writes need."""
    script = (
        "import sys\n"
        "from app.main import create_app\n"
        "document = create_app().openapi()\n"
        "assert document['components']['examples']\n"
        "print(sorted(m for m in sys.modules if m.startswith('fhir.resources.R4B.')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env={"PATH": "/usr/bin:/bin", "DATABASE_URL": "sqlite://"},
    )
    assert done.stdout.strip() == "[]", done.stdout


# -- summaries and FHIR interactions -------------------------------------------------------------
def _interaction_fits(method: str, path: str, interaction: str) -> bool:
    """The interaction is one the method and path can implement."""
    if interaction == "none":
        return not path.startswith("/fhir")
    match = re.fullmatch(r"operation \$([a-z-]+)", interaction)
    if match:
        return f"${match.group(1)}" in path
    codes = interaction.split(" or ")
    if not set(codes) <= INTERACTIONS - {"operation"}:
        return False
    instance = "{resource_id}" in path or "{name}" in path
    expected = {
        "read": method == "get" and instance and "_history" not in path,
        "vread": method == "get" and path.endswith("/_history/{version_id}"),
        "update": method == "put",
        "patch": method == "patch",
        "delete": method == "delete",
        "create": method == "post" and path == "/fhir/{resource_type}",
        "capabilities": method == "get" and path == "/fhir/metadata",
        "history-instance": path == "/fhir/{resource_type}/{resource_id}/_history",
        "history-type": path == "/fhir/{resource_type}/_history",
        "history-system": path == "/fhir/_history",
        "search-type": (path.count("/") == 2 and not instance) or path.endswith("}/_search"),
        "search-system": path in ("/fhir", "/fhir/_search"),
        "transaction": method == "post" and path == "/fhir",
        "batch": method == "post" and path == "/fhir",
    }
    return all(expected[code] for code in codes)


def test_every_operation_has_a_summary_and_its_fhir_interaction(
    document: dict[str, Any],
) -> None:
    found = list(operations(document))
    assert len(found) == 54  # 43 routes and 11 searches by type
    for method, path, declared in found:
        label = f"{method.upper()} {path}"
        assert declared.get("summary", "").strip(), f"{label} has no summary"
        interaction = declared.get("x-fhir-interaction")
        assert isinstance(interaction, str), f"{label} has no x-fhir-interaction"
        assert _interaction_fits(method, path, interaction), f"{label}: {interaction}"


@pytest.mark.parametrize(
    ("method", "path", "interaction"),
    [
        ("get", "/fhir/metadata", "capabilities"),
        ("get", "/fhir/{resource_type}/{resource_id}", "read"),
        ("get", "/fhir/{resource_type}/{resource_id}/_history/{version_id}", "vread"),
        ("get", "/fhir/{resource_type}", "search-type"),
        ("get", "/fhir/Observation", "search-type"),
        ("post", "/fhir/{resource_type}/_search", "search-type"),
        ("get", "/fhir", "search-system"),
        ("post", "/fhir/{resource_type}", "create"),
        ("put", "/fhir/{resource_type}/{resource_id}", "update"),
        ("put", "/fhir/{resource_type}", "update"),
        ("patch", "/fhir/{resource_type}/{resource_id}", "patch"),
        ("delete", "/fhir/{resource_type}", "delete"),
        ("get", "/fhir/{resource_type}/_history", "history-type"),
        ("post", "/fhir", "transaction or batch"),
        ("get", "/fhir/Patient/{patient_id}/$pain-response", "operation $pain-response"),
        ("post", "/fhir/Patient/{patient_id}/$pain-response", "operation $pain-response"),
        ("get", "/fhir/Patient/{patient_id}/$everything", "operation $everything"),
        ("post", "/fhir/{resource_type}/$validate", "operation $validate"),
        ("get", "/fhir/Observation/$lastn", "operation $lastn"),
        ("get", "/fhir/$export", "operation $export"),
        ("get", "/fhir/$export-status/{job_id}", "operation $export"),
        ("get", "/fhir/OperationDefinition/{name}", "read"),
        ("get", "/healthz", "none"),
        ("get", "/readyz", "none"),
        ("get", "/.well-known/smart-configuration", "none"),
    ],
)
def test_interaction_of(document: dict[str, Any], method: str, path: str, interaction: str) -> None:
    assert document["paths"][path][method]["x-fhir-interaction"] == interaction


def test_tags_are_described(document: dict[str, Any]) -> None:
    described = {tag["name"] for tag in document["tags"] if tag.get("description")}
    used = {tag for _, _, declared in operations(document) for tag in declared.get("tags", [])}
    assert used == described


# -- search parameters per type ------------------------------------------------------------------
def _parameters(document: dict[str, Any], path: str) -> dict[str, dict[str, Any]]:
    declared = document["paths"][path]["get"]["parameters"]
    found = [resolve(document, p) for p in declared]
    names = [p["name"] for p in found]
    assert len(names) == len(set(names)), f"{path} lists a parameter twice"
    return {p["name"]: p for p in found}


def test_documented_types_cover_the_case() -> None:
    case_types = {e["resource"]["resourceType"] for e in CASE["entry"]}
    assert case_types <= set(openapi_search.DOCUMENTED_TYPES)
    assert {"MedicationRequest", "Medication", "Encounter", "Practitioner"} <= set(
        openapi_search.DOCUMENTED_TYPES
    )


def test_each_documented_type_has_its_search_path(document: dict[str, Any]) -> None:
    searched = {
        path.removeprefix("/fhir/")
        for method, path, declared in operations(document)
        if declared["x-fhir-interaction"] == "search-type" and "{" not in path
    }
    assert searched == set(openapi_search.DOCUMENTED_TYPES)
    assert "/fhir/Account" not in document["paths"]  # another type: GET /fhir/{resource_type}
    generic = document["paths"]["/fhir/{resource_type}"]["get"]
    for resource_type in openapi_search.DOCUMENTED_TYPES:
        search = document["paths"][f"/fhir/{resource_type}"]["get"]
        assert search["tags"] == [openapi_search.TAG]
        assert search["operationId"] == f"search_{resource_type}"
        assert search["responses"].keys() == generic["responses"].keys()


@pytest.mark.parametrize(
    "resource_type", ["Observation", "Patient", "MedicationAdministration", "Condition"]
)
def test_type_parameters_are_the_capability_statements(
    client: httpx.Client, document: dict[str, Any], resource_type: str
) -> None:
    statement = client.get("/fhir/metadata").json()
    (entry,) = (r for r in statement["rest"][0]["resource"] if r["type"] == resource_type)
    capable = {(p["name"], p["type"], p["definition"]) for p in entry["searchParam"]}
    listed = _parameters(document, f"/fhir/{resource_type}")
    documented = {
        (name, p["x-fhir-type"], p["x-fhir-definition"])
        for name, p in listed.items()
        if "x-fhir-type" in p
    }
    assert documented == capable
    # and the parameters every search takes
    assert {"_include", "_revinclude", *RESULT_PARAMETERS} <= listed.keys()
    assert {"_id", "_lastUpdated", "_tag", "_profile"} <= listed.keys()
    for parameter in listed.values():
        assert parameter["in"] == "query"
        assert parameter["required"] is False
        assert parameter["description"]


def test_type_parameters_say_what_they_search(document: dict[str, Any]) -> None:
    observation = _parameters(document, "/fhir/Observation")
    assert observation["code"]["x-fhir-type"] == "token"
    assert "`Observation.code`" in observation["code"]["description"]
    assert "Modifiers: :missing, :not, :of-type, :text" in observation["code"]["description"]
    assert observation["date"]["x-fhir-type"] == "date"
    assert observation["value-quantity"]["x-fhir-type"] == "quantity"
    patient = observation["patient"]["description"]
    assert patient.startswith("reference: ")
    assert "Observation.subject.where(resolve() is Patient)" in patient
    assert (
        "code` (token) $ `value-quantity` (quantity)"
        in (observation["code-value-quantity"]["description"])
    )
    assert "Observation:patient" in observation["_include"]["description"]
    assert "_content" not in observation  # not indexed, not offered (nor in the metadata)
    administration = _parameters(document, "/fhir/MedicationAdministration")
    assert "MedicationAdministration.effective" in administration["effective-time"]["description"]
    assert "Medication" in administration["medication"]["description"]
    assert "MedicationAdministration.medication" in administration["code"]["description"]
    assert "value-quantity" not in administration  # an Observation parameter


def test_the_type_parameters_work_as_documented(case_client: httpx.Client) -> None:
    """A search by the parameters the document lists finds the case's pain scores."""
    response = case_client.get(
        "/fhir/Observation",
        params={"patient": CASE_PATIENT, "code": "|".join(PAIN), "date": "ge2016-08-22"},
        headers={"Prefer": "handling=strict"},  # an unknown parameter would be a 400
    )
    assert response.status_code == 200, response.text
    assert response.json()["total"] == len(CASE_PAIN) - 1  # all but the 2016-01-27 baseline


# -- the examples --------------------------------------------------------------------------------
def test_every_example_parses_with_the_r4b_models(document: dict[str, Any]) -> None:
    examples = document["components"]["examples"]
    assert len(examples) >= 10
    for name, declared in examples.items():
        value = declared["value"]
        assert declared["summary"], name
        model_class(value["resourceType"]).model_validate(value)
    for name in (
        openapi_examples.ADMINISTRATION_CREATE,
        openapi_examples.ADMINISTRATION_UPDATE,
        openapi_examples.ADMINISTRATION_STORED,
        openapi_examples.OBSERVATION_CREATE,
        openapi_examples.OBSERVATION_STORED,
    ):
        validate(example(document, name))  # the server's own checks, beyond the models'


def test_the_medication_administration_is_the_cases_ketamine(document: dict[str, Any]) -> None:
    first = next(
        e
        for e in CASE["entry"]
        if e["resource"]["resourceType"] == "MedicationAdministration"
        and KETAMINE in codes(e["resource"]["medicationCodeableConcept"])
    )
    created = example(document, openapi_examples.ADMINISTRATION_CREATE)
    assert "id" not in created
    assert KETAMINE in codes(created["medicationCodeableConcept"])
    assert created["dosage"] == first["resource"]["dosage"]
    assert created["effectiveDateTime"] == first["resource"]["effectiveDateTime"]
    assert created["subject"] == {"reference": CASE_PATIENT}
    assert all(not r["reference"].startswith("urn:") for r in created["supportingInformation"])
    updated = example(document, openapi_examples.ADMINISTRATION_UPDATE)
    assert updated == {**created, "id": case_id(first)}
    stored = example(document, openapi_examples.ADMINISTRATION_STORED)
    assert stored["meta"]["versionId"] == "1"
    assert {k: v for k, v in stored.items() if k != "meta"} == updated


def test_the_observation_is_a_case_pain_score(document: dict[str, Any]) -> None:
    observation = example(document, openapi_examples.OBSERVATION_STORED)
    assert PAIN in codes(observation["code"])
    assert observation["subject"] == {"reference": CASE_PATIENT}
    first = next(e for e in CASE_PAIN if "valueQuantity" in e["resource"])
    assert observation["id"] == case_id(first)
    assert observation["valueQuantity"] == first["resource"]["valueQuantity"]
    assert observation["effectiveDateTime"] == first["resource"]["effectiveDateTime"]


def test_examples_are_read_from_the_case_when_the_document_is_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No copy: another case gives other examples."""
    changed = copy.deepcopy(CASE)
    for entry in changed["entry"]:
        dose = entry["resource"].get("dosage", {}).get("dose")
        if entry["resource"]["resourceType"] == "MedicationAdministration" and dose:
            dose["value"] = 123
    path = tmp_path / "case.json"
    path.write_text(json.dumps(changed))
    monkeypatch.setattr(openapi_examples, "BUNDLE_PATH", path)
    openapi_examples.case_resources.cache_clear()
    try:
        built = create_app().openapi()
        administration = example(built, openapi_examples.ADMINISTRATION_CREATE)
        assert administration["dosage"]["dose"]["value"] == 123
    finally:
        openapi_examples.case_resources.cache_clear()


def test_examples_are_where_they_apply(document: dict[str, Any]) -> None:
    def examples_of(node: dict[str, Any]) -> set[str]:
        content = resolve(document, node)["content"]["application/fhir+json"]
        return {ref["$ref"].rsplit("/", 1)[1] for ref in content.get("examples", {}).values()}

    paths = document["paths"]
    ex = openapi_examples
    create = paths["/fhir/{resource_type}"]["post"]
    assert examples_of(create["requestBody"]) == {ex.ADMINISTRATION_CREATE, ex.OBSERVATION_CREATE}
    assert examples_of(create["responses"]["201"]) == {
        ex.ADMINISTRATION_STORED,
        ex.OBSERVATION_STORED,
    }
    update = paths["/fhir/{resource_type}/{resource_id}"]["put"]
    assert examples_of(update["requestBody"]) == {ex.ADMINISTRATION_UPDATE, ex.OBSERVATION_UPDATE}
    read = paths["/fhir/{resource_type}/{resource_id}"]["get"]
    assert examples_of(read["responses"]["200"]) == {
        ex.ADMINISTRATION_STORED,
        ex.OBSERVATION_STORED,
    }
    assert examples_of(paths["/fhir/Observation"]["get"]["responses"]["200"]) == {ex.PAIN_SEARCHSET}
    assert examples_of(paths["/fhir/{resource_type}"]["get"]["responses"]["200"]) == {
        ex.PAIN_SEARCHSET
    }
    assert examples_of(paths["/fhir/Patient"]["get"]["responses"]["200"]) == set()
    outcomes = {ex.OUTCOME_400, ex.OUTCOME_404, ex.OUTCOME_422}
    for method, path, declared in operations(document):
        if path.startswith("/fhir"):
            assert examples_of(declared["responses"]["4XX"]) == outcomes, f"{method} {path}"


# -- the examples are what the server answers ----------------------------------------------------
def _without_last_updated(node: Any) -> Any:
    if isinstance(node, list):
        return [_without_last_updated(item) for item in node]
    if not isinstance(node, dict):
        return node
    return {k: _without_last_updated(v) for k, v in node.items() if k != "lastUpdated"}


def test_the_read_examples_are_what_the_server_answers(
    case_client: httpx.Client, document: dict[str, Any]
) -> None:
    for name in (openapi_examples.ADMINISTRATION_STORED, openapi_examples.OBSERVATION_STORED):
        stored = example(document, name)
        response = case_client.get(f"/fhir/{stored['resourceType']}/{stored['id']}")
        assert response.status_code == 200, response.text
        assert _without_last_updated(response.json()) == _without_last_updated(stored)


def test_the_searchset_example_is_what_the_server_answers(
    case_client: httpx.Client, document: dict[str, Any]
) -> None:
    bundle = example(document, openapi_examples.PAIN_SEARCHSET)
    assert bundle["type"] == "searchset"
    assert bundle["total"] == len(CASE_PAIN) == 6
    assert [e["resource"]["id"] for e in bundle["entry"]] == [case_id(e) for e in CASE_PAIN[:3]]
    assert all(e["resource"]["subject"] == {"reference": CASE_PATIENT} for e in bundle["entry"])
    query = bundle["link"][0]["url"].removeprefix(openapi_examples.EXAMPLE_BASE)
    response = case_client.get(f"/fhir{query}")
    assert response.status_code == 200, response.text
    answered = json.loads(
        response.text.replace(str(case_client.base_url).rstrip("/") + "/fhir", "BASE")
    )
    expected = json.loads(json.dumps(bundle).replace(openapi_examples.EXAMPLE_BASE, "BASE"))
    for body in (answered, expected):
        del body["id"]
    assert _without_last_updated(answered) == _without_last_updated(expected)


def test_the_outcome_examples_are_what_the_server_answers(
    client: httpx.Client, document: dict[str, Any]
) -> None:
    observation = example(document, openapi_examples.OBSERVATION_CREATE)
    sent = [
        (openapi_examples.OUTCOME_400, "POST", "/fhir/MedicationAdministration", observation),
        (openapi_examples.OUTCOME_404, "GET", "/fhir/Observatio", None),
        (
            openapi_examples.OUTCOME_422,
            "POST",
            "/fhir/Observation",
            openapi_examples.absent_and_present(),
        ),
    ]
    for name, method, url, body in sent:
        status = int(name.split("-")[1])
        response = client.request(
            method, url, headers=JSON_HEADERS, content=json.dumps(body) if body else None
        )
        assert response.status_code == status, response.text
        assert response.json() == example(document, name), name
        assert document["components"]["examples"][name]["summary"].startswith(f"{status}: ")


def test_the_422_example_is_what_full_validation_raises(document: dict[str, Any]) -> None:
    with pytest.raises(FhirError) as raised:
        validate(openapi_examples.absent_and_present(), "Observation")
    assert raised.value.status == 422
    assert raised.value.outcome() == example(document, openapi_examples.OUTCOME_422)
    assert raised.value.outcome()["issue"][0]["expression"] == ["Observation.dataAbsentReason"]


def test_the_write_examples_are_taken(
    settings: Settings, admin_engines: dict[str, Engine], document: dict[str, Any]
) -> None:
    empty_database(settings.database_url, admin_engines)
    with asgi_client(create_app(settings)) as client:
        for name in (openapi_examples.ADMINISTRATION_CREATE, openapi_examples.OBSERVATION_CREATE):
            body = example(document, name)
            response = client.post(f"/fhir/{body['resourceType']}", json=body, headers=JSON_HEADERS)
            assert response.status_code == 201, response.text
        for name in (openapi_examples.ADMINISTRATION_UPDATE, openapi_examples.OBSERVATION_UPDATE):
            body = example(document, name)
            url = f"/fhir/{body['resourceType']}/{body['id']}"
            response = client.put(url, json=body, headers=JSON_HEADERS)
            assert response.status_code == 201, response.text  # update as create


# -- in Swagger UI (headless Chromium, as tests/api/test_docs_browser.py) ------------------------
def test_swagger_ui_searches_observations_by_their_own_parameters(
    offline: Offline,  # noqa: F811 - the fixtures imported above
    server: str,  # noqa: F811
    artifacts: Path,  # noqa: F811
) -> None:
    """GET /fhir/Observation lists Observation's parameters; "Try it out" with `code` finds the
    case's pain scores; the create form offers the case's ketamine administration."""
    page = offline.page
    page.goto(f"{server}/docs")
    page.wait_for_selector(".swagger-ui .information-container .title", timeout=30_000)
    search = page.locator("#operations-search_by_type-search_Observation")  # tag, operationId
    search.scroll_into_view_if_needed()
    search.locator(".opblock-summary").first.click()
    code = search.locator("tr[data-param-name='code']")
    assert "token: " in code.inner_text()
    assert "Observation.code" in code.inner_text()
    assert search.locator("tr[data-param-name='value-quantity']").count() == 1
    search.get_by_role("button", name="Try it out").click()
    code.locator("input").fill("|".join(PAIN))
    search.locator("tr[data-param-name='_sort'] input").fill("date")
    search.get_by_role("button", name="Execute").click()
    live = search.locator(".live-responses-table tr.response")
    live.first.wait_for(timeout=30_000)
    assert live.locator(".response-col_status").first.inner_text().strip() == "200"
    body = live.locator(".response-col_description pre").first
    shown = json.loads(body.inner_text())
    assert _pain_scores(shown) == CASE_SCORES
    assert len(shown["entry"]) == len(CASE_SCORES)  # the code alone selected them
    body.scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / "docs-search-by-type.png"))

    create = page.locator("#operations-type-create_fhir__resource_type__post")
    create.scroll_into_view_if_needed()
    create.locator(".opblock-summary").first.click()
    request = create.locator(".opblock-section-request-body")
    request.wait_for(timeout=10_000)
    assert "Ketamine MedicationAdministration" in request.inner_text()
    assert '"6130"' in request.locator(".highlight-code").first.inner_text()
    request.scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / "docs-create-example.png"))
    offline.check()
