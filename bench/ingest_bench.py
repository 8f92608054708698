"""Ingest speed: the shared Synthea bundles (30 transaction Bundles, 8,870 resources) loaded
into an empty database four ways, on SQLite and PostgreSQL:

- store only (the baseline): the same resources written through the store's bulk path
  (insert_many), one transaction per bundle, no validation, no index rows, no reference
  rewriting: the storage floor;
- HTTP: each bundle POSTed to /fhir as a transaction, one after another, to a uvicorn worker;
- CLI: `python -m app load DIR --quiet` (worker processes validate and index, the main process
  writes), wall clock including start-up, and the rate the loader reports after start-up;
- CLI --trusted: the same without validation (meant for this server's own exports).

    python bench/ingest_bench.py [--db sqlite,postgresql] [--repeat 3] [--copies 1]

Each figure is the median of --repeat runs, each into a fresh database. --copies N loads N
copies of the bundles, every UUID renamed per copy (so N times as many new resources): the
CLI's fixed start-up (~0.9 s: imports, migrations check, each worker's first use of the models
and the UCUM registry) then weighs less, as in a real bulk load.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.config import Settings  # noqa: E402
from app.fhir.service import stamp  # noqa: E402
from app.fhir.store import VersionRecord  # noqa: E402
from app.search.index_values import IndexRows  # noqa: E402
from app.storage.engine import make_engine  # noqa: E402
from app.storage.migrate import upgrade  # noqa: E402
from app.storage.sql_store import SqlStore  # noqa: E402
from bench.harness import _server  # noqa: E402
from bench.harness import postgres_database as _postgres_database  # noqa: E402

SYNTHEA = ROOT.parent / "shared" / "fixtures" / "synthea"


@contextmanager
def _database(db: str) -> Iterator[str]:
    if db == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            yield f"sqlite:///{folder}/ingest.sqlite3"
    else:
        with _postgres_database() as url:
            yield url


def _migrated(url: str) -> None:
    engine = make_engine(Settings(DATABASE_URL=url))
    upgrade(engine)
    engine.dispose()


def store_only(url: str, bundles: list[Path]) -> tuple[float, float | None]:
    engine = make_engine(Settings(DATABASE_URL=url))
    upgrade(engine)
    store = SqlStore(engine)
    parsed = [json.loads(path.read_bytes()) for path in bundles]
    began = time.perf_counter()
    for bundle in parsed:
        now = datetime.now(UTC)
        with store.write() as tx:
            records = []
            for number, entry in enumerate(bundle["entry"]):
                resource = entry["resource"]
                resource_id = f"b{id(bundle)}-{number}"
                content = stamp(resource, resource_id, 1, now)
                records.append(
                    (
                        VersionRecord(
                            resource["resourceType"], resource_id, 1, now, "POST", content
                        ),
                        IndexRows(),
                    )
                )
            tx.insert_many(records)  # the loader's bulk path, without index rows
    elapsed = time.perf_counter() - began
    engine.dispose()
    return elapsed, None


def over_http(url: str, bundles: list[Path]) -> tuple[float, float | None]:
    _migrated(url)
    with (
        _server("app.main:app", {"DATABASE_URL": url}) as base,
        httpx.Client(base_url=base, timeout=300) as client,
    ):
        began = time.perf_counter()
        for path in bundles:
            response = client.post(
                "/fhir",
                content=path.read_bytes(),
                headers={"Content-Type": "application/fhir+json", "Prefer": "return=minimal"},
            )
            assert response.status_code == 200, response.text[:300]
        return time.perf_counter() - began, None


_UUID = re.compile(rb"[0-9a-f]{8}(-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})")


def copies(count: int, folder: Path) -> list[Path]:
    """The bundles `count` times, each copy's UUIDs given the copy's number as first 8 digits."""
    if count == 1:
        return sorted(SYNTHEA.glob("*.json"))
    paths = []
    for number in range(count):
        for path in sorted(SYNTHEA.glob("*.json")):
            target = folder / f"{number:03d}-{path.name}"
            target.write_bytes(_UUID.sub(rb"%08x\1" % number, path.read_bytes()))
            paths.append(target)
    return paths


def cli(url: str, trusted: bool, source: Path) -> tuple[float, float | None]:
    """Wall clock of the whole command, and the loading time it reports (after start-up)."""
    _migrated(url)
    command = [sys.executable, "-m", "app", "load", str(source), "--quiet"]
    began = time.perf_counter()
    result = subprocess.run(
        [*command, "--trusted"] if trusted else command,
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": url},
        check=True,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - began
    reported = re.search(r"\(([\d.]+) s,", result.stdout)
    return wall, float(reported.group(1)) if reported else None


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", default="sqlite,postgresql")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--copies", type=int, default=1)
    args = parser.parse_args()
    if not list(SYNTHEA.glob("*.json")):
        print(f"no Synthea fixtures at {SYNTHEA}", file=sys.stderr)
        return 2
    folder = Path(tempfile.mkdtemp(prefix="kfhir-ingest-"))
    bundles = copies(args.copies, folder)
    source = folder if args.copies > 1 else SYNTHEA
    resources = sum(len(json.loads(p.read_bytes())["entry"]) for p in bundles)
    ways: dict[str, Callable[[str], tuple[float, float | None]]] = {
        "store only (baseline)": lambda url: store_only(url, bundles),
        "HTTP transactions": lambda url: over_http(url, bundles),
        "CLI load": lambda url: cli(url, trusted=False, source=source),
        "CLI load --trusted": lambda url: cli(url, trusted=True, source=source),
    }
    lines = [
        f"# ingest, {len(bundles)} Synthea bundles, {resources:,} resources, median of "
        f"{args.repeat} ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores)",
        "",
        "| database | way | seconds | resources/s | vs baseline | after start-up (res/s) |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for db in args.db.split(","):
        baseline = None
        for name, way in ways.items():
            times, loading = [], []
            for _ in range(args.repeat):
                with _database(db) as url:
                    wall, reported = way(url)
                times.append(wall)
                if reported is not None:
                    loading.append(reported)
            seconds = statistics.median(times)
            rate = resources / seconds
            baseline = baseline or rate
            steady = f"{resources / statistics.median(loading):,.0f}" if loading else ""
            lines.append(
                f"| {db} | {name} | {seconds:.1f} | {rate:,.0f} | {rate / baseline:.2f} | "
                f"{steady} |"
            )
            print(lines[-1], flush=True)
    shutil.rmtree(folder, ignore_errors=True)
    report = "\n".join(lines)
    print(report)
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / f"ingest-{datetime.now(UTC):%Y%m%dT%H%M%S}.md").write_text(report + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
