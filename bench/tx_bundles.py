"""100-entry transaction Bundles for the ingest workload, cut from the Synthea fixtures (or made
from the CRUD templates when ../shared is absent).

Cutting keeps every Bundle valid on its own: an entry goes into a chunk together with every
entry it refers to (transitively: an Observation brings its Encounter, which brings the Patient,
Organization and Practitioner), so each `urn:uuid:` reference resolves inside the chunk; the
resources several chunks need (the Patient, ...) are copied into each. Entries are taken in
the bundles' order; one whose dependencies do not fit in the current chunk waits for the next,
so every chunk holds exactly 100 entries (the last, partial one is dropped). An entry that came
into an earlier chunk as a dependency is not sent again as itself.

The first 8 hex digits of every UUID are written as `@@@@@@@@`; wrk/transaction.lua puts a
number of each request's own there, so every POST creates new resources with new UUIDs.
"""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.templates import FIXTURES, PLACEHOLDER

SIZE = 100
MARKER = "@@@@@@@@"
_UUID = re.compile(r"\b[0-9a-f]{8}(-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\b")


def _references(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        reference = value.get("reference")
        if isinstance(reference, str) and reference.startswith("urn:uuid:"):
            yield reference
        for item in value.values():
            yield from _references(item)
    elif isinstance(value, list):
        for item in value:
            yield from _references(item)


def chunks(bundles: list[dict[str, Any]], size: int = SIZE) -> list[list[dict[str, Any]]]:
    """The entries of `bundles` cut into closed chunks of exactly `size` entries."""
    queue: deque[tuple[dict[str, Any], dict[str, dict[str, Any]]]] = deque()
    for bundle in bundles:
        by_url = {entry["fullUrl"]: entry for entry in bundle["entry"]}
        queue.extend((entry, by_url) for entry in bundle["entry"])
    out: list[list[dict[str, Any]]] = []
    chunk: list[dict[str, Any]] = []
    in_chunk: set[str] = set()
    sent: set[str] = set()
    waiting: list[tuple[dict[str, Any], dict[str, dict[str, Any]]]] = []
    while queue:
        entry, by_url = queue.popleft()
        if entry["fullUrl"] in sent:
            continue
        needed = _closure(entry, by_url, in_chunk)
        if len(needed) > size:
            raise ValueError(f"{entry['fullUrl']} needs {len(needed)} entries")
        if len(chunk) + len(needed) > size:
            waiting.append((entry, by_url))
            continue
        for item in needed:
            chunk.append(item)
            in_chunk.add(item["fullUrl"])
            sent.add(item["fullUrl"])
        if len(chunk) == size:
            out.append(chunk)
            chunk, in_chunk = [], set()
            queue.extendleft(reversed(waiting))
            waiting = []
    return out


def _closure(
    entry: dict[str, Any], by_url: dict[str, dict[str, Any]], present: set[str]
) -> list[dict[str, Any]]:
    """`entry` and what it refers to that is not `present`, each after its dependencies."""
    order: list[dict[str, Any]] = []
    seen = set(present)

    def visit(item: dict[str, Any]) -> None:
        seen.add(item["fullUrl"])
        for reference in _references(item["resource"]):
            target = by_url.get(reference)
            if target is not None and reference not in seen:
                visit(target)
        order.append(item)

    if entry["fullUrl"] not in present:
        visit(entry)
    return order


def _bundle(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def from_synthea(fixtures: Path = FIXTURES) -> list[dict[str, Any]]:
    bundles = [json.loads(p.read_bytes()) for p in sorted((fixtures / "synthea").glob("*.json"))]
    return [_bundle(chunk) for chunk in chunks(bundles)]


def from_templates(templates: dict[str, dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """`count` Bundles made of the CRUD templates: a Patient, Organization, Practitioner and
    Medication, then 12 encounters each with a Condition, 4 Observations, a MedicationRequest
    and a MedicationAdministration (100 entries), refering to each other by urn:uuid."""
    kinds = ["Patient", "Organization", "Practitioner", "Medication"]
    kinds += [
        *["Encounter", "Condition", *["Observation"] * 4, "MedicationRequest"],
        "MedicationAdministration",
    ] * 12
    assert len(kinds) == SIZE
    out = []
    serial = 0
    for _ in range(count):
        entries: list[dict[str, Any]] = []
        latest: dict[str, str] = {}
        for kind in kinds:
            serial += 1
            url = f"urn:uuid:00000000-0000-4000-8000-{serial:012x}"
            text = json.dumps(templates[kind])
            for target, reference in latest.items():
                text = text.replace(f'"{target}/{PLACEHOLDER.format(target)}"', f'"{reference}"')
            request = {"method": "POST", "url": kind}
            entries.append({"fullUrl": url, "resource": json.loads(text), "request": request})
            latest[kind] = url
        out.append(_bundle(entries))
    return out


def marked(bundle: dict[str, Any]) -> str:
    """The Bundle as one line of JSON, each UUID's first 8 hex digits replaced by MARKER."""
    return _UUID.sub(MARKER + r"\1", json.dumps(bundle, separators=(",", ":")))


def instance(line: str, prefix: str) -> bytes:
    """One request's Bundle: what wrk/transaction.lua sends, with `prefix` (8 hex digits)."""
    return line.replace(MARKER, prefix).encode()
