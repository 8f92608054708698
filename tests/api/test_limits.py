"""Limits that protect the server, on both databases: JSON (and XML) nesting of bodies and the
X-Provenance header (FHIR_MAX_JSON_DEPTH), the query string's length (FHIR_MAX_QUERY_BYTES)
and the time budget of searches (FHIR_SEARCH_TIMEOUT_MS). Each refusal is an
OperationOutcome naming the limit, never a 500 or a hung worker."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, text

from app.config import Settings
from app.fhir import jsonio
from app.fhir.loading import load
from app.fhir.service import ResourceService
from app.main import create_app
from app.storage.engine import is_sqlite, make_engine
from app.storage.sql_store import SqlStore
from tests.asgi_client import asgi_client
from tests.helpers import JSON_HEADERS, assert_outcome, pain_observation

LIMIT = 64  # the default FHIR_MAX_JSON_DEPTH
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def depth(value: Any) -> int:
    """Nesting of objects and arrays: `{}` is 1, a scalar 0."""
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    return 0


def deep_observation(levels: int) -> dict[str, Any]:
    """A valid Observation nesting exactly `levels` deep (extensions in extensions)."""
    odd = (levels - 3) % 2
    inner: dict[str, Any] = (
        {"url": "http://example.org/x", "valueCodeableConcept": {"text": "[{deep}]"}}
        if odd
        else {"url": "http://example.org/x", "valueString": "[{deep}]"}
    )
    for _ in range((levels - 3 - odd) // 2):
        inner = {"url": "http://example.org/x", "extension": [inner]}
    resource = {**pain_observation(), "extension": [inner]}
    resource.pop("category")  # the deepest path is the extension's
    assert depth(resource) == levels
    return resource


# -- nesting ---------------------------------------------------------------------------------


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**31), max_value=2**31)
    | st.text(alphabet='[]{}"\\ab:,\n'),  # brackets, quotes and escapes inside strings
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(alphabet='[]{}"\\k', max_size=3), children, max_size=3)
    ),
    max_leaves=40,
)


@settings(max_examples=200, deadline=None)
@given(json_values, st.integers(min_value=0, max_value=12))
def test_nesting_is_told_from_the_bytes_exactly(value: Any, limit: int) -> None:
    raw = orjson.dumps(value)
    assert jsonio.nesting_exceeds(raw, limit) == (depth(value) > limit)
    pretty = json.dumps(value, indent=1).encode()  # whitespace, and \\u escapes
    assert jsonio.nesting_exceeds(pretty, limit) == (depth(value) > limit)


def test_nesting_check_is_linear_on_hostile_bodies() -> None:
    hostile = [
        b"[" * 2_000_000,  # deep: stops at the limit
        b"[" + b"[]," * 700_000 + b"[]]",  # wide
        b'"\\"' * 700_000,  # an unterminated string of escaped quotes
        b"[" + b'"[[[[", ' * 300_000 + b"1]",  # brackets in strings
    ]
    started = time.perf_counter()
    results = [jsonio.nesting_exceeds(raw, LIMIT) for raw in hostile]
    assert results == [True, False, False, False]
    assert time.perf_counter() - started < 2  # ~0.1 s here


def test_a_body_at_the_limit_is_stored_one_deeper_is_refused(client: httpx.Client) -> None:
    created = client.post("/fhir/Observation", json=deep_observation(LIMIT), headers=JSON_HEADERS)
    assert created.status_code == 201, created.text
    too_deep = client.post(
        "/fhir/Observation", json=deep_observation(LIMIT + 1), headers=JSON_HEADERS
    )
    outcome = assert_outcome(too_deep, 400, "too-costly")
    assert f"more than {LIMIT} levels deep" in outcome["issue"][0]["diagnostics"]
    assert "FHIR_MAX_JSON_DEPTH" in outcome["issue"][0]["diagnostics"]
    # far deeper than orjson's own limit of 1,024: the same answer, not a parse error
    assert_outcome(
        client.post("/fhir/Observation", content=b"[" * 100_000, headers=JSON_HEADERS),
        400,
        "too-costly",
    )
    found = client.get("/fhir/Observation?_summary=count").json()
    assert found["total"] == 1


def test_every_json_entry_point_is_bounded(client: httpx.Client) -> None:
    deep = deep_observation(LIMIT + 1)
    stored = client.post("/fhir/Observation", json=pain_observation(), headers=JSON_HEADERS)
    oid = stored.json()["id"]
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": deep_observation(LIMIT - 2),
                "request": {"method": "POST", "url": "Observation"},
            }
        ],
    }
    assert_outcome(client.post("/fhir", json=bundle, headers=JSON_HEADERS), 400, "too-costly")
    assert_outcome(
        client.put(f"/fhir/Observation/{oid}", json={**deep, "id": oid}, headers=JSON_HEADERS),
        400,
        "too-costly",
    )
    patch = [{"op": "add", "path": "/extension", "value": deep["extension"]}]
    assert_outcome(
        client.patch(
            f"/fhir/Observation/{oid}",
            json=patch,
            headers={"Content-Type": "application/json-patch+json"},
        ),
        400,
        "too-costly",
    )
    assert_outcome(
        client.post("/fhir/Observation/$validate", json=deep, headers=JSON_HEADERS),
        400,
        "too-costly",
    )
    provenance = {
        "resourceType": "Provenance",
        "recorded": "2016-08-22T10:00:00Z",
        "agent": [{"who": {"display": "Dr. A"}}],
        "extension": deep["extension"],
    }
    outcome = assert_outcome(
        client.post(
            "/fhir/Observation",
            json=pain_observation(),
            headers={**JSON_HEADERS, "X-Provenance": json.dumps(provenance)},
        ),
        400,
        "too-costly",
    )
    assert outcome["issue"][0]["diagnostics"].startswith("The X-Provenance header nests")
    assert client.get("/fhir/Observation?_summary=count").json()["total"] == 1  # nothing written


def _xml_observation(levels: int) -> str:
    inner = '<extension url="http://example.org/x"><valueString value="x"/></extension>'
    for _ in range(levels - 3):
        inner = f'<extension url="http://example.org/x">{inner}</extension>'
    return (
        f'<Observation xmlns="http://hl7.org/fhir">{inner}<status value="final"/>'
        '<code><text value="pain"/></code></Observation>'
    )


def test_xml_elements_are_bounded_too(client: httpx.Client) -> None:
    xml = {"Content-Type": "application/fhir+xml"}
    ok = client.post("/fhir/Observation", content=_xml_observation(LIMIT), headers=xml)
    assert ok.status_code == 201, ok.text
    # a deep XML resource reads back in every format (its JSON nests about twice as deep)
    oid = ok.json()["id"]
    for query in ("", "?_format=xml", "?_pretty=true"):
        assert client.get(f"/fhir/Observation/{oid}{query}").status_code == 200
    outcome = assert_outcome(
        client.post("/fhir/Observation", content=_xml_observation(LIMIT + 1), headers=xml),
        400,
        "too-costly",
    )
    assert f"elements more than {LIMIT} levels deep" in outcome["issue"][0]["diagnostics"]


def test_the_setting_is_capped_where_the_server_still_copes() -> None:
    with pytest.raises(ValueError, match="less than or equal to 100"):
        Settings(FHIR_MAX_JSON_DEPTH=101)


# -- query string ----------------------------------------------------------------------------


def test_a_long_query_string_is_414(settings: Settings) -> None:
    with asgi_client(create_app(settings.model_copy(update={"max_query_bytes": 200}))) as client:
        under = "name=" + "a" * 195  # 200 bytes
        assert client.get(f"/fhir/Patient?{under}").status_code == 200
        over = under + "b"
        outcome = assert_outcome(client.get(f"/fhir/Patient?{over}"), 414, "too-costly")
        diagnostics = outcome["issue"][0]["diagnostics"]
        assert "201 bytes; the limit is 200 (FHIR_MAX_QUERY_BYTES)" in diagnostics
        for path in ("/fhir/metadata", "/fhir/Patient/p1", "/fhir/Patient/_history", "/fhir"):
            assert_outcome(client.get(f"{path}?{over}"), 414)
        # the same search as POST _search is answered
        response = client.post("/fhir/Patient/_search", content=over, headers=FORM)
        assert response.status_code == 200, response.text


def test_default_query_limit_and_search_body_limit(settings: Settings) -> None:
    with asgi_client(create_app(settings.model_copy(update={"max_body_bytes": 10_000}))) as client:
        assert_outcome(client.get("/fhir/Patient?name=" + "a" * 8192), 414)
        assert client.get("/fhir/Patient?name=" + "a" * 4000).status_code == 200
        # a POST _search body is bounded by FHIR_MAX_BODY_BYTES (it was read whole before)
        body = "name=a&" + "x=" + "a" * 10_000
        assert_outcome(client.post("/fhir/Patient/_search", content=body, headers=FORM), 413)
        assert client.post("/fhir/Patient/_search", content=b"", headers=FORM).status_code == 200


# -- search time budget ----------------------------------------------------------------------

EXPENSIVE = "/fhir/Observation?_sort=-date,code&_total=accurate&_count=1000"


@pytest.fixture
def many_observations(settings: Settings, tmp_path: Path) -> Settings:
    """2,000 Observations, loaded through the bulk path (~0.5 s per database)."""
    lines = [
        orjson.dumps(
            {
                **pain_observation(i % 11, subject=f"Patient/p{i % 40}"),
                "id": f"o{i}",
                "code": {"coding": [{"system": "http://loinc.org", "code": f"c{i % 7}"}]},
                "effectiveDateTime": f"2016-{1 + i % 12:02d}-{1 + i % 28:02d}",
            }
        )
        for i in range(2000)
    ]
    (tmp_path / "obs.ndjson").write_bytes(b"\n".join(lines))
    engine = make_engine(settings)
    try:
        totals = load(ResourceService(SqlStore(engine)), [tmp_path], workers=1, validate=False)
    finally:
        engine.dispose()
    assert (totals.stored, totals.failed) == (2000, 0)
    return settings


@pytest.fixture
def budgeted(many_observations: Settings) -> Iterator[tuple[httpx.Client, Engine]]:
    """A server with a 1 ms budget and one pooled connection (so every request reuses the one
    the stopped search ran on)."""
    settings = many_observations.model_copy(update={"search_timeout_ms": 1, "db_pool_size": 1})
    app = create_app(settings)
    with asgi_client(app) as client:
        yield client, app.state.runtime.exports.engine


def test_a_search_past_its_budget_is_too_costly(
    budgeted: tuple[httpx.Client, Engine],
) -> None:
    client, engine = budgeted
    started = time.perf_counter()
    outcome = assert_outcome(client.get(EXPENSIVE), 400, "too-costly")
    assert time.perf_counter() - started < 5
    diagnostics = outcome["issue"][0]["diagnostics"]
    assert "limit of 1 ms (FHIR_SEARCH_TIMEOUT_MS)" in diagnostics
    # the same search as form-encoded POST
    assert_outcome(
        client.post("/fhir/Observation/_search", content=EXPENSIVE.split("?")[1], headers=FORM),
        400,
        "too-costly",
    )
    # in a batch, the entry that ran too long says so and the others are answered
    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"request": {"method": "GET", "url": EXPENSIVE.removeprefix("/fhir/")}},
            {"request": {"method": "GET", "url": "Observation/o1"}},
        ],
    }
    answered = client.post("/fhir", json=batch, headers=JSON_HEADERS)
    assert answered.status_code == 200, answered.text
    first, second = (e["response"] for e in answered.json()["entry"])
    assert first["status"].startswith("400")
    assert first["outcome"]["issue"][0]["code"] == "too-costly"
    assert second["status"].startswith("200")
    # the pooled connection is clean: reads and writes (no budget) work on it afterwards
    assert client.get("/fhir/Observation/o1").status_code == 200
    created = client.post("/fhir/Observation", json=pain_observation(), headers=JSON_HEADERS)
    assert created.status_code == 201, created.text
    assert (
        client.put(
            "/fhir/Observation/o2", json={**pain_observation(3), "id": "o2"}, headers=JSON_HEADERS
        ).status_code
        == 200
    )
    assert_outcome(client.get(EXPENSIVE), 400, "too-costly")  # and the budget still holds
    with engine.connect() as conn:
        if is_sqlite(engine):
            # no progress handler left behind: a long statement runs to its end
            count = conn.execute(
                text("SELECT count(*) FROM resource a, resource b WHERE a.res_key < b.res_key")
            ).scalar()
            assert count == 2001 * 2000 // 2
        else:
            assert conn.execute(text("SHOW statement_timeout")).scalar() != "1ms"
            assert conn.execute(text("SELECT pg_sleep(0.01)")).all()


def test_the_budget_is_generous_by_default(many_observations: Settings) -> None:
    with asgi_client(create_app(many_observations)) as client:
        response = client.get(EXPENSIVE)
        assert response.status_code == 200, response.text
        assert response.json()["total"] == 2000
