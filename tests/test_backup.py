"""`python -m app backup DEST` (SQLite, online) and pg_dump/pg_restore (PostgreSQL): the copy
passes `check` and serves the same data as the database did when it was taken."""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import Engine, create_engine, select, text
from sqlalchemy.engine import make_url

from app.case.load import load_case
from app.config import Settings
from app.fhir.service import ResourceService
from app.main import create_app
from app.storage.backup import integrity_check, libpq_url
from app.storage.engine import make_engine
from app.storage.migrate import upgrade
from app.storage.sql_store import SqlStore
from app.storage.tables import INDEX_TABLES
from app.storage.tables import resource_table as r
from app.storage.tables import version_table as v
from tests import helpers
from tests.asgi_client import asgi_client
from tests.conftest import empty_database
from tests.helpers import pain_observation, patient


def case_search(patient_id: str) -> str:
    """The case patient's pain scores (the writers below use the same code elsewhere)."""
    return (
        f"/fhir/Observation?patient={patient_id}&code=http://loinc.org|72514-3&_sort=date"
        "&_count=100"
    )


def run_cli(
    url: str, args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    return helpers.run_cli(args, monkeypatch, capsys, DATABASE_URL=url)


def versions(engine: Engine) -> list[tuple[Any, ...]]:
    """Every version in write order, with the resource's type and id."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                v.c.version_key,
                r.c.resource_type,
                r.c.resource_id,
                v.c.version_id,
                v.c.last_updated,
                v.c.method,
                v.c.content,
            )
            .select_from(v.join(r, r.c.res_key == v.c.res_key))
            .order_by(v.c.version_key)
        ).all()
    return [(*row[:6], bytes(row[6]) if row[6] is not None else None) for row in rows]


def search_entries(client: httpx.Client, path: str) -> list[dict[str, Any]]:
    """The resources a search finds, by id (the order of equal sort keys is not defined)."""
    response = client.get(path)
    assert response.status_code == 200, response.text
    found = [entry["resource"] for entry in response.json().get("entry", [])]
    return sorted(found, key=lambda resource: str(resource["id"]))


class Writer(threading.Thread):
    """Creates and updates Observations through the service until stopped."""

    def __init__(self, service: ResourceService) -> None:
        super().__init__(daemon=True)
        self.service = service
        self.count = 0
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            current: dict[str, Any] | None = None
            while not self.stop.is_set():
                if current is None or self.count % 3 == 0:
                    data = pain_observation(self.count % 11, "Patient/writer")
                    record = self.service.create("Observation", data).record
                else:
                    assert current is not None
                    data = {**current, "valueQuantity": {**current["valueQuantity"], "value": 9}}
                    record = self.service.update("Observation", current["id"], data).record
                assert record is not None
                assert record.content is not None
                current = orjson.loads(record.content)
                self.count += 1
        except BaseException as exc:  # reported by the test
            self.error = exc

    def wait_for(self, count: int) -> None:
        deadline = time.monotonic() + 20
        while self.count < count:
            assert self.error is None, self.error
            assert time.monotonic() < deadline, f"the writer wrote {self.count} of {count}"
            time.sleep(0.005)


def test_sqlite_backup_while_writing_restores_to_a_consistent_server(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    request: pytest.FixtureRequest,
) -> None:
    live_url = f"sqlite:///{tmp_path / 'live.sqlite3'}"
    engine = make_engine(Settings(DATABASE_URL=live_url))
    request.addfinalizer(engine.dispose)
    upgrade(engine)
    service = ResourceService(SqlStore(engine))
    case_patient, _ = load_case(service)
    service.update("Patient", "writer", {**patient("Writer"), "id": "writer"})
    writer = Writer(service)
    writer.start()
    try:
        writer.wait_for(15)
        copy = tmp_path / "copies" / "fhir-copy.sqlite3"
        copy.parent.mkdir()
        before = writer.count
        status, out, err = run_cli(live_url, ["backup", str(copy)], monkeypatch, capsys)
        assert status == 0, err
        assert out.startswith(f"backed up to {copy}: ")
        assert "integrity ok" in out
        writer.wait_for(writer.count + 15)  # and it goes on writing
    finally:
        writer.stop.set()
        writer.join()
    assert writer.error is None
    after = writer.count
    assert not Path(f"{copy}-wal").exists()  # one self-contained file
    with sqlite3.connect(copy) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    copy_url = f"sqlite:///{copy}"

    # One point in time: the copy holds exactly the first n versions written, n between what
    # was written before the backup began and what was written by the end.
    copy_engine = make_engine(Settings(DATABASE_URL=copy_url))
    try:
        live_versions, copy_versions = versions(engine), versions(copy_engine)
    finally:
        copy_engine.dispose()
    case_and_writer = 55 + 1
    assert case_and_writer + before <= len(copy_versions) < case_and_writer + after
    assert copy_versions == live_versions[: len(copy_versions)]

    status, out, _ = run_cli(copy_url, ["check"], monkeypatch, capsys)
    assert status == 0, out
    assert out.endswith("no inconsistencies\n")

    # A server on the copy serves what the live server served at that point.
    current: dict[tuple[str, str], tuple[int, bytes | None]] = {}
    for _, rtype, rid, vid, _, _, content in copy_versions:
        current[(rtype, rid)] = (vid, content)
    with (
        asgi_client(create_app(Settings(DATABASE_URL=copy_url))) as restored,
        asgi_client(create_app(Settings(DATABASE_URL=live_url))) as original,
    ):
        case = search_entries(restored, case_search(case_patient))
        assert case
        assert case == search_entries(original, case_search(case_patient))
        writes = search_entries(restored, "/fhir/Observation?subject=Patient/writer&_count=500")
        assert sorted(o["id"] for o in writes) == sorted(
            rid
            for (rtype, rid), (_, content) in current.items()
            if rtype == "Observation"
            and content is not None
            and orjson.loads(content)["subject"]["reference"] == "Patient/writer"
        )
        assert len(writes) >= before // 3
        for resource in writes:
            vid, content = current[("Observation", resource["id"])]
            assert resource["meta"]["versionId"] == str(vid)
            same = original.get(f"/fhir/Observation/{resource['id']}/_history/{vid}")
            assert same.status_code == 200
            assert restored.get(f"/fhir/Observation/{resource['id']}").content == same.content
            history = restored.get(f"/fhir/Observation/{resource['id']}/_history").json()
            assert history["total"] == vid


def test_backup_refuses_what_it_cannot_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    status, _, err = run_cli(url, ["backup", str(tmp_path / "x.sqlite3")], monkeypatch, capsys)
    assert status == 2  # refused: nothing copied
    assert "no database at" in err  # and none was created
    assert not (tmp_path / "db.sqlite3").exists()
    engine = make_engine(Settings(DATABASE_URL=url))
    upgrade(engine)
    engine.dispose()
    taken = tmp_path / "taken.sqlite3"
    taken.write_bytes(b"")
    status, _, err = run_cli(url, ["backup", str(taken)], monkeypatch, capsys)
    assert status == 2
    assert "exists" in err
    assert taken.read_bytes() == b""
    # a directory receives a dated file
    status, out, _ = run_cli(url, ["backup", str(tmp_path)], monkeypatch, capsys)
    assert status == 0
    assert re.search(r"fhir-\d{8}T\d{6}Z\.sqlite3", out)

    pg = "postgresql+psycopg://fhir:secret@db.example:5433/fhir"
    status, out, err = run_cli(pg, ["backup", "fhir.dump"], monkeypatch, capsys)
    assert status == 2
    assert out == ""
    assert 'pg_dump -Fc "postgresql://fhir@db.example:5433/fhir" > fhir.dump' in err
    assert 'pg_restore --clean --if-exists -d "postgresql://fhir@db.example:5433/fhir"' in err
    assert "secret" not in err
    assert "+psycopg" not in err


def _shaped_like_the_index(path: Path, rows: list[tuple[int, str | None]]) -> None:
    """A WITHOUT ROWID table whose key's column order is not the table's, as the search index
    tables; `b` declared NOT NULL after the rows went in (so a real NULL can be there)."""
    with closing(sqlite3.connect(path)) as raw:
        raw.execute(
            "CREATE TABLE t (a INTEGER NOT NULL, b TEXT, p TEXT NOT NULL, s INTEGER NOT NULL, "
            "PRIMARY KEY (a, p, s)) WITHOUT ROWID"
        )
        raw.executemany("INSERT INTO t VALUES (?, ?, 'p', 0)", rows)
        raw.commit()
        raw.execute("PRAGMA writable_schema=ON")
        raw.execute("UPDATE sqlite_master SET sql = replace(sql, 'b TEXT,', 'b TEXT NOT NULL,')")
        raw.commit()


def test_integrity_check_fails_on_a_real_null_only(tmp_path: Path) -> None:
    """SQLite 3.40.0-3.41.0 report 'NULL value in t.b' for every row of such a table; the
    backup dismisses those reports only where the column holds no NULL."""
    _shaped_like_the_index(tmp_path / "clean.sqlite3", [(1, "x"), (2, "y")])
    with closing(sqlite3.connect(tmp_path / "clean.sqlite3")) as raw:
        assert integrity_check(raw)[0] == []
    _shaped_like_the_index(tmp_path / "corrupt.sqlite3", [(1, "x"), (2, None)])
    with closing(sqlite3.connect(tmp_path / "corrupt.sqlite3")) as raw:
        problems, _ = integrity_check(raw)
    assert problems
    assert all(problem.startswith("NULL value in t.b") for problem in problems)


# -- PostgreSQL: pg_dump / pg_restore ---------------------------------------------------------
def _major(version_text: str) -> int:
    """15 from "pg_dump (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)"."""
    found = re.search(r"\)\s*(\d+)", version_text)
    assert found is not None, version_text
    return int(found[1])


@contextmanager
def restore_target(postgres_url: str) -> Iterator[str]:
    """A new, empty database on the test server, dropped afterwards."""
    server = make_url(postgres_url)
    name = f"kfhir_restore_{uuid.uuid4().hex[:10]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.mark.postgres
def test_postgres_dump_and_restore(
    postgres_url: str,
    admin_engines: dict[str, Engine],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pg_dump, pg_restore = shutil.which("pg_dump"), shutil.which("pg_restore")
    if pg_dump is None or pg_restore is None:
        pytest.skip("pg_dump and pg_restore are not installed (apt install postgresql-client)")
    engine = make_engine(Settings(DATABASE_URL=postgres_url))
    upgrade(engine)
    empty_database(postgres_url, admin_engines)
    with engine.connect() as conn:
        server_major = int(conn.execute(text("SHOW server_version_num")).scalar_one()) // 10000
    tool = subprocess.run([pg_dump, "--version"], capture_output=True, text=True, check=True)
    if _major(tool.stdout) < server_major:
        pytest.skip(f"{tool.stdout.strip()} cannot dump a PostgreSQL {server_major} server")
    service = ResourceService(SqlStore(engine))
    case_patient, _ = load_case(service)
    made = service.create("Observation", pain_observation(4, "Patient/dumped")).record
    assert made is not None
    service.update(
        "Observation",
        made.resource_id,
        {**pain_observation(5, "Patient/dumped"), "id": made.resource_id},
    )
    service.delete("Observation", made.resource_id)

    password = make_url(postgres_url).password
    env = {**os.environ, **({"PGPASSWORD": password} if password else {})}
    dump = tmp_path / "fhir.dump"
    with dump.open("wb") as out:
        subprocess.run([pg_dump, "-Fc", libpq_url(postgres_url)], stdout=out, env=env, check=True)
    try:
        with restore_target(postgres_url) as target:
            done = subprocess.run(
                [pg_restore, "--clean", "--if-exists", "-d", libpq_url(target), str(dump)],
                env=env,
                capture_output=True,
                text=True,
            )
            assert done.returncode == 0, done.stderr
            status, out, _ = run_cli(target, ["check"], monkeypatch, capsys)
            assert status == 0, out
            assert out.endswith("no inconsistencies\n")
            restored_engine = make_engine(Settings(DATABASE_URL=target))
            try:
                assert versions(restored_engine) == versions(engine)
                with engine.connect() as a, restored_engine.connect() as b:
                    for table in (r, *INDEX_TABLES.values()):
                        query = select(table).order_by(*table.primary_key.columns)
                        assert a.execute(query).all() == b.execute(query).all(), table.name
            finally:
                restored_engine.dispose()
            with (
                asgi_client(create_app(Settings(DATABASE_URL=target))) as restored,
                asgi_client(create_app(Settings(DATABASE_URL=postgres_url))) as original,
            ):
                search = case_search(case_patient)
                assert search_entries(restored, search) == search_entries(original, search)
                assert search_entries(restored, search)
                assert restored.get(f"/fhir/Observation/{made.resource_id}").status_code == 410
                # the sequences came along: the restored server writes on
                created = restored.post(
                    "/fhir/Patient",
                    json=patient("After"),
                    headers={"Content-Type": "application/fhir+json"},
                )
                assert created.status_code == 201, created.text
    finally:
        engine.dispose()
