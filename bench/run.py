"""Issue 9's benchmark in one command: the FHIR server against a no-FHIR baseline
(bench/baseline_app.py: FastAPI + SQLite, raw JSON) on SQLite and PostgreSQL, driven by wrk.

    python bench/run.py                        # all workloads, both databases, pain search at 10k
    python bench/run.py --sizes 10000,1000000  # the pain search at 10k and 1M as well
    python bench/run.py --db sqlite --workloads crud,read --duration 3 --rounds 1   # a quick look

Workloads (--workloads; each is checked once on every server before it is timed, so a broken
workload stops the run instead of producing numbers):
  crud           the CRUD cycle of Health Samurai's fhir-server-performance-benchmark (k6): each
                 virtual user (one per connection) creates a Patient, Organization,
                 Practitioner, Medication, Encounter, Condition, Observation, MedicationRequest
                 and MedicationAdministration (each refering to the ones before it), reads,
                 updates and deletes them; every request counts. Resources are the first example
                 of each type in ../shared/fixtures (bench/data/crud-templates.json without it).
  read           GET /fhir/Observation/{id} over 1,000 stored Observations.
  search         Observation?patient=X&code=http://loinc.org|72514-3&_sort=-date&_count=50 on a
                 database of --sizes Observations (bench/search_bench.py's data, loaded through
                 the store's bulk path, half of them pain scores: each answer is a full page of
                 50); one connection (--search-connections), so latencies are not queueing.
  transaction    POST /fhir of 100-entry transaction Bundles cut from the Synthea fixtures
                 (bench/tx_bundles.py; made from the templates without ../shared), new UUIDs in
                 every request, Prefer: return=minimal; resources/s = 100 x requests/s.
  pain-response  GET /fhir/Patient/{id}/$pain-response on a patient with 200 pain scores and
                 50 ketamine infusions.

Setups (--workers): `1`: every server pinned to core 1 (taskset) with one uvicorn worker, wrk
pinned to core 0, so figures are per server core; `2`: two workers, nothing pinned, for the crud
and read workloads; `both` (default). The pain search always runs on one worker on core 1
(its servers start once per size). PostgreSQL itself is never pinned.

Each round runs every workload for --duration seconds on the baseline and each server in turn
(rounds interleaved); the table gives the medians of --rounds rounds, the ratio to the
baseline, the errors (responses that were not 2xx, socket errors, unmatched responses) and
issue 9's targets beside the figures, and the VmRSS of each uvicorn worker after the CRUD run
(/proc/<pid>/status). The report (with the command, commit, date and core count) is printed and
written to bench/results/ (git-ignored). --auth also measures the main workloads on servers
requiring bearer tokens: `<db>+auth` (audit trail off) and `<db>+auth+audit` (on).

Needs wrk (Debian package `wrk`) and, for --db postgresql|both, PostgreSQL at
BENCH_POSTGRES_URL (default postgresql+psycopg://postgres@127.0.0.1:5432/test).
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import baseline_app, search_bench, templates  # noqa: E402
from bench.harness import (  # noqa: E402
    DRIVER_CORE,
    SERVER_CORE,
    postgres_database,
    postgres_reachable,
    run_wrk,
    serve,
    worker_rss_mb,
)
from bench.report import PINNED, UNPINNED, Results, render  # noqa: E402
from bench.workloads import (  # noqa: E402
    PAIN_SHAPES,
    PREPARE,
    SCRIPTS,
    WORKLOADS,
    Shared,
    Target,
    bundles_file,
    crud_templates_file,
    prepare_search,
)

UNPINNED_WORKLOADS = ("crud", "read")


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _database_url(stack: ExitStack, database: str, workdir: Path, name: str) -> str:
    if database == "sqlite":
        return f"sqlite:///{workdir / f'{name}.sqlite3'}"
    return stack.enter_context(postgres_database())


def _auth(workdir: Path) -> tuple[dict[str, str], str]:
    """Server settings requiring tokens (development key), and a token allowing everything."""
    from app.security.devkeys import mint

    key = workdir / "dev-key.pem"
    token = mint(key, ["system/*.cruds"], lifetime_seconds=24 * 3600)
    return {"FHIR_AUTH_DEV": "true", "FHIR_AUTH_DEV_KEY": str(key)}, token


def _measure(
    results: Results,
    setup: str,
    workload: str,
    env_key: str,
    target: Target,
    duration: int,
    connections: int,
) -> None:
    env = dict(target.env[env_key])
    if target.token:
        env["BENCH_TOKEN"] = target.token
    script = SCRIPTS[workload.split()[0]]
    core = DRIVER_CORE if setup == PINNED else None
    result = run_wrk(target.server.base, script, env, duration, connections, core=core)
    results.add(setup, workload, target.label, result)
    counts = {k: v for k, v in result.detail.items() if v and k != "requests"}
    _log(
        f"  {setup} | {workload} | {target.label}: {result.rps:,.0f} req/s, "
        f"p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms, errors {result.errors} {counts}"
    )


def run_main(args: argparse.Namespace, shared: Shared, results: Results) -> None:
    """crud, read, transaction, pain-response: every setup's servers up at once (idle but the
    one measured), prepared and checked, then the rounds."""
    workloads = [w for w in args.workloads if w != "search"]
    setups = {"1": [PINNED], "2": [UNPINNED], "both": [PINNED, UNPINNED]}[args.workers]
    cells: list[tuple[str, Target]] = []
    with ExitStack() as stack:
        for setup in setups:
            pinned = setup == PINNED
            workers, core = (1, SERVER_CORE) if pinned else (2, None)
            tag = "pinned" if pinned else "unpinned"
            if setup == UNPINNED and not set(workloads) & set(UNPINNED_WORKLOADS):
                continue
            baseline_db = shared.workdir / f"baseline-{tag}.sqlite3"
            server = stack.enter_context(
                serve(
                    "bench.baseline_app:app",
                    {"BASELINE_DB": str(baseline_db)},
                    workers=workers,
                    core=core,
                )
            )
            cells.append((setup, Target("baseline", server)))
            for database in args.databases:
                url = _database_url(stack, database, shared.workdir, f"server-{tag}")
                env = {"DATABASE_URL": url}
                server = stack.enter_context(serve("app.main:app", env, workers=workers, core=core))
                cells.append((setup, Target(database, server)))
                if args.auth and pinned:
                    auth_env, token = _auth(shared.workdir)
                    for suffix, audit in (("+auth", "off"), ("+auth+audit", "on")):
                        secured = {**env, **auth_env, "FHIR_AUDIT": audit}
                        server = stack.enter_context(serve("app.main:app", secured, core=core))
                        cells.append((setup, Target(f"{database}{suffix}", server, token)))
        for setup, target in cells:
            for workload in workloads:
                if setup == UNPINNED and workload not in UNPINNED_WORKLOADS:
                    continue
                _log(f"preparing and checking {workload} on {setup} | {target.label}")
                PREPARE[workload](target, shared)
        for number in range(args.rounds):
            _log(f"round {number + 1} of {args.rounds}")
            for workload in workloads:
                for setup, target in cells:
                    if setup == UNPINNED and workload not in UNPINNED_WORKLOADS:
                        continue
                    _measure(
                        results,
                        setup,
                        workload,
                        workload,
                        target,
                        args.duration,
                        args.connections,
                    )
                    if workload == "crud":
                        rss = worker_rss_mb(target.server)
                        results.rss_after_crud[(setup, target.label)] = rss


def run_search(args: argparse.Namespace, shared: Shared, results: Results) -> None:
    """The pain search at each size: the databases (and the baseline's) grown to the size,
    then servers on core 1, each path checked once, and the rounds."""
    from app.config import Settings
    from app.storage.engine import make_engine
    from app.storage.migrate import upgrade
    from app.storage.sql_store import SqlStore

    with ExitStack() as stack:
        stores = {}
        for database in args.databases:
            url = _database_url(stack, database, shared.workdir, "search")
            engine = make_engine(Settings(DATABASE_URL=url))
            stack.callback(engine.dispose)
            upgrade(engine)
            store = SqlStore(engine)
            search_bench.load_patients(store)
            stores[database] = (url, engine, store)
        baseline_db = str(shared.workdir / "search-baseline.sqlite3")
        loaded = 0
        for size in sorted(args.sizes):
            for database, (url, engine, store) in stores.items():
                _log(f"loading {database} to {size:,} Observations")
                began = time.perf_counter()
                search_bench.load(store, loaded, size, shapes=PAIN_SHAPES)
                search_bench.settle(url, engine)
                seconds = time.perf_counter() - began
                results.notes.append(
                    f"search {size:,}: loading {database} from {loaded:,} took {seconds:,.0f} s "
                    f"({(size - loaded) / seconds:,.0f} Observations/s, VACUUM/ANALYZE included)"
                )
            began = time.perf_counter()
            baseline_app.load(baseline_db, search_bench.generate(loaded, size, shapes=PAIN_SHAPES))
            results.notes.append(
                f"search {size:,}: loading the baseline from {loaded:,} took "
                f"{time.perf_counter() - began:,.0f} s"
            )
            loaded = size
            workload = f"search {size:,}"
            with ExitStack() as servers:
                server = servers.enter_context(
                    serve("bench.baseline_app:app", {"BASELINE_DB": baseline_db})
                )
                targets = [Target("baseline", server)]
                for database, (url, _, _) in stores.items():
                    server = servers.enter_context(serve("app.main:app", {"DATABASE_URL": url}))
                    targets.append(Target(database, server))
                for target in targets:
                    _log(f"preparing and checking {workload} on {target.label}")
                    prepare_search(target, shared, size)
                for number in range(args.rounds):
                    _log(f"{workload}: round {number + 1} of {args.rounds}")
                    for target in targets:
                        _measure(
                            results,
                            PINNED,
                            workload,
                            f"search-{size}",
                            target,
                            args.duration,
                            args.search_connections,
                        )


def _git(*command: str) -> str:
    done = subprocess.run(["git", *command], cwd=ROOT, capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else ""


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def header(args: argparse.Namespace, template_source: str, synthea: bool) -> list[str]:
    commit = _git("rev-parse", "--short", "HEAD") or "unknown"
    if _git("status", "--porcelain", "--untracked-files=no"):
        commit += " (with uncommitted changes)"
    command = shlex.join(["python", "bench/run.py", *sys.argv[1:]])
    return [
        "# Benchmark (issue 9)",
        "",
        f"`{command}` · commit {commit} · {datetime.now(UTC):%Y-%m-%d %H:%M} UTC · "
        f"{os.cpu_count()} cores ({_cpu_model()})",
        "",
        f"wrk -t1, {args.connections} connections ({args.search_connections} for the pain "
        f"search), {args.duration} s per run, medians of {args.rounds} interleaved rounds; "
        f"CRUD templates from {template_source}; transaction Bundles from "
        + ("the Synthea fixtures" if synthea else "the templates (no ../shared)")
        + ".",
    ]


def _list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--db", choices=["sqlite", "postgresql", "both"], default="both", help="default: both"
    )
    parser.add_argument(
        "--workloads",
        type=_list,
        default=list(WORKLOADS),
        help=f"comma-separated, of {','.join(WORKLOADS)} (default: all)",
    )
    parser.add_argument(
        "--sizes",
        type=lambda text: [int(s) for s in _list(text)],
        default=[10_000],
        help="Observations in the pain search's database, comma-separated (default: 10000). "
        "Loading takes minutes per 100k per database: see README",
    )
    parser.add_argument(
        "--workers", choices=["1", "2", "both"], default="both", help="setups (default: both)"
    )
    parser.add_argument(
        "--duration", type=int, default=10, help="seconds per wrk run (default: 10)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="default: 3")
    parser.add_argument("--connections", type=int, default=4, help="wrk connections (default: 4)")
    parser.add_argument(
        "--search-connections",
        type=int,
        default=1,
        help="wrk connections for the pain search (default: 1)",
    )
    parser.add_argument(
        "--auth", action="store_true", help="also measure servers requiring bearer tokens"
    )
    parser.add_argument(
        "--out", type=Path, default=ROOT / "bench" / "results", help="report folder"
    )
    args = parser.parse_args(argv)
    unknown = set(args.workloads) - set(WORKLOADS)
    if unknown:
        parser.error(f"unknown workloads: {', '.join(sorted(unknown))}")
    args.workloads = [w for w in WORKLOADS if w in args.workloads]
    args.databases = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    return args


def main() -> int:
    args = parse_args()
    if shutil.which("wrk") is None:
        _log("wrk is needed: apt-get install wrk")
        return 2
    if "postgresql" in args.databases and not postgres_reachable():
        _log("PostgreSQL is not reachable at BENCH_POSTGRES_URL: start it, or use --db sqlite")
        return 2
    began = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="kfhir-bench-"))
    try:
        crud, source = templates.load()
        synthea = (templates.FIXTURES / "synthea").is_dir()
        shared = Shared(workdir, crud, bundles_file(workdir, crud, synthea))
        crud_templates_file(shared)
        results = Results()
        if set(args.workloads) - {"search"}:
            run_main(args, shared, results)
        if "search" in args.workloads:
            run_search(args, shared, results)
        results.notes.append(f"the whole run took {time.perf_counter() - began:,.0f} s")
        report = render(header(args, source, synthea), results)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(report)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"issue9-{datetime.now(UTC):%Y%m%dT%H%M%S}.md"
    path.write_text(report)
    _log(f"written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
