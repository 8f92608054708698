"""Bundles built around stored bytes: entries splice each resource's JSON in unparsed."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from app.fhir import jsonio
from app.fhir.ids import new_id
from app.fhir.instants import format_instant, now
from app.fhir.store import HistoryPage, SearchPage, VersionRecord
from app.fhir.summary import subset
from app.search.query import SearchRequest

_STATUS = {"POST": "201 Created", "PUT": "200 OK", "PATCH": "200 OK", "DELETE": "204 No Content"}


def link_url(url: str, params: list[tuple[str, str]]) -> str:
    return f"{url}?{urlencode(params)}" if params else url


def history_entry(base: str, record: VersionRecord) -> dict[str, Any]:
    entry: dict[str, Any] = {"fullUrl": f"{base}/{record.resource_type}/{record.resource_id}"}
    if record.content is not None:
        entry["resource"] = jsonio.Fragment(record.content)
    url = (
        record.resource_type
        if record.method == "POST"
        else (f"{record.resource_type}/{record.resource_id}")
    )
    status = "201 Created" if record.version_id == 1 else _STATUS[record.method]
    entry["request"] = {"method": record.method, "url": url}
    entry["response"] = {
        "status": status,
        "etag": f'W/"{record.version_id}"',
        "lastModified": format_instant(record.last_updated),
    }
    return entry


def history_bundle(
    base: str, page: HistoryPage, link: str, params: list[tuple[str, str]], cursor: str | None
) -> bytes:
    """`link` is the history URL, `params` the query that selected the versions (kept in paging
    links), `cursor` the page this one is, if not the first."""
    self_params = [*params, ("_cursor", cursor)] if cursor else params
    links = [{"relation": "self", "url": link_url(link, self_params)}]
    if cursor:
        links.append({"relation": "first", "url": link_url(link, params)})
    if page.next_before is not None:
        links.append(
            {
                "relation": "next",
                "url": link_url(link, [*params, ("_cursor", str(page.next_before))]),
            }
        )
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": new_id(),
        "meta": {"lastUpdated": format_instant(now())},
        "type": "history",
    }
    if page.total is not None:
        bundle["total"] = page.total
    bundle["link"] = links
    entries = [history_entry(base, record) for _, record in page.entries]
    if entries:
        bundle["entry"] = entries
    return jsonio.dumps(bundle)


def searchset_bundle(
    base: str,
    request: SearchRequest,
    page: SearchPage,
    link: str,
    params: list[tuple[str, str]],
    outcome: dict[str, Any] | None,
) -> bytes:
    """`link` is the search URL, `params` the query without _offset (kept in paging links)."""
    count = request.count
    if request.unknown:  # the links carry the parameters the search used, not those ignored
        ignored = set(request.unknown)
        params = [(k, v) for k, v in params if k not in ignored]

    def at(offset: int) -> str:
        return link_url(link, [*params, ("_offset", str(offset))] if offset else params)

    links = [{"relation": "self", "url": at(request.offset)}, {"relation": "first", "url": at(0)}]
    if request.offset > 0 and count > 0:
        links.append({"relation": "previous", "url": at(max(0, request.offset - count))})
    if page.has_more:
        links.append({"relation": "next", "url": at(request.offset + count)})
    if page.total is not None and count > 0:
        links.append({"relation": "last", "url": at(max(0, (page.total - 1) // count * count))})
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": new_id(),
        "meta": {"lastUpdated": format_instant(now())},
        "type": "searchset",
    }
    if page.total is not None:
        bundle["total"] = page.total
    bundle["link"] = links
    entries = [_search_entry(base, record, "match", request) for record in page.matches]
    entries += [_search_entry(base, record, "include", request) for record in page.includes]
    if outcome is not None:
        entries.append({"resource": outcome, "search": {"mode": "outcome"}})
    if entries:
        bundle["entry"] = entries
    return jsonio.dumps(bundle)


def _search_entry(
    base: str, record: VersionRecord, mode: str, request: SearchRequest
) -> dict[str, Any]:
    assert record.content is not None
    return {
        "fullUrl": f"{base}/{record.resource_type}/{record.resource_id}",
        "resource": jsonio.Fragment(subset(record.content, request.summary, request.elements)),
        "search": {"mode": mode},
    }
