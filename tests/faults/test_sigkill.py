"""The server killed with SIGKILL while it loads transaction Bundles, then started again: no
Bundle is in the database in part, and `python -m app check` finds every current resource
with its versions and index rows matching a fresh extraction (on both databases)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import BinaryIO

import httpx

from app.config import Settings
from tests.conftest import ROOT
from tests.helpers import pain_observation, patient
from tests.live_server import free_port

SYSTEM = "urn:example:sigkill"
ENTRIES = 200  # a patient and its observations per Bundle


def _bundle(number: int) -> dict[str, object]:
    patient_url = f"urn:uuid:00000000-0000-4000-8000-{number:012d}"
    entries: list[dict[str, object]] = [
        {
            "fullUrl": patient_url,
            "resource": patient(identifier=[{"system": SYSTEM, "value": f"b{number}"}]),
            "request": {"method": "POST", "url": "Patient"},
        }
    ]
    for i in range(ENTRIES - 1):
        observation = pain_observation(i % 11, subject=patient_url)
        observation["identifier"] = [{"system": SYSTEM, "value": f"b{number}"}]
        entries.append(
            {"resource": observation, "request": {"method": "POST", "url": "Observation"}}
        )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _start(database_url: str, log: BinaryIO) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "DATABASE_URL": database_url, "FHIR_MIGRATE_ON_START": "false"}
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{base}/fhir/metadata", timeout=1).status_code == 200:
                return process, base
        except httpx.TransportError:
            assert process.poll() is None, "the server exited at start-up"
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)


def test_sigkill_while_loading_bundles_leaves_no_partial_bundle(
    database_url: str, settings: Settings, tmp_path: Path
) -> None:
    log = (tmp_path / "server.log").open("ab")
    request_cleanup = log.close
    process, base = _start(database_url, log)
    answered: list[int] = []
    stop = threading.Event()

    def load(first: int) -> None:
        number = first
        with httpx.Client(base_url=base, timeout=60) as client:
            while not stop.is_set():
                try:
                    response = client.post("/fhir", json=_bundle(number))
                except httpx.TransportError:
                    return  # killed
                if response.status_code == 200:
                    answered.append(number)
                number += 2

    loaders = [threading.Thread(target=load, args=(n,)) for n in (0, 1)]
    try:
        for thread in loaders:
            thread.start()
        deadline = time.monotonic() + 120
        while len(answered) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # both loaders are in the middle of their next Bundles
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        stop.set()
        for thread in loaders:
            thread.join(timeout=60)
        if process.poll() is None:
            process.kill()
    assert answered, "no Bundle was answered before the kill: the test proves nothing"

    # started again: every Bundle is whole or absent, the answered ones are whole
    process, base = _start(database_url, log)
    try:
        with httpx.Client(base_url=base, timeout=60) as client:
            counts: Counter[str] = Counter()
            url: str | None = (
                f"/fhir/Observation?identifier={SYSTEM}|&_count=1000&_elements=identifier"
            )
            while url:
                page = client.get(url).json()
                for entry in page.get("entry", []):
                    counts[entry["resource"]["identifier"][0]["value"]] += 1
                url = next((k["url"] for k in page["link"] if k["relation"] == "next"), None)
            patients = client.get(f"/fhir/Patient?identifier={SYSTEM}|&_summary=count").json()
    finally:
        process.terminate()
        process.wait(timeout=30)
        request_cleanup()
    partial = {bundle: n for bundle, n in counts.items() if n != ENTRIES - 1}
    assert partial == {}
    assert {f"b{n}" for n in answered} <= set(counts)
    assert patients["total"] == len(counts)

    checked = subprocess.run(
        [sys.executable, "-m", "app", "check"],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert checked.returncode == 0, checked.stdout[-3000:] + checked.stderr[-3000:]
