"""Direct routes: the FHIR interactions answered without FastAPI's per-request routing and
dependency solving.

FastAPI matches a request against each included router in turn and solves each route's
dependencies per request: about half of a read's time in-process (bench/asgi_read.py). The
interactions need none of it: their endpoints take the request and path segments (strings,
checked by the endpoint itself) and their one dependency is the router's guard (query size,
access token). So each of them is mounted a second time, first in the app, as a route that
calls the router's dependencies (which must be such guards) and then the same endpoint. The
APIRoute stays as it was, for /openapi.json, and is what `scope["route"]` names, so the request
log, metrics and tracing see the same route template.

A direct route takes a path only when its resource type is one of R4B's and no route outside
the interactions names that type literally in a path of the same shape
(`/fhir/OperationDefinition/{name}`): it answers exactly the requests its APIRoute would.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette._utils import get_route_path  # how Starlette's routes read the path
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, compile_path
from starlette.types import Receive, Scope, Send

from app.fhir.models import RESOURCE_TYPES

Guard = Callable[[Request], Awaitable[None]]


def _segments(path: str) -> list[str]:
    return path.strip("/").split("/")


def _is_param(segment: str) -> bool:
    return segment.startswith("{")


class DirectRoute(BaseRoute):
    def __init__(self, route: APIRoute, guards: list[Guard], types: frozenset[str]) -> None:
        self.route = route
        self.path = route.path
        self.methods = frozenset(route.methods or ())
        self.regex, self.path_format, self.param_convertors = compile_path(route.path)
        self.types = types
        self.guards = guards
        self.endpoint: Callable[..., Awaitable[Response]] = route.endpoint

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http" or scope["method"] not in self.methods:
            return Match.NONE, {}
        found = self.regex.match(get_route_path(scope))
        if found is None:
            return Match.NONE, {}
        params = found.groupdict()
        if params["resource_type"] not in self.types:
            return Match.NONE, {}
        return Match.FULL, {"endpoint": self.endpoint, "path_params": params, "route": self.route}

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive, send)
        for guard in self.guards:
            await guard(request)
        response = await self.endpoint(request, **scope["path_params"])
        await response(scope, receive, send)


def _direct(route: APIRoute) -> bool:
    """Whether FastAPI would pass the endpoint nothing but the request and the path's
    segments as strings."""
    dependant = route.dependant
    if (
        dependant.dependencies
        or dependant.query_params
        or dependant.header_params
        or dependant.cookie_params
        or dependant.body_params
        or not inspect.iscoroutinefunction(route.endpoint)
        or "{resource_type:segment}" not in route.path
    ):
        return False
    return all(field.field_info.annotation is str for field in dependant.path_params)


def _could_both_match(ours: list[str], other: list[str]) -> bool:
    """Whether one path could match both route shapes: a `:segment` parameter takes no
    literal that starts with `$` or `_`."""
    if len(ours) != len(other):
        return False
    for mine, theirs in zip(ours, other, strict=True):
        if _is_param(mine) and not _is_param(theirs):
            if theirs[:1] in ("$", "_"):
                return False
        elif not _is_param(mine) and not _is_param(theirs) and mine != theirs:
            return False
    return True


def _literal_types(route_path: str, others: Iterable[str]) -> set[str]:
    """The resource types that another route of the same shape names literally where
    `route_path` has `{resource_type}`."""
    shape = _segments(route_path)
    at = shape.index("{resource_type:segment}")
    return {
        segments[at]
        for segments in map(_segments, others)
        if _could_both_match(shape, segments) and not _is_param(segments[at])
    }


def _paths(routes: Iterable[Any]) -> Iterable[str]:
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            prefix = getattr(getattr(route, "include_context", None), "prefix", "")
            yield from (prefix + path for path in _paths(inner.routes))
        elif isinstance(getattr(route, "path", None), str):
            yield route.path


def _guards(dependencies: Sequence[Any]) -> list[Guard]:
    """The router's dependencies as plain calls: each must be an async function of the
    request alone (FastAPI would solve anything else per request, which is what this skips)."""
    guards = []
    for depends in dependencies:
        call = depends.dependency
        parameters = list(inspect.signature(call).parameters.values())
        if not (
            inspect.iscoroutinefunction(call)
            and len(parameters) == 1
            and parameters[0].annotation in (Request, "Request")
        ):
            raise TypeError(f"{call!r}: a direct route's dependency takes the request alone")
        guards.append(call)
    return guards


def install(app: FastAPI, interactions: Iterable[BaseRoute], dependencies: Sequence[Any]) -> None:
    """Mount the direct form of each of `interactions` (the APIRoutes of the interactions
    router) ahead of every route of `app`; `dependencies`: those it was included with."""
    guards = _guards(dependencies)
    routes = [r for r in interactions if isinstance(r, APIRoute)]
    own = {r.path for r in routes}
    others = [path for path in _paths(app.router.routes) if path not in own]
    direct: list[BaseRoute] = []
    for route in routes:
        if _direct(route):
            types = frozenset(RESOURCE_TYPES) - _literal_types(route.path, others)
            direct.append(DirectRoute(route, guards, types))
    app.router.routes[0:0] = direct
