"""Every shared Synthea bundle loads as a transaction, on both databases; afterwards every
reference in the database resolves to a stored resource and no urn:uuid is left anywhere."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import create_engine, text

from app.config import Settings
from tests.conftest import FIXTURES
from tests.helpers import JSON_HEADERS

BUNDLES = sorted((FIXTURES / "synthea").glob("*.json")) if FIXTURES.is_dir() else []
pytestmark = [
    pytest.mark.skipif(not BUNDLES, reason=f"{FIXTURES} is not beside this checkout"),
    pytest.mark.slow,
]


def _references(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["reference"]] if isinstance(node.get("reference"), str) else []
        return found + [r for k, v in node.items() if k != "reference" for r in _references(v)]
    if isinstance(node, list):
        return [r for v in node for r in _references(v)]
    return []


def _stored(settings: Settings) -> list[dict[str, Any]]:
    url = settings.database_url.replace("postgresql://", "postgresql+psycopg://")
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT v.content FROM resource r JOIN resource_version v "
                    "ON v.res_key = r.res_key AND v.version_id = r.version_id "
                    "WHERE NOT r.deleted"
                )
            ).scalars()
            return [orjson.loads(bytes(row)) for row in rows]
    finally:
        engine.dispose()


def test_every_synthea_bundle_loads_and_every_reference_resolves(
    client: httpx.Client, settings: Settings
) -> None:
    expected: Counter[str] = Counter()
    for path in BUNDLES:
        bundle = json.loads(Path(path).read_bytes())
        expected.update(e["resource"]["resourceType"] for e in bundle["entry"])
        response = client.post("/fhir", content=path.read_bytes(), headers=JSON_HEADERS)
        assert response.status_code == 200, f"{path.name}: {response.text[:500]}"
        statuses = Counter(e["response"]["status"] for e in response.json()["entry"])
        assert statuses == {"201 Created": len(bundle["entry"])}, path.name
    stored = _stored(settings)
    assert Counter(r["resourceType"] for r in stored) == expected
    ids = {f"{r['resourceType']}/{r['id']}" for r in stored}
    dangling = []
    checked = 0
    for resource in stored:
        contained = {f"#{c['id']}" for c in resource.get("contained", [])}
        for reference in _references(resource):
            checked += 1
            if reference not in ids and reference not in contained:
                dangling.append(f"{resource['resourceType']}/{resource['id']} -> {reference}")
    assert checked > 30_000
    assert dangling == []
    assert "urn:uuid:" not in json.dumps(stored)
