"""Bulk Data export ($export, FHIR Bulk Data Access IG 2.0), independent of HTTP.

A kick-off records a job; a background thread of the process that accepted it writes one NDJSON
file per resource type, reading current resources in key order a batch at a time (memory stays
flat however large the database), and checks between batches whether the job was cancelled.
Jobs live in the database, so any server process answers a status request; files live under
FHIR_EXPORT_DIR, which every process must share.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from app.fhir.errors import BadRequestError, FhirError, NotFoundError
from app.fhir.ids import new_id
from app.fhir.instants import format_instant, now, parse_range
from app.fhir.models import require_resource_type

log = logging.getLogger(__name__)

NDJSON = "application/fhir+ndjson"
_FORMATS = {NDJSON, "application/ndjson", "ndjson"}
_SUPPORTED = {"_outputFormat", "_type", "_since"}
BATCH = 1000


@dataclass
class ExportJob:
    job_id: str
    status: str  # accepted (running), complete, failed, cancelled
    request_url: str
    level: str  # system, patient
    types: tuple[str, ...]
    since: datetime | None
    transaction_time: datetime
    progress: str | None = None
    output: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    owner: str | None = None  # who asked (token client and subject): only they may fetch it


class ExportStore(Protocol):
    def save_job(self, job: ExportJob) -> None: ...

    def get_job(self, job_id: str) -> ExportJob | None: ...

    def delete_job(self, job_id: str) -> None: ...

    def scan(
        self,
        types: tuple[str, ...],
        since: datetime | None,
        until: datetime,
        patient_compartment: bool,
        after_key: int,
        limit: int,
    ) -> list[tuple[int, str, bytes]]:
        """(key, type, content) of current resources with key > after_key, in key order,
        changed in (since, until]; patient_compartment: Patients and what points at one."""


def kick_off(
    store: ExportStore,
    level: str,
    request_url: str,
    params: list[tuple[str, str]],
    owner: str | None = None,
) -> ExportJob:
    """Check the request's parameters and record the job (not yet run)."""
    types, since = parameters(params)
    job = ExportJob(new_id(), "accepted", request_url, level, types, since, now(), owner=owner)
    store.save_job(job)
    return job


def parameters(params: list[tuple[str, str]]) -> tuple[tuple[str, ...], datetime | None]:
    """The types and `_since` of $export's parameters (BadRequestError when one is wrong)."""
    unknown = sorted({k for k, _ in params} - _SUPPORTED)
    if unknown:
        raise BadRequestError(
            f"$export does not support the parameter(s) {', '.join(unknown)}",
            tuple(unknown),
            code="not-supported",
        )
    values = dict(params)
    fmt = values.get("_outputFormat", NDJSON)
    if fmt not in _FORMATS:
        raise BadRequestError(
            f"_outputFormat '{fmt}' is not supported: use {NDJSON}", ("_outputFormat",)
        )
    types: tuple[str, ...] = ()
    if "_type" in values:  # repeated, its lists are joined
        names = [t for k, v in params if k == "_type" for n in v.split(",") if (t := n.strip())]
        for name in names:
            try:
                require_resource_type(name)
            except FhirError as exc:
                raise BadRequestError(exc.diagnostics, ("_type",)) from None
        types = tuple(dict.fromkeys(names))
    since = None
    if "_since" in values:
        since = parse_range(values["_since"], "_since")[0]
    return types, since


def write_files(
    store: ExportStore,
    target: Path,
    types: tuple[str, ...],
    since: datetime | None,
    until: datetime,
    patient_compartment: bool = False,
    after_batch: Callable[[int], object] | None = None,
) -> dict[str, int]:
    """Write the current resources changed in (since, until] as `<type>.ndjson` files in
    `target`, a batch at a time; `after_batch(written so far)` may raise to stop. Returns the
    count per type written."""
    counts: dict[str, int] = {}
    files: dict[str, Any] = {}
    after = -1
    written = 0
    try:
        while rows := store.scan(types, since, until, patient_compartment, after, BATCH):
            for key, resource_type, content in rows:
                stream = files.get(resource_type)
                if stream is None:
                    stream = files[resource_type] = (target / f"{resource_type}.ndjson").open("wb")
                stream.write(content)
                stream.write(b"\n")
                counts[resource_type] = counts.get(resource_type, 0) + 1
                after = key
            written += len(rows)
            if after_batch is not None:
                after_batch(written)
    finally:
        for stream in files.values():
            stream.close()
    return counts


def run(store: ExportStore, job: ExportJob, directory: Path) -> None:
    """Write the job's files; the job ends complete, failed or (if deleted meanwhile) gone."""
    target = directory / job.job_id

    def progress(written: int) -> None:
        current = store.get_job(job.job_id)
        if current is None or current.status == "cancelled":
            raise _Cancelled
        job.progress = f"{written:,} resources written"
        store.save_job(job)

    try:
        target.mkdir(parents=True, exist_ok=True)
        counts = write_files(
            store,
            target,
            job.types,
            job.since,
            job.transaction_time,
            job.level == "patient",
            progress,
        )
        job.output = [
            {"type": resource_type, "file": f"{resource_type}.ndjson", "count": count}
            for resource_type, count in sorted(counts.items())
        ]
        job.status = "complete"
        job.progress = None
        store.save_job(job)
    except _Cancelled:
        shutil.rmtree(target, ignore_errors=True)
    except Exception as exc:  # the job reports it; the server goes on
        log.exception("export %s failed", job.job_id)
        job.status = "failed"
        job.error = str(exc)
        store.save_job(job)


class _Cancelled(Exception):
    pass


def manifest(job: ExportJob, files_url: str) -> dict[str, Any]:
    """The complete job's manifest (Bulk Data IG, "Response - Complete Status")."""
    return {
        "transactionTime": format_instant(job.transaction_time),
        "request": job.request_url,
        "requiresAccessToken": False,
        "output": [
            {"type": o["type"], "url": f"{files_url}/{o['file']}", "count": o["count"]}
            for o in job.output
        ],
        "error": [],
    }


def owned_job(store: ExportStore, job_id: str, owner: str | None) -> ExportJob | None:
    """The job, if `owner` may see it (a job kicked off with a token belongs to that token's
    client and subject; others are told it does not exist)."""
    job = store.get_job(job_id)
    if job is None or (job.owner is not None and job.owner != owner):
        return None
    return job


def cancel(store: ExportStore, job_id: str, directory: Path, owner: str | None = None) -> None:
    job = owned_job(store, job_id, owner)
    if job is None or job.status == "cancelled":
        raise NotFoundError(f"No export job {job_id}", ("job",))
    if job.status == "accepted":
        job.status = "cancelled"  # the running thread sees it and stops
        store.save_job(job)
    else:
        store.delete_job(job_id)
    shutil.rmtree(directory / job_id, ignore_errors=True)


def file_path(
    store: ExportStore, directory: Path, job_id: str, name: str, owner: str | None = None
) -> Path:
    job = owned_job(store, job_id, owner)
    if job is None or job.status != "complete" or name not in {o["file"] for o in job.output}:
        raise NotFoundError(f"No export file {job_id}/{name}", ("file",))
    return directory / job_id / name


def job_parameters(job: ExportJob) -> str:
    return json.dumps(
        {
            "level": job.level,
            "types": list(job.types),
            "since": job.since.isoformat() if job.since else None,
            "owner": job.owner,
        }
    )
