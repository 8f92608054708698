"""What indexing adds to a create: service.create of a pain Observation with its search index
rows, against the same create with indexing switched off, in one process on SQLite (median of
interleaved rounds).

    python bench/index_cost.py [--rounds 5] [--creates 2000]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.config import Settings  # noqa: E402
from app.fhir import service as service_module  # noqa: E402
from app.fhir.service import ResourceService  # noqa: E402
from app.search.index_values import IndexRows  # noqa: E402
from app.storage.engine import make_engine  # noqa: E402
from app.storage.migrate import upgrade  # noqa: E402
from app.storage.sql_store import SqlStore  # noqa: E402
from bench.search_bench import observation  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--creates", type=int, default=2000)
    args = parser.parse_args()
    engine = make_engine(Settings(DATABASE_URL=f"sqlite:///{tempfile.mkdtemp()}/cost.sqlite3"))
    upgrade(engine)
    service = ResourceService(SqlStore(engine))
    resource = observation(0, random.Random(1))
    service.create("Observation", resource)
    timings: dict[str, list[float]] = {"with index": [], "without index": []}
    for _ in range(args.rounds):
        for label in timings:
            switch = (
                mock.patch.object(service_module, "index_rows", return_value=IndexRows())
                if label == "without index"
                else nullcontext()
            )
            with switch:
                began = time.perf_counter()
                for _ in range(args.creates):
                    service.create("Observation", resource)
                timings[label].append((time.perf_counter() - began) / args.creates * 1e6)
    with_index = statistics.median(timings["with index"])
    without = statistics.median(timings["without index"])
    print(f"create with index rows:    {with_index:7.1f} µs (median of {args.rounds})")
    print(f"create without index rows: {without:7.1f} µs")
    print(f"indexing share of a create: {(with_index - without) / with_index:.0%}")
    engine.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
