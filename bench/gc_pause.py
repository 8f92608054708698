"""Garbage-collector pauses in the served app, with start-up's objects frozen (gc.freeze, what
app.main's served app does) and without: the CRUD cycle of bench/run.py (9 types created, read,
updated, deleted) driven in-process through the ASGI app, every collection timed with
gc.callbacks. Each pause stops the event loop, so it lands on every request in flight.

    python bench/gc_pause.py [--cycles 1500] [--database URL]

Reports per setting: collections of each generation, the full (generation 2) collections'
median and longest pause, and the total time in the collector per 1,000 requests. Each setting
runs in its own process (a freeze cannot be undone for the objects it froze).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.asgi_read import call, start  # noqa: E402
from bench.templates import CRUD_TYPES, PLACEHOLDER, changed, load  # noqa: E402


def _filled(template: dict[str, Any], ids: dict[str, str]) -> bytes:
    text = orjson.dumps(template).decode()
    for kind, rid in ids.items():
        text = text.replace(PLACEHOLDER.format(kind), rid)
    return text.encode()


async def _cycles(freeze: bool, cycles: int) -> dict[str, Any]:
    from app.main import create_app

    app = create_app(freeze_gc=freeze)
    lifespan = await start(app)
    templates, _source = load()
    pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
    began: list[float] = []

    def timer(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            began.append(time.perf_counter())
        else:
            pauses[info["generation"]].append(time.perf_counter() - began.pop())

    gc.callbacks.append(timer)
    requests = 0
    try:
        for number in range(cycles):
            ids: dict[str, str] = {}
            for kind in CRUD_TYPES:
                status, body = await call(
                    app, "POST", f"/fhir/{kind}", _filled(templates[kind], ids)
                )
                assert status == 201, body[:300]
                ids[kind] = orjson.loads(body)["id"]
            for kind in CRUD_TYPES:
                await call(app, "GET", f"/fhir/{kind}/{ids[kind]}")
                update = changed({**templates[kind], "id": ids[kind]}, number)
                await call(app, "PUT", f"/fhir/{kind}/{ids[kind]}", _filled(update, ids))
            for kind in reversed(CRUD_TYPES):
                await call(app, "DELETE", f"/fhir/{kind}/{ids[kind]}")
            requests += 4 * len(CRUD_TYPES)
    finally:
        gc.callbacks.remove(timer)
        lifespan.cancel()
    full = pauses[2] or [0.0]
    return {
        "freeze": freeze,
        "requests": requests,
        "collections": {str(g): len(p) for g, p in pauses.items()},
        "full_median_ms": statistics.median(full) * 1000,
        "full_max_ms": max(full) * 1000,
        "collector_ms_per_1000_requests": sum(map(sum, pauses.values())) * 1e6 / requests,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=1500)
    parser.add_argument("--database", help="DATABASE_URL (default: a new SQLite file each)")
    parser.add_argument("--freeze", choices=["yes", "no"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.freeze is not None:  # one setting, in this process
        if not args.database:
            args.database = f"sqlite:///{tempfile.mkdtemp()}/fhir.sqlite3"
        os.environ["DATABASE_URL"] = args.database
        os.environ["FHIR_LOG_LEVEL"] = "warning"
        print(json.dumps(asyncio.run(_cycles(args.freeze == "yes", args.cycles))))
        return 0
    for freeze in ("no", "yes"):
        command = [sys.executable, __file__, "--freeze", freeze, "--cycles", str(args.cycles)]
        if args.database:
            command += ["--database", args.database]
        found = json.loads(subprocess.run(command, check=True, capture_output=True).stdout)
        print(
            f"frozen={found['freeze']!s:5} requests={found['requests']} "
            f"collections(gen0/1/2)={found['collections']['0']}/{found['collections']['1']}/"
            f"{found['collections']['2']} full: median {found['full_median_ms']:.1f} ms, "
            f"longest {found['full_max_ms']:.1f} ms; collector "
            f"{found['collector_ms_per_1000_requests']:.1f} ms per 1,000 requests"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
