"""The command line (`python -m app`): export and its round trip through `load --trusted`, the
exit statuses every command shares, and the settings `serve` takes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from app import cli
from app.case.load import BUNDLE_PATH
from app.config import Settings
from tests.conftest import ROOT, empty_database
from tests.helpers import pain_observation, patient, run_cli
from tests.live_server import free_port

CASE: list[dict[str, Any]] = [e["resource"] for e in json.loads(BUNDLE_PATH.read_bytes())["entry"]]


def exported(directory: Path) -> dict[str, list[dict[str, Any]]]:
    return {
        f.stem: [json.loads(line) for line in f.read_text().splitlines()]
        for f in sorted(directory.glob("*.ndjson"))
    }


def test_export_writes_one_ndjson_file_per_type_that_load_reads_back(
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = settings.database_url
    status, out, _ = run_cli(["load-case"], monkeypatch, capsys, DATABASE_URL=url)
    assert status == cli.OK, out
    dest = tmp_path / "export"
    status, out, err = run_cli(
        ["export", str(dest), "--quiet"], monkeypatch, capsys, DATABASE_URL=url
    )
    assert status == cli.OK, err
    files = exported(dest)
    expected = Counter(r["resourceType"] for r in CASE)
    assert {t: len(rs) for t, rs in files.items()} == dict(expected)
    assert f"exported {sum(expected.values())} resources of {len(expected)} types" in out
    assert [p.name for p in tmp_path.iterdir()] == ["export"]  # no partial directory left
    for resource in (r for rs in files.values() for r in rs):
        assert resource["meta"]["versionId"] == "1"

    # loaded into another, empty database, the export is the same resources (ids kept)
    copy = f"sqlite:///{tmp_path / 'copy.sqlite3'}"
    status, out, err = run_cli(
        ["load", str(dest), "--trusted", "--quiet"], monkeypatch, capsys, DATABASE_URL=copy
    )
    assert status == cli.OK, err
    again = tmp_path / "again"
    status, _, err = run_cli(
        ["export", str(again), "--quiet"], monkeypatch, capsys, DATABASE_URL=copy
    )
    assert status == cli.OK, err

    def content(files: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
        return {
            f"{r['resourceType']}/{r['id']}": {k: v for k, v in r.items() if k != "meta"}
            for rs in files.values()
            for r in rs
        }

    assert content(exported(again)) == content(files)


def test_export_selects_by_type_time_and_patient_compartment(
    settings: Settings,
    admin_engines: dict[str, Engine],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = settings.database_url
    assert run_cli(["load-case"], monkeypatch, capsys, DATABASE_URL=url)[0] == cli.OK
    only = tmp_path / "pain"
    status, _, err = run_cli(
        ["export", str(only), "--type", "Observation,Patient", "--type", "Patient", "--quiet"],
        monkeypatch,
        capsys,
        DATABASE_URL=url,
    )
    assert status == cli.OK, err
    assert sorted(exported(only)) == ["Observation", "Patient"]

    later = tmp_path / "later"
    status, out, _ = run_cli(
        ["export", str(later), "--since", "2999-01-01", "--quiet"],
        monkeypatch,
        capsys,
        DATABASE_URL=url,
    )
    assert status == cli.OK
    assert "exported 0 resources of 0 types" in out
    assert later.is_dir()
    assert not any(later.iterdir())

    # a resource outside every patient compartment is left out of --patients
    empty_database(url, admin_engines)
    org = {"resourceType": "Organization", "id": "clinic", "name": "Pain clinic"}
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
            for r in (
                {**patient("Ann"), "id": "p1"},
                {**pain_observation(4, subject="Patient/p1"), "id": "o1"},
                org,
            )
        ],
    }
    source = tmp_path / "bundle.json"
    source.write_text(json.dumps(bundle))
    assert run_cli(["load", str(source), "--quiet"], monkeypatch, capsys, DATABASE_URL=url)[0] == 0
    compartments = tmp_path / "compartments"
    status, _, err = run_cli(
        ["export", str(compartments), "--patients", "--quiet"],
        monkeypatch,
        capsys,
        DATABASE_URL=url,
    )
    assert status == cli.OK, err
    assert {t: [r["id"] for r in rs] for t, rs in exported(compartments).items()} == {
        "Observation": ["o1"],
        "Patient": ["p1"],
    }


def test_every_command_fails_with_its_status_and_one_error_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "file").write_text("kept")

    def fails(args: list[str], status: int, says: str, **env: str) -> None:
        got, out, err = run_cli(args, monkeypatch, capsys, **{"DATABASE_URL": url, **env})
        assert got == status, (args, out, err)
        assert f"python -m app {args[0]}: error: " in err
        assert says in err

    fails(["export", str(taken)], cli.REFUSED, "is not an empty directory")
    assert [p.name for p in taken.iterdir()] == ["file"]
    fails(["export", str(tmp_path / "x"), "--type", "Nope"], cli.REFUSED, "'Nope'")
    fails(["export", str(tmp_path / "x"), "--since", "last week"], cli.REFUSED, "--since")
    fails(["load", str(tmp_path / "nope")], cli.REFUSED, "no such file")
    fails(["check"], cli.REFUSED, "no database at")
    fails(["backup", str(tmp_path)], cli.REFUSED, "no database at")
    fails(["serve", "--host", "0.0.0.0"], cli.REFUSED, "without authorization")
    # nothing listens on this port: every database command says so and exits 3
    closed = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/test"
    for command in (["migrate"], ["load-case"], ["export", str(tmp_path / "x")], ["check"]):
        fails(
            command,
            cli.UNAVAILABLE,
            "the database did not answer",
            DATABASE_URL=closed,
            FHIR_DB_WAIT_SECONDS="0",
        )
    assert not (tmp_path / "x").exists()


def test_wrong_arguments_and_help() -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "app", *args],
            cwd=ROOT,
            env={**os.environ, "DATABASE_URL": "sqlite://"},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    usage = run("export")
    assert usage.returncode == cli.REFUSED
    assert "python -m app export: error: the following arguments are required: DIR" in (
        usage.stderr
    )
    helped = run("--help")
    assert helped.returncode == cli.OK
    for command in ("serve", "migrate", "load", "load-case", "export", "check", "backup"):
        assert command in helped.stdout
    assert "dev-token" in helped.stdout
    assert "3    the database did not answer" in helped.stdout


def test_serve_takes_its_workers_from_the_environment_unless_told(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import uvicorn

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.append(kwargs))
    env = {"DATABASE_URL": "sqlite://", "FHIR_MIGRATE_ON_START": "false", "FHIR_WORKERS": "3"}
    assert run_cli(["serve"], monkeypatch, capsys, **env)[0] == cli.OK
    assert run_cli(["serve", "--workers", "2"], monkeypatch, capsys, **env)[0] == cli.OK
    assert [c["workers"] for c in calls] == [3, 2]
    status, _, err = run_cli(["serve"], monkeypatch, capsys, **{**env, "FHIR_WORKERS": "0"})
    assert status == cli.REFUSED
    assert "FHIR_WORKERS" in err
