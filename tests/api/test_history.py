"""history at instance, type and system level: Bundles of type history, newest first, with
deletes, _count paging to the end, _since and _at."""

from __future__ import annotations

import time

from httpx import Client

from tests.helpers import JSON_HEADERS, assert_outcome, pain_observation, patient


def _create(client: Client, resource: dict) -> dict:
    response = client.post(f"/fhir/{resource['resourceType']}", json=resource, headers=JSON_HEADERS)
    assert response.status_code == 201
    return dict(response.json())


def _all_pages(client: Client, url: str, params: dict | None = None) -> list[dict]:
    bundles = []
    page = client.get(url, params=params)
    while True:
        assert page.status_code == 200, page.text
        bundle = page.json()
        assert bundle["resourceType"] == "Bundle"
        assert bundle["type"] == "history"
        bundles.append(bundle)
        next_links = [link["url"] for link in bundle["link"] if link["relation"] == "next"]
        if not next_links:
            return bundles
        page = client.get(next_links[0])


def test_instance_history_lists_every_version_newest_first_with_delete(client: Client) -> None:
    created = _create(client, patient("V1"))
    url = f"/fhir/Patient/{created['id']}"
    client.put(url, json={**created, "name": [{"family": "V2"}]}, headers=JSON_HEADERS)
    client.delete(url)
    bundle = client.get(f"{url}/_history").json()
    assert bundle["total"] == 3
    entries = bundle["entry"]
    assert [e["response"]["etag"] for e in entries] == ['W/"3"', 'W/"2"', 'W/"1"']
    assert entries[0]["request"] == {"method": "DELETE", "url": f"Patient/{created['id']}"}
    assert "resource" not in entries[0]
    assert entries[1]["request"]["method"] == "PUT"
    assert entries[1]["resource"]["name"][0]["family"] == "V2"
    assert entries[2]["request"] == {"method": "POST", "url": "Patient"}
    assert entries[2]["response"]["status"] == "201 Created"
    assert entries[2]["fullUrl"] == f"http://testserver/fhir/Patient/{created['id']}"
    assert all(e["response"]["lastModified"] for e in entries)


def test_type_history_holds_only_that_type(client: Client) -> None:
    _create(client, patient())
    _create(client, pain_observation())
    _create(client, pain_observation())
    bundle = client.get("/fhir/Observation/_history").json()
    assert [e["resource"]["resourceType"] for e in bundle["entry"]] == ["Observation"] * 2


def test_system_history_holds_every_type_newest_first(client: Client) -> None:
    first = _create(client, patient())
    second = _create(client, pain_observation())
    bundle = client.get("/fhir/_history").json()
    assert [e["resource"]["id"] for e in bundle["entry"]] == [second["id"], first["id"]]


def test_history_pages_with_count_reach_the_end_without_duplicates(client: Client) -> None:
    ids = [_create(client, pain_observation(i))["id"] for i in range(7)]
    bundles = _all_pages(client, "/fhir/Observation/_history", {"_count": "3"})
    assert [len(b.get("entry", [])) for b in bundles] == [3, 3, 1]
    seen = [e["resource"]["id"] for b in bundles for e in b["entry"]]
    assert seen == list(reversed(ids))
    assert all(
        link["url"].startswith("http://testserver/fhir/Observation/_history")
        for b in bundles
        for link in b["link"]
    )


def test_history_paging_is_stable_when_writes_arrive_between_pages(client: Client) -> None:
    ids = [_create(client, patient(str(i)))["id"] for i in range(4)]
    first = client.get("/fhir/Patient/_history", params={"_count": "2"}).json()
    _create(client, patient("late"))
    next_url = next(link["url"] for link in first["link"] if link["relation"] == "next")
    second = client.get(next_url).json()
    seen = [e["resource"]["id"] for e in first["entry"] + second["entry"]]
    assert seen == list(reversed(ids))


def test_history_since_excludes_older_versions(client: Client) -> None:
    _create(client, patient("old"))
    time.sleep(0.01)
    newer = _create(client, patient("new"))
    since = newer["meta"]["lastUpdated"]
    bundle = client.get("/fhir/Patient/_history", params={"_since": since}).json()
    assert [e["resource"]["id"] for e in bundle["entry"]] == [newer["id"]]


def test_history_at_returns_versions_current_at_that_time(client: Client) -> None:
    created = _create(client, patient("first"))
    url = f"/fhir/Patient/{created['id']}"
    time.sleep(0.01)
    second = client.put(
        url, json={**created, "name": [{"family": "second"}]}, headers=JSON_HEADERS
    ).json()
    at_first = client.get(f"{url}/_history", params={"_at": created["meta"]["lastUpdated"]})
    assert [e["response"]["etag"] for e in at_first.json()["entry"]] == ['W/"1"']
    at_second = client.get(f"{url}/_history", params={"_at": second["meta"]["lastUpdated"]})
    assert [e["response"]["etag"] for e in at_second.json()["entry"]] == ['W/"2"']
    # a whole year covers both versions
    year = created["meta"]["lastUpdated"][:4]
    both = client.get(f"{url}/_history", params={"_at": year}).json()
    assert [e["response"]["etag"] for e in both["entry"]] == ['W/"2"', 'W/"1"']


def test_history_of_unknown_resource_is_empty(client: Client) -> None:
    bundle = client.get("/fhir/Patient/nobody/_history").json()
    assert bundle["total"] == 0
    assert "entry" not in bundle


def test_history_rejects_bad_parameters(client: Client) -> None:
    assert_outcome(
        client.get("/fhir/_history", params={"_since": "yesterday"}), 400, expression="_since"
    )
    assert_outcome(client.get("/fhir/_history", params={"_count": "-1"}), 400, expression="_count")
    assert_outcome(client.get("/fhir/_history", params={"_at": "2016-13"}), 400)
    assert_outcome(client.get("/fhir/_history", params={"_cursor": "x"}), 400)
    assert_outcome(client.get("/fhir/Unicorn/_history"), 404)
