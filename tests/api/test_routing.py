"""Route order (app/main.py, app/api/routes.py): the interactions are matched first, yet no
operation, reserved word or stored OperationDefinition path is taken by their
`{resource_type}`/`{resource_id}`."""

from __future__ import annotations

from typing import Any

import fastapi
import fastapi.routing
import httpx
import pytest
from starlette.requests import Request

from app.api.direct_routes import DirectRoute, _could_both_match, _guards
from app.config import Settings
from app.fhir.models import RESOURCE_TYPES
from app.main import create_app
from tests.helpers import JSON_HEADERS, assert_outcome, patient


def test_operations_and_reserved_words_keep_their_routes(client: httpx.Client) -> None:
    created = client.post("/fhir/Patient", json=patient("Route"), headers=JSON_HEADERS)
    pid = created.json()["id"]
    assert client.get(f"/fhir/Patient/{pid}").json()["id"] == pid
    lastn = client.get(f"/fhir/Observation/$lastn?patient={pid}").json()
    assert lastn["type"] == "searchset"
    stats = client.get("/fhir/Observation/$stats?code=72514-3&patient=x")  # the operation's 400
    assert "statistic must name" in stats.json()["issue"][0]["diagnostics"]
    assert client.get("/fhir/Patient/_history").json()["type"] == "history"
    assert client.get("/fhir/_history").json()["type"] == "history"
    definition = client.get("/fhir/OperationDefinition/pain-response").json()
    assert definition["resourceType"] == "OperationDefinition"
    assert client.get(f"/fhir/Patient/{pid}/$everything").json()["total"] == 1
    # $export's own answers (no job is started: without Prefer: respond-async it refuses)
    refused = client.get("/fhir/Patient/$export").json()["issue"][0]["diagnostics"]
    assert "respond-async" in refused
    assert "No export job" in client.get("/fhir/$export-status/x").text
    assert client.get("/fhir/metadata").json()["resourceType"] == "CapabilityStatement"


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/fhir/Patient/$nope"), ("PUT", "/fhir/Patient/$nope"), ("GET", "/fhir/$nope")],
)
def test_an_unknown_operation_is_no_endpoint(client: httpx.Client, method: str, path: str) -> None:
    response = client.request(method, path, json=patient("X") if method == "PUT" else None)
    assert_outcome(response, 404)
    assert "No FHIR endpoint" in response.json()["issue"][0]["diagnostics"]


def test_the_interactions_skip_fastapis_dependency_solving(
    client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """app/api/direct_routes.py: the interactions are answered by their direct routes, with the
    guard called and the same endpoints; the operations still go through FastAPI."""
    solved: list[str] = []
    original = fastapi.routing.solve_dependencies

    async def counting(*args: Any, **kwargs: Any) -> Any:
        solved.append(kwargs["request"].url.path)
        return await original(*args, **kwargs)

    monkeypatch.setattr(fastapi.routing, "solve_dependencies", counting)
    created = client.post("/fhir/Patient", json=patient("Direct"), headers=JSON_HEADERS)
    assert created.status_code == 201
    pid = created.json()["id"]
    body = {**created.json(), "active": False}
    answers = [
        client.get(f"/fhir/Patient/{pid}"),
        client.put(f"/fhir/Patient/{pid}", json=body, headers=JSON_HEADERS),
        client.get(f"/fhir/Patient/{pid}/_history/2"),
        client.get(f"/fhir/Patient/{pid}/_history"),
        client.get("/fhir/Patient", params={"_id": pid}),
        client.post("/fhir/Patient/_search", data={"_id": pid}),
        client.get("/fhir/Patient/_history"),
        client.delete(f"/fhir/Patient/{pid}"),
    ]
    assert [a.status_code for a in answers] == [200, 200, 200, 200, 200, 200, 200, 204]
    assert solved == []
    assert client.get(f"/fhir/Patient/{pid}/$everything").status_code == 410  # deleted
    assert client.get("/fhir/OperationDefinition/pain-response").status_code == 200
    assert solved == [f"/fhir/Patient/{pid}/$everything", "/fhir/OperationDefinition/pain-response"]


def test_a_direct_route_leaves_unknown_types_and_literal_routes_to_fastapi(
    client: httpx.Client, settings: Settings
) -> None:
    """Not a resource type: the APIRoute's own 404; `OperationDefinition/{name}` is its route's,
    not read's (a stored OperationDefinition of that id would otherwise shadow it)."""
    unknown = client.get("/fhir/Pateint/1")
    assert_outcome(unknown, 404)
    assert "Pateint" in unknown.json()["issue"][0]["diagnostics"]
    routes = [r for r in create_app(settings).router.routes if isinstance(r, DirectRoute)]
    read = next(
        r for r in routes if r.methods == {"GET"} and r.path.endswith("{resource_id:segment}")
    )
    assert "OperationDefinition" not in read.types
    assert "Patient" in read.types
    update = next(
        r for r in routes if r.methods == {"PUT"} and r.path.endswith("{resource_id:segment}")
    )
    assert "OperationDefinition" not in update.types  # the shape is the same; methods not compared
    search = next(
        r for r in routes if r.methods == {"GET"} and r.path.endswith("{resource_type:segment}")
    )
    assert search.types == frozenset(RESOURCE_TYPES)


@pytest.mark.parametrize(
    ("ours", "other", "both"),
    [
        (
            "/fhir/{resource_type:segment}/{resource_id:segment}",
            "/fhir/OperationDefinition/{name}",
            True,
        ),
        ("/fhir/{resource_type:segment}/{resource_id:segment}", "/fhir/Patient/$export", False),
        (
            "/fhir/{resource_type:segment}/{resource_id:segment}",
            "/fhir/Patient/{id}/$everything",
            False,
        ),
        ("/fhir/{resource_type:segment}/_history", "/fhir/OperationDefinition/{name}", True),
        ("/fhir/{resource_type:segment}/_history", "/fhir/Observation/lastn", False),
        ("/fhir/{resource_type:segment}", "/fhir/metadata", True),
    ],
)
def test_which_paths_two_routes_could_share(ours: str, other: str, both: bool) -> None:
    assert _could_both_match(ours.strip("/").split("/"), other.strip("/").split("/")) is both


def test_a_dependency_fastapi_would_have_to_solve_is_refused() -> None:
    """A router dependency with parameters of its own (a query value, a sub-dependency) would
    be skipped by a direct route: installing one is an error, not a silent bypass."""

    async def needs_a_query_value(request: Request, limit: int = 10) -> None:
        return None

    async def fine(request: Request) -> None:
        return None

    assert _guards([fastapi.Depends(fine)]) == [fine]
    with pytest.raises(TypeError, match="takes the request alone"):
        _guards([fastapi.Depends(fine), fastapi.Depends(needs_a_query_value)])
