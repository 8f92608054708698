"""What indexing adds to a write: service.create of Observations (the search bench's shapes,
each one different, so index entries land on different pages as in real use) with their search
index rows, against the same creates with indexing switched off, in one process (median of
interleaved rounds, after preloading so the B-trees are not trivially small).

Also: the same with 100-entry transaction Bundles (BundleProcessor in process: validation,
reference rewriting, one transaction, the response Bundle), per resource. On SQLite it also
counts WAL frames (pages written) per create, a figure noise cannot move.

    python bench/index_cost.py [--db sqlite|postgresql] [--rounds 7] [--creates 1000]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack, nullcontext
from pathlib import Path
from typing import Any
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import Engine, event  # noqa: E402

from app.config import Settings  # noqa: E402
from app.fhir import service as service_module  # noqa: E402
from app.fhir import transactions as transactions_module  # noqa: E402
from app.fhir.service import ResourceService  # noqa: E402
from app.fhir.transactions import BundleProcessor  # noqa: E402
from app.search.index_values import IndexRows  # noqa: E402
from app.search.indexer import index_rows  # noqa: E402
from app.storage.engine import make_engine  # noqa: E402
from app.storage.migrate import upgrade  # noqa: E402
from app.storage.sql_store import SqlStore  # noqa: E402
from bench.harness import postgres_database as _postgres_database  # noqa: E402
from bench.search_bench import PATIENTS, observation  # noqa: E402

PRELOAD = 20_000


def _switch(indexed: bool) -> Any:
    """Indexing off: no rows computed or written, by create and by transaction entries."""
    if indexed:
        return nullcontext()
    stack = ExitStack()
    for module in (service_module, transactions_module):
        stack.enter_context(mock.patch.object(module, "index_rows", return_value=IndexRows()))
    return stack


def _wal_frames(engine: Engine, service: ResourceService, resources: list[dict[str, Any]]) -> float:
    """WAL frames per create: checkpoint, write, read the WAL's size (frames are page + 24 B)."""
    wal = Path(str(engine.url.database) + "-wal")
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        page = conn.exec_driver_sql("PRAGMA page_size").scalar()
    for resource in resources:
        service.create("Observation", resource)
    assert isinstance(page, int)
    return (wal.stat().st_size - 32) / (page + 24) / len(resources)


def _transaction(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": r, "request": {"method": "POST", "url": "Observation"}} for r in resources
        ],
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--creates", type=int, default=1000)
    args = parser.parse_args()
    rng = random.Random(1)
    total = PRELOAD + 2 * args.rounds * (args.creates + 500) + 400
    resources = [observation(i, rng, range(PATIENTS)) for i in range(total)]
    with ExitStack() as stack:
        if args.db == "sqlite":
            url = f"sqlite:///{tempfile.mkdtemp()}/cost.sqlite3"
        else:
            url = stack.enter_context(_postgres_database())
        engine = make_engine(Settings(DATABASE_URL=url))
        upgrade(engine)
        if args.db == "sqlite":

            @event.listens_for(engine, "connect")
            def _no_checkpoints(dbapi_connection: Any, _record: Any) -> None:
                dbapi_connection.execute("PRAGMA wal_autocheckpoint=0")

            engine.dispose()  # pooled connections must reconnect to take the pragma

        service = ResourceService(SqlStore(engine))
        for resource in resources[:PRELOAD]:
            service.create("Observation", resource)
        left = iter(resources[PRELOAD:])
        if args.db == "sqlite":
            frames = {}
            for label, indexed in (("with index", True), ("without index", False)):
                with _switch(indexed):
                    frames[label] = _wal_frames(engine, service, [next(left) for _ in range(200)])
            engine.dispose()
            event.remove(engine, "connect", _no_checkpoints)
        timings: dict[str, list[float]] = {"with index": [], "without index": []}
        for _ in range(args.rounds):
            for label in timings:
                batch = [next(left) for _ in range(args.creates)]
                with _switch(label == "with index"):
                    began = time.perf_counter()
                    for resource in batch:
                        service.create("Observation", resource)
                    timings[label].append((time.perf_counter() - began) / args.creates * 1e6)
        per_tx: dict[str, list[float]] = {"with index": [], "without index": []}
        processor = BundleProcessor(
            service, max_entries=1000, multiple_delete=False, default_count=50, max_count=50
        )
        for _ in range(args.rounds):
            for label in per_tx:
                bundles = [_transaction([next(left) for _ in range(100)]) for _ in range(5)]
                with _switch(label == "with index"):
                    began = time.perf_counter()
                    for bundle in bundles:
                        processor.process(bundle, "", "minimal")
                    per_tx[label].append((time.perf_counter() - began) / 500 * 1e6)
        rows = statistics.mean(index_rows(r).count() for r in resources[:1000])
        engine.dispose()
    with_index = statistics.median(timings["with index"])
    without = statistics.median(timings["without index"])
    print(f"{args.db}: {PRELOAD:,} preloaded, {args.rounds} rounds of {args.creates} creates")
    print(f"index rows per Observation:  {rows:.1f}")
    print(f"create with index rows:    {with_index:7.1f} µs (median)")
    print(f"create without index rows: {without:7.1f} µs")
    print(f"indexing share of a create: {(with_index - without) / with_index:.0%}")
    tx_with = statistics.median(per_tx["with index"])
    tx_without = statistics.median(per_tx["without index"])
    print(
        f"100-entry transactions: {tx_with:7.1f} µs per resource with index rows "
        f"({1e6 / tx_with:,.0f}/s), {tx_without:7.1f} without; indexing share "
        f"{(tx_with - tx_without) / tx_with:.0%}"
    )
    print(f"single creates: {1e6 / with_index:,.0f}/s with index rows")
    if args.db == "sqlite":
        print(
            f"WAL frames per create: {frames['with index']:.1f} with index, "
            f"{frames['without index']:.1f} without"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
