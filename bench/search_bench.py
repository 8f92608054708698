"""Search latency as the database grows: 10k, 100k and 1M Observations (real shapes: vital
signs, labs, pain scores; ~200 per patient, so 5,000 patients at 1M).

Each size asks the same questions with answers of the same size: patients are added with the
observations (200 each, interleaved in time), and the date window narrows as the data gets denser
(about 100 matches at every size). Latency then grows only with the database, which is what
"index-backed" promises; with a fixed set of patients the answers themselves grew 100-fold
between 10k and 1M. The report gives the median number of matches of each shape.

    python bench/search_bench.py [--db sqlite|postgresql] [--sizes 10000,100000,1000000] [--keep]
    python bench/search_bench.py --database URL   # measure a kept database again

Data is generated deterministically and written through the server's own store (validation
skipped for speed; a sample is validated), then a uvicorn server pinned to core 1 answers wrk
(core 0, one connection, so latencies are not queueing) for each query shape in turn.
"""

from __future__ import annotations

import argparse
import itertools
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.config import Settings  # noqa: E402
from app.fhir.models import validate  # noqa: E402
from app.fhir.service import stamp  # noqa: E402
from app.fhir.store import VersionRecord  # noqa: E402
from app.search.indexer import index_rows  # noqa: E402
from app.storage.engine import make_engine  # noqa: E402
from app.storage.migrate import upgrade  # noqa: E402
from app.storage.sql_store import SqlStore  # noqa: E402
from bench.harness import _server, wrk_json  # noqa: E402
from bench.harness import postgres_database as _postgres_database  # noqa: E402

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
PATIENTS = 5000  # at 1M
PER_PATIENT = 200
# (code, display, unit, low, high, category): shapes of the Synthea fixtures' observations
Shape = tuple[str, str, str, float, float, str]
SHAPES: list[Shape] = [
    (
        "72514-3",
        "Pain severity - 0-10 verbal numeric rating [Score] - Reported",
        "{score}",
        0,
        10,
        "survey",
    ),
    ("8867-4", "Heart rate", "/min", 50, 120, "vital-signs"),
    ("8302-2", "Body Height", "cm", 140, 200, "vital-signs"),
    ("29463-7", "Body Weight", "kg", 40, 130, "vital-signs"),
    ("8310-5", "Body temperature", "Cel", 36, 39, "vital-signs"),
    ("2345-7", "Glucose", "mg/dL", 60, 200, "laboratory"),
    ("1920-8", "Aspartate aminotransferase", "U/L", 5, 80, "laboratory"),
    ("1742-6", "Alanine aminotransferase", "U/L", 5, 80, "laboratory"),
    ("718-7", "Hemoglobin", "g/dL", 9, 17, "laboratory"),
    (
        "72514-3",
        "Pain severity - 0-10 verbal numeric rating [Score] - Reported",
        "{score}",
        0,
        10,
        "survey",
    ),
]
START = datetime(2010, 1, 1, tzinfo=UTC)


def patient(index: int) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": f"bp{index}",
        "identifier": [{"system": "urn:bench", "value": f"P{index}"}],
        "name": [{"family": f"Family{index % 977}", "given": [f"Given{index}"]}],
        "gender": "female" if index % 2 else "male",
        "birthDate": f"{1940 + index % 60}-0{1 + index % 9}-1{index % 9}",
    }


def observation(
    index: int, rng: random.Random, patients: range, shapes: Sequence[Shape] = SHAPES
) -> dict[str, Any]:
    code, display, unit, low, high, category = shapes[index % len(shapes)]
    when = START + timedelta(minutes=rng.randrange(0, 11 * 365 * 24 * 60))
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": category,
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": LOINC, "code": code, "display": display}], "text": display},
        "subject": {"reference": f"Patient/bp{rng.choice(patients)}"},
        "encounter": {"reference": f"Encounter/be{index // 20}"},
        "effectiveDateTime": when.strftime("%Y-%m-%dT%H:%M:%S+00:00"),
        "issued": when.strftime("%Y-%m-%dT%H:%M:%S.000+00:00"),
        "valueQuantity": {
            "value": round(rng.uniform(low, high), 1),
            "unit": unit,
            "system": UCUM,
            "code": unit,
        },
    }


def generate(
    start: int, stop: int, seed: int = 7, shapes: Sequence[Shape] = SHAPES
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Observations [start, stop) as (id, resource), for patients [start/200, stop/200): the
    same ones for the same arguments."""
    rng = random.Random(seed * 1_000_003 + start)
    patients = range(start // PER_PATIENT, max(stop // PER_PATIENT, start // PER_PATIENT + 1))
    for number in range(start, stop):
        yield f"bo{number}", observation(number, rng, patients, shapes)


def load(
    store: SqlStore, start: int, stop: int, seed: int = 7, shapes: Sequence[Shape] = SHAPES
) -> float:
    """Write observations [start, stop) through the store's bulk path in batches of 1,000;
    returns resources per second."""
    began = time.perf_counter()
    generated = generate(start, stop, seed, shapes)
    while batch := list(itertools.islice(generated, 1000)):
        now = datetime.now(UTC)
        with store.write() as tx:
            tx.insert_many(
                [
                    (
                        VersionRecord(
                            "Observation", rid, 1, now, "POST", stamp(resource, rid, 1, now)
                        ),
                        index_rows(resource),
                    )
                    for rid, resource in batch
                ]
            )
    return (stop - start) / (time.perf_counter() - began)


def load_patients(store: SqlStore) -> None:
    """The PATIENTS patients every size refers to (bp0 ... bp4999)."""
    with store.write() as tx:
        for i in range(PATIENTS):
            resource = patient(i)
            now = datetime.now(UTC)
            tx.insert(
                VersionRecord(
                    "Patient",
                    resource["id"],
                    1,
                    now,
                    "POST",
                    stamp(resource, resource["id"], 1, now),
                ),
                index_rows(resource),
            )


def queries(rng: random.Random, size: int) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {"pain": [], "date-range": [], "chained": [], "include": []}
    # ~100 observations fall in the window at every size (11 years of data)
    hours = max(1, round(100 * 11 * 365 * 24 / size))
    for _ in range(200):
        p = rng.randrange(max(1, size // PER_PATIENT))
        start = START + timedelta(hours=rng.randrange(11 * 365 * 24 - hours))
        out["pain"].append(
            f"/fhir/Observation?patient=bp{p}&code={LOINC}|72514-3&_sort=-date&_count=50"
        )
        out["date-range"].append(
            f"/fhir/Observation?date=ge{start:%Y-%m-%dT%H:%M:%SZ}"
            f"&date=lt{start + timedelta(hours=hours):%Y-%m-%dT%H:%M:%SZ}&_count=50"
        )
        out["chained"].append(
            f"/fhir/Observation?subject:Patient.identifier=urn:bench|P{p}"
            f"&code={LOINC}|8867-4&_count=50"
        )
        out["include"].append(
            f"/fhir/Observation?patient=bp{p}&code={LOINC}|2345-7"
            "&_include=Observation:patient&_count=50"
        )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--keep", action="store_true", help="keep the database for study")
    parser.add_argument("--database", help="measure this loaded database (no load)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    workdir = Path(tempfile.mkdtemp(prefix="kfhir-search-"))
    rng = random.Random(11)
    for i in range(50):  # the generator's shapes are valid R4B
        validate(observation(i, rng, range(PATIENTS)), "Observation")
    lines = [
        f"# search latency, {args.db}, wrk -t1 -c1 {args.duration}s per query shape, "
        f"server on core 1 ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)",
        "",
        "| observations | load rate (res/s) | query | matches (median) | req/s | p50 ms | p99 ms |",
        "| ---: | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    with ExitStack() as stack:
        if args.database:
            url = args.database  # measure a database loaded before (--keep), as it is
            engine = make_engine(Settings(DATABASE_URL=url))
            with engine.connect() as conn:
                size = conn.exec_driver_sql(
                    "SELECT count(*) FROM resource WHERE resource_type = 'Observation'"
                ).scalar_one()
            _measure(url, engine, workdir, size, 0.0, args.duration, lines)
            engine.dispose()
            sizes = []
        elif args.db == "sqlite":
            url = f"sqlite:///{workdir / 'search.sqlite3'}"
        else:
            url = stack.enter_context(_postgres_database(args.keep))
        if sizes:
            engine = make_engine(Settings(DATABASE_URL=url))
            upgrade(engine)
            store = SqlStore(engine)
            load_patients(store)
            loaded = 0
            for size in sizes:
                rate = load(store, loaded, size)
                loaded = size
                _measure(url, engine, workdir, size, rate, args.duration, lines)
            engine.dispose()
    report = "\n".join(lines)
    print(report)
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / f"search-{args.db}-{datetime.now(UTC):%Y%m%dT%H%M%S}.md").write_text(report + "\n")
    return 0


def _measure(
    url: str, engine: Any, workdir: Path, size: int, rate: float, duration: int, lines: list[str]
) -> None:
    """Each query shape for `duration` seconds against a server on `url`. PostgreSQL is
    vacuumed first, as autovacuum would have done on a database in use: without the visibility
    map an index-only scan still reads every heap row."""
    settle(url, engine)
    with _server("app.main:app", {"DATABASE_URL": url}) as base:
        for name, paths in queries(random.Random(size), size).items():
            path_file = workdir / f"{name}.txt"
            path_file.write_text("\n".join(paths) + "\n")
            # Each path once first (this also counts matches): latencies are of a server in
            # use, not of the first reads after VACUUM evicted the cache (reported apart).
            matches = statistics.median([_matches(base, path) for path in paths])
            result = _run_paths(base, path_file, duration)
            lines.append(
                f"| {size:,} | {rate:,.0f} | {name} | {matches:g} | {result['rps']:,.0f} | "
                f"{result['p50_ms']:.2f} | {result['p99_ms']:.2f} |"
            )
            print(lines[-1], flush=True)


def settle(url: str, engine: Any) -> None:
    """VACUUM ANALYZE on PostgreSQL (what autovacuum would have done), ANALYZE on SQLite."""
    if url.startswith("postgresql"):
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
    else:
        with engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")


def _matches(base: str, path: str) -> int:
    """Resources the search matches (entries of search mode match on its first page)."""
    bundle = httpx.get(base + path, timeout=60).json()
    return sum(1 for e in bundle.get("entry", []) if e.get("search", {}).get("mode") == "match")


def _run_paths(base: str, paths: Path, duration: int) -> dict[str, float]:
    script = ROOT / "bench" / "wrk" / "paths.lua"
    return wrk_json(base, script, {"BENCH_PATHS": str(paths)}, duration, connections=1)


if __name__ == "__main__":
    raise SystemExit(main())
