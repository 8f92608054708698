"""Create / read / search / update throughput and latency of the FHIR server against a no-FHIR
baseline.

    python bench/run.py [--db sqlite|postgresql|both] [--duration 10] [--rounds 3] [--auth]

--auth also runs each database's server requiring bearer tokens (development key, ES256, every
request carrying one) twice: `<db>+auth` with the audit trail off (the cost of token checking
and scope enforcement) and `<db>+auth+audit` with it on (plus an AuditEvent per request).
The search workload is `Observation?_id=<id>&code=72514-3` (one match, a searchset Bundle).

Servers run on core 1 (taskset), one uvicorn worker; wrk drives them from core 0, so figures are
per server core. Rounds interleave baseline and server per workload; the table reports medians
and the ratio to the baseline measured in the same run. Needs wrk (Debian package `wrk`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
LUA = ROOT / "bench" / "wrk" / "crud.lua"
PG_SERVER = os.environ.get(
    "BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
WORKLOADS = ("create", "read", "search", "update")
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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pin(core: int) -> list[str]:
    return ["taskset", "-c", str(core)] if shutil.which("taskset") and os.cpu_count() != 1 else []


@contextmanager
def _server(module: str, env: dict[str, str]) -> Iterator[str]:
    port = _free_port()
    command = [
        *_pin(1),
        sys.executable,
        "-m",
        "uvicorn",
        module,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **env})
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                httpx.get(f"{base}/fhir/Observation/none", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=15)


@contextmanager
def _postgres_database(keep: bool = False) -> Iterator[str]:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    server = make_url(PG_SERVER)
    name = f"kfhir_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        if keep:
            print(f"kept database {name}", flush=True)
        else:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _preload(base: str, workdir: Path, label: str, count: int, token: str = "") -> Path:
    ids = []
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(base_url=base, timeout=30) as client:
        for _ in range(count):
            response = client.post(
                "/fhir/Observation",
                json=OBSERVATION,
                headers={"Content-Type": "application/fhir+json", **auth},
            )
            response.raise_for_status()
            ids.append(response.json()["id"])
    path = workdir / f"ids-{label}.txt"
    path.write_text("\n".join(ids) + "\n")
    return path


def wrk_json(
    base: str, script: Path, env: dict[str, str], duration: int, connections: int
) -> dict[str, float]:
    """One wrk run (pinned to core 0) of a script whose done() prints one JSON line."""
    command = [
        *_pin(0),
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{duration}s",
        "-s",
        str(script),
        base,
    ]
    output = subprocess.run(
        command, env={**os.environ, **env}, capture_output=True, text=True, check=True
    ).stdout
    result = json.loads(output.strip().splitlines()[-1])
    if result["status_errors"] or result["socket_errors"]:
        raise RuntimeError(f"{script.name} {env} on {base}: {result}")
    return {
        "rps": result["requests"] / (result["duration_us"] / 1e6),
        "p50_ms": result["p50_us"] / 1000,
        "p99_ms": result["p99_us"] / 1000,
    }


def _wrk(
    base: str, mode: str, ids: Path, body: Path, duration: int, connections: int, token: str = ""
) -> dict[str, float]:
    env = {"BENCH_MODE": mode, "BENCH_IDS": str(ids), "BENCH_BODY": str(body)}
    if token:
        env["BENCH_TOKEN"] = token
    return wrk_json(base, LUA, env, duration, connections)


def _auth(workdir: Path) -> tuple[dict[str, str], str]:
    """Server settings requiring tokens (development key), and a token allowing everything."""
    from app.security.devkeys import mint

    key = workdir / "dev-key.pem"
    token = mint(key, ["system/*.cruds"], lifetime_seconds=24 * 3600)
    return {"FHIR_AUTH_DEV": "true", "FHIR_AUTH_DEV_KEY": str(key)}, token


def run(
    databases: list[str], duration: int, rounds: int, connections: int, auth: bool = False
) -> str:
    workdir = Path(tempfile.mkdtemp(prefix="kfhir-bench-"))
    create_body = workdir / "create.json"
    create_body.write_text(json.dumps(OBSERVATION))
    update_body = workdir / "update.json"
    update_body.write_text(json.dumps({**OBSERVATION, "id": "__ID__"}))
    bodies = {"create": create_body, "read": create_body, "search": create_body}
    bodies["update"] = update_body
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    lines = []
    with _server(
        "bench.baseline_app:app", {"BASELINE_DB": str(workdir / "baseline.sqlite3")}
    ) as baseline:
        baseline_ids = _preload(baseline, workdir, "baseline", 2000)
        auth_env, token = _auth(workdir) if auth else ({}, "")
        labels: list[str] = []
        for database in databases:
            with ExitStack() as stack:
                url = stack.enter_context(_database_url(database, workdir))
                server = stack.enter_context(_server("app.main:app", {"DATABASE_URL": url}))
                targets = {
                    "baseline": (baseline, baseline_ids, ""),
                    database: (server, _preload(server, workdir, database, 2000), ""),
                }
                labels.append(database)
                if auth:
                    for label, audit in (("+auth", "off"), ("+auth+audit", "on")):
                        env = {"DATABASE_URL": url, "FHIR_AUDIT": audit, **auth_env}
                        secured = stack.enter_context(_server("app.main:app", env))
                        ids = _preload(secured, workdir, f"{database}{label}", 2000, token)
                        targets[f"{database}{label}"] = (secured, ids, token)
                        labels.append(f"{database}{label}")
                for _ in range(rounds):
                    for mode in WORKLOADS:
                        for label, (base, ids, bearer) in targets.items():
                            measured = _wrk(
                                base, mode, ids, bodies[mode], duration, connections, bearer
                            )
                            results.setdefault((label, mode), []).append(measured)
    lines.append(
        f"# create/read/update, {rounds} rounds x {duration}s, wrk -t1 -c{connections}, "
        f"server on core 1, one worker ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)"
    )
    lines.append("")
    lines.append("| workload | server | req/s (median) | p50 ms | p99 ms | ratio to baseline |")
    lines.append("| --- | --- | ---: | ---: | ---: | ---: |")
    for mode in WORKLOADS:
        base_rps = statistics.median(r["rps"] for r in results[("baseline", mode)])
        for label in ["baseline", *labels]:
            runs = results[(label, mode)]
            rps = statistics.median(r["rps"] for r in runs)
            p50 = statistics.median(r["p50_ms"] for r in runs)
            p99 = statistics.median(r["p99_ms"] for r in runs)
            lines.append(
                f"| {mode} | {label} | {rps:,.0f} | {p50:.2f} | {p99:.2f} | {rps / base_rps:.2f} |"
            )
    shutil.rmtree(workdir, ignore_errors=True)
    return "\n".join(lines)


@contextmanager
def _database_url(database: str, workdir: Path) -> Iterator[str]:
    if database == "sqlite":
        yield f"sqlite:///{workdir / 'server.sqlite3'}"
    else:
        with _postgres_database() as url:
            yield url


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--auth", action="store_true", help="also measure with bearer tokens")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is needed: apt-get install wrk", file=sys.stderr)
        return 2
    databases = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    report = run(databases, args.duration, args.rounds, args.connections, args.auth)
    print(report)
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / f"crud-{datetime.now(UTC):%Y%m%dT%H%M%S}.md").write_text(report + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
