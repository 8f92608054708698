"""`python -m app load`: Bundles of every kind, single resources and NDJSON, on both databases;
failures reported per resource with place and reason while the rest loads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from app.config import Settings
from app.fhir.loading import Failure, load
from app.fhir.service import ResourceService
from app.storage.engine import make_engine
from app.storage.sql_store import SqlStore
from tests.api.test_transactions import _visit
from tests.conftest import FIXTURES, ROOT
from tests.helpers import pain_observation, patient


def _files(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    (data / "nested").mkdir(parents=True)
    (data / "visit.json").write_text(json.dumps(_visit()))
    (data / "collection.json").write_text(
        json.dumps(
            {
                "resourceType": "Bundle",
                "type": "collection",
                "entry": [
                    {"resource": {**patient("Kept"), "id": "kept-id"}},
                    {"resource": {**patient("Bad"), "gender": "unknown-gender"}},
                ],
            }
        )
    )
    lines = [
        json.dumps(pain_observation(3, "Patient/kept-id")),
        "{not json",
        "",
        json.dumps({**pain_observation(4), "status": "bogus"}),
        json.dumps(pain_observation(5, "Patient/kept-id")),
    ]
    (data / "nested" / "scores.ndjson").write_text("\n".join(lines) + "\n")
    (data / "nested" / "single.json").write_text(json.dumps({**patient("Single"), "id": "single"}))
    (data / "nested" / "broken.json").write_text("[1, 2")
    (data / "ignored.txt").write_text("not loaded")
    # a transaction with a conditional part goes through the Bundle processor
    conditional = _visit(mrn="cond")
    conditional["entry"][3]["resource"]["subject"] = {
        "reference": "Patient?identifier=http://hospital.example/mrn|123"
    }
    (data / "z-conditional.json").write_text(json.dumps(conditional))
    return data


def test_load_reports_each_failure_and_stores_the_rest(
    tmp_path: Path, settings: Settings, client: httpx.Client
) -> None:
    engine = make_engine(settings)
    failures: list[Failure] = []
    try:
        totals = load(
            ResourceService(SqlStore(engine)),
            [_files(tmp_path)],
            workers=2,
            on_unit=lambda unit, _: failures.extend(unit.failures),
        )
    finally:
        engine.dispose()
    where = sorted(f"{Path(f.where).name}" for f in failures)
    assert where == ["broken.json", "collection.json entry 1", "scores.ndjson:2", "scores.ndjson:4"]
    reasons = {Path(f.where).name: f.reason for f in failures}
    assert "not JSON" in reasons["scores.ndjson:2"]
    assert "Observation.status" in reasons["scores.ndjson:4"]
    assert totals.failed == 4
    assert totals.stored == 5 + 1 + 2 + 1 + 5
    assert client.get("/fhir/Patient/kept-id").status_code == 200
    assert client.get("/fhir/Patient/single").status_code == 200
    assert client.get("/fhir/Observation?patient=kept-id").json()["total"] == 2
    visit_patient = client.get("/fhir/Patient?identifier=http://hospital.example/mrn|123").json()
    assert visit_patient["total"] == 1
    patient_id = visit_patient["entry"][0]["resource"]["id"]
    # 2 from the first visit, 2 from the conditional one (one via the conditional reference)
    assert client.get(f"/fhir/Observation?patient={patient_id}").json()["total"] == 3
    # loading the same files again updates what has ids, and duplicates nothing with one
    engine = make_engine(settings)
    try:
        load(ResourceService(SqlStore(engine)), [tmp_path / "data" / "nested"], workers=1)
    finally:
        engine.dispose()
    assert client.get("/fhir/Patient/single").json()["meta"]["versionId"] == "2"


def test_a_failing_transaction_loads_nothing(tmp_path: Path, settings: Settings) -> None:
    bundle = _visit()
    bundle["entry"][2]["resource"]["status"] = "bogus"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bundle))
    engine = make_engine(settings)
    failures: list[Failure] = []
    try:
        totals = load(
            ResourceService(SqlStore(engine)),
            [path],
            workers=1,
            on_unit=lambda unit, _: failures.extend(unit.failures),
        )
    finally:
        engine.dispose()
    assert totals.stored == 0
    assert [f.where for f in failures] == [f"{path} entry 2"]
    assert "transaction not loaded" in failures[0].reason


def test_the_command_line(tmp_path: Path, settings: Settings) -> None:
    data = _files(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "app", "load", str(data), "--quiet"],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": settings.database_url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert "loaded 14 resources; 4 failed" in result.stdout
    assert "FAILED" in result.stderr
    assert "scores.ndjson:4" in result.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "app", "load", str(tmp_path / "nope")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert missing.returncode == 2
    assert "no such file" in missing.stderr


@pytest.mark.slow
@pytest.mark.skipif(not FIXTURES.is_dir(), reason=f"{FIXTURES} is not beside this checkout")
def test_the_synthea_fixtures_load_in_one_go(settings: Settings, client: httpx.Client) -> None:
    engine = make_engine(settings)
    try:
        totals = load(ResourceService(SqlStore(engine)), [FIXTURES / "synthea"])
    finally:
        engine.dispose()
    assert totals.failed == 0
    assert totals.stored == 8870
    assert client.get("/fhir/Patient").json()["total"] == 30


def test_trusted_input_skips_validation_but_not_type_checks(
    tmp_path: Path, settings: Settings, client: httpx.Client
) -> None:
    path = tmp_path / "export.ndjson"
    lines = [
        {**pain_observation(2), "id": "loose", "status": "not-a-status"},
        {"resourceType": "NotAType", "id": "x"},
        {**patient(), "id": "bad id!"},
    ]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    engine = make_engine(settings)
    failures: list[Failure] = []
    try:
        totals = load(
            ResourceService(SqlStore(engine)),
            [path],
            workers=1,
            validate=False,
            on_unit=lambda unit, _: failures.extend(unit.failures),
        )
    finally:
        engine.dispose()
    assert totals.stored == 1
    assert [f.where for f in failures] == [f"{path}:2", f"{path}:3"]
    assert client.get("/fhir/Observation/loose").json()["status"] == "not-a-status"


def test_a_chunk_with_repeated_and_stored_ids_keeps_every_version(
    tmp_path: Path, settings: Settings, client: httpx.Client
) -> None:
    """New resources of a chunk are written in one batch; an id seen before (stored, or earlier
    in the same chunk) becomes the next version, in file order, with its own index rows."""
    assert client.put("/fhir/Patient/stored", json={**patient("Before"), "id": "stored"}).is_success
    lines = [
        {**patient("First"), "id": "twice"},
        {**patient("Changed"), "id": "stored"},
        {**patient("Fresh"), "id": "fresh"},
        {**patient("Second"), "id": "twice"},
        {**patient("Third"), "id": "twice"},
    ]
    path = tmp_path / "chunk.ndjson"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    engine = make_engine(settings)
    try:
        totals = load(ResourceService(SqlStore(engine)), [path], workers=1)
    finally:
        engine.dispose()
    assert (totals.stored, totals.failed) == (5, 0)
    twice = client.get("/fhir/Patient/twice").json()
    assert (twice["meta"]["versionId"], twice["name"][0]["family"]) == ("3", "Third")
    history = client.get("/fhir/Patient/twice/_history").json()
    assert [e["resource"]["name"][0]["family"] for e in history["entry"]] == [
        "Third",
        "Second",
        "First",
    ]
    assert client.get("/fhir/Patient/stored").json()["meta"]["versionId"] == "2"
    assert client.get("/fhir/Patient/fresh").json()["meta"]["versionId"] == "1"
    found = client.get("/fhir/Patient?family=Changed,Fresh,Third,First,Before").json()
    assert sorted(e["resource"]["id"] for e in found["entry"]) == ["fresh", "stored", "twice"]
