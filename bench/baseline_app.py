"""The baseline: FastAPI + SQLite storing and returning raw JSON with no FHIR work at all.

It answers every request shape of bench/run.py's workloads with the least work that shape
needs: parse the body, assign an id, write a row in WAL mode, send stored bytes back. So the
ratio between the FHIR server and this is the cost of FHIR (validation, versioning, meta,
history, search indexing, reference resolution).

- POST/GET/PUT/DELETE /fhir/{type}[/{id}]: one row per resource (PUT replaces it, DELETE
  removes it); the create answers 201 with a Location, like a FHIR create;
- GET /fhir/{type}?patient=&code=&_sort=-date&_count=: the stored bodies of the type for the
  patient (and code), newest first (an index on type, patient, code, date), in a Bundle's shape;
- POST /fhir (a Bundle): each entry's resource stored with a new id in one transaction, the
  response a Bundle of 201 statuses and locations (no reference rewriting);
- GET /fhir/Patient/{id}/$pain-response: the raw reads the operation needs (the patient, their
  Observations and MedicationAdministrations, each parsed) and a Parameters of the counts.

The X-Request-Id header is echoed, as the FHIR server does (bench/wrk/crud.lua needs it).
The patient, code and date columns are read from `subject`/`patient`, `code.coding[0]` and
`effectiveDateTime`; load() writes rows directly (the pain search's databases).
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

MEDIA = "application/fhir+json"
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS res (type TEXT NOT NULL, id TEXT NOT NULL, patient TEXT, "
    "code TEXT, date TEXT, body BLOB NOT NULL, PRIMARY KEY (type, id))",
    "CREATE INDEX IF NOT EXISTS res_patient ON res (type, patient, code, date)",
)
INSERT = "INSERT OR REPLACE INTO res (type, id, patient, code, date, body) VALUES (?,?,?,?,?,?)"


def connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    for statement in SCHEMA:
        conn.execute(statement)
    return conn


def row(resource_type: str, resource_id: str, data: dict[str, Any], body: bytes) -> tuple[Any, ...]:
    """The row of a resource: its patient (Patient/<id> of subject or patient), first code
    (system|code) and effectiveDateTime as columns, the bytes as they are."""
    reference = (data.get("subject") or data.get("patient") or {}).get("reference", "")
    patient = reference[8:] if reference.startswith("Patient/") else None
    codings = (data.get("code") or {}).get("coding") or [{}]
    code = f"{codings[0].get('system', '')}|{codings[0].get('code', '')}" if codings else None
    return (resource_type, resource_id, patient, code, data.get("effectiveDateTime"), body)


def load(path: str, resources: Iterable[tuple[str, dict[str, Any]]]) -> None:
    """Write (id, resource) pairs straight into the database at `path`, in one transaction."""
    conn = connect(path)
    conn.execute("BEGIN")
    conn.executemany(
        INSERT,
        (row(r["resourceType"], rid, r, orjson.dumps({**r, "id": rid})) for rid, r in resources),
    )
    conn.execute("COMMIT")
    conn.close()


_conn: sqlite3.Connection | None = None


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    global _conn
    _conn = connect(os.environ.get("BASELINE_DB", "baseline.sqlite3"))
    yield
    _conn.close()


app = FastAPI(lifespan=lifespan)


def _db() -> sqlite3.Connection:
    assert _conn is not None
    return _conn


def _echo(request: Request) -> dict[str, str]:
    rid = request.headers.get("x-request-id")
    return {"X-Request-Id": rid} if rid else {}


@app.post("/fhir/{resource_type}")
async def create(resource_type: str, request: Request) -> Response:
    data = orjson.loads(await request.body())
    data["id"] = resource_id = str(uuid.uuid4())
    body = orjson.dumps(data)
    _db().execute(INSERT, row(resource_type, resource_id, data, body))
    headers = {"Location": f"/fhir/{resource_type}/{resource_id}/_history/1", **_echo(request)}
    return Response(body, 201, headers=headers, media_type=MEDIA)


@app.get("/fhir/{resource_type}/{resource_id}")
async def read(resource_type: str, resource_id: str, request: Request) -> Response:
    found = (
        _db()
        .execute("SELECT body FROM res WHERE type = ? AND id = ?", (resource_type, resource_id))
        .fetchone()
    )
    if found is None:
        return Response(b"{}", 404, headers=_echo(request), media_type=MEDIA)
    return Response(found[0], headers=_echo(request), media_type=MEDIA)


@app.put("/fhir/{resource_type}/{resource_id}")
async def update(resource_type: str, resource_id: str, request: Request) -> Response:
    data = orjson.loads(await request.body())
    body = orjson.dumps(data)
    _db().execute(INSERT, row(resource_type, resource_id, data, body))
    return Response(body, headers=_echo(request), media_type=MEDIA)


@app.delete("/fhir/{resource_type}/{resource_id}")
async def delete(resource_type: str, resource_id: str, request: Request) -> Response:
    _db().execute("DELETE FROM res WHERE type = ? AND id = ?", (resource_type, resource_id))
    return Response(status_code=204, headers=_echo(request))


@app.get("/fhir/{resource_type}")
async def search(resource_type: str, request: Request) -> Response:
    """?patient=&code=&_count=: newest first (the only sort this serves is -date)."""
    query = request.query_params
    sql = "SELECT body FROM res WHERE type = ? AND patient = ?"
    args: list[Any] = [resource_type, query.get("patient", "")]
    if "code" in query:
        sql += " AND code = ?"
        args.append(query["code"])
    sql += " ORDER BY date DESC LIMIT ?"
    args.append(int(query.get("_count", "50")))
    rows = _db().execute(sql, args).fetchall()
    entries = b",".join(b'{"resource":' + r[0] + b',"search":{"mode":"match"}}' for r in rows)
    body = b'{"resourceType":"Bundle","type":"searchset","entry":[' + entries + b"]}"
    return Response(body, media_type=MEDIA)


@app.post("/fhir")
async def transaction(request: Request) -> Response:
    """Each entry's resource stored with a new id, all in one transaction."""
    bundle = orjson.loads(await request.body())
    rows, answers = [], []
    for entry in bundle.get("entry", []):
        resource = entry["resource"]
        resource_type = resource["resourceType"]
        resource["id"] = resource_id = str(uuid.uuid4())
        rows.append(row(resource_type, resource_id, resource, orjson.dumps(resource)))
        location = f"{resource_type}/{resource_id}/_history/1"
        answers.append({"response": {"status": "201 Created", "location": location}})
    conn = _db()
    conn.execute("BEGIN")
    conn.executemany(INSERT, rows)
    conn.execute("COMMIT")
    body = {"resourceType": "Bundle", "type": "transaction-response", "entry": answers}
    return Response(orjson.dumps(body), media_type=MEDIA)


@app.get("/fhir/Patient/{patient_id}/$pain-response")
async def pain_response(patient_id: str) -> Response:
    """The reads of $pain-response, each body parsed, and their counts as Parameters."""
    conn = _db()
    patient = conn.execute(
        "SELECT body FROM res WHERE type = 'Patient' AND id = ?", (patient_id,)
    ).fetchone()
    if patient is None:
        return Response(b"{}", 404, media_type=MEDIA)
    counts = []
    for resource_type in ("Observation", "MedicationAdministration"):
        rows = conn.execute(
            "SELECT body FROM res WHERE type = ? AND patient = ?", (resource_type, patient_id)
        ).fetchall()
        parsed = [orjson.loads(r[0]) for r in rows]
        counts.append({"name": resource_type, "valueInteger": len(parsed)})
    return Response(
        orjson.dumps({"resourceType": "Parameters", "parameter": counts}), media_type=MEDIA
    )
