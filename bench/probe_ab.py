"""A/B of the EXISTS probe on a loaded database: the search's page statement for patients not
queried before, each once with token/date probes on the key index (the server's way,
search_sql._key_probe) and once on the value index, order alternated; medians.

    python bench/probe_ab.py --database URL   # a database kept by search_bench.py --keep
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import Connection  # noqa: E402

from app.config import Settings  # noqa: E402
from app.search.query import parse_search  # noqa: E402
from app.storage import search_sql  # noqa: E402
from app.storage.engine import make_engine  # noqa: E402
from app.storage.sql_store import _page_by_keys  # noqa: E402
from bench.search_bench import queries  # noqa: E402

_KEY_PROBE = search_sql._key_probe


def _page(conn: Connection, path: str, key_probe: bool) -> None:
    search_sql._key_probe = _KEY_PROBE if key_probe else (lambda criterion, spans: None)
    try:
        url = urlsplit(path)
        resource_type = url.path.rsplit("/", 1)[-1]
        request = parse_search((resource_type,), parse_qsl(url.query), 50, 1000)
        request.resource_types = (resource_type,)
        _page_by_keys(conn, request, search_sql.plan(request, {}))
    finally:
        search_sql._key_probe = _KEY_PROBE


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database", required=True)
    parser.add_argument("--shapes", default="pain,include")
    parser.add_argument("--seed", type=int, default=7, help="which patients (not the bench's)")
    args = parser.parse_args()
    engine = make_engine(Settings(DATABASE_URL=args.database))
    with engine.connect() as conn:
        size = conn.exec_driver_sql(
            "SELECT count(*) FROM resource WHERE resource_type = 'Observation'"
        ).scalar_one()
        for shape in args.shapes.split(","):
            # a seed the search benchmark does not use: patients whose pages it did not read
            paths = queries(random.Random(args.seed), size)[shape][:200]
            times: dict[bool, list[float]] = {True: [], False: []}
            for number, path in enumerate(paths):
                for key_probe in (True, False) if number % 2 else (False, True):
                    began = time.perf_counter()
                    _page(conn, path, key_probe)
                    if number >= 20:
                        times[key_probe].append((time.perf_counter() - began) * 1000)
            med: dict[bool, Any] = {k: statistics.median(v) for k, v in times.items()}
            print(
                f"{shape}: key-index probe {med[True]:.2f} ms, value-index probe "
                f"{med[False]:.2f} ms (median of {len(times[True])} patients, {size:,} rows)"
            )
    engine.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
