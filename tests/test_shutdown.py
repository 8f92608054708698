"""SIGTERM (what docker stop and systemd send): the request in flight finishes and is answered,
new connections are refused, and the process exits cleanly with the data committed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson

from tests.conftest import ROOT
from tests.helpers import patient
from tests.live_server import free_port

ENTRIES = 1000


def _bundle() -> dict[str, object]:
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": patient(f"Shutdown{i}"), "request": {"method": "POST", "url": "Patient"}}
            for i in range(ENTRIES)
        ],
    }


def test_sigterm_finishes_the_request_in_flight_and_exits_cleanly(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'fhir.sqlite3'}"}
    log_path = tmp_path / "server.log"
    log = log_path.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/fhir/metadata", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.1)
        answer: dict[str, httpx.Response] = {}
        payload = orjson.dumps(_bundle())
        started = threading.Event()
        release = threading.Event()

        def chunks() -> Iterator[bytes]:
            # the last bytes are held back until SIGTERM has been sent, so the request is
            # in flight at that moment however fast the machine is
            yield payload[:-1000]
            started.set()
            release.wait(timeout=60)
            yield payload[-1000:]

        def send() -> None:
            answer["response"] = httpx.post(
                f"{base}/fhir",
                content=chunks(),
                headers={"Content-Type": "application/fhir+json"},
                timeout=120,
            )

        in_flight = threading.Thread(target=send)
        in_flight.start()
        assert started.wait(timeout=30), "the transaction was not sent"
        time.sleep(0.3)  # the server has the request's head and is reading its body
        process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        refused = False
        try:
            httpx.get(f"{base}/fhir/metadata", timeout=2)
        except httpx.TransportError:
            refused = True
        release.set()
        in_flight.join(timeout=120)
        # uvicorn shuts down gracefully, then raises the captured signal again so that a
        # supervisor sees how the process ended: -SIGTERM after a clean shutdown
        assert process.wait(timeout=60) in (0, -signal.SIGTERM)
        response = answer["response"]
        assert response.status_code == 200, response.text[:300]
        assert len(response.json()["entry"]) == ENTRIES
        # while the request was still in flight, a new connection was refused
        assert refused
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()
    output = log_path.read_text(errors="replace")
    assert "Traceback" not in output, output[-2000:]
    assert "Waiting for application shutdown" in output or "Shutting down" in output, output
    # the answered transaction is in the database
    check = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); "
            "print(c.execute(\"select count(*) from resource where resource_type='Patient'\")"
            ".fetchone()[0])",
            str(tmp_path / "fhir.sqlite3"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert int(check.stdout) == ENTRIES
