"""Include fan-out is capped per page (sql_store.MAX_INCLUDES); a cut page says so with a
warning OperationOutcome entry (search.mode "outcome", search.html#errors) instead of silently
leaving resources out."""

from __future__ import annotations

import httpx
import pytest

from app.storage import sql_store
from tests.helpers import JSON_HEADERS, pain_observation


def _seed(client: httpx.Client, observations: int) -> None:
    entries = [
        {
            "resource": {"resourceType": "Patient", "id": "cap"},
            "request": {"method": "PUT", "url": "Patient/cap"},
        },
        *(
            {
                "resource": pain_observation(subject="Patient/cap"),
                "request": {"method": "POST", "url": "Observation"},
            }
            for _ in range(observations)
        ),
    ]
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    response = client.post("/fhir", json=bundle, headers=JSON_HEADERS)
    assert response.status_code == 200, response.text


def _outcomes(bundle: dict[str, object]) -> list[dict[str, object]]:
    entries = bundle.get("entry", [])
    assert isinstance(entries, list)
    return [e["resource"] for e in entries if e["search"]["mode"] == "outcome"]


def test_includes_past_the_cap_are_cut_with_a_warning(
    client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    _seed(client, 5)
    monkeypatch.setattr(sql_store, "MAX_INCLUDES", 3)
    bundle = client.get("/fhir/Patient?_id=cap&_revinclude=Observation:subject").json()
    modes = [e["search"]["mode"] for e in bundle["entry"]]
    assert modes.count("match") == 1
    assert modes.count("include") == 3
    [outcome] = _outcomes(bundle)
    issue = outcome["issue"][0]
    assert (issue["severity"], issue["code"]) == ("warning", "incomplete")
    assert "stopped at 3" in issue["diagnostics"]


def test_includes_at_the_cap_are_whole_and_carry_no_warning(
    client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    _seed(client, 3)
    monkeypatch.setattr(sql_store, "MAX_INCLUDES", 3)
    bundle = client.get("/fhir/Patient?_id=cap&_revinclude=Observation:subject").json()
    assert [e["search"]["mode"] for e in bundle["entry"]].count("include") == 3
    assert _outcomes(bundle) == []
