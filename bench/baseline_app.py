"""The baseline: FastAPI + SQLite storing and returning raw JSON with no FHIR work at all.

It does what our server's create/read/update must do at minimum (parse the body, assign an id,
write a row in WAL mode, send stored bytes back), so the ratio between the two is the cost of
FHIR: validation, versioning, meta, history.
"""

from __future__ import annotations

import os
import sqlite3
import uuid

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

DB_PATH = os.environ.get("BASELINE_DB", "baseline.sqlite3")
MEDIA = "application/fhir+json"

conn = sqlite3.connect(DB_PATH, isolation_level=None, check_same_thread=False)
conn.execute("PRAGMA journal_mode=WAL")
conn.execute("PRAGMA synchronous=NORMAL")
conn.execute("CREATE TABLE IF NOT EXISTS res (id TEXT PRIMARY KEY, body BLOB NOT NULL)")

app = FastAPI()


@app.post("/fhir/{resource_type}")
async def create(resource_type: str, request: Request) -> Response:
    data = orjson.loads(await request.body())
    data["id"] = str(uuid.uuid4())
    body = orjson.dumps(data)
    conn.execute("INSERT INTO res (id, body) VALUES (?, ?)", (data["id"], body))
    return Response(body, 201, media_type=MEDIA)


@app.get("/fhir/{resource_type}/{resource_id}")
async def read(resource_type: str, resource_id: str) -> Response:
    row = conn.execute("SELECT body FROM res WHERE id = ?", (resource_id,)).fetchone()
    if row is None:
        return Response(b"{}", 404, media_type=MEDIA)
    return Response(row[0], media_type=MEDIA)


@app.get("/fhir/{resource_type}")
async def search(resource_type: str, request: Request) -> Response:
    """`?_id=`: the row, in a searchset Bundle's shape (the least a search must do)."""
    row = conn.execute(
        "SELECT body FROM res WHERE id = ?", (request.query_params.get("_id", ""),)
    ).fetchone()
    entries = b'[{"resource":' + row[0] + b',"search":{"mode":"match"}}]' if row else b"[]"
    body = b'{"resourceType":"Bundle","type":"searchset","entry":' + entries + b"}"
    return Response(body, media_type=MEDIA)


@app.put("/fhir/{resource_type}/{resource_id}")
async def update(resource_type: str, resource_id: str, request: Request) -> Response:
    data = orjson.loads(await request.body())
    body = orjson.dumps(data)
    conn.execute("INSERT OR REPLACE INTO res (id, body) VALUES (?, ?)", (resource_id, body))
    return Response(body, media_type=MEDIA)
