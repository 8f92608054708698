"""A/B of a search plan choice on a loaded database: the search's page statement for patients
not queried before, each once with the server's way (A) and once without it (B), order
alternated; medians.

    --ab probe    token/date probes on the key index (search_sql._key_probe) or on the value index
    --ab patient  patient + token driven by the token rows of the patient (_token_of_patients) or
                  by the patient's reference rows, the token probed per candidate

    python bench/probe_ab.py --database URL [--ab probe|patient]   # a search_bench.py --keep db
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

# the function each A/B switches off in B, and what it is replaced with
_SWITCHED = {
    "probe": ("_key_probe", lambda criterion, spans: None),
    "patient": ("_token_of_patients", lambda positive: None),
}
_LABELS = {
    "probe": ("key-index probe", "value-index probe"),
    "patient": ("token rows of the patient", "patient's rows, token probed"),
}


def _page(conn: Connection, path: str, ab: str, way_a: bool) -> None:
    name, replacement = _SWITCHED[ab]
    original = getattr(search_sql, name)
    if not way_a:
        setattr(search_sql, name, replacement)
    try:
        url = urlsplit(path)
        resource_type = url.path.rsplit("/", 1)[-1]
        request = parse_search((resource_type,), parse_qsl(url.query), 50, 1000)
        request.resource_types = (resource_type,)
        _page_by_keys(conn, request, search_sql.plan(request, {}))
    finally:
        setattr(search_sql, name, original)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database", required=True)
    parser.add_argument("--ab", choices=sorted(_SWITCHED), default="probe")
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
                for way_a in (True, False) if number % 2 else (False, True):
                    began = time.perf_counter()
                    _page(conn, path, args.ab, way_a)
                    if number >= 20:
                        times[way_a].append((time.perf_counter() - began) * 1000)
            med: dict[bool, Any] = {k: statistics.median(v) for k, v in times.items()}
            label_a, label_b = _LABELS[args.ab]
            print(
                f"{shape}: {label_a} {med[True]:.2f} ms, {label_b} {med[False]:.2f} ms, "
                f"ratio {med[False] / med[True]:.2f} (median of {len(times[True])} patients, "
                f"{size:,} rows)"
            )
    engine.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
