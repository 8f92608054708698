"""`python -m app check`: silent on a database written by the server, and each kind of
corruption that SQL can inject is reported naming the resource (exit status 1)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import Connection, Engine, delete, func, insert, select, update

from app import cli
from app.case.load import load_case
from app.config import Settings, get_settings
from app.fhir.service import ResourceService
from app.storage.consistency import CheckTotals, Issue, check
from app.storage.sql_store import SqlStore
from app.storage.tables import date_span_table, reference_table, string_table, token_table
from app.storage.tables import resource_table as r
from app.storage.tables import version_table as v
from tests.helpers import JSON_HEADERS, pain_observation, patient


def issues_of(engine: Engine, batch_size: int = 500) -> tuple[list[Issue], CheckTotals]:
    found: list[Issue] = []
    totals = check(engine, found.append, batch_size=batch_size)
    return found, totals


def run_cli(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, list[str]]:
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    get_settings.cache_clear()
    try:
        status = cli.main(["check", "--batch", "2"])
    finally:
        get_settings.cache_clear()
    return status, capsys.readouterr().out.splitlines()


def write(client: httpx.Client, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = client.request(method, path, json=body, headers=JSON_HEADERS)
    assert response.status_code in (200, 201), response.text
    result: dict[str, Any] = response.json()
    return result


def test_the_case_and_api_writes_are_consistent(
    settings: Settings,
    client: httpx.Client,
    engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    patient_id, loaded = load_case(ResourceService(SqlStore(engine)))
    assert loaded
    created = write(client, "POST", "/fhir/Patient", patient("Checked"))
    pid = created["id"]
    write(client, "PUT", f"/fhir/Patient/{pid}", {**created, "gender": "male"})
    obs = write(client, "POST", "/fhir/Observation", pain_observation(7, f"Patient/{pid}"))
    write(client, "PUT", f"/fhir/Observation/{obs['id']}", {**obs, "status": "amended"})
    assert client.delete(f"/fhir/Observation/{obs['id']}").status_code == 204
    write(client, "PUT", "/fhir/Patient/made-by-put", {**patient("Put"), "id": "made-by-put"})
    gone = write(client, "POST", "/fhir/Observation", pain_observation(3, f"Patient/{patient_id}"))
    assert client.delete(f"/fhir/Observation/{gone['id']}").status_code == 204
    write(client, "PUT", f"/fhir/Observation/{gone['id']}", {**gone, "status": "corrected"})
    patched = client.patch(
        f"/fhir/Patient/{pid}",
        json=[{"op": "replace", "path": "/gender", "value": "female"}],
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert patched.status_code == 200, patched.text

    found, totals = issues_of(engine)
    assert found == []
    assert totals.resources == 55 + 4
    # the case's 55 versions; Patient 3, Observation 3, made-by-put 1, the recreated one 3
    assert totals.versions == 55 + 10
    assert totals.index_rows > 300
    # in small batches (keys split across snapshots) the result is the same
    assert issues_of(engine, batch_size=3)[0] == []
    status, lines = run_cli(settings, monkeypatch, capsys)
    assert status == 0
    assert lines == [
        f"checked 59 resources, 65 versions, {totals.index_rows:,} index rows: no inconsistencies"
    ]


# -- corruption --------------------------------------------------------------------------------
Keys = dict[str, int]  # the resources the corruptions aim at: name -> res_key


@pytest.fixture
def written(client: httpx.Client, engine: Engine) -> tuple[Keys, dict[str, str]]:
    """A patient with three versions, its observation, a deleted observation, and fillers on
    both sides so the targets sit inside batches of two."""
    names: dict[str, str] = {}
    write(client, "POST", "/fhir/Patient", patient("Before"))
    target = write(client, "POST", "/fhir/Patient", patient("Target"))
    names["patient"] = f"Patient/{target['id']}"
    for family in ("Second", "Third"):
        target = write(
            client, "PUT", f"/fhir/Patient/{target['id']}", {**target, "name": [{"family": family}]}
        )
    obs = write(client, "POST", "/fhir/Observation", pain_observation(5, names["patient"]))
    names["observation"] = f"Observation/{obs['id']}"
    dead = write(client, "POST", "/fhir/Observation", pain_observation(2, names["patient"]))
    assert client.delete(f"/fhir/Observation/{dead['id']}").status_code == 204
    names["deleted"] = f"Observation/{dead['id']}"
    write(client, "POST", "/fhir/Patient", patient("After"))
    keys: Keys = {}
    with engine.connect() as conn:
        for name, reference in names.items():
            rtype, rid = reference.split("/")
            keys[name] = conn.execute(
                select(r.c.res_key).where(r.c.resource_type == rtype, r.c.resource_id == rid)
            ).scalar_one()
    assert issues_of(engine)[0] == []
    return keys, names


def _missing_version(conn: Connection, keys: Keys) -> None:
    conn.execute(delete(v).where(v.c.res_key == keys["patient"], v.c.version_id == 2))


def _not_newest(conn: Connection, keys: Keys) -> None:
    conn.execute(update(r).where(r.c.res_key == keys["patient"]).values(version_id=2))


def _index_row_deleted(conn: Connection, keys: Keys) -> None:
    seq = conn.execute(
        select(func.min(token_table.c.seq)).where(
            token_table.c.res_key == keys["observation"], token_table.c.param == "code"
        )
    ).scalar_one()
    conn.execute(
        delete(token_table).where(
            token_table.c.res_key == keys["observation"],
            token_table.c.param == "code",
            token_table.c.seq == seq,
        )
    )


def _stale_index_row(conn: Connection, keys: Keys) -> None:
    conn.execute(
        insert(string_table).values(
            res_key=keys["patient"],
            resource_type="Patient",
            param="family",
            norm="before",
            exact="Before",
            seq=99,
        )
    )


def _index_row_on_deleted(conn: Connection, keys: Keys) -> None:
    conn.execute(
        insert(reference_table).values(
            res_key=keys["deleted"],
            resource_type="Observation",
            param="subject",
            target_type="Patient",
            target_id="p1",
            url=None,
            seq=0,
        )
    )


def _orphan_index_row(conn: Connection, keys: Keys) -> None:
    orphan = conn.execute(select(func.max(r.c.res_key))).scalar_one() + 100
    conn.execute(
        insert(string_table).values(
            res_key=orphan, resource_type="Patient", param="family", norm="x", exact="x", seq=0
        )
    )


def _narrow_date_span(conn: Connection, keys: Keys) -> None:
    conn.execute(
        update(date_span_table)
        .where(date_span_table.c.resource_type == "Observation")
        .values(max_span=0)
    )


def _deleted_flag(conn: Connection, keys: Keys) -> None:
    conn.execute(update(r).where(r.c.res_key == keys["observation"]).values(deleted=True))


CORRUPTIONS: list[tuple[Callable[[Connection, Keys], None], str, set[str]]] = [
    (_missing_version, "patient", {"version-missing"}),
    # version 2 is current now: also its time and its content differ from the index rows
    (
        _not_newest,
        "patient",
        {"not-newest", "current-last-updated", "index-missing", "index-extra"},
    ),
    (_index_row_deleted, "observation", {"index-missing"}),
    (_stale_index_row, "patient", {"index-extra"}),
    (_index_row_on_deleted, "deleted", {"index-on-deleted"}),
    (_orphan_index_row, "", {"orphan-index"}),
    (_narrow_date_span, "observation", {"date-span"}),
    (_deleted_flag, "observation", {"current-deleted", "index-on-deleted"}),
]


@pytest.mark.parametrize(
    ("corrupt", "target", "kinds"), CORRUPTIONS, ids=[c[0].__name__[1:] for c in CORRUPTIONS]
)
def test_each_corruption_is_reported_naming_the_resource(
    settings: Settings,
    engine: Engine,
    written: tuple[Keys, dict[str, str]],
    corrupt: Callable[[Connection, Keys], None],
    target: str,
    kinds: set[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    keys, names = written
    with engine.begin() as conn:
        corrupt(conn, keys)
    found, totals = issues_of(engine, batch_size=2)
    assert {issue.kind for issue in found} == kinds, [str(issue) for issue in found]
    subject = names[target] if target else "res_key "
    assert all(issue.subject.startswith(subject) for issue in found), found
    assert totals.issues == len(found)

    status, lines = run_cli(settings, monkeypatch, capsys)
    assert status == 1
    assert lines[:-1] == [str(issue) for issue in found]
    assert all(line.startswith(f"{subject}") for line in lines[:-1])
    assert lines[-1].endswith(f": {len(found)} inconsistencies")


def test_an_index_written_by_other_rules_is_named_once(
    engine: Engine, written: tuple[Keys, dict[str, str]]
) -> None:
    from app.storage.tables import index_state_table

    with engine.begin() as conn:
        conn.execute(update(index_state_table).values(fingerprint="older"))
    found, _ = issues_of(engine)
    assert [issue.kind for issue in found] == ["index-rules"]
