"""What every benchmark here shares: servers under uvicorn (pinned to a core or not, one or more
workers), throwaway PostgreSQL databases, wrk runs whose Lua script prints one JSON line, and
the resident memory of a server's worker processes."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
WRK_DIR = ROOT / "bench" / "wrk"
PG_SERVER = os.environ.get(
    "BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
SERVER_CORE = 1
DRIVER_CORE = 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pin(core: int | None) -> list[str]:
    """`taskset -c core` when there is a core to pin to (none on a 1-core machine)."""
    if core is None or shutil.which("taskset") is None or (os.cpu_count() or 1) < 2:
        return []
    return ["taskset", "-c", str(core)]


@dataclass(frozen=True)
class Server:
    base: str
    pid: int
    workers: int


@contextmanager
def serve(
    module: str, env: dict[str, str], *, workers: int = 1, core: int | None = SERVER_CORE
) -> Iterator[Server]:
    """A uvicorn server of `module` (taskset to `core` unless None) until the block ends."""
    port = free_port()
    command = [
        *pin(core),
        sys.executable,
        "-m",
        "uvicorn",
        module,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **env})
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            if process.poll() is not None:
                raise RuntimeError(f"{module} exited with status {process.returncode}")
            try:
                httpx.get(f"{base}/fhir/Observation/none", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            raise RuntimeError(f"{module} did not answer on {base}")
        yield Server(base, process.pid, workers)
    finally:
        process.terminate()
        process.wait(timeout=30)


@contextmanager
def _server(module: str, env: dict[str, str]) -> Iterator[str]:
    """serve() on core 1 with one worker, yielding the base URL (the older scripts' form)."""
    with serve(module, env) as server:
        yield server.base


@contextmanager
def postgres_database(keep: bool = False) -> Iterator[str]:
    """A new, empty PostgreSQL database (dropped afterwards unless `keep`)."""
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


def postgres_reachable() -> bool:
    from sqlalchemy import create_engine, text

    engine = create_engine(PG_SERVER, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except Exception:
        return False
    finally:
        engine.dispose()


@dataclass(frozen=True)
class WrkResult:
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int  # socket errors + responses that were not 2xx (+ what the script counts)
    detail: dict[str, int]


def run_wrk(
    base: str,
    script: Path,
    env: dict[str, str],
    duration: int,
    connections: int,
    *,
    core: int | None = DRIVER_CORE,
    timeout_s: int = 30,
) -> WrkResult:
    """One wrk run (one thread, pinned to `core` unless None) of a script that loads
    wrk/common.lua: its done() prints one JSON line with the counts."""
    command = [
        *pin(core),
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{duration}s",
        f"--timeout={timeout_s}s",
        "-s",
        str(script),
        base,
    ]
    completed = subprocess.run(
        command,
        env={**os.environ, "BENCH_LUA_DIR": str(WRK_DIR), **env},
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    if completed.returncode != 0 or not lines:
        raise RuntimeError(
            f"wrk {script.name} on {base} failed ({completed.returncode}): "
            f"{completed.stderr.strip()[-500:]} {completed.stdout.strip()[-500:]}"
        )
    result = json.loads(lines[-1])
    errors = (
        result["socket_errors"]
        + result["non2xx"]
        + result.get("lost", 0)
        + result.get("failed_checks", 0)
    )
    seconds = result["duration_us"] / 1e6
    detail = {k: int(v) for k, v in result.items() if k not in ("duration_us", "p50_us", "p99_us")}
    return WrkResult(
        requests=result["requests"],
        rps=result["requests"] / seconds if seconds else 0.0,
        p50_ms=result["p50_us"] / 1000,
        p99_ms=result["p99_us"] / 1000,
        errors=errors,
        detail=detail,
    )


def wrk_json(
    base: str, script: Path, env: dict[str, str], duration: int, connections: int
) -> dict[str, float]:
    """run_wrk as a dict, raising on any error (the form search_bench.py uses)."""
    result = run_wrk(base, script, env, duration, connections)
    if result.errors:
        raise RuntimeError(f"{script.name} {env} on {base}: {result.detail}")
    return {"rps": result.rps, "p50_ms": result.p50_ms, "p99_ms": result.p99_ms}


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        found.extend(int(p) for p in task.read_text().split())
    return found


def _vmrss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def worker_rss_mb(server: Server) -> list[float]:
    """VmRSS of each uvicorn worker process: the server process itself with one worker, else
    its multiprocessing children that run workers (not the supervisor, not a resource
    tracker)."""
    if server.workers == 1:
        pids = [server.pid]
    else:
        pids = []
        for child in _children(server.pid):
            try:
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            except OSError:
                continue
            if b"spawn_main" in cmdline or b"multiprocessing-fork" in cmdline:
                pids.append(child)
    return [round(_vmrss_kb(pid) / 1024, 1) for pid in pids]
