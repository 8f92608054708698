"""Fuzzing create and read: a valid resource round-trips exactly (decimals keep their text:
1.50 stays 1.50; strings keep every code point); an invalid one is a 4xx OperationOutcome that
stores nothing; nothing is ever a 5xx.

Budget: 12 valid resources of each of the five types, 6 bodies of each of the 14 mutations,
deterministic; see tests/fuzz/strategies.py for why, and for a longer campaign
(FUZZ_EXAMPLES=2000 .venv/bin/python -m pytest -q -n 2 tests/fuzz).

Server bugs found here are kept below as regression tests (each names what it was), and the
generators draw their inputs again.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from sqlalchemy import Engine

from tests.conftest import loaded_client
from tests.fuzz import strategies
from tests.fuzz.strategies import (
    BROKEN_REFERENCES,
    MAX_STRING,
    MUTATIONS,
    RESOURCES,
    SPECIAL_DECIMALS,
    Num,
    Pairs,
    dumps,
    fhir_id,
    fuzz_settings,
    loads_exact,
    without_server_fields,
)
from tests.helpers import JSON_HEADERS, pain_observation

XML = {"_format": "xml"}


@pytest.fixture(scope="module")
def shared(database_url: str, admin_engines: dict[str, Engine]) -> Iterator[httpx.Client]:
    """One app and database for the tests of single requests that leave the server sound
    (no 5xx): cheaper than `client`'s fresh app per test. Counts compare before and after."""
    with loaded_client(database_url, admin_engines, []) as client:
        yield client


def count(client: httpx.Client, resource_type: str) -> int:
    response = client.get(f"/fhir/{resource_type}", params={"_summary": "count"})
    assert response.status_code == 200, response.text
    total: int = response.json()["total"]
    return total


def assert_refused(response: httpx.Response) -> None:
    """A 4xx whose body is an OperationOutcome with an issue's severity and code."""
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:2000])
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome", outcome
    issue = outcome["issue"][0]
    assert issue["severity"] in {"error", "fatal"}, outcome
    assert issue["code"], outcome


def assert_round_trip(client: httpx.Client, sent: dict[str, Any], response: httpx.Response) -> None:
    """The create's answer and a read of it equal what was sent but id and meta, number text
    for number text (Num), and the resource reads as XML too."""
    assert response.status_code in (200, 201), response.text[:2000]
    created = loads_exact(response.content)
    expected = loads_exact(dumps(sent))  # as JSON reads it: Num for every number
    assert without_server_fields(created) == without_server_fields(expected)
    path = f"/fhir/{created['resourceType']}/{created['id']}"
    read = client.get(path)
    assert read.status_code == 200, read.text[:2000]
    assert loads_exact(read.content) == created
    as_xml = client.get(path, params=XML)
    assert as_xml.status_code == 200, as_xml.text[:2000]


# -- valid resources -----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", sorted(RESOURCES))
@fuzz_settings(12)
# ids of dots only are valid but no URL can name them (a client removes the dot segments)
@given(
    data=st.data(),
    ascii_only=st.booleans(),
    put_id=st.none() | fhir_id.filter(lambda i: i.strip(".") != ""),
)
def test_valid_resource_round_trips_exactly(
    client: httpx.Client, kind: str, data: st.DataObject, ascii_only: bool, put_id: str | None
) -> None:
    resource = data.draw(RESOURCES[kind](), label="resource")
    if put_id is None:
        body = dumps(resource, ascii_only=ascii_only).encode()
        response = client.post(f"/fhir/{kind}", content=body, headers=JSON_HEADERS)
        assert response.status_code == 201, response.text[:2000]
    else:
        resource = {"resourceType": kind, "id": put_id, **resource}
        body = dumps(resource, ascii_only=ascii_only).encode()
        response = client.put(f"/fhir/{kind}/{put_id}", content=body, headers=JSON_HEADERS)
    assert_round_trip(client, resource, response)


def _decimal_carriers(text: str) -> list[dict[str, Any]]:
    """Resources holding the decimal `text` where this server's decimals matter: a pain score,
    a component, an extension, a dose."""
    value = Num(text)
    observation = pain_observation()
    observation["valueQuantity"] = {**observation["valueQuantity"], "value": value}
    observation["component"] = [
        {"code": {"text": "component"}, "valueQuantity": {"value": value, "unit": "x"}}
    ]
    observation["extension"] = [{"url": "http://example.org/d", "valueDecimal": value}]
    administration = {
        "resourceType": "MedicationAdministration",
        "status": "completed",
        "medicationCodeableConcept": {"text": "ketamine"},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2016-08-22T10:00:00+02:00",
        "dosage": {
            "dose": {
                "value": value,
                "unit": "mg",
                "system": "http://unitsofmeasure.org",
                "code": "mg",
            }
        },
    }
    return [observation, administration]


@pytest.mark.parametrize("text", SPECIAL_DECIMALS)
def test_decimal_text_round_trips(shared: httpx.Client, text: str) -> None:
    for resource in _decimal_carriers(text):
        body = dumps(resource).encode()
        assert f":{text}".encode() in body
        response = shared.post(
            f"/fhir/{resource['resourceType']}", content=body, headers=JSON_HEADERS
        )
        assert_round_trip(shared, resource, response)
        assert f":{text}".encode() in shared.get(response.headers["location"]).content


# -- invalid resources ---------------------------------------------------------------------------
@pytest.mark.parametrize("how", MUTATIONS)
@fuzz_settings(6)
@given(data=st.data())
def test_invalid_resource_is_refused_and_stores_nothing(
    client: httpx.Client, how: str, data: st.DataObject
) -> None:
    mutation = data.draw(strategies.mutation(how), label="mutation")
    kind = mutation.resource_type
    before = count(client, kind)
    response = client.post(f"/fhir/{kind}", content=mutation.body, headers=JSON_HEADERS)
    assert response.status_code < 500, response.text[:2000]
    event(f"{mutation.resource_type}: {response.status_code}")  # --hypothesis-show-statistics
    assert_refused(response)
    assert count(client, kind) == before, f"{mutation.kind} stored something"


# -- regressions: server bugs the fuzzing found (each a 500 or an invalid body stored) -----------
def _observation_with(**members: Any) -> bytes:
    """A pain score with `members` (replacing its value[x] when they hold one)."""
    observation = pain_observation()
    if any(name.startswith("value") for name in members):
        del observation["valueQuantity"]
    return dumps({**observation, **members}).encode()


def _assert_refused_and_nothing_stored(
    client: httpx.Client, resource_type: str, body: bytes
) -> None:
    before = count(client, resource_type)
    response = client.post(f"/fhir/{resource_type}", content=body, headers=JSON_HEADERS)
    assert_refused(response)
    assert count(client, resource_type) == before


BIG_INTEGERS = ["123456789012345678901234567890", "18446744073709551616", "-9223372036854775809"]


@pytest.mark.parametrize("text", BIG_INTEGERS)
def test_integer_beyond_64_bits_round_trips(client: httpx.Client, text: str) -> None:
    resource = _decimal_carriers(text)[0]
    response = client.post(
        "/fhir/Observation", content=dumps(resource).encode(), headers=JSON_HEADERS
    )
    assert_round_trip(client, resource, response)


def test_integer_beyond_double_range_is_refused(client: httpx.Client) -> None:
    resource = _decimal_carriers("1" + "0" * 400)[0]
    _assert_refused_and_nothing_stored(client, "Observation", dumps(resource).encode())


FAST_PATH_TEXTS = ["1e-05", "2.5e-06", "1.25e-09", "-0"]


@pytest.mark.parametrize("text", FAST_PATH_TEXTS)
def test_decimal_text_kept_when_float_exact(shared: httpx.Client, text: str) -> None:
    resource = _observation_with(valueQuantity={"value": Num(text), "unit": "x"})
    response = shared.post("/fhir/Observation", content=resource, headers=JSON_HEADERS)
    assert response.status_code == 201, response.text
    assert loads_exact(response.content)["valueQuantity"]["value"] == Num(text)


# Each was stored as sent (201), with the wrong JSON type: pydantic's lax mode accepts it while
# validating, and the server keeps the body, not the model (app/fhir/json_rules.py now refuses).
WRONG_TYPES: list[tuple[str, dict[str, Any]]] = [
    ("Patient", {"resourceType": "Patient", "active": "true"}),
    ("Patient", {"resourceType": "Patient", "active": 1}),
    ("Patient", {"resourceType": "Patient", "birthDate": 0}),
    ("Patient", {"resourceType": "Patient", "multipleBirthInteger": True}),
    ("Patient", {"resourceType": "Patient", "multipleBirthInteger": "3"}),
    ("Patient", {"resourceType": "Patient", "multipleBirthInteger": Num("2.0")}),
    ("Observation", {"valueQuantity": {"value": "1.5", "unit": "mg"}}),
    (
        "Observation",
        {"valueQuantity": {"value": "5", "system": "http://unitsofmeasure.org", "code": "nope"}},
    ),
    ("Observation", {"valueRange": {"low": {"value": "5"}, "high": {"value": 1}}}),
    ("Observation", {"valueInteger": "12"}),
    ("Observation", {"valueInteger": Num("1e2")}),
    ("Observation", {"valueBoolean": "false"}),
    ("Observation", {"effectiveDateTime": 1600000000}),
    ("Observation", {"issued": 1600000000}),
    ("Observation", {"valueTime": 3600}),
]


@pytest.mark.parametrize(("resource_type", "members"), WRONG_TYPES)
def test_wrong_json_type_is_refused(
    shared: httpx.Client, resource_type: str, members: dict[str, Any]
) -> None:
    body = dumps(members).encode() if resource_type == "Patient" else _observation_with(**members)
    _assert_refused_and_nothing_stored(shared, resource_type, body)


@pytest.mark.parametrize("where", ["root", "nested"])
def test_duplicate_keys_are_refused(shared: httpx.Client, where: str) -> None:
    if where == "root":
        body = Pairs((("resourceType", "Patient"), ("gender", "male"), ("gender", "female")))
        _assert_refused_and_nothing_stored(shared, "Patient", dumps(body).encode())
    else:
        quantity = Pairs((("value", Num("1.50")), ("value", Num("2")), ("unit", "mg")))
        _assert_refused_and_nothing_stored(
            shared, "Observation", _observation_with(valueQuantity=quantity)
        )


@pytest.mark.parametrize("reference", BROKEN_REFERENCES)
def test_malformed_reference_is_refused(shared: httpx.Client, reference: str) -> None:
    body = _observation_with(subject={"reference": reference})
    _assert_refused_and_nothing_stored(shared, "Observation", body)


def test_string_over_1mb_is_refused(shared: httpx.Client) -> None:
    body = dumps({"resourceType": "Patient", "name": [{"family": "x" * (MAX_STRING + 1)}]})
    _assert_refused_and_nothing_stored(shared, "Patient", body.encode())


@pytest.mark.parametrize("char", ["\\uffff", "\\ufffe"])
def test_xml_invalid_characters_are_refused(shared: httpx.Client, char: str) -> None:
    """Stored, they made every read of the resource as XML a 500: XML 1.0 cannot hold them."""
    body = f'{{"resourceType":"Patient","name":[{{"family":"a{char}"}}]}}'.encode()
    _assert_refused_and_nothing_stored(shared, "Patient", body)
    response = shared.post("/fhir/Patient", content=body, headers=JSON_HEADERS)
    assert response.json()["issue"][0]["expression"] == ["Patient.name[0].family"]


PRIMITIVE_ARRAY_NULLS = [
    {"given": ["a", None]},
    {"given": ["a", None], "_given": [None]},
    {"given": ["a"], "_given": [None, {"id": "x"}]},
    {"given": [None], "_given": [None]},
    {"_given": [None, {"id": "x"}]},
]


@pytest.mark.parametrize("name", PRIMITIVE_ARRAY_NULLS)
def test_primitive_array_nulls_are_refused(shared: httpx.Client, name: dict[str, Any]) -> None:
    body = dumps({"resourceType": "Patient", "name": [name]}).encode()
    _assert_refused_and_nothing_stored(shared, "Patient", body)


def test_primitive_array_null_opposite_an_extension_round_trips(shared: httpx.Client) -> None:
    resource = {
        "resourceType": "Patient",
        "name": [{"given": ["Ann", None], "_given": [None, {"id": "g2"}]}],
    }
    response = shared.post("/fhir/Patient", content=dumps(resource).encode(), headers=JSON_HEADERS)
    assert_round_trip(shared, resource, response)


EMPTY_STRINGS = [
    b'{"resourceType":"Patient","text":{"status":"generated","div":""}}',
    b'{"resourceType":"Patient","identifier":[{"system":"","value":"1"}]}',
    b'{"resourceType":"Patient","extension":[{"url":"","valueInteger":0}]}',
]


@pytest.mark.parametrize("body", EMPTY_STRINGS)
def test_empty_string_is_refused(shared: httpx.Client, body: bytes) -> None:
    _assert_refused_and_nothing_stored(shared, "Patient", body)


DIV = '<div xmlns=\\"http://www.w3.org/1999/xhtml\\">a</div>'


@pytest.mark.parametrize("escape", ["\\ud800", "\\udfff"])
def test_lone_surrogate_in_div_is_refused_on_exact_path(client: httpx.Client, escape: str) -> None:
    body = (
        f'{{"resourceType":"Patient","text":{{"status":"generated","div":"{DIV}{escape}"}},'
        '"extension":[{"url":"http://x","valueDecimal":1.50}]}'
    )
    _assert_refused_and_nothing_stored(client, "Patient", body.encode())


LONG = "a" * 256
# (what, members of a pain score): each valid, each a value longer than its index column
LONG_INDEXED_VALUES: list[tuple[str, dict[str, Any]]] = [
    ("Coding.code", {"code": {"coding": [{"system": "http://x", "code": LONG}]}}),
    (
        "Coding.display",
        {"code": {"coding": [{"system": "http://x", "code": "c", "display": LONG}]}},
    ),
    ("Coding.system", {"code": {"coding": [{"system": f"http://x/{LONG}", "code": "c"}]}}),
    ("CodeableConcept.text", {"code": {"text": LONG}}),
    ("Identifier.value", {"identifier": [{"system": "http://x", "value": LONG}]}),
    ("Quantity.unit", {"valueQuantity": {"value": Num("1.50"), "unit": LONG}}),
    ("meta.tag", {"meta": {"tag": [{"system": "http://x", "code": LONG}]}}),
    ("meta.profile", {"meta": {"profile": [f"http://x/{'a' * 1030}"]}}),
    ("absolute reference", {"subject": {"reference": f"http://example.org/{'a' * 1030}"}}),
]


@pytest.mark.parametrize(
    ("what", "members"), LONG_INDEXED_VALUES, ids=[w for w, _ in LONG_INDEXED_VALUES]
)
def test_values_longer_than_their_index_column_round_trip(
    client: httpx.Client, what: str, members: dict[str, Any]
) -> None:
    """Were a 500 on PostgreSQL (the index row did not fit its varchar column)."""
    resource = {**pain_observation(), **members}
    if "valueQuantity" in members:
        resource["valueQuantity"] = members["valueQuantity"]
    response = client.post(
        "/fhir/Observation", content=dumps(resource).encode(), headers=JSON_HEADERS
    )
    if "meta" in members:  # the server keeps meta.tag and meta.profile, and adds its own
        assert response.status_code == 201, response.text[:2000]
        stored = loads_exact(response.content)["meta"]
        assert all(stored[k] == v for k, v in members["meta"].items())
        return
    assert_round_trip(client, resource, response)
