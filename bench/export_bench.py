"""$export memory and speed as the database grows: the export job (app.fhir.export.run, the
code a kick-off starts in its thread) over 10k and 100k Observations, with the peak of Python
allocations during the job (tracemalloc) and resources written per second.

    python bench/export_bench.py [--db sqlite|postgresql] [--sizes 10000,100000]

Flat memory means the peak does not grow with the number of resources exported.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import tracemalloc
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.config import Settings  # noqa: E402
from app.fhir import export  # noqa: E402
from app.storage.engine import make_engine  # noqa: E402
from app.storage.migrate import upgrade  # noqa: E402
from app.storage.sql_store import SqlStore  # noqa: E402
from bench.harness import postgres_database as _postgres_database  # noqa: E402
from bench.search_bench import load  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--sizes", default="10000,100000")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="kfhir-export-"))
    lines = [
        f"# $export, {args.db} ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)",
        "",
        "| observations | seconds | resources/s | peak Python memory (MiB) | NDJSON (MiB) |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    with ExitStack() as stack:
        if args.db == "sqlite":
            url = f"sqlite:///{workdir / 'export.sqlite3'}"
        else:
            url = stack.enter_context(_postgres_database())
        engine = make_engine(Settings(DATABASE_URL=url))
        upgrade(engine)
        store = SqlStore(engine)
        loaded = 0
        for size in (int(s) for s in args.sizes.split(",")):
            load(store, loaded, size)
            loaded = size
            job = export.kick_off(store, "system", "bench", [])
            tracemalloc.start()
            began = time.perf_counter()
            export.run(store, job, workdir)
            seconds = time.perf_counter() - began
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            finished = store.get_job(job.job_id)
            assert finished is not None
            assert finished.status == "complete", finished.error
            assert sum(o["count"] for o in finished.output) == size
            written = sum(f.stat().st_size for f in (workdir / job.job_id).iterdir())
            lines.append(
                f"| {size:,} | {seconds:.1f} | {size / seconds:,.0f} | {peak / 2**20:.1f} | "
                f"{written / 2**20:.0f} |"
            )
            print(lines[-1], flush=True)
        engine.dispose()
    report = "\n".join(lines)
    print(report)
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / f"export-{args.db}-{datetime.now(UTC):%Y%m%dT%H%M%S}.md").write_text(report + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
