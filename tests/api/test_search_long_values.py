"""Values longer than their index column (issue 7): stored, read back exactly and found by
search on both databases. PostgreSQL refused them (a varchar holds its width, a B-tree entry
~2,700 bytes); SQLite ignores widths. Index rows hold such a value bounded: its head, U+001F and
a hash of the whole value (app/storage/derived.py), so an exact match stays exact and a value
sharing the first 255 (or 1,024) characters is not found."""

from __future__ import annotations

import random
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select

from app.storage.consistency import Issue, check
from app.storage.reindex import reindex
from app.storage.tables import token_table, uri_table
from tests.helpers import JSON_HEADERS, pain_observation, patient

SYSTEM = "http://example.org/codes"
LONG = "a" * 300
TWIN = "a" * 255 + "b" * 45  # the same first 255 characters as LONG
EDGE = "a" * 255  # as wide as the column: stored as it is
HEAD = "a" * 222  # as long as a bounded value's head
CODES = {"long": LONG, "twin": TWIN, "edge": EDGE, "head": HEAD}
URI = "http://example.org/fhir/StructureDefinition/" + "p" * 1100
URI_TWIN = URI[:1050] + "q" * 94  # the same first 1,050 characters
# 700 characters of 4 bytes each (CJK extension B, in no repeating pattern): within the 1,024
# characters of the uri column, but 2,800 bytes, past what one B-tree entry may hold
_rng = random.Random(7)
WIDE = "http://example.org/" + "".join(chr(0x20000 + _rng.randrange(0xA000)) for _ in range(700))
URL = "http://other.example/fhir/Patient/" + "r" * 1100


def create(client: httpx.Client, resource: dict[str, Any]) -> dict[str, Any]:
    response = client.post(f"/fhir/{resource['resourceType']}", json=resource, headers=JSON_HEADERS)
    assert response.status_code == 201, response.text[:2000]
    created: dict[str, Any] = response.json()
    read = client.get(f"/fhir/{resource['resourceType']}/{created['id']}")
    assert read.status_code == 200, read.text[:2000]
    assert read.json() == created
    return created


def found(client: httpx.Client, path: str, **params: str) -> set[str]:
    """The ids a search matches, by POST _search (WIDE is too long for a query string)."""
    response = client.post(f"{path}/_search", data=params)
    assert response.status_code == 200, response.text[:2000]
    return {e["resource"]["id"] for e in response.json().get("entry", [])}


def coded(code: str, **extra: Any) -> dict[str, Any]:
    return pain_observation(code={"coding": [{"system": SYSTEM, "code": code}]}, **extra)


def observations(client: httpx.Client) -> dict[str, str]:
    """One pain score per code of CODES: name -> id."""
    return {name: create(client, coded(code))["id"] for name, code in CODES.items()}


@pytest.mark.parametrize(
    ("what", "resource"),
    [
        ("Coding.code", coded(LONG)),
        ("Coding.code of 100,000 characters", coded("c" * 100_000)),
        (
            "Coding.display",
            pain_observation(
                code={"coding": [{"system": SYSTEM, "code": "c", "display": "d" * 5000}]}
            ),
        ),
        ("Coding.system", pain_observation(code={"coding": [{"system": URI, "code": "c"}]})),
        ("CodeableConcept.text", pain_observation(code={"text": "t" * 3000})),
        ("Identifier.value", pain_observation(identifier=[{"system": SYSTEM, "value": LONG}])),
        ("Quantity.unit", pain_observation(valueQuantity={"value": 1.5, "unit": LONG})),
        ("meta.tag", pain_observation(meta={"tag": [{"system": SYSTEM, "code": LONG}]})),
        ("meta.profile", pain_observation(meta={"profile": [URI]})),
        ("meta.profile of 2,800 bytes", pain_observation(meta={"profile": [WIDE]})),
        ("absolute reference", pain_observation(subject=URL)),
        (
            "typed absolute reference with a long last segment",
            {**pain_observation(), "subject": {"reference": URL, "type": "Patient"}},
        ),
        ("Patient.name.family", patient("F" * 2000)),
    ],
)
def test_long_values_are_stored_and_read_back_exactly(
    client: httpx.Client, what: str, resource: dict[str, Any]
) -> None:
    created = create(client, resource)
    assert {k: v for k, v in created.items() if k not in ("id", "meta")} == {
        k: v for k, v in resource.items() if k != "meta"
    }
    for key, value in resource.get("meta", {}).items():
        assert created["meta"][key] == value


def test_an_exact_token_search_on_a_long_code_finds_that_code_only(client: httpx.Client) -> None:
    ids = observations(client)
    for name, code in CODES.items():
        assert found(client, "/fhir/Observation", code=code) == {ids[name]}, name
        assert found(client, "/fhir/Observation", code=f"{SYSTEM}|{code}") == {ids[name]}, name
        others = {i for n, i in ids.items() if n != name}
        assert found(client, "/fhir/Observation", **{"code:not": code}) == others, name
    assert found(client, "/fhir/Observation", code=f"{SYSTEM}|{LONG},{SYSTEM}|{HEAD}") == {
        ids["long"],
        ids["head"],
    }
    assert found(client, "/fhir/Observation", code=LONG + "a") == set()
    assert found(client, "/fhir/Observation", code=f"http://elsewhere|{LONG}") == set()
    # a resource-rooted composite reads the token rows too
    value = "code-value-quantity"
    assert found(client, "/fhir/Observation", **{value: f"{SYSTEM}|{TWIN}$6"}) == {ids["twin"]}
    sorted_ids = client.get("/fhir/Observation", params={"_sort": "code"})
    assert sorted_ids.status_code == 200


def test_the_stored_row_is_bounded_and_ordinary_values_are_stored_as_they_are(
    client: httpx.Client, engine: Engine
) -> None:
    observations(client)
    with engine.connect() as conn:
        codes = set(
            conn.execute(select(token_table.c.code).where(token_table.c.system == SYSTEM)).scalars()
        )
    assert {EDGE, HEAD} <= codes
    bounded = codes - {EDGE, HEAD}
    assert len(bounded) == 2
    for code in bounded:
        assert len(code) == 255
        assert code.startswith(HEAD + "\x1f")


def test_identifiers_tags_units_and_references_longer_than_their_columns_are_found(
    client: httpx.Client,
) -> None:
    ids: dict[str, str] = {}
    for name, value in (("long", LONG), ("twin", TWIN)):
        ids[name] = create(
            client,
            pain_observation(
                identifier=[{"system": SYSTEM, "value": value}],
                meta={"tag": [{"system": SYSTEM, "code": value}]},
                valueQuantity={"value": 1.5, "unit": value},
            ),
        )["id"]
    pointing = create(client, pain_observation(subject=URL))["id"]
    create(client, pain_observation(subject=URL[:-1] + "s"))
    for name, value in (("long", LONG), ("twin", TWIN)):
        expected = {ids[name]}
        assert found(client, "/fhir/Observation", identifier=f"{SYSTEM}|{value}") == expected
        assert found(client, "/fhir/Observation", _tag=f"{SYSTEM}|{value}") == expected
        assert found(client, "/fhir/Observation", **{"value-quantity": f"1.5||{value}"}) == expected
    assert found(client, "/fhir/Observation", subject=URL) == {pointing}


def test_text_search_on_a_long_display(client: httpx.Client) -> None:
    display = "Severe pain " + "x" * 400
    other = "Severe pain " + "x" * 399 + "y"
    long_one = create(
        client,
        pain_observation(code={"coding": [{"system": SYSTEM, "code": "c", "display": display}]}),
    )["id"]
    twin = create(client, pain_observation(code={"text": other}))["id"]
    assert found(client, "/fhir/Observation", **{"code:text": "severe pain"}) == {long_one, twin}
    assert found(client, "/fhir/Observation", **{"code:text": display}) == {long_one}
    assert found(client, "/fhir/Observation", **{"code:text": other.upper()}) == {twin}


def test_profiles_longer_than_their_column_are_found_exactly_and_by_prefix(
    client: httpx.Client,
) -> None:
    ids = {
        name: create(client, pain_observation(meta={"profile": [uri]}))["id"]
        for name, uri in (("long", URI), ("twin", URI_TWIN), ("wide", WIDE))
    }
    assert found(client, "/fhir/Observation", _profile=URI) == {ids["long"]}
    assert found(client, "/fhir/Observation", _profile=URI_TWIN) == {ids["twin"]}
    assert found(client, "/fhir/Observation", _profile=WIDE) == {ids["wide"]}
    assert found(client, "/fhir/Observation", _profile=URI[:1040]) == set()
    below = "http://example.org/fhir/StructureDefinition/ppp"
    assert found(client, "/fhir/Observation", **{"_profile:below": below}) == {
        ids["long"],
        ids["twin"],
    }
    assert found(client, "/fhir/Observation", **{"_profile:below": URI}) == {ids["long"]}
    assert found(client, "/fhir/Observation", **{"_profile:above": URI}) == {ids["long"]}


def test_exact_string_search_past_the_column_width(client: httpx.Client) -> None:
    family = "Z" * 1500
    long_one = create(client, patient(family))["id"]
    twin = create(client, patient(family[:-1] + "Y"))["id"]
    assert found(client, "/fhir/Patient", **{"family:exact": family}) == {long_one}
    assert found(client, "/fhir/Patient", **{"family:exact": family[:1024]}) == set()
    assert found(client, "/fhir/Patient", family="zzz") == {long_one, twin}


def test_check_and_reindex_agree_with_the_writes_on_long_values(
    client: httpx.Client, engine: Engine
) -> None:
    ids = observations(client)
    create(client, pain_observation(meta={"profile": [URI, WIDE]}, subject=URL))
    create(client, patient("F" * 2000, identifier=[{"system": SYSTEM, "value": TWIN}]))
    issues: list[Issue] = []
    totals = check(engine, issues.append)
    assert issues == []
    assert totals.resources == 6
    with engine.connect() as conn:
        before = {
            table.name: sorted(conn.execute(select(table)).all(), key=repr)
            for table in (token_table, uri_table)
        }
    with engine.begin() as conn:
        assert reindex(conn) == 6
    with engine.connect() as conn:
        after = {
            table.name: sorted(conn.execute(select(table)).all(), key=repr)
            for table in (token_table, uri_table)
        }
    # seq follows set order, which may differ between runs: compare without it
    assert {k: {row[:-1] for row in rows} for k, rows in before.items()} == {
        k: {row[:-1] for row in rows} for k, rows in after.items()
    }
    assert check(engine, issues.append).resources == 6
    assert issues == []
    assert found(client, "/fhir/Observation", code=LONG) == {ids["long"]}
    assert found(client, "/fhir/Observation", _profile=WIDE) != set()
