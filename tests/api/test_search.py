"""Search over HTTP on both databases, against a small data set whose expected answers are
worked out by hand from search.html's rules."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from tests.conftest import loaded_client
from tests.helpers import JSON_HEADERS, assert_outcome, ketamine_administration, pain_observation

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"


def _obs(
    id_: str,
    value: float | None,
    when: str,
    subject: str = "Patient/pA",
    code: str = "72514-3",
    unit: str = "{score}",
    **extra: Any,
) -> dict[str, Any]:
    resource = pain_observation(
        value if value is not None else 0, subject=subject, id=id_, effectiveDateTime=when, **extra
    )
    resource["code"] = {"coding": [{"system": LOINC, "code": code}]}
    if value is None:
        del resource["valueQuantity"]
        resource["dataAbsentReason"] = {"text": "not asked"}
    else:
        resource["valueQuantity"] = {"value": value, "unit": unit, "system": UCUM, "code": unit}
    return resource


DATA: list[dict[str, Any]] = [
    {
        "resourceType": "Patient",
        "id": "pA",
        "name": [{"family": "Hanna", "given": ["Alice"]}],
        "gender": "female",
        "birthDate": "1967-01-01",
        "identifier": [{"system": "http://hospital.example", "value": "123"}],
        "meta": {"tag": [{"system": "http://example.org/tags", "code": "case"}]},
    },
    {
        "resourceType": "Patient",
        "id": "pB",
        "name": [{"family": "Smith", "given": ["Bárbara"]}],
        "gender": "male",
        "birthDate": "1980-05-05",
    },
    _obs("o1", 10, "2016-01-27"),
    _obs("o2", 6, "2016-08-22"),
    _obs("o3", 1, "2016-08-31"),
    _obs("o4", 4, "2016-09-21"),
    _obs("o5", 7, "2017-03-22T10:00:00Z", subject="Patient/pB"),
    _obs("o6", 30, "2016-09-15", code="1920-8", unit="U/L"),
    _obs("o7", 1063, "2016-08-25", code="dose", unit="mg"),
    _obs("o8", 428, "2016-08-22", code="dose", unit="mg"),
    _obs("o9", None, "2016-10-17", code="1742-6"),
    {
        **{
            k: v
            for k, v in _obs("o10", 5, "", subject="Patient/pZ").items()
            if k != "effectiveDateTime"
        },
        "code": {"coding": [{"system": "http://example.org/codes", "code": "period-test"}]},
        "effectivePeriod": {"start": "2015-01-01", "end": "2017-01-01"},
    },
    {**ketamine_administration(428, "Patient/pA"), "id": "m1"},
    {
        "resourceType": "Condition",
        "id": "c1",
        "subject": {"reference": "Patient/pA"},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "203082005"}]},
    },
]
PAIN = ["o1", "o2", "o3", "o4", "o5"]


@pytest.fixture(scope="module")
def http(database_url: str, admin_engines: dict[str, Engine]) -> Iterator[httpx.Client]:
    with loaded_client(database_url, admin_engines, DATA) as client:
        yield client


def ids(response: httpx.Response, mode: str = "match") -> list[str]:
    assert response.status_code == 200, response.text
    bundle = response.json()
    assert bundle["resourceType"] == "Bundle"
    assert bundle["type"] == "searchset"
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == mode]


CASES = [
    # token
    ("Observation", "code=http://loinc.org|72514-3", PAIN),
    ("Observation", "code=72514-3", PAIN),
    ("Observation", "code=|72514-3", []),
    (
        "Observation",
        "code=http://loinc.org|",
        ["o1", "o2", "o3", "o4", "o5", "o6", "o7", "o8", "o9"],
    ),
    ("Observation", "code=72514-3,1920-8", ["o1", "o2", "o3", "o4", "o5", "o6"]),
    ("Observation", "code:not=72514-3&code:not=dose", ["o6", "o9", "o10"]),
    ("Observation", "status=final&code=1920-8", ["o6"]),
    ("Patient", "identifier=http://hospital.example|123", ["pA"]),
    ("Patient", "identifier=123", ["pA"]),
    ("Patient", "gender=female", ["pA"]),
    ("Patient", "_tag=http://example.org/tags|case", ["pA"]),
    ("Condition", "code=http://snomed.info/sct|203082005", ["c1"]),
    # reference
    ("Observation", "patient=Patient/pA&code=72514-3", ["o1", "o2", "o3", "o4"]),
    ("Observation", "patient=pB", ["o5"]),
    ("Observation", "subject=Patient/pB", ["o5"]),
    ("Observation", "subject:Patient=pB", ["o5"]),
    ("Observation", "patient=http://testserver/fhir/Patient/pB", ["o5"]),
    ("Condition", "patient=pA", ["c1"]),
    ("MedicationAdministration", "patient=pA", ["m1"]),
    # date: each prefix against day precision (search.html#prefix)
    ("Observation", "code=72514-3&date=2016-08", ["o2", "o3"]),
    ("Observation", "code=72514-3&date=2016-08-22", ["o2"]),
    ("Observation", "code=72514-3&date=ne2016-08-22", ["o1", "o3", "o4", "o5"]),
    ("Observation", "code=72514-3&date=lt2016-08-22", ["o1"]),
    ("Observation", "code=72514-3&date=le2016-08-22", ["o1", "o2"]),
    ("Observation", "code=72514-3&date=gt2016-08-31", ["o4", "o5"]),
    ("Observation", "code=72514-3&date=ge2016-08-31", ["o3", "o4", "o5"]),
    ("Observation", "code=72514-3&date=sa2016-08-22", ["o3", "o4", "o5"]),
    ("Observation", "code=72514-3&date=eb2016-08-31", ["o1", "o2"]),
    ("Observation", "code=72514-3&date=ge2016-08-01&date=lt2016-09-01", ["o2", "o3"]),
    ("Observation", "date=2017-03-22T10:00:00Z", ["o5"]),
    ("Observation", "date=2017-03-22T05:00:00-05:00", ["o5"]),
    ("Observation", "date=2017", ["o5"]),
    # a long Period: ranges overlap by the rules, and the span-bounded index scan still finds it
    ("Observation", "date=ge2016-06-01&date=lt2016-06-02", ["o10"]),
    ("Observation", "date=2016-06", []),
    ("Observation", "date=gt2016-12-31", ["o5", "o10"]),
    ("Observation", "date=le2015-06-01&code=period-test", ["o10"]),
    ("Observation", "date=le2015-01-01&code=period-test", []),  # below its start: no overlap
    ("Patient", "birthdate=1967", ["pA"]),
    ("Patient", "birthdate=lt1970-01-01", ["pA"]),
    # quantity and number precision
    ("Observation", "code=72514-3&value-quantity=gt5", ["o1", "o2", "o5"]),
    ("Observation", "value-quantity=6", ["o2"]),
    ("Observation", "value-quantity=6.0", ["o2"]),
    ("Observation", "value-quantity=ap6", ["o2"]),
    ("Observation", "value-quantity=le4|http://unitsofmeasure.org|{score}", ["o3", "o4"]),
    ("Observation", "value-quantity=ge1|http://unitsofmeasure.org|g", ["o7"]),
    ("Observation", "value-quantity=lt0.5|http://unitsofmeasure.org|g", ["o8"]),
    ("Observation", "value-quantity=30||U/L", ["o6"]),
    ("Observation", "value-quantity:missing=true", ["o9"]),
    ("Observation", "value-quantity:missing=false&code=dose", ["o7", "o8"]),
    # string: starts-with, case- and accent-insensitive
    ("Patient", "name=han", ["pA"]),
    ("Patient", "name=HANNA", ["pA"]),
    ("Patient", "name=barb", ["pB"]),
    ("Patient", "name:exact=Bárbara", ["pB"]),
    ("Patient", "name:exact=barbara", []),
    ("Patient", "name:contains=ann", ["pA"]),
    ("Patient", "family=smi,han", ["pA", "pB"]),
    # composite
    ("Observation", "code-value-quantity=http://loinc.org|72514-3$gt6", ["o1", "o5"]),
    ("Observation", "code-value-quantity=72514-3$6", ["o2"]),
    # chaining and reverse chaining
    ("Observation", "subject:Patient.name=hanna&code=72514-3", ["o1", "o2", "o3", "o4"]),
    ("Observation", "patient.gender=male", ["o5"]),
    ("Observation", "patient.identifier=http://hospital.example|123&code=dose", ["o7", "o8"]),
    ("Patient", "_has:Observation:patient:code=72514-3", ["pA", "pB"]),
    ("Patient", "_has:Observation:patient:value-quantity=gt8", ["pA"]),
    ("Patient", "_has:Condition:patient:code=203082005", ["pA"]),
    # common parameters
    ("Patient", "_id=pB", ["pB"]),
    ("Observation", "_id=o1,o5", ["o1", "o5"]),
    ("Observation", "code=72514-3&_lastUpdated=gt2000-01-01", PAIN),
    ("Observation", "code=72514-3&_lastUpdated=lt2000-01-01", []),
    ("Observation", "_lastUpdated=lt2000-01-01", []),
    ("Observation", "code=72514-3&_id=o2,o6", ["o2"]),
    ("Observation", "code=72514-3&value-quantity=ge4&value-quantity=lt8", ["o2", "o4", "o5"]),
    ("Observation", "code=72514-3&date=ge2016-08-22&date=le2016-08-31", ["o2", "o3"]),
]


@pytest.mark.parametrize(
    ("resource_type", "query", "expected"), CASES, ids=[f"{c[0]}?{c[1]}" for c in CASES]
)
def test_search_finds_exactly_the_expected_resources(
    http: httpx.Client, resource_type: str, query: str, expected: list[str]
) -> None:
    response = http.get(f"/fhir/{resource_type}?{query}")
    assert sorted(ids(response)) == sorted(expected)
    assert response.json()["total"] == len(expected)


def test_post_search_gives_the_same_results_as_get(http: httpx.Client) -> None:
    for resource_type, query, expected in CASES[:40:3]:
        response = http.post(
            f"/fhir/{resource_type}/_search",
            content=query.encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert sorted(ids(response)) == sorted(expected), query


def test_sort_descending_and_ascending(http: httpx.Client) -> None:
    newest_first = ids(http.get("/fhir/Observation?code=72514-3&_sort=-date"))
    assert newest_first == ["o5", "o4", "o3", "o2", "o1"]
    assert ids(http.get("/fhir/Observation?code=72514-3&_sort=date")) == list(
        reversed(newest_first)
    )
    by_value = ids(http.get("/fhir/Observation?code=72514-3&_sort=value-quantity,-date"))
    assert by_value == ["o3", "o4", "o2", "o5", "o1"]


def test_sort_puts_resources_without_the_value_last(http: httpx.Client) -> None:
    order = ids(http.get("/fhir/Observation?code=http://loinc.org|&_sort=value-quantity"))
    assert order[-1] == "o9"
    assert len(order) == 9


def test_paging_reaches_the_last_page_without_duplicates(http: httpx.Client) -> None:
    seen: list[str] = []
    url: str | None = "/fhir/Observation?code=72514-3&_sort=date&_count=2"
    pages = 0
    while url:
        response = http.get(url)
        bundle = response.json()
        assert bundle["total"] == 5
        page = ids(response)
        assert page, "no empty last page"
        seen += page
        pages += 1
        links = {link["relation"]: link["url"] for link in bundle["link"]}
        url = links.get("next")
        if pages > 1:
            assert "previous" in links
    assert pages == 3
    assert seen == ["o1", "o2", "o3", "o4", "o5"]


def test_include_adds_the_referenced_resources_once(http: httpx.Client) -> None:
    response = http.get("/fhir/Observation?code=72514-3&_include=Observation:patient")
    assert sorted(ids(response)) == PAIN
    assert sorted(ids(response, "include")) == ["pA", "pB"]


def test_revinclude_and_iterate(http: httpx.Client) -> None:
    response = http.get("/fhir/Patient?_id=pB&_revinclude=Observation:patient")
    assert ids(response) == ["pB"]
    assert ids(response, "include") == ["o5"]
    iterated = http.get(
        "/fhir/Condition?_include=Condition:patient"
        "&_revinclude:iterate=Observation:patient&_count=10"
    )
    assert ids(iterated) == ["c1"]
    assert sorted(ids(iterated, "include")) == [
        "o1",
        "o2",
        "o3",
        "o4",
        "o6",
        "o7",
        "o8",
        "o9",
        "pA",
    ]


def test_include_wildcard(http: httpx.Client) -> None:
    response = http.get("/fhir/MedicationAdministration?_include=*")
    assert ids(response, "include") == ["pA"]


def test_summary_count_returns_only_the_total(http: httpx.Client) -> None:
    bundle = http.get("/fhir/Observation?code=72514-3&_summary=count").json()
    assert bundle["total"] == 5
    assert "entry" not in bundle


def test_elements_and_summary_subset_and_tag_the_resources(http: httpx.Client) -> None:
    bundle = http.get("/fhir/Observation?_id=o1&_elements=code").json()
    resource = bundle["entry"][0]["resource"]
    assert set(resource) == {"resourceType", "id", "meta", "code"}
    assert any(t["code"] == "SUBSETTED" for t in resource["meta"]["tag"])
    summary = http.get("/fhir/Patient?_id=pA&_summary=true").json()["entry"][0]["resource"]
    assert "name" in summary
    assert "SUBSETTED" in {t["code"] for t in summary["meta"]["tag"]}


def test_total_none_omits_the_total(http: httpx.Client) -> None:
    assert "total" not in http.get("/fhir/Observation?code=72514-3&_total=none").json()


def test_unknown_parameters_are_ignored_and_reported(http: httpx.Client) -> None:
    response = http.get("/fhir/Patient?_id=pA&shoe-size=42")
    assert ids(response) == ["pA"]
    outcome = [e for e in response.json()["entry"] if e["search"]["mode"] == "outcome"]
    assert outcome
    assert outcome[0]["resource"]["issue"][0]["severity"] == "warning"
    assert "shoe-size" in outcome[0]["resource"]["issue"][0]["diagnostics"]


def test_strict_handling_refuses_unknown_parameters(http: httpx.Client) -> None:
    response = http.get("/fhir/Patient?shoe-size=42", headers={"Prefer": "handling=strict"})
    assert_outcome(response, 400, expression="shoe-size")


@pytest.mark.parametrize("name", ["_text", "_content", "_list", "_query", "_filter", "_type"])
def test_parameters_the_server_does_not_search_by_are_unknown_not_empty(
    http: httpx.Client, name: str
) -> None:
    """The registry defines them with no expression: nothing is indexed for them, so they are
    ignored and reported (or refused under strict handling), never a match of nothing, and
    the CapabilityStatement does not offer them."""
    response = http.get(f"/fhir/Patient?_id=pA&{name}=x")
    assert ids(response) == ["pA"]
    outcome = [e for e in response.json()["entry"] if e["search"]["mode"] == "outcome"]
    assert name in outcome[0]["resource"]["issue"][0]["diagnostics"]
    links = {link["relation"]: link["url"] for link in response.json()["link"]}
    assert links["self"].endswith("/fhir/Patient?_id=pA")  # the parameters used, no other
    strict = http.get(f"/fhir/Patient?{name}=x", headers={"Prefer": "handling=strict"})
    assert_outcome(strict, 400, expression=name)
    metadata = http.get("/fhir/metadata").json()
    patient = next(r for r in metadata["rest"][0]["resource"] if r["type"] == "Patient")
    offered = {p["name"] for p in patient["searchParam"]}
    assert name not in offered
    assert {"_has", "name", "_id"} <= offered


def test_system_search_with_type_and_id(http: httpx.Client) -> None:
    assert sorted(ids(http.get("/fhir/?_type=Patient,Condition"))) == ["c1", "pA", "pB"]
    assert ids(http.get("/fhir?_id=o5")) == ["o5"]
    assert sorted(ids(http.get("/fhir/?_type=Patient&_id=pA,o1"))) == ["pA"]


@pytest.mark.parametrize(
    "query",
    [
        "date=2016-13-01",
        "value-quantity=abc",
        "_count=-1",
        "_count=ten",
        "date=zz2016",
        "code.name=x",
        "_sort=nonsense",
        "_has:Nope:x:y=1",
        "value-quantity:exact=1",
        "patient:Practitioner=1",
        "code-value-quantity=72514-3",
        "_include=Observation:code",
        "_total=maybe",
        "_summary=short",
        "value-quantity:missing=maybe",
    ],
)
def test_bad_search_input_is_400_naming_the_parameter(http: httpx.Client, query: str) -> None:
    name = query.split("=")[0].split(":")[0].split(".")[0]
    outcome = assert_outcome(http.get(f"/fhir/Observation?{query}"), 400)
    expressions = " ".join(e for i in outcome["issue"] for e in i.get("expression", []))
    assert name in expressions


def test_index_follows_updates_and_deletes(client: httpx.Client) -> None:
    client.put("/fhir/Observation/x1", json=_obs("x1", 3, "2016-01-01"), headers=JSON_HEADERS)
    assert ids(client.get("/fhir/Observation?value-quantity=3")) == ["x1"]
    client.put("/fhir/Observation/x1", json=_obs("x1", 9, "2016-01-01"), headers=JSON_HEADERS)
    assert ids(client.get("/fhir/Observation?value-quantity=3")) == []
    assert ids(client.get("/fhir/Observation?value-quantity=9")) == ["x1"]
    client.patch(
        "/fhir/Observation/x1",
        content=b'[{"op":"replace","path":"/valueQuantity/value","value":2}]',
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert ids(client.get("/fhir/Observation?value-quantity=2")) == ["x1"]
    client.delete("/fhir/Observation/x1")
    assert ids(client.get("/fhir/Observation?code=72514-3")) == []


def test_search_parameters_are_in_the_capability_statement(client: httpx.Client) -> None:
    statement = client.get("/fhir/metadata").json()
    observation = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Observation")
    params = {p["name"]: p["type"] for p in observation["searchParam"]}
    assert params["code"] == "token"
    assert params["date"] == "date"
    assert params["value-quantity"] == "quantity"
    assert params["code-value-quantity"] == "composite"
    assert "Observation:patient" in observation["searchInclude"]
    assert {"code": "search-type"} in observation["interaction"]
    assert {"code": "search-system"} in statement["rest"][0]["interaction"]


def _appointment(id_: str, status: str, *actors: str) -> dict[str, Any]:
    return {
        "resourceType": "Appointment",
        "id": id_,
        "status": status,
        "participant": [{"actor": {"reference": a}, "status": "accepted"} for a in actors],
    }


def test_patient_and_token_searches_are_exact_for_every_kind_of_patient_reference(
    client: httpx.Client,
) -> None:
    """`patient=X&code=Y` reads the code index narrowed to X's token rows (search_sql's
    _token_of_patients); these are the cases that narrowing could get wrong."""
    resources = [
        _obs("a1", 1, "2016-01-01", subject="Patient/px", code="c"),
        _obs("a2", 2, "2016-01-02", subject="Group/px", code="c"),
        _obs("a3", 3, "2016-01-03", subject="Patient/py", code="c"),
        _obs("a4", 4, "2016-01-04", subject="Patient/px", code="d"),
        _appointment("ap1", "booked", "Patient/px", "Patient/py"),
        _appointment("ap2", "cancelled", "Patient/px", "Practitioner/d1"),
    ]
    for resource in resources:
        url = f"/fhir/{resource['resourceType']}/{resource['id']}"
        assert client.put(url, json=resource, headers=JSON_HEADERS).status_code == 201
    expected = {
        "Observation?patient=px&code=c": ["a1"],
        "Observation?patient=Patient/px&code=c,d": ["a1", "a4"],
        "Observation?patient=px,py&code=http://loinc.org|c": ["a1", "a3"],
        "Observation?subject=Patient/px&code=c": ["a1"],
        "Observation?subject:Patient=px&code=c": ["a1"],
        "Observation?subject=Group/px&code=c": ["a2"],
        "Observation?subject=px&code=c": ["a1", "a2"],
        "Observation?patient=pz&code=c": [],
        "Appointment?patient=px&status=booked": ["ap1"],
        "Appointment?patient=py&status=booked": ["ap1"],
        "Appointment?actor=Patient/py&status=booked": ["ap1"],
        "Appointment?patient=px&status=cancelled": ["ap2"],
        "Appointment?patient=py&status=cancelled": [],
        "Appointment?actor=Practitioner/d1&status=cancelled": ["ap2"],
    }
    for query, found in expected.items():
        assert sorted(ids(client.get(f"/fhir/{query}"))) == found, query
    # the rows follow an update that moves the observation to another patient
    moved = _obs("a1", 1, "2016-01-01", subject="Patient/py", code="c")
    assert client.put("/fhir/Observation/a1", json=moved, headers=JSON_HEADERS).status_code == 200
    assert ids(client.get("/fhir/Observation?patient=px&code=c")) == []
    assert sorted(ids(client.get("/fhir/Observation?patient=py&code=c"))) == ["a1", "a3"]


def test_text_modifier_matches_the_concepts_text_and_its_codings_displays(
    client: httpx.Client,
) -> None:
    def coded(id_: str, concept: dict[str, Any]) -> dict[str, Any]:
        return {**_obs(id_, 1, "2016-01-01"), "code": concept}

    coding = {"system": LOINC, "code": "72514-3", "display": "Pain severity"}
    resources = [
        coded("t1", {"coding": [coding], "text": "PAIN SEVERITY"}),  # text = display
        coded("t2", {"coding": [coding], "text": "How much it hurts"}),
        coded("t3", {"coding": [{**coding, "display": "Hurt score"}]}),
        coded("t4", {"text": "Pain at rest"}),
    ]
    for resource in resources:
        url = f"/fhir/Observation/{resource['id']}"
        assert client.put(url, json=resource, headers=JSON_HEADERS).status_code == 201
    expected = {
        "pain": ["t1", "t2", "t4"],
        "PAIN SEV": ["t1", "t2"],
        "how much": ["t2"],
        "hurt": ["t3"],
        "severity": [],  # :text is a starts-with match
    }
    for text, found in expected.items():
        response = client.get("/fhir/Observation", params={"code:text": text})
        assert sorted(ids(response)) == found, text
