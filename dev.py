#!/usr/bin/env python3
"""One-command bootstrap: make .venv, install the project into it when pyproject.toml changed, run.

    python3 dev.py serve [ARGS]   start the server (SQLite under ./data unless DATABASE_URL is set)
    python3 dev.py test [ARGS]    run the whole test suite (SQLite and, when reachable, PostgreSQL)
    python3 dev.py run CMD ...    run any command inside the environment

Only the standard library is used here, so a machine with nothing but Python 3.11+ can run it.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("DEV_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"
STAMP = VENV / ".installed-pyproject-sha256"


def _ensure_env() -> None:
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text().strip() == digest:
        return
    if not PY.exists():
        print(f"dev.py: creating {VENV}", file=sys.stderr)
        venv.EnvBuilder(with_pip=True).create(VENV)
    print("dev.py: installing the project and its test tools", file=sys.stderr)
    pip = [str(PY), "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "install", "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "install", "-e", f"{ROOT}[test]"], check=True)
    STAMP.write_text(digest)


def main(argv: list[str]) -> int:
    if sys.version_info < (3, 11):  # noqa: UP036 - this file must run on older Pythons to say so
        print("dev.py: Python 3.11 or newer is required", file=sys.stderr)
        return 2
    if not argv or argv[0] not in {"serve", "test", "run"}:
        print(__doc__, file=sys.stderr)
        return 2
    _ensure_env()
    command, rest = argv[0], argv[1:]
    if command == "serve":
        # the quick start: the shipped case is loaded on first start (once)
        args = [str(PY), "-m", "app", "serve", "--load-case", *rest]
    elif command == "test":
        # One pytest worker per core; the tests are split between them and a worker left idle
        # takes tests from the other's queue (worksteal). With whole files per worker
        # (loadfile) one long module ran alone for minutes at the end; a module split between
        # workers loads its module fixtures in each. `python3 dev.py test -n 0`: one process.
        parallel = [] if any(a.startswith("-n") for a in rest) else ["-n", "auto"]
        args = [str(PY), "-m", "pytest", *parallel, "--dist", "worksteal", *rest]
    else:
        if not rest:
            print("dev.py run: name a command", file=sys.stderr)
            return 2
        exe = BIN / rest[0]
        args = [str(exe) if exe.exists() else rest[0], *rest[1:]]
    os.chdir(ROOT)
    if os.name == "nt":
        return subprocess.call(args)
    os.execv(args[0], args)
    return 0  # unreachable


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
