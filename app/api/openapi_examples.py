"""The OpenAPI document's examples, taken from the shipped case when the document is built.

Nothing here is a copy: the case bundle (app/case/data/ketamine-case-bundle.json) is read when
/openapi.json is first built, and the examples are what the server's own code makes of it.

- Resources: each case resource with its entry's urn:uuid as its id and the references between
  them rewritten to Type/id (as the case reads once loaded by PUTs; loaded by `python -m app
  load-case` the ids are the server's own). A create body has no id; an update body has it; a
  read or write response is the stored form (`app.fhir.service.stamp`: id, meta.versionId 1,
  meta.lastUpdated).
- The ketamine MedicationAdministration: the case's first ketamine (RxNorm 6130) infusion.
- The pain Observation: the case's first PI-NRS score (LOINC 72514-3) with a value.
- The searchset Bundle: the first page of the case patient's pain scores sorted by date
  (`_count=3`), made by `app.fhir.bundles.searchset_bundle` from the stored forms.
- OperationOutcomes: the errors the server's validation raises for the pain Observation sent
  wrong (400: to another type's URL; 422: with a dataAbsentReason beside its value, obs-6) and
  for an unknown resource type (404). The 422 is made by the validation's invariant step alone
  (app/fhir/invariants.py), which is what `validate` answers for it (a test checks), without
  loading the R4B models: the first build of the document stays fast.

`install_examples(document)` adds them under components/examples; the routes refer to them by
the names below (`example_refs`), so each example is written once however many operations show
it.
"""

from __future__ import annotations

import copy
import json
import uuid
from datetime import UTC, datetime
from functools import cache
from typing import Any

from app.case.load import BUNDLE_PATH
from app.fhir import jsonio
from app.fhir.bundles import searchset_bundle
from app.fhir.errors import FhirError, InvalidResourceError, operation_outcome
from app.fhir.instants import format_instant
from app.fhir.invariants import invariant_issues
from app.fhir.models import require_resource_type, validate
from app.fhir.service import stamp
from app.fhir.store import SearchPage, VersionRecord
from app.search.query import parse_search

# The base URL the examples' fullUrls and links use: where `python3 dev.py serve` listens.
EXAMPLE_BASE = "http://127.0.0.1:8000/fhir"
# meta.lastUpdated of the stored forms (a version's write time, which no case states).
STORED_AT = datetime(2024, 1, 1, tzinfo=UTC)
PAIN_SYSTEM = "http://loinc.org"
PAIN_CODE = "72514-3"  # PI-NRS: pain intensity, 11-point numeric rating scale
KETAMINE = ("http://www.nlm.nih.gov/research/umls/rxnorm", "6130")
SEARCHSET_COUNT = 3

# The names of components/examples (what routes refer to).
ADMINISTRATION_CREATE = "ketamine-administration-create"
ADMINISTRATION_UPDATE = "ketamine-administration-update"
ADMINISTRATION_STORED = "ketamine-administration"
OBSERVATION_CREATE = "pain-observation-create"
OBSERVATION_UPDATE = "pain-observation-update"
OBSERVATION_STORED = "pain-observation"
PAIN_SEARCHSET = "pain-scores-searchset"
OUTCOME_400 = "outcome-400-wrong-type"
OUTCOME_404 = "outcome-404-unknown-type"
OUTCOME_422 = "outcome-422-invalid"


def example_refs(*names: str) -> dict[str, dict[str, str]]:
    """An `examples` map of references to components/examples, keyed by the names."""
    return {name: {"$ref": f"#/components/examples/{name}"} for name in names}


# -- the case ------------------------------------------------------------------------------------
@cache
def case_resources() -> tuple[dict[str, Any], ...]:
    """The case's resources, each with its entry's urn:uuid as id, references as Type/id."""
    bundle: dict[str, Any] = json.loads(BUNDLE_PATH.read_bytes())
    local = {
        entry["fullUrl"]: f"{entry['resource']['resourceType']}/"
        f"{entry['fullUrl'].removeprefix('urn:uuid:')}"
        for entry in bundle["entry"]
    }
    found = []
    for entry in bundle["entry"]:
        resource = _rewrite(entry["resource"], local)
        kind = resource.pop("resourceType")
        resource_id = local[entry["fullUrl"]].split("/", 1)[1]
        found.append({"resourceType": kind, "id": resource_id, **resource})
    return tuple(found)


def _rewrite(node: Any, local: dict[str, str]) -> Any:
    if isinstance(node, list):
        return [_rewrite(item, local) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _rewrite(value, local) for key, value in node.items()}
    reference = out.get("reference")
    if isinstance(reference, str) and reference in local:
        out["reference"] = local[reference]
    return out


def _codes(concept: dict[str, Any] | None) -> set[tuple[str, str]]:
    return {(c.get("system", ""), c.get("code", "")) for c in (concept or {}).get("coding", [])}


def _first(kind: str, matches: Any) -> dict[str, Any]:
    for resource in case_resources():
        if resource["resourceType"] == kind and matches(resource):
            return copy.deepcopy(resource)
    raise LookupError(f"the case has no such {kind}")  # the case is shipped: a build error


def _is_pain_score(resource: dict[str, Any]) -> bool:
    return (PAIN_SYSTEM, PAIN_CODE) in _codes(resource.get("code"))


def ketamine_administration() -> dict[str, Any]:
    """The case's first ketamine infusion (with its id)."""
    return _first(
        "MedicationAdministration",
        lambda r: KETAMINE in _codes(r.get("medicationCodeableConcept")),
    )


def pain_observation() -> dict[str, Any]:
    """The case's first pain score with a value (with its id)."""
    return _first("Observation", lambda r: _is_pain_score(r) and "valueQuantity" in r)


def case_patient() -> dict[str, Any]:
    return _first("Patient", lambda r: True)


def stored(resource: dict[str, Any]) -> dict[str, Any]:
    """The resource as the server stores and returns it: its id, version 1, meta first."""
    body = {k: v for k, v in resource.items() if k != "id"}
    loaded: dict[str, Any] = jsonio.loads(stamp(body, resource["id"], 1, STORED_AT))
    return loaded


def without_id(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k != "id"}


def pain_searchset() -> dict[str, Any]:
    """The first page of the case patient's pain scores by date, as the server answers
    GET /fhir/Observation?patient=...&code=http://loinc.org|72514-3&_sort=date&_count=3."""
    patient = case_patient()["id"]
    scores = sorted(
        (r for r in case_resources() if r["resourceType"] == "Observation" and _is_pain_score(r)),
        key=lambda r: str(r.get("effectiveDateTime", "")),
    )
    pairs = [
        ("patient", patient),
        ("code", f"{PAIN_SYSTEM}|{PAIN_CODE}"),
        ("_sort", "date"),
        ("_count", str(SEARCHSET_COUNT)),
    ]
    request = parse_search(("Observation",), pairs, SEARCHSET_COUNT, SEARCHSET_COUNT)
    records = [
        VersionRecord(
            "Observation",
            r["id"],
            1,
            STORED_AT,
            "PUT",
            stamp(without_id(r), r["id"], 1, STORED_AT),
        )
        for r in scores[:SEARCHSET_COUNT]
    ]
    page = SearchPage(records, [], len(scores), len(scores) > SEARCHSET_COUNT)
    link = f"{EXAMPLE_BASE}/Observation"
    bundle: dict[str, Any] = jsonio.loads(
        searchset_bundle(EXAMPLE_BASE, request, page, link, pairs, None)
    )
    # A search answers with a new Bundle id and the time: here fixed, so the document is the
    # same in every worker process.
    bundle["id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, bundle["link"][0]["url"]))
    bundle["meta"]["lastUpdated"] = format_instant(STORED_AT)
    return bundle


# -- OperationOutcomes ---------------------------------------------------------------------------
def _raised(action: Any) -> FhirError:
    try:
        action()
    except FhirError as error:
        return error
    raise AssertionError("expected the server's validation to refuse it")


def absent_and_present() -> dict[str, Any]:
    """The pain Observation with a dataAbsentReason beside its value (obs-6 forbids it)."""
    return {
        **without_id(pain_observation()),
        "dataAbsentReason": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/data-absent-reason",
                    "code": "asked-declined",
                }
            ]
        },
    }


def outcomes() -> dict[str, tuple[int, str, dict[str, Any]]]:
    """name -> (status, what was sent, the OperationOutcome the server answers)."""
    observation = without_id(pain_observation())
    wrong_type = _raised(lambda: validate(observation, "MedicationAdministration"))
    unknown = _raised(lambda: require_resource_type("Observatio"))
    issues = invariant_issues(absent_and_present())
    if not issues:
        raise AssertionError("expected obs-6 to refuse a dataAbsentReason beside a value")
    return {
        OUTCOME_400: (
            wrong_type.status,
            "The case's pain Observation sent to POST /fhir/MedicationAdministration",
            wrong_type.outcome(),
        ),
        OUTCOME_404: (unknown.status, "GET /fhir/Observatio (a misspelt type)", unknown.outcome()),
        OUTCOME_422: (
            InvalidResourceError.status,
            "The case's pain Observation with a dataAbsentReason beside its value",
            operation_outcome(issues),
        ),
    }


# -- the components ------------------------------------------------------------------------------
def examples() -> dict[str, dict[str, Any]]:
    """components/examples: name -> Example Object (summary, description, value)."""
    administration = ketamine_administration()
    observation = pain_observation()
    patient = f"Patient/{case_patient()['id']}"
    ids = (
        "Ids are the case's urn:uuids (as the case reads loaded by PUT; `python -m app "
        "load-case` gives the server's own)."
    )
    dose = administration["dosage"]["dose"]
    given = f"{dose['value']} {dose['unit']} ketamine IV on {administration['effectiveDateTime']}"
    score = observation["valueQuantity"]["value"]
    scored = f"PI-NRS {score}/10 on {observation['effectiveDateTime']}"
    found: dict[str, dict[str, Any]] = {
        ADMINISTRATION_CREATE: {
            "summary": f"Ketamine MedicationAdministration (the case's: {given})",
            "description": f"To create: no id. Its subject is the case patient ({patient}). {ids}",
            "value": without_id(administration),
        },
        ADMINISTRATION_UPDATE: {
            "summary": f"Ketamine MedicationAdministration (the case's: {given})",
            "description": "To update: the id is the one in the URL.",
            "value": administration,
        },
        ADMINISTRATION_STORED: {
            "summary": f"Ketamine MedicationAdministration (the case's: {given})",
            "description": "As stored: the server's id and meta (versionId, lastUpdated).",
            "value": stored(administration),
        },
        OBSERVATION_CREATE: {
            "summary": f"Pain Observation, LOINC {PAIN_CODE} (the case's: {scored})",
            "description": f"To create: no id. Its subject is the case patient ({patient}). {ids}",
            "value": without_id(observation),
        },
        OBSERVATION_UPDATE: {
            "summary": f"Pain Observation, LOINC {PAIN_CODE} (the case's: {scored})",
            "description": "To update: the id is the one in the URL.",
            "value": observation,
        },
        OBSERVATION_STORED: {
            "summary": f"Pain Observation, LOINC {PAIN_CODE} (the case's: {scored})",
            "description": "As stored: the server's id and meta (versionId, lastUpdated).",
            "value": stored(observation),
        },
        PAIN_SEARCHSET: {
            "summary": "The case patient's pain scores, first page (searchset Bundle)",
            "description": (
                f"GET /fhir/Observation?patient={patient.split('/')[1]}&code={PAIN_SYSTEM}|"
                f"{PAIN_CODE}&_sort=date&_count={SEARCHSET_COUNT} on a server holding the case "
                f"(base {EXAMPLE_BASE}); `next` and `last` links page on. {ids}"
            ),
            "value": pain_searchset(),
        },
    }
    for name, (status, sent, outcome) in outcomes().items():
        found[name] = {
            "summary": f"{status}: {outcome['issue'][0]['diagnostics'][:80]}",
            "description": f"{status}, answering: {sent}.",
            "value": outcome,
        }
    return found


def install_examples(document: dict[str, Any]) -> None:
    """Adds components/examples to `document` (those its operations refer to must exist)."""
    components = document.setdefault("components", {})
    components["examples"] = examples()
