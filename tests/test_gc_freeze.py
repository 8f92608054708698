"""The served app (app.main:app, what `serve`, the container and the benchmarks run) freezes
start-up's objects out of the garbage collector's scans once its lifespan has started
(bench/gc_pause.py: a full collection's pause ~107 -> ~11 ms); an app a test builds does not
(a test process builds hundreds, whose frozen cycles would never be freed)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

SCRIPT = """
import asyncio, gc, sys
from bench.asgi_read import start

async def main() -> None:
    if sys.argv[1] == "served":
        from app.main import app
    else:
        from app.main import create_app
        app = create_app()
    before = gc.get_freeze_count()
    lifespan = await start(app)
    print(before, gc.get_freeze_count())
    lifespan.cancel()

asyncio.run(main())
"""


@pytest.mark.parametrize("which", ["served", "built"])
def test_the_served_app_freezes_start_up_objects(tmp_path: Path, which: str) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'fhir.sqlite3'}",
        "FHIR_LOG_LEVEL": "warning",
    }
    found = subprocess.run(
        [sys.executable, "-c", SCRIPT, which],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    before, after = map(int, found.stdout.split())
    assert before == 0  # nothing froze at import: the lifespan does it
    if which == "served":
        assert after > 100_000  # the models' schemas, the registries: ~200k objects
    else:
        assert after == 0
