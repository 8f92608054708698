"""Read by id in-process: the FHIR app and the baseline (bench/baseline_app.py) called as ASGI
apps, no HTTP server and no socket, so the figures are the apps' own cost per request (CPU
time of the event loop's thread: thread_time), rounds interleaved, medians. With --profile,
cProfile's top entries for the FHIR app's read instead.

    python bench/asgi_read.py [--database URL] [--rounds 5] [--requests 2000] [--profile] \
        2>/dev/null   # the request log, one line a request, as in the server

It is where the direct routes (app/api/direct_routes.py) were measured; bench/run.py is the
benchmark of record (HTTP, wrk).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

App = Any
PATIENT = {"resourceType": "Patient", "name": [{"family": "Doe"}], "gender": "female"}


def _scope(method: str, path: str, body: bytes) -> dict[str, Any]:
    headers = [(b"host", b"127.0.0.1:8000"), (b"accept", b"*/*")]
    if body:
        headers.append((b"content-type", b"application/fhir+json"))
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 5555),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


async def call(app: App, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
    pending = [{"type": "http.request", "body": body, "more_body": False}]
    status = 0
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        if pending:
            return pending.pop()
        await asyncio.Event().wait()  # no disconnect while the request runs
        raise AssertionError

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(_scope(method, path, body), receive, send)
    return status, b"".join(chunks)


async def start(app: App) -> asyncio.Task[None]:
    """Run the app's lifespan startup; cancel the task returned to end it."""
    messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await messages.put({"type": "lifespan.startup"})
    started = asyncio.Event()

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "lifespan.startup.failed":
            raise SystemExit(message.get("message"))
        if message["type"] == "lifespan.startup.complete":
            started.set()

    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    task = asyncio.get_running_loop().create_task(app(scope, messages.get, send))
    await started.wait()
    return task


async def created(app: App) -> str:
    status, body = await call(app, "POST", "/fhir/Patient", orjson.dumps(PATIENT))
    assert status == 201, body
    return str(orjson.loads(body)["id"])


async def main(args: argparse.Namespace) -> None:
    from app.main import create_app
    from bench import baseline_app

    ours, base = create_app(), baseline_app.app
    lifespans = [await start(ours), await start(base)]
    try:
        await _measure(args, ours, base)
    finally:
        for task in lifespans:
            task.cancel()


async def _measure(args: argparse.Namespace, ours: App, base: App) -> None:
    paths = {"fhir": f"/fhir/Patient/{await created(ours)}"}
    paths["baseline"] = f"/fhir/Patient/{await created(base)}"
    apps = {"fhir": ours, "baseline": base}
    if args.profile:
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(args.requests):
            await call(ours, "GET", paths["fhir"])
        profile.disable()
        pstats.Stats(profile).sort_stats("cumulative").print_stats(40)
        return
    times: dict[str, list[float]] = {name: [] for name in apps}
    for _ in range(args.rounds):
        for name, app in apps.items():
            began = time.thread_time()
            for _ in range(args.requests):
                status, _body = await call(app, "GET", paths[name])
            times[name].append((time.thread_time() - began) / args.requests * 1e6)
            assert status == 200
    for name, values in times.items():
        print(f"{name}: {statistics.median(values):.1f} us per read ({[round(v) for v in values]})")
    ratio = statistics.median(times["baseline"]) / statistics.median(times["fhir"])
    print(f"fhir at {ratio:.2f} x the baseline's reads per second")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", help="DATABASE_URL (default: a new SQLite file)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--profile", action="store_true")
    arguments = parser.parse_args()
    folder = tempfile.mkdtemp()
    os.environ["DATABASE_URL"] = arguments.database or f"sqlite:///{folder}/fhir.sqlite3"
    os.environ["BASELINE_DB"] = f"{folder}/baseline.sqlite3"
    asyncio.run(main(arguments))
