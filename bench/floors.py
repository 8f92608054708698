"""Floors under two of issue 9's targets, measured apart from the server:

- validation: fhir.resources' R4B `model_validate` of each resource of the Synthea fixtures'
  Bundles (what every transaction entry costs before anything else is done), against orjson
  parsing the same resources: the ceiling on resources/s a validating server can ingest on one
  core;
- a PostgreSQL read: one row by primary key with psycopg (prepared, as the server's reads are),
  on the calling thread and through Starlette's thread pool, against the same read from SQLite:
  what a read by id costs on PostgreSQL before any HTTP or FHIR work.

    python bench/floors.py [--resources 600] [--rounds 5] [--database postgresql://...]

CPU time of the process (process_time: the thread pool's threads count) and wall time per
call, medians of --rounds interleaved rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.harness import PG_SERVER  # noqa: E402
from bench.templates import FIXTURES  # noqa: E402


def _timed(
    rounds: int, calls: int, cases: dict[str, Callable[[], Any]]
) -> dict[str, tuple[float, float]]:
    found: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, run in cases.items():
            cpu, wall = time.process_time(), time.perf_counter()
            run()
            found[name].append(
                ((time.process_time() - cpu) / calls, (time.perf_counter() - wall) / calls)
            )
    return {
        name: (statistics.median(c for c, _ in v) * 1e6, statistics.median(w for _, w in v) * 1e6)
        for name, v in found.items()
    }


def validation(count: int, rounds: int) -> None:
    from app.fhir.models import model_class

    resources: list[dict[str, Any]] = []
    for path in sorted(glob.glob(str(FIXTURES / "synthea" / "*.json"))):
        resources += [e["resource"] for e in orjson.loads(Path(path).read_bytes())["entry"]]
        if len(resources) >= count:
            break
    if not resources:
        print(f"validation: no Synthea fixtures under {FIXTURES} (BENCH_FIXTURES=DIR)")
        return
    resources = resources[:count]
    raws = [orjson.dumps(r) for r in resources]
    models = [model_class(r["resourceType"]) for r in resources]
    for model, resource in zip(models, resources, strict=True):
        model.model_validate(resource)  # every class built before timing

    def validate() -> None:
        for model, resource in zip(models, resources, strict=True):
            model.model_validate(resource)

    def parse() -> None:
        for raw in raws:
            orjson.loads(raw)

    found = _timed(rounds, len(resources), {"model_validate": validate, "orjson.loads": parse})
    cpu = found["model_validate"][0]
    print(f"validation ({len(resources)} Synthea resources, per resource):")
    for name, (cpu_us, wall_us) in found.items():
        print(f"  {name:15} {cpu_us:8.1f} us CPU {wall_us:8.1f} us wall")
    print(f"  ceiling with validation alone: {1e6 / cpu:,.0f} resources/s on one core")


def reads(database: str, calls: int, rounds: int) -> None:
    import psycopg
    from starlette.concurrency import run_in_threadpool

    body = orjson.dumps({"resourceType": "Observation", "status": "final", "note": "x" * 800})
    folder = tempfile.mkdtemp()
    lite = sqlite3.connect(f"{folder}/floor.sqlite3", check_same_thread=False)
    lite.execute("CREATE TABLE r (id TEXT PRIMARY KEY, body BLOB)")
    lite.execute("INSERT INTO r VALUES ('a', ?)", (body,))
    lite.commit()
    pg = psycopg.connect(database, autocommit=True, prepare_threshold=0)
    pg.execute("CREATE TEMP TABLE r (id TEXT PRIMARY KEY, body BYTEA)")
    pg.execute("INSERT INTO r VALUES ('a', %s)", (body,))
    select = "SELECT body FROM r WHERE id = %s"

    def pg_read() -> Any:
        return pg.execute(select, ("a",)).fetchone()

    def lite_read() -> Any:
        return lite.execute("SELECT body FROM r WHERE id = ?", ("a",)).fetchone()

    async def in_threads(read: Callable[[], Any]) -> None:
        for _ in range(calls):
            await run_in_threadpool(read)

    cases = {
        "sqlite, inline": lambda: [lite_read() for _ in range(calls)],
        "postgresql, inline": lambda: [pg_read() for _ in range(calls)],
        "postgresql, thread pool": lambda: asyncio.run(in_threads(pg_read)),
    }
    found = _timed(rounds, calls, cases)
    print(f"a read by primary key ({calls} calls, per call):")
    for name, (cpu_us, wall_us) in found.items():
        print(f"  {name:24} {cpu_us:8.1f} us CPU {wall_us:8.1f} us wall")
    pg.close()
    lite.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resources", type=int, default=600)
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--database", default=PG_SERVER.replace("+psycopg", ""))
    args = parser.parse_args()
    validation(args.resources, args.rounds)
    reads(args.database, args.calls, args.rounds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
