"""The workloads of bench/run.py: what each prepares on a server before it is timed (through the
server's own HTTP API), the check each makes once on that server's answers (so a broken
workload cannot produce pretty numbers), and the wrk script and settings that time it.

- crud: wrk/crud.lua, the k6 CRUD cycle over the 9 types of bench/templates.py;
- read: GET /fhir/Observation/{id} over 1,000 stored Observations (the CRUD template's);
- search: the pain search on the loaded databases of bench/search_bench.py (bench/run.py
  loads them; see search_paths);
- transaction: POST /fhir of the 100-entry Bundles of bench/tx_bundles.py;
- pain-response: GET /fhir/Patient/{id}/$pain-response on bench/pain_case.py's patient.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench import pain_case, search_bench, tx_bundles
from bench.harness import WRK_DIR, Server
from bench.templates import CRUD_TYPES, PLACEHOLDER, changed

WORKLOADS = ("crud", "read", "search", "transaction", "pain-response")
READ_RESOURCES = 1000
PAIN_QUERY = "code=http://loinc.org|72514-3&_sort=-date&_count=50"
# search_bench's observation mix with half of them pain scores: each patient has ~100, so the
# pain search always fills its page of 50 (the patient has 200 pain scores)
PAIN_SHAPES = [
    shape for other in search_bench.SHAPES[1:6] for shape in (search_bench.SHAPES[0], other)
]
JSON = {"Content-Type": "application/fhir+json"}


class WorkloadError(RuntimeError):
    """A workload's check failed on a server: its timing would mean nothing."""


@dataclass
class Target:
    """A server under test: the baseline or the FHIR server on one database."""

    label: str  # baseline | sqlite | postgresql | sqlite+auth ...
    server: Server
    token: str = ""
    env: dict[str, dict[str, str]] = field(default_factory=dict)  # wrk env per workload

    @property
    def baseline(self) -> bool:
        return self.label == "baseline"

    def client(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return httpx.Client(base_url=self.server.base, headers=headers, timeout=120)


@dataclass(frozen=True)
class Shared:
    """What every target's preparation uses: files written once per run."""

    workdir: Path
    templates: dict[str, dict[str, Any]]
    bundles_file: Path  # one marked transaction Bundle per line


def _check(condition: bool, target: Target, workload: str, message: str) -> None:
    if not condition:
        raise WorkloadError(f"{workload} on {target.label} ({target.server.base}): {message}")


def _id_from(response: httpx.Response) -> str:
    return str(response.headers["location"]).split("/_history/")[0].rsplit("/", 1)[1]


def _fill(template: dict[str, Any], ids: dict[str, str]) -> str:
    text = json.dumps(template, separators=(",", ":"))
    for kind, rid in ids.items():
        text = text.replace(PLACEHOLDER.format(kind), rid)
    return text


def _transaction(client: httpx.Client, entries: list[dict[str, Any]]) -> list[str]:
    """POST the resources as one transaction; the ids created, in order."""
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": r, "request": {"method": "POST", "url": r["resourceType"]}}
            for r in entries
        ],
    }
    response = client.post("/fhir", content=json.dumps(bundle), headers=JSON)
    response.raise_for_status()
    return [
        e["response"]["location"].split("/_history/")[0].rsplit("/", 1)[1]
        for e in response.json()["entry"]
    ]


# -- crud -----------------------------------------------------------------------------------


def crud_templates_file(shared: Shared) -> Path:
    """The three lines per type wrk/crud.lua reads: type, create body, update body."""
    path = shared.workdir / "crud-templates.txt"
    lines = []
    for kind in CRUD_TYPES:
        template = shared.templates[kind]
        update = {"resourceType": kind, "id": "__ID__", **changed(template)}
        lines += [kind, json.dumps(template, separators=(",", ":"))]
        lines.append(json.dumps(update, separators=(",", ":")))
    path.write_text("\n".join(lines) + "\n")
    return path


def prepare_crud(target: Target, shared: Shared) -> None:
    """One whole iteration checked by hand (statuses, Location, the echoed X-Request-Id, the
    read after delete), then one resource of each type kept as the script's fallbacks."""
    name = "crud"
    with target.client() as client:
        ids: dict[str, str] = {}
        for kind in CRUD_TYPES:
            rid = f"check-{kind}"
            body = _fill(shared.templates[kind], ids)
            response = client.post(
                f"/fhir/{kind}", content=body, headers={**JSON, "X-Request-Id": rid}
            )
            _check(
                response.status_code == 201,
                target,
                name,
                f"create {kind}: {response.status_code} {response.text[:300]}",
            )
            _check("location" in response.headers, target, name, f"create {kind}: no Location")
            _check(
                response.headers.get("x-request-id") == rid,
                target,
                name,
                "X-Request-Id is not echoed (wrk/crud.lua matches responses by it)",
            )
            ids[kind] = _id_from(response)
        for kind in CRUD_TYPES:
            response = client.get(f"/fhir/{kind}/{ids[kind]}")
            _check(
                response.status_code == 200, target, name, f"read {kind}: {response.status_code}"
            )
            _check(response.json().get("id") == ids[kind], target, name, f"read {kind}: wrong id")
        for kind in CRUD_TYPES:
            update = {"resourceType": kind, "id": ids[kind], **changed(shared.templates[kind])}
            body = _fill(update, ids)
            response = client.put(f"/fhir/{kind}/{ids[kind]}", content=body, headers=JSON)
            _check(
                response.status_code == 200,
                target,
                name,
                f"update {kind}: {response.status_code} {response.text[:300]}",
            )
        for kind in reversed(CRUD_TYPES):
            response = client.delete(f"/fhir/{kind}/{ids[kind]}")
            _check(response.is_success, target, name, f"delete {kind}: {response.status_code}")
        response = client.get(f"/fhir/Patient/{ids['Patient']}")
        _check(response.status_code in (404, 410), target, name, "a deleted resource is still read")
        seeds: dict[str, str] = {}
        for kind in CRUD_TYPES:
            response = client.post(
                f"/fhir/{kind}", content=_fill(shared.templates[kind], seeds), headers=JSON
            )
            response.raise_for_status()
            seeds[kind] = _id_from(response)
    seeds_file = shared.workdir / f"crud-seeds-{target.label}-{target.server.pid}.txt"
    seeds_file.write_text("".join(f"{kind} {rid}\n" for kind, rid in seeds.items()))
    target.env[name] = {
        "BENCH_TEMPLATES": str(shared.workdir / "crud-templates.txt"),
        "BENCH_SEEDS": str(seeds_file),
    }


# -- read -----------------------------------------------------------------------------------


def prepare_read(target: Target, shared: Shared) -> None:
    """READ_RESOURCES Observations (the CRUD template, refering to a Patient and Encounter),
    stored in transactions of 100; the first read checked."""
    with target.client() as client:
        refs: dict[str, str] = {}
        for kind in ("Patient", "Organization", "Practitioner", "Encounter"):
            response = client.post(
                f"/fhir/{kind}", content=_fill(shared.templates[kind], refs), headers=JSON
            )
            response.raise_for_status()
            refs[kind] = _id_from(response)
        observation = json.loads(_fill(shared.templates["Observation"], refs))
        ids: list[str] = []
        for _ in range(READ_RESOURCES // 100):
            ids += _transaction(client, [observation] * 100)
        response = client.get(f"/fhir/Observation/{ids[0]}")
        _check(response.status_code == 200, target, "read", f"read: {response.status_code}")
        _check(response.json().get("id") == ids[0], target, "read", "read: wrong id")
    target.env["read"] = {"BENCH_PATHS": _paths(shared, target, "read", ids, "/fhir/Observation/")}


def _paths(shared: Shared, target: Target, name: str, items: list[str], prefix: str = "") -> str:
    path = shared.workdir / f"paths-{name}-{target.label}-{target.server.pid}.txt"
    path.write_text("".join(f"{prefix}{item}\n" for item in items))
    return str(path)


# -- pain-response --------------------------------------------------------------------------


def prepare_pain_response(target: Target, shared: Shared) -> None:
    """bench/pain_case.py's patient: 200 pain scores and 50 infusions in one transaction; the
    answer checked: a Parameters with a point per score (the baseline: the counts read)."""
    name = "pain-response"
    with target.client() as client:
        response = client.post(
            "/fhir/Patient", content=json.dumps(pain_case.patient()), headers=JSON
        )
        response.raise_for_status()
        patient = _id_from(response)
        bundle = pain_case.bundle(patient)
        client.post("/fhir", content=json.dumps(bundle), headers=JSON).raise_for_status()
        path = f"/fhir/Patient/{patient}/$pain-response"
        response = client.get(path)
        _check(response.status_code == 200, target, name, f"{response.status_code}")
        body = response.json()
        _check(body.get("resourceType") == "Parameters", target, name, "not a Parameters")
        names = [p.get("name") for p in body.get("parameter", [])]
        if target.baseline:
            counts = [p.get("valueInteger") for p in body["parameter"]]
            expected = [pain_case.SCORES, pain_case.INFUSIONS]
            _check(counts == expected, target, name, f"read {counts}, not {expected}")
        else:
            points = names.count("point")
            _check(points == pain_case.SCORES, target, name, f"{points} points, not 200")
            _check("course" in names, target, name, "no course: the infusions were not seen")
    target.env[name] = {"BENCH_PATHS": _paths(shared, target, name, [path])}


# -- transaction ----------------------------------------------------------------------------


def bundles_file(workdir: Path, templates: dict[str, dict[str, Any]], synthea: bool) -> Path:
    bundles = tx_bundles.from_synthea() if synthea else tx_bundles.from_templates(templates, 20)
    path = workdir / "transaction-bundles.txt"
    path.write_text("".join(tx_bundles.marked(b) + "\n" for b in bundles))
    return path


def prepare_transaction(target: Target, shared: Shared) -> None:
    """The first Bundle POSTed once: a transaction-response of 100 entries, each 201."""
    name = "transaction"
    with shared.bundles_file.open() as lines:
        first = next(lines).rstrip("\n")
    with target.client() as client:
        response = client.post(
            "/fhir",
            content=tx_bundles.instance(first, "fff00000"),
            headers={**JSON, "Prefer": "return=minimal"},
        )
        _check(
            response.status_code == 200,
            target,
            name,
            f"{response.status_code} {response.text[:300]}",
        )
        body = response.json()
        _check(body.get("type") == "transaction-response", target, name, "not a response")
        statuses = [e.get("response", {}).get("status", "") for e in body.get("entry", [])]
        _check(len(statuses) == tx_bundles.SIZE, target, name, f"{len(statuses)} entries")
        _check(
            all(s.startswith("201") for s in statuses),
            target,
            name,
            f"statuses {sorted(set(statuses))}",
        )
    target.env[name] = {
        "BENCH_BUNDLES": str(shared.bundles_file),
        "BENCH_SALT": f"{random.randrange(0xFFF):03x}",
    }


# -- search ---------------------------------------------------------------------------------


def search_paths(size: int) -> list[str]:
    """search_bench's 200 pain searches at this size (patients of the loaded range)."""
    return search_bench.queries(random.Random(size), size)["pain"]


def prepare_search(target: Target, shared: Shared, size: int) -> None:
    """Every path once (this also warms the server's caches after VACUUM): 200, a page of 50
    matches, all pain scores of the patient asked for, newest first."""
    name = f"search {size:,}"
    paths = search_paths(size)
    with target.client() as client:
        for path in paths:
            response = client.get(path)
            _check(response.status_code == 200, target, name, f"{path}: {response.status_code}")
            entries = [
                e["resource"]
                for e in response.json().get("entry", [])
                if e.get("search", {}).get("mode") == "match"
            ]
            _check(len(entries) == 50, target, name, f"{path}: {len(entries)} matches, not 50")
            patient = path.split("patient=", 1)[1].split("&", 1)[0]
            _check(
                all(e["subject"]["reference"] == f"Patient/{patient}" for e in entries),
                target,
                name,
                f"{path}: another patient's Observation",
            )
            _check(
                all(e["code"]["coding"][0]["code"] == "72514-3" for e in entries),
                target,
                name,
                f"{path}: not a pain score",
            )
            dates = [e["effectiveDateTime"] for e in entries]
            _check(dates == sorted(dates, reverse=True), target, name, f"{path}: not by -date")
    target.env[f"search-{size}"] = {"BENCH_PATHS": _paths(shared, target, f"search-{size}", paths)}


PREPARE: dict[str, Callable[[Target, Shared], None]] = {
    "crud": prepare_crud,
    "read": prepare_read,
    "transaction": prepare_transaction,
    "pain-response": prepare_pain_response,
}
SCRIPTS = {
    "crud": WRK_DIR / "crud.lua",
    "read": WRK_DIR / "paths.lua",
    "search": WRK_DIR / "paths.lua",
    "transaction": WRK_DIR / "transaction.lua",
    "pain-response": WRK_DIR / "paths.lua",
}
