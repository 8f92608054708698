"""GET /metrics: the process's metrics in the Prometheus text format (prometheus_client).

- `fhir_http_requests_total{method,route,resource_type,status}` and
  `fhir_http_request_duration_seconds{method,route,resource_type}` (a histogram), told by
  RequestLogMiddleware (pure ASGI, the outermost) with each request's status and duration.
  `route` is the matched route's template (`/fhir/{resource_type}/{resource_id}`),
  `<unmatched>` when no route matched, never the path: the request log's own helpers, so the
  label values are bounded by the routes, the methods (any other is OTHER), R4B's resource
  types (any other text is "") and the statuses.
- `fhir_resources_written_total{resource_type,action}`: versions committed (create, update,
  delete), told by the store after each commit: every write path (REST, Bundles, audit).
- `fhir_resources{resource_type}`: current resources by type. One grouped COUNT, run by a scrape
  at most every FHIR_METRICS_COUNT_SECONDS (in the thread pool where database calls go there);
  between counts this process's own creates and deletes are added to the last count, so a
  single process is exact and several workers are right at the next count.
- `fhir_db_pool_{size,checked_out,checked_in,overflow,max_overflow}`: the engine's pool, read
  at scrape time.

Each app has its own registry, and each worker process its own metrics (PROMETHEUS_MULTIPROC_DIR
is not supported): with `serve --workers N` the workers share one socket and a scrape is
answered by whichever accepts it, so run one worker per container or port where the metrics
matter. The resource counts come from the database and are right in any worker.

No token, no audit event (it is outside /fhir), not in the OpenAPI document."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterable
from typing import Protocol, runtime_checkable

from fastapi import APIRouter
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
)
from prometheus_client import generate_latest as render_metrics
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope

from app.api.context import runtime
from app.api.request_log import resource_type, route_template

log = logging.getLogger(__name__)
disable_created_metrics()  # type: ignore[no-untyped-call]  # no `_created` series

# from 1 ms: a read is a fraction of a millisecond on SQLite
# Any other method (HTTP allows any token) is counted as OTHER: the label stays bounded.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@runtime_checkable
class StoreStats(Protocol):
    """What the metrics read of the store (storage/sql_store.py SqlStore)."""

    on_commit: Callable[[list[tuple[str, str]]], None] | None

    def count_by_type(self) -> dict[str, int]: ...

    def pool_usage(self) -> dict[str, int]: ...


class Metrics:
    def __init__(self, count_seconds: float) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "fhir_http_requests",
            "HTTP requests answered, by method, route template, resource type and status",
            ["method", "route", "resource_type", "status"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "fhir_http_request_duration_seconds",
            "Time from the request to the end of the response, by method, route template and "
            "resource type",
            ["method", "route", "resource_type"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.written = Counter(
            "fhir_resources_written",
            "Resource versions committed, by resource type and action (create, update, delete)",
            ["resource_type", "action"],
            registry=self.registry,
        )
        # (method, route, resource type, status) -> its counter and histogram (bounded as the
        # labels are)
        self._children: dict[tuple[str, str, str, int], tuple[Counter, Histogram]] = {}
        self.count_seconds = count_seconds
        self.store: StoreStats | None = None
        self._lock = threading.Lock()
        self._counts: dict[str, int] | None = None
        self._counted_at = float("-inf")
        self._since: Tally[str] = Tally()  # creates - deletes since the last count
        self.registry.register(_StoreCollector(self))

    def observe(self, scope: Scope, status: int, seconds: float) -> None:
        """A request answered: RequestLogMiddleware's observer (it times and notes the status
        of every HTTP request)."""
        method = scope.get("method", "")
        method = method if method in METHODS else "OTHER"
        key = (method, route_template(scope), resource_type(scope) or "", status)
        children = self._children.get(key)
        if children is None:  # labels() costs more than the increments: look it up once
            children = self._children[key] = (
                self.requests.labels(*key[:3], str(status)),
                self.duration.labels(*key[:3]),
            )
        children[0].inc()
        children[1].observe(seconds)

    def attach(self, store: object) -> None:
        """Read `store`'s pool and counts, and be told its commits (when it can)."""
        if isinstance(store, StoreStats):
            self.store = store
            store.on_commit = self.committed

    def committed(self, written: Iterable[tuple[str, str]]) -> None:
        """The store's on_commit: never raises (the write has happened)."""
        try:
            with self._lock:
                for kind, action in written:
                    self.written.labels(kind, action).inc()
                    if action == "create":
                        self._since[kind] += 1
                    elif action == "delete":
                        self._since[kind] -= 1
        except Exception:  # pragma: no cover - metrics must not fail a write
            log.exception("recording written resources failed")

    def counts_due(self) -> bool:
        return self.store is not None and (
            time.monotonic() - self._counted_at >= self.count_seconds
        )

    def refresh_counts(self) -> None:
        """The grouped count, when due. Writes committing while it runs may be counted twice
        (in the count and in the tally since) until the next count."""
        if self.store is None:
            return
        with self._lock:
            self._counted_at = time.monotonic()
            since, self._since = self._since, Tally()
        try:
            counts = self.store.count_by_type()
        except Exception as exc:  # the database is away: keep the last counts
            log.warning("counting resources for /metrics failed: %s", type(exc).__name__)
            with self._lock:
                self._since.update(since)
            return
        with self._lock:
            self._counts = counts

    def resource_counts(self) -> dict[str, int]:
        with self._lock:
            if self._counts is None:
                return {}
            out = dict(self._counts)
            for kind, change in self._since.items():
                out[kind] = max(0, out.get(kind, 0) + change)
            return out


class _StoreCollector(Collector):
    """The gauges read at scrape time: resource counts and the pool."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def describe(self) -> list[GaugeMetricFamily]:
        return []  # not known before the first collect

    def collect(self) -> Iterable[GaugeMetricFamily]:
        counts = GaugeMetricFamily(
            "fhir_resources", "Current (not deleted) resources by type", labels=["resource_type"]
        )
        for kind, number in sorted(self._metrics.resource_counts().items()):
            counts.add_metric([kind], number)
        yield counts
        store = self._metrics.store
        if store is None:
            return
        for name, value in store.pool_usage().items():
            yield GaugeMetricFamily(
                f"fhir_db_pool_{name}", f"Database connection pool: {name}", value=value
            )


router = APIRouter(include_in_schema=False)


@router.get("/metrics")
async def metrics_endpoint(request: Request) -> Response:
    metrics: Metrics = request.app.state.metrics
    if metrics.counts_due():
        await runtime(request).call(metrics.refresh_counts)
    return Response(
        render_metrics(metrics.registry),
        media_type=CONTENT_TYPE_LATEST,
        headers={"Cache-Control": "no-store"},
    )
