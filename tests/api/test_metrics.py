"""GET /metrics, on both databases: request counts and latency histograms by route template
(never the path) and status, resources written and current by type, the connection pool; no
token needed; and the CapabilityStatement and /openapi.json served from caches."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine

from app.api import routes
from app.api.metrics import Metrics
from app.config import Settings
from app.main import create_app
from tests.asgi_client import asgi_client
from tests.helpers import FHIR_JSON, patient
from tests.security.test_auth_api import secured_server

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
INSTANCE = "/fhir/{resource_type}/{resource_id}"


def _scrape(client: httpx.Client) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def _value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def _create(client: httpx.Client, resource: dict[str, Any]) -> str:
    response = client.post(
        f"/fhir/{resource['resourceType']}", json=resource, headers={"Content-Type": FHIR_JSON}
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def test_requests_are_counted_and_timed_by_route_template(client: httpx.Client) -> None:
    patient_id = _create(client, patient())
    assert client.get(f"/fhir/Patient/{patient_id}").status_code == 200
    assert client.get("/fhir/Patient/missing1").status_code == 404
    samples = _scrape(client)
    requests = "fhir_http_requests_total"
    assert (
        _value(
            samples,
            requests,
            method="POST",
            route="/fhir/{resource_type}",
            resource_type="Patient",
            status="201",
        )
        == 1
    )
    for status in ("200", "404"):
        assert (
            _value(
                samples,
                requests,
                method="GET",
                route=INSTANCE,
                resource_type="Patient",
                status=status,
            )
            == 1
        )
    # no label value anywhere holds an id
    assert not any(patient_id in v or "missing1" in v for _, ls in samples for _, v in ls)
    hist = "fhir_http_request_duration_seconds"
    labels = {"method": "GET", "route": INSTANCE, "resource_type": "Patient"}
    assert _value(samples, f"{hist}_count", **labels) == 2
    assert (_value(samples, f"{hist}_sum", **labels) or 0) > 0
    assert _value(samples, f"{hist}_bucket", **labels, le="+Inf") == 2
    assert _value(samples, f"{hist}_bucket", **labels, le="0.001") is not None
    written = "fhir_resources_written_total"
    assert _value(samples, written, resource_type="Patient", action="create") == 1
    for gauge in ("size", "checked_out", "checked_in", "overflow", "max_overflow"):
        assert _value(samples, f"fhir_db_pool_{gauge}") is not None, gauge
    assert _value(samples, "fhir_db_pool_size") == 10  # FHIR_DB_POOL_SIZE's default
    assert _value(samples, "fhir_db_pool_checked_out") == 0  # nothing holds one between requests


def test_resource_counts_follow_writes_between_counts(client: httpx.Client) -> None:
    assert _value(_scrape(client), "fhir_resources", resource_type="Patient") is None
    ids = [_create(client, patient()) for _ in range(3)]
    assert client.delete(f"/fhir/Patient/{ids[0]}").status_code in (200, 204)
    assert client.delete(f"/fhir/Patient/{ids[0]}").status_code in (200, 204)  # writes nothing
    update = {**patient(family="Roe"), "id": ids[1]}
    response = client.put(
        f"/fhir/Patient/{ids[1]}", json=update, headers={"Content-Type": FHIR_JSON}
    )
    assert response.status_code == 200
    samples = _scrape(client)  # within FHIR_METRICS_COUNT_SECONDS (60 s): no new count
    assert _value(samples, "fhir_resources", resource_type="Patient") == 2
    written = "fhir_resources_written_total"
    assert _value(samples, written, resource_type="Patient", action="create") == 3
    assert _value(samples, written, resource_type="Patient", action="update") == 1
    assert _value(samples, written, resource_type="Patient", action="delete") == 1


def test_resource_counts_are_counted_at_most_every_interval(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    counted: list[int] = []
    app = create_app(settings.model_copy(update={"metrics_count_seconds": 3600.0}))
    with asgi_client(app) as client:
        metrics: Metrics = app.state.metrics
        store = metrics.store
        assert store is not None
        count = store.count_by_type

        def counting() -> dict[str, int]:
            counted.append(1)
            return count()

        monkeypatch.setattr(store, "count_by_type", counting)
        _create(client, patient())
        for _ in range(3):
            assert _value(_scrape(client), "fhir_resources", resource_type="Patient") == 1
        assert len(counted) == 1
        metrics.count_seconds = 0  # due at every scrape: the database's count
        _create(client, patient())
        assert _value(_scrape(client), "fhir_resources", resource_type="Patient") == 2
        assert len(counted) == 2


def test_unknown_paths_and_methods_do_not_add_label_values(client: httpx.Client) -> None:
    for i in range(100):
        assert client.get(f"/nothing-{i}/here").status_code == 404
        client.get(f"/fhir/NotAType{i}/x")
    client.request("FROBNICATE", "/fhir/Patient")
    samples = _scrape(client)
    series = [dict(labels) for name, labels in samples if name == "fhir_http_requests_total"]
    assert len(series) <= 6, series
    routes_seen = {s["route"] for s in series}
    assert "<unmatched>" in routes_seen
    assert not any("nothing" in r or "NotAType" in r for r in routes_seen)
    assert {s["resource_type"] for s in series} <= {"", "Patient"}
    assert {s["method"] for s in series} <= {"GET", "OTHER"}
    assert (
        _value(
            samples,
            "fhir_http_requests_total",
            method="GET",
            route="<unmatched>",
            resource_type="",
            status="404",
        )
        == 100
    )


def test_metrics_need_no_token_and_are_not_in_the_openapi_document(
    database_url: str, admin_engines: dict[str, Engine], tmp_path: Path
) -> None:
    with secured_server(
        database_url, admin_engines, tmp_path, [{**patient(), "id": "p1"}]
    ) as client:
        assert client.get("/fhir/Patient").status_code == 401
        samples = _scrape(client)
        assert _value(samples, "fhir_resources", resource_type="Patient") == 1
        assert (
            _value(
                samples,
                "fhir_http_requests_total",
                method="GET",
                route="/fhir/{resource_type}",
                resource_type="Patient",
                status="401",
            )
            == 1
        )
        assert "/metrics" not in client.get("/openapi.json").json()["paths"]


def test_metadata_is_built_once_per_base_format_and_pretty(
    client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    routes.capability_body.cache_clear()
    built: list[str] = []
    render = routes.render

    def counting(content: bytes, fmt: str, *, pretty: bool = False) -> bytes:
        built.append(fmt)
        return render(content, fmt, pretty=pretty)

    monkeypatch.setattr(routes, "render", counting)
    first = client.get("/fhir/metadata")
    second = client.get("/fhir/metadata")
    assert first.status_code == second.status_code == 200
    assert first.content == second.content
    assert first.headers["content-type"] == second.headers["content-type"]
    assert first.json()["resourceType"] == "CapabilityStatement"
    assert len(built) == 1
    pretty = client.get("/fhir/metadata?_pretty=true")
    assert pretty.content != first.content
    assert pretty.json() == first.json()
    assert client.get("/fhir/metadata", headers={"Accept": FHIR_JSON}).content == first.content
    assert len(built) == 2
    other = client.get("/fhir/metadata", headers={"Host": "fhir.example.org"})
    assert other.json()["implementation"]["url"] == "http://fhir.example.org/fhir"
    assert len(built) == 3


def test_openapi_json_is_serialised_once(settings: Settings) -> None:
    app = create_app(settings)
    with asgi_client(app) as client:
        first = client.get("/openapi.json")
        assert first.status_code == 200
        assert first.headers["content-type"] == "application/json"
        assert "/fhir/metadata" in first.json()["paths"]
        app.openapi_schema["info"]["title"] = "changed after the first request"
        assert client.get("/openapi.json").content == first.content  # the bytes sent before
