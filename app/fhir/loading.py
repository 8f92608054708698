"""Bulk loading of files: transaction, batch and collection Bundles, single resources, NDJSON.

Preparing a resource (parse, validate, rewrite links, compute index rows) costs ~2 ms of CPU for
a Synthea resource, writing it a fraction of that, so worker processes prepare while this
process writes: one store transaction per Bundle (all or nothing for a transaction) or per
chunk of NDJSON lines. A resource that fails is reported with its place and reason, and the
load goes on. Transactions with conditional parts (ifNoneExist, conditional references or
urls, DELETE, PATCH) go through the same BundleProcessor as POST /fhir.
"""

from __future__ import annotations

import os
import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.fhir import jsonio
from app.fhir.errors import FhirError
from app.fhir.ids import check_id, new_id
from app.fhir.instants import now
from app.fhir.models import require_resource_type, validate
from app.fhir.service import ResourceService, Stamped, stamp
from app.fhir.store import run_write
from app.fhir.transactions import BundleProcessor, rewrite_links
from app.search.indexer import index_rows

_ENTRY = re.compile(r"^Bundle\.entry\[(\d+)\]")
_CONDITIONAL_REFERENCE = re.compile(rb'"reference"\s*:\s*"[^"?]*\?')
NDJSON_CHUNK = 500  # lines per job and per write transaction
_SIMPLE_METHODS = ("POST", "PUT")


@dataclass
class Failure:
    where: str  # file, entry or line
    reason: str


@dataclass
class Unit:
    """What one job gives: resources written in one transaction, failures to report, or a
    Bundle to run through the BundleProcessor."""

    source: str
    size: int  # bytes of input it covers (progress)
    stored: int = 0  # set when written
    ready: list[Stamped] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    bundle: dict[str, Any] | None = None


@dataclass(frozen=True)
class Job:
    path: str
    first_line: int = 0  # NDJSON: number of the chunk's first line (1-based)
    lines: tuple[bytes, ...] = ()
    validate: bool = True  # False: trusted input (this server's own export), types checked only


# -- jobs (this process) --------------------------------------------------------------------------
def jobs(paths: Iterable[Path], validate: bool = True) -> Iterator[Job]:
    """One job per JSON file, one per chunk of NDJSON lines; directories are walked."""
    for path in paths:
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and _loadable(p))
            yield from jobs(files, validate)
        elif path.suffix in (".ndjson", ".jsonl"):
            chunk: list[bytes] = []
            first = 1
            with path.open("rb") as stream:
                for number, line in enumerate(stream, 1):
                    if not chunk:
                        first = number
                    chunk.append(line)
                    if len(chunk) == NDJSON_CHUNK:
                        yield Job(str(path), first, tuple(chunk), validate)
                        chunk = []
            if chunk:
                yield Job(str(path), first, tuple(chunk), validate)
        else:
            yield Job(str(path), validate=validate)


def _loadable(path: Path) -> bool:
    return path.suffix in (".json", ".ndjson", ".jsonl")


# -- preparing (worker processes) ---------------------------------------------------------------
def prepare(job: Job) -> Unit:
    if job.lines:
        return _prepare_lines(job)
    path = Path(job.path)
    raw = path.read_bytes()
    unit = Unit(job.path, len(raw))
    try:
        data = (jsonio.loads_unique if job.validate else jsonio.loads)(raw)
    except Exception as exc:  # any parse failure is reported, never fatal to the load
        unit.failures.append(Failure(job.path, f"not JSON: {exc}"))
        return unit
    if not isinstance(data, dict) or not isinstance(data.get("resourceType"), str):
        unit.failures.append(Failure(job.path, "not a FHIR resource (no resourceType)"))
        return unit
    checked = validate if job.validate else _known_type
    if data["resourceType"] != "Bundle" or data.get("type") not in (
        "transaction",
        "batch",
        "collection",
        "searchset",
    ):
        _add(unit, data, job.path, checked)
        return unit
    entries = data.get("entry") or []
    # A conditional reference shows in the raw bytes; most files have none, and then the
    # walk over every resource looking for one can be skipped.
    references_plain = _CONDITIONAL_REFERENCE.search(raw) is None and b"\\u003" not in raw
    if data["type"] in ("transaction", "batch") and not _simple(entries, references_plain):
        unit.bundle = data
        return unit
    if data["type"] == "transaction":
        _prepare_transaction(unit, entries, checked)
        return unit
    for number, entry in enumerate(entries):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        _add(unit, resource, f"{job.path} entry {number}", checked)
    return unit


def _known_type(resource: dict[str, Any], resource_type: str) -> None:
    require_resource_type(resource_type)


def _prepare_lines(job: Job) -> Unit:
    unit = Unit(job.path, sum(len(line) for line in job.lines))
    for offset, line in enumerate(job.lines):
        if not line.strip():
            continue
        where = f"{job.path}:{job.first_line + offset}"
        try:
            resource = (jsonio.loads_unique if job.validate else jsonio.loads)(line)
        except Exception as exc:  # reported per line
            unit.failures.append(Failure(where, f"not JSON: {exc}"))
            continue
        _add(unit, resource, where, validate if job.validate else _known_type)
    return unit


Check = Callable[[dict[str, Any], str], Any]


def _add(unit: Unit, resource: Any, where: str, check: Check) -> None:
    """Validate one resource and queue it under its own id (or a new one)."""
    try:
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            raise ValueError("not a FHIR resource (no resourceType)")
        resource_type = resource["resourceType"]
        check(resource, resource_type)
        resource_id = check_id(resource["id"]) if "id" in resource else new_id()
        resource = {**resource, "id": resource_id}
        unit.ready.append(_stamped(resource_type, resource_id, resource))
    except (FhirError, ValueError) as exc:
        unit.failures.append(Failure(where, _reason(exc)))


def _stamped(resource_type: str, resource_id: str, data: dict[str, Any]) -> Stamped:
    """Stamped here, in the worker, as version 1 now: the writer stores the bytes as they are
    unless the resource exists already (then it is written as a next version instead)."""
    last_updated = now()
    content = stamp(data, resource_id, 1, last_updated)
    return Stamped(resource_type, resource_id, content, last_updated, index_rows(data))


def _simple(entries: list[Any], references_plain: bool) -> bool:
    """Only POSTs and PUTs by id, no conditional part anywhere: prepared here in full."""
    for entry in entries:
        if not isinstance(entry, dict):
            return False
        request = entry.get("request") or {}
        url = request.get("url")
        if request.get("method") not in _SIMPLE_METHODS or not isinstance(url, str) or "?" in url:
            return False
        if set(request) - {"method", "url"}:
            return False
        # a conditional reference needs a search: left to the BundleProcessor
        if not references_plain and any("?" in r for r in references(entry.get("resource"))):
            return False
    return True


def references(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                yield value
            else:
                yield from references(value)
    elif isinstance(node, list):
        for value in node:
            yield from references(value)


def _prepare_transaction(unit: Unit, entries: list[dict[str, Any]], check: Check) -> None:
    """All or nothing: any bad entry fails the whole Bundle, reported at that entry."""
    mapping: dict[str, str] = {}
    targets: list[tuple[str, str]] = []
    for number, entry in enumerate(entries):
        resource = entry.get("resource")
        if not isinstance(resource, dict):
            unit.failures.append(Failure(f"{unit.source} entry {number}", "no resource"))
            return
        method, url = entry["request"]["method"], entry["request"]["url"]
        parts = url.split("/")
        resource_type = parts[0]
        resource_id = parts[1] if method == "PUT" and len(parts) == 2 else new_id()
        targets.append((resource_type, resource_id))
        if isinstance(entry.get("fullUrl"), str):
            mapping[entry["fullUrl"]] = f"{resource_type}/{resource_id}"

    def no_search(resource_type: str, query: str) -> str:
        raise AssertionError("conditional references are left to the BundleProcessor")

    ready: list[Stamped] = []
    for number, (entry, (resource_type, resource_id)) in enumerate(
        zip(entries, targets, strict=True)
    ):
        try:
            resource = entry["resource"]
            if resource.get("resourceType") != resource_type:
                kind = resource.get("resourceType")
                raise ValueError(f"the resource is a {kind}, its url names {resource_type}")
            check(resource, resource_type)
            check_id(resource_id)
            data = rewrite_links({**resource, "id": resource_id}, mapping, no_search, resource_type)
            ready.append(_stamped(resource_type, resource_id, data))
        except (FhirError, ValueError) as exc:
            reason = f"{_reason(exc)} (transaction not loaded)"
            unit.failures.append(Failure(f"{unit.source} entry {number}", reason))
            return
    unit.ready = ready


def _reason(exc: Exception) -> str:
    if isinstance(exc, FhirError):
        where = f" at {', '.join(exc.expression)}" if exc.expression else ""
        return f"{exc.diagnostics}{where}"
    return str(exc)


# -- writing (this process) ----------------------------------------------------------------------
@dataclass
class Totals:
    stored: int = 0
    failed: int = 0
    bytes: int = 0


def load(
    service: ResourceService,
    paths: list[Path],
    *,
    workers: int | None = None,
    validate: bool = True,
    on_unit: Callable[[Unit, Totals], None] | None = None,
    processor: BundleProcessor | None = None,
) -> Totals:
    """Load every file; `on_unit` sees each written unit (progress, failure reports)."""
    totals = Totals()
    # As many preparing processes as cores: this process mostly waits on the database.
    count = workers if workers is not None else max(1, os.cpu_count() or 1)
    with ProcessPoolExecutor(count) as pool:
        pending: deque[Future[Unit]] = deque()
        for job in jobs(paths, validate):
            pending.append(pool.submit(prepare, job))
            if len(pending) >= 2 * count + 2:
                _write(service, pending.popleft().result(), totals, processor, on_unit)
        while pending:
            _write(service, pending.popleft().result(), totals, processor, on_unit)
    return totals


def _write(
    service: ResourceService,
    unit: Unit,
    totals: Totals,
    processor: BundleProcessor | None,
    on_unit: Callable[[Unit, Totals], None] | None,
) -> None:
    if unit.bundle is not None:
        _process_bundle(unit, processor or _default_processor(service))
    elif unit.ready:
        ready = unit.ready
        try:
            run_write(service.store, lambda tx: service.put_many_in(tx, ready))
            unit.stored = len(unit.ready)
        except FhirError as exc:
            unit.failures.append(Failure(unit.source, f"{_reason(exc)} (chunk not loaded)"))
    unit.ready = []  # written: the memory can go
    totals.stored += unit.stored
    totals.failed += len(unit.failures)
    totals.bytes += unit.size
    if on_unit is not None:
        on_unit(unit, totals)


def _process_bundle(unit: Unit, processor: BundleProcessor) -> None:
    assert unit.bundle is not None
    try:
        response = jsonio.loads(processor.process(unit.bundle, "", "minimal"))
    except FhirError as exc:
        entry = next((m for e in exc.expression if (m := _ENTRY.match(e))), None)
        where = f"{unit.source} entry {entry.group(1)}" if entry else unit.source
        unit.failures.append(Failure(where, f"{_reason(exc)} (transaction not loaded)"))
        return
    for number, entry in enumerate(response.get("entry", [])):
        status = entry["response"]["status"]
        if status.startswith("2"):
            unit.stored += 1
        else:
            outcome = entry["response"].get("outcome", {})
            reason = "; ".join(i.get("diagnostics", "") for i in outcome.get("issue", []))
            unit.failures.append(Failure(f"{unit.source} entry {number}", f"{status}: {reason}"))


def _default_processor(service: ResourceService) -> BundleProcessor:
    return BundleProcessor(
        service, max_entries=1_000_000, multiple_delete=False, default_count=50, max_count=1000
    )
