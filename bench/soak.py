"""Soak: a bounded mixed workload against `python -m app serve` for a fixed time, per database.

    python bench/soak.py [--db sqlite|postgresql|both] [--minutes 10] [--clients 4]

Each client loops over create (30%), read (30%), search (20%), update (15%) and a
transaction (5%: 5 creates, and 5 deletes once the pool is full) of pain Observations for a
few patients. The data stays the same size: past POOL resources a client deletes its oldest
with each create, so latency can be compared from the first window to the last. Every window
(30 s) reports the requests, errors, p50 and p99 latency, and the server's resident memory
(VmRSS from /proc), and the p99 of each kind of request (create, read, search, update,
transaction), so a drift can be traced to the requests that drift. At the end it prints what
the database holds (rows per table; on PostgreSQL also dead tuples and the last autovacuum),
which is what changes while the live data stays the same size. The verdict: zero errors, RSS
growth after the warm-up (the first window) under 10%, and the p99 of the last window against
the second. Not a CI test (minutes per database).
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import ROOT
from bench.harness import free_port as _free_port
from bench.harness import postgres_database as _postgres_database

OBSERVATION = {
    "resourceType": "Observation",
    "status": "final",
    "category": [
        {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                    "code": "survey",
                }
            ]
        }
    ],
    "code": {
        "coding": [
            {
                "system": "http://loinc.org",
                "code": "72514-3",
                "display": "Pain severity - 0-10 verbal numeric rating [Score]",
            }
        ]
    },
    "subject": {"reference": "Patient/case-patient"},
    "effectiveDateTime": "2016-08-22T15:00:00Z",
    "valueQuantity": {
        "value": 6,
        "unit": "{score}",
        "system": "http://unitsofmeasure.org",
        "code": "{score}",
    },
}

WINDOW_SECONDS = 30
POOL = 500  # resources each client keeps
PATIENTS = [f"soak-{i}" for i in range(20)]


@contextmanager
def _serve(database_url: str, workdir: Path) -> Iterator[tuple[str, int]]:
    port = _free_port()
    log = (workdir / f"serve-{port}.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--port", str(port)],
        cwd=ROOT,
        env={"DATABASE_URL": database_url, "PATH": "/usr/bin:/bin", "FHIR_LOG_LEVEL": "warning"},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                httpx.get(f"{base}/fhir/metadata", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        yield base, process.pid
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _observation(patient: str, rng: random.Random) -> dict[str, Any]:
    return {
        **OBSERVATION,
        "subject": {"reference": f"Patient/{patient}"},
        "valueQuantity": {**OBSERVATION["valueQuantity"], "value": rng.randint(0, 10)},
    }


KINDS = ("create", "read", "search", "update", "transaction")


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latencies: list[tuple[str, float]] = []
        self.errors: list[str] = []

    def add(self, kind: str, seconds: float, error: str | None) -> None:
        with self.lock:
            self.latencies.append((kind, seconds))
            if error:
                self.errors.append(error)

    def take(self) -> tuple[list[tuple[str, float]], list[str]]:
        with self.lock:
            taken = (self.latencies, self.errors)
            self.latencies, self.errors = [], []
            return taken


def _p(latencies: list[float], q: int) -> float:
    """The q-th percentile in ms (nan for fewer than two)."""
    if len(latencies) < 2:
        return float("nan")
    return statistics.quantiles(latencies, n=100)[q - 1] * 1000


def _client(base: str, seed: int, stop: threading.Event, stats: Stats) -> None:
    rng = random.Random(seed)
    ids: list[str] = []
    headers = {"Content-Type": "application/fhir+json"}
    with httpx.Client(base_url=base, timeout=60) as client:
        while not stop.is_set():
            roll = rng.random()
            patient = rng.choice(PATIENTS)
            began = time.perf_counter()
            kind = KINDS[
                0
                if roll < 0.30 or not ids
                else 1
                if roll < 0.6
                else 2
                if roll < 0.8
                else 3
                if roll < 0.95
                else 4
            ]
            if kind == "create":
                response = client.post(
                    "/fhir/Observation", json=_observation(patient, rng), headers=headers
                )
                ok = response.status_code == 201
                if ok:
                    ids.append(response.json()["id"])
                if ok and len(ids) > POOL:
                    response = client.delete(f"/fhir/Observation/{ids.pop(0)}")
                    ok = response.status_code in (200, 204)
            elif kind == "read":
                response = client.get(f"/fhir/Observation/{rng.choice(ids)}")
                ok = response.status_code == 200
            elif kind == "search":
                response = client.get(
                    "/fhir/Observation",
                    params={
                        "subject": f"Patient/{patient}",
                        "code": "http://loinc.org|72514-3",
                        "_sort": "-date",
                        "_count": "10",
                    },
                )
                ok = response.status_code == 200
            elif kind == "update":
                target = rng.choice(ids)
                body = {**_observation(patient, rng), "id": target}
                response = client.put(f"/fhir/Observation/{target}", json=body, headers=headers)
                ok = response.status_code == 200
            else:
                oldest = ids[:5] if len(ids) > POOL - 5 else []
                del ids[: len(oldest)]
                entries: list[dict[str, Any]] = [
                    {
                        "resource": _observation(patient, rng),
                        "request": {"method": "POST", "url": "Observation"},
                    }
                    for _ in range(5)
                ]
                entries += [
                    {"request": {"method": "DELETE", "url": f"Observation/{old}"}} for old in oldest
                ]
                bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
                response = client.post("/fhir", json=bundle, headers=headers)
                ok = response.status_code == 200
                if ok:
                    ids += [
                        e["response"]["location"].split("/")[1]
                        for e in response.json()["entry"][:5]
                    ]
            error = None if ok else f"{response.request.method} {response.status_code}"
            stats.add(kind, time.perf_counter() - began, error)


def soak(database: str, minutes: float, clients: int) -> list[str]:
    workdir = Path(tempfile.mkdtemp(prefix="kfhir-soak-"))

    @contextmanager
    def database_url() -> Iterator[str]:
        if database == "sqlite":
            yield f"sqlite:///{workdir / 'soak.sqlite3'}"
        else:
            with _postgres_database() as url:
                yield url

    lines = [
        f"## {database}: {clients} clients, {minutes:g} min, windows of {WINDOW_SECONDS} s",
        "",
        "| window | requests | req/s | errors | p50 ms | p99 ms | RSS MB "
        "| p99 ms: create / read / search / update / transaction |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    rows: list[tuple[int, float, float, float]] = []
    total_errors: list[str] = []
    with database_url() as url, _serve(url, workdir) as (base, pid):
        stop = threading.Event()
        stats = Stats()
        threads = [
            threading.Thread(target=_client, args=(base, seed, stop, stats))
            for seed in range(clients)
        ]
        for thread in threads:
            thread.start()
        windows = max(2, int(minutes * 60 / WINDOW_SECONDS))
        try:
            for window in range(1, windows + 1):
                time.sleep(WINDOW_SECONDS)
                taken, errors = stats.take()
                total_errors.extend(errors)
                latencies = [seconds for _, seconds in taken]
                count, p50, p99 = len(latencies), _p(latencies, 50), _p(latencies, 99)
                by_kind = " / ".join(
                    f"{_p([t for k, t in taken if k == kind], 99):.0f}" for kind in KINDS
                )
                rss = _rss_mb(pid)
                rows.append((count, p50, p99, rss))
                lines.append(
                    f"| {window} | {count:,} | {count / WINDOW_SECONDS:,.0f} | {len(errors)} "
                    f"| {p50:.1f} | {p99:.1f} | {rss:.0f} | {by_kind} |"
                )
                print(lines[-1], flush=True)
        finally:
            stop.set()
            for thread in threads:
                thread.join()
        lines += ["", *_database_report(url)]
    warm_rss, last_rss = rows[0][3], rows[-1][3]
    growth = (last_rss - warm_rss) / warm_rss * 100
    lines += [
        "",
        f"errors: {len(total_errors)} {sorted(set(total_errors))[:5]}; "
        f"RSS after warm-up {warm_rss:.0f} MB -> {last_rss:.0f} MB ({growth:+.1f}%); "
        f"p99 window 2 {rows[1][2]:.1f} ms -> last {rows[-1][2]:.1f} ms; "
        f"median p99 {statistics.median(r[2] for r in rows[1:]):.1f} ms",
    ]
    return lines


def _database_report(url: str) -> list[str]:
    """Rows per table (and on PostgreSQL dead tuples, size, last autovacuum/autoanalyze)."""
    from sqlalchemy import create_engine, inspect, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "postgresql":
                rows = conn.execute(
                    text(
                        "SELECT relname, n_live_tup, n_dead_tup, "
                        "pg_total_relation_size(relid) / 1048576.0, "
                        "last_autovacuum IS NOT NULL, autovacuum_count, autoanalyze_count "
                        "FROM pg_stat_user_tables ORDER BY pg_total_relation_size(relid) DESC"
                    )
                ).all()
                return [
                    "| table | live rows | dead rows | MB | autovacuums | autoanalyzes |",
                    "| --- | ---: | ---: | ---: | ---: | ---: |",
                    *(
                        f"| {r[0]} | {r[1]:,} | {r[2]:,} | {r[3]:.1f} | {r[5]} | {r[6]} |"
                        for r in rows
                    ),
                ]
            tables = inspect(conn).get_table_names()
            counts = [
                (t, conn.execute(text(f'SELECT count(*) FROM "{t}"')).scalar_one()) for t in tables
            ]
            return [
                "| table | rows |",
                "| --- | ---: |",
                *(f"| {t} | {n:,} |" for t, n in sorted(counts, key=lambda c: -c[1])),
            ]
    finally:
        engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    databases = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    report: list[str] = []
    for database in databases:
        report += [*soak(database, args.minutes, args.clients), ""]
    print("\n".join(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
