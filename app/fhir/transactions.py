"""Transaction and batch Bundles (http.html#transaction), independent of HTTP.

A transaction runs every write entry in one store transaction, in the spec's order (DELETE,
POST, PUT/PATCH), after resolving what the entries name each other by: `urn:uuid:`/`urn:oid:`
fullUrls become the ids the server assigns, and conditional references (`Patient?identifier=x`)
the one resource they match. Any failing entry fails the whole Bundle with an OperationOutcome
naming `Bundle.entry[i]`, and nothing is stored. GET entries run after the commit. A batch runs
each entry on its own and reports each outcome in its entry.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from app.fhir import jsonio
from app.fhir.access import EVERYONE, Access
from app.fhir.bundles import searchset_bundle
from app.fhir.errors import (
    BadRequestError,
    FhirError,
    Issue,
    NotFoundError,
    PayloadTooLargeError,
    operation_outcome,
)
from app.fhir.ids import check_id, new_id
from app.fhir.instants import format_instant, now
from app.fhir.models import require_resource_type, validate
from app.fhir.service import (
    ResourceService,
    WriteResult,
    _json_patch,
    conditional_search,
)
from app.fhir.store import VersionRecord, WriteTx, run_write
from app.search.indexer import index_rows

_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
# The spec's processing order for a transaction's writes; reads come after the commit.
_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}
_CONDITIONAL_REFERENCE = re.compile(r"^([A-Z][A-Za-z]+)\?(.+)$")
_PATCH_TYPE = "application/json-patch+json"
# Elements of the uri family a fullUrl can stand in (Attachment.url, Extension.valueUri, ...);
# not Identifier.value, which may hold the same urn:uuid as an identifier, not a link.
_URI_KEYS = frozenset({"url", "valueUri", "valueUrl", "valueUuid", "valueOid", "valueCanonical"})


@dataclass
class Entry:
    index: int
    method: str
    resource_type: str
    resource_id: str | None  # Type/id
    query: str | None  # Type?query (conditional) or a search
    version: str | None  # Type/id/_history/vid
    full_url: str | None
    resource: dict[str, Any] | None
    if_match: int | None = None
    if_none_exist: str | None = None
    if_none_match: str | None = None
    error: FhirError | None = None  # could not be read: a batch reports it, a transaction fails

    @property
    def label(self) -> str:
        return f"Bundle.entry[{self.index}]"


@dataclass
class Outcome:
    """One entry's response."""

    status: str
    record: VersionRecord | None = None
    body: Any = None  # a resource or Bundle to return instead of the record (reads, searches)
    outcome: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


Reader = Callable[[Entry], Outcome]


class BundleProcessor:
    def __init__(
        self,
        service: ResourceService,
        *,
        max_entries: int,
        multiple_delete: bool,
        default_count: int,
        max_count: int,
        access: Access = EVERYONE,
    ) -> None:
        # a patient-context token's Bundle reads and writes stay in its compartment
        self.service = service.bounded(access)
        self.max_entries = max_entries
        self.multiple_delete = multiple_delete
        self.default_count = default_count
        self.max_count = max_count
        self.access = access

    def _authorize(self, entry: Entry) -> None:
        """Each entry needs what the same interaction needs on its own (403 otherwise);
        conditional ones also need search. A PUT that would create also needs create."""
        method, resource_type = entry.method, entry.resource_type
        conditional = "s" if entry.query is not None or entry.if_none_exist is not None else ""
        if method in ("GET", "HEAD"):
            self.access.require(resource_type, "r" if entry.resource_id is not None else "s")
        elif method == "POST":
            self.access.require(resource_type, "c", *conditional)
        elif method in ("PUT", "PATCH"):
            self.access.require(resource_type, "u", *conditional)
        else:
            self.access.require(resource_type, "d", *conditional)

    def process(self, bundle: Any, base: str, prefer: str) -> bytes:
        """The transaction-response or batch-response Bundle, as JSON bytes."""
        kind, entries = self.parse(bundle, base)

        def reader(entry: Entry) -> Outcome:
            return self._read(entry, base)

        if kind == "transaction":
            outcomes = self._transaction(entries, reader)
        else:
            outcomes = [self._batch_entry(entry, reader) for entry in entries]
        return _response_bundle(f"{kind}-response", outcomes, base, prefer)

    # -- parsing ----------------------------------------------------------------------------
    def parse(self, bundle: Any, base: str) -> tuple[str, list[Entry]]:
        if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
            raise BadRequestError(
                "POST to the base takes a Bundle of type transaction or batch", ("Bundle",)
            )
        kind = bundle.get("type")
        if kind not in ("transaction", "batch"):
            raise BadRequestError(
                f"Bundle.type is '{kind}'; the base accepts only transaction and batch "
                "(load other Bundles with `python -m app load`)",
                ("Bundle.type",),
            )
        raw_entries = bundle.get("entry", [])
        if not isinstance(raw_entries, list):
            raise BadRequestError("Bundle.entry must be an array", ("Bundle.entry",))
        if len(raw_entries) > self.max_entries:
            raise PayloadTooLargeError(
                f"The Bundle has {len(raw_entries)} entries; this server takes at most "
                f"{self.max_entries} (FHIR_MAX_BUNDLE_ENTRIES)",
                ("Bundle.entry",),
            )
        entries = []
        for index, raw in enumerate(raw_entries):
            try:
                entries.append(_entry(index, raw, base))
            except FhirError as exc:
                if kind == "transaction":
                    raise _in_entry(exc, index) from None
                entries.append(_broken(index, exc))
        return kind, entries

    # -- transaction ------------------------------------------------------------------------
    def _transaction(self, entries: list[Entry], reader: Reader) -> list[Outcome]:
        _check_unique_targets(entries)
        for entry in entries:
            if entry.error is not None:
                raise _in_entry(entry.error, entry.index)
            try:
                self._authorize(entry)
            except FhirError as exc:
                raise _in_entry(exc, entry.index) from None
            if entry.resource is not None and entry.method in ("POST", "PUT"):
                try:
                    validate(entry.resource, entry.resource_type, conditional_references=True)
                except FhirError as exc:
                    raise _in_entry(exc, entry.index) from None
        fresh = {entry.index: new_id() for entry in entries if entry.method in ("POST", "PUT")}

        def work(tx: WriteTx) -> dict[int, Outcome]:
            results: dict[int, Outcome] = {}
            mapping = self._assign_ids(tx, entries, fresh, results)
            for entry in sorted(entries, key=lambda e: _ORDER[e.method]):
                if entry.index in results or entry.method in ("GET", "HEAD"):
                    continue
                try:
                    if entry.resource is not None:
                        entry.resource = rewrite_links(
                            entry.resource, mapping, self._resolver(tx), entry.resource_type
                        )
                    results[entry.index] = self._write(tx, entry, fresh.get(entry.index))
                except FhirError as exc:
                    raise _in_entry(exc, entry.index) from None
            return results

        results = run_write(self.service.store, work)
        for entry in entries:
            if entry.method in ("GET", "HEAD"):
                try:
                    results[entry.index] = reader(entry)
                except FhirError as exc:
                    raise _in_entry(exc, entry.index) from None
        return [results[entry.index] for entry in entries]

    def _assign_ids(
        self, tx: WriteTx, entries: list[Entry], fresh: dict[int, str], results: dict[int, Outcome]
    ) -> dict[str, str]:
        """fullUrl -> Type/id for every entry that creates or names a resource. Conditional
        creates that match are answered here (200), and their fullUrl maps to the match."""
        mapping: dict[str, str] = {}
        for entry in entries:
            target: str | None = None
            try:
                if entry.method == "POST":
                    target = fresh[entry.index]
                    if entry.if_none_exist is not None:
                        matched = self._existing(tx, entry)
                        if matched is not None:
                            results[entry.index] = matched
                            assert matched.record is not None
                            target = matched.record.resource_id
                elif entry.method == "PUT" and entry.resource_id is not None:
                    target = entry.resource_id
                elif entry.method == "PUT" and entry.query is not None:
                    target = self.service.conditional_target(
                        tx,
                        entry.resource_type,
                        entry.query,
                        (entry.resource or {}).get("id"),
                        fresh[entry.index],
                    )
                    entry.resource_id = target
                    entry.query = None
            except FhirError as exc:
                raise _in_entry(exc, entry.index) from None
            if target is not None and entry.full_url:
                mapping[entry.full_url] = f"{entry.resource_type}/{target}"
        return mapping

    def _existing(self, tx: WriteTx, entry: Entry) -> Outcome | None:
        assert entry.if_none_exist is not None
        record = self.service.existing_match(
            tx, entry.resource_type, entry.if_none_exist, "ifNoneExist"
        )
        return Outcome("200 OK", record) if record is not None else None

    def _resolver(self, tx: WriteTx) -> Callable[[str, str], str]:
        def resolve(resource_type: str, query: str) -> str:
            request = conditional_search(resource_type, query, "The conditional reference")
            found = tx.find(request, 2)
            if len(found) != 1:
                many = "several resources" if found else "no resource"
                raise BadRequestError(
                    f"The conditional reference '{resource_type}?{query}' matches {many}; "
                    "it must match exactly one"
                )
            return f"{found[0][0]}/{found[0][1]}"

        return resolve

    def _write(self, tx: WriteTx, entry: Entry, fresh: str | None) -> Outcome:
        """One write entry; its resource was validated before (rewriting links keeps it valid)."""
        service = self.service
        if entry.method == "POST":
            assert entry.resource is not None
            assert fresh is not None
            result = service.create_in(
                tx, entry.resource_type, entry.resource, fresh, index_rows(entry.resource)
            )
            return _written(result)
        if entry.method == "PUT":
            assert entry.resource is not None
            assert entry.resource_id is not None
            data = {**entry.resource, "id": entry.resource.get("id", entry.resource_id)}
            if data["id"] != entry.resource_id:
                raise BadRequestError(
                    f"The resource id '{data['id']}' does not match the id in the URL "
                    f"'{entry.resource_id}'",
                    (f"{entry.resource_type}.id",),
                )
            result = service.update_in(
                tx,
                entry.resource_type,
                entry.resource_id,
                data,
                entry.if_match,
                only_if_absent=entry.if_none_match == "*",
                may_create=self.access.allows(entry.resource_type, "c"),
            )
            return _written(result)
        if entry.method == "PATCH":
            patch = _json_patch(_patch_operations(entry))
            target = entry.resource_id or service.one_match(
                tx, entry.resource_type, entry.query or "", "The conditional patch"
            )
            patched = service.patch_in(tx, entry.resource_type, target, patch, entry.if_match)
            return _written(patched)
        assert entry.method == "DELETE"
        if entry.resource_id is not None:
            result = service.delete_in(tx, entry.resource_type, entry.resource_id, entry.if_match)
            return Outcome("204 No Content", result.record)
        deleted = service.conditional_delete_in(
            tx, entry.resource_type, entry.query or "", self.multiple_delete
        )
        return Outcome("204 No Content", deleted[0].record if len(deleted) == 1 else None)

    def _read(self, entry: Entry, base: str) -> Outcome:
        """A GET (or HEAD) entry: read, vread or search, answered in the entry."""
        service = self.service
        if entry.resource_id is not None and entry.version is not None:
            record = service.vread(entry.resource_type, entry.resource_id, entry.version)
        elif entry.resource_id is not None:
            record = service.read(entry.resource_type, entry.resource_id)
        else:
            pairs = query_pairs(entry.query)
            search, page, outcome = service.search(
                (entry.resource_type,), pairs, self.default_count, self.max_count
            )
            if not self.access.everyone:
                included = [r for r in page.includes if self.access.readable(r.resource_type)]
                page = replace(page, includes=included)
            link = f"{base}/{entry.resource_type}"
            kept = [(k, v) for k, v in pairs if k != "_offset"]
            found = searchset_bundle(base, search, page, link, kept, outcome)
            return Outcome(
                "200 OK", body=None if entry.method == "HEAD" else jsonio.Fragment(found)
            )
        content = None if entry.method == "HEAD" else record.content
        return Outcome("200 OK", record, body=jsonio.Fragment(content) if content else None)

    # -- batch ------------------------------------------------------------------------------
    def _batch_entry(self, entry: Entry, reader: Reader) -> Outcome:
        if entry.error is not None:
            return _failed(entry.error)
        try:
            self._authorize(entry)
            if entry.method in ("GET", "HEAD"):
                return reader(entry)
            if entry.resource is not None and entry.method in ("POST", "PUT"):
                validate(entry.resource, entry.resource_type, conditional_references=True)
            fresh = new_id()

            def work(tx: WriteTx) -> Outcome:
                if entry.method == "POST" and entry.if_none_exist is not None:
                    matched = self._existing(tx, entry)
                    if matched is not None:
                        return matched
                if entry.method == "PUT" and entry.query is not None:
                    assert entry.resource is not None
                    result = self.service.conditional_update_in(
                        tx,
                        entry.resource_type,
                        entry.query,
                        entry.resource,
                        entry.if_match,
                        fresh,
                        may_create=self.access.allows(entry.resource_type, "c"),
                    )
                    return _written(result)
                if entry.resource is not None:
                    entry.resource = rewrite_links(
                        entry.resource, {}, self._resolver(tx), entry.resource_type
                    )
                return self._write(tx, entry, fresh)

            return run_write(self.service.store, work)
        except FhirError as exc:
            return _failed(exc)


def _broken(index: int, error: FhirError) -> Entry:
    return Entry(index, "GET", "", None, None, None, None, None, error=error)


def _entry(index: int, raw: Any, base: str) -> Entry:
    where = f"Bundle.entry[{index}]"
    if not isinstance(raw, dict):
        raise BadRequestError("An entry must be an object", (where,))
    request = raw.get("request")
    if not isinstance(request, dict):
        raise BadRequestError("The entry has no request", (f"{where}.request",))
    method = request.get("method")
    if method not in _METHODS:
        raise BadRequestError(
            f"request.method '{method}' is not one of {', '.join(_METHODS)}",
            (f"{where}.request.method",),
        )
    url = request.get("url")
    if not isinstance(url, str) or not url:
        raise BadRequestError("The entry has no request.url", (f"{where}.request.url",))
    resource = raw.get("resource")
    if resource is not None and not isinstance(resource, dict):
        raise BadRequestError("entry.resource must be a resource", (f"{where}.resource",))
    full_url = raw.get("fullUrl")
    resource_type, resource_id, version, query = _parse_url(url, base, where)
    if method in ("POST", "PUT") and resource is None:
        raise BadRequestError(f"A {method} entry needs a resource", (f"{where}.resource",))
    if method == "POST" and (resource_id is not None or query is not None):
        raise BadRequestError(
            "A POST entry's url is the resource type alone (conditions go in ifNoneExist)",
            (f"{where}.request.url",),
        )
    if method in ("PUT", "PATCH", "DELETE") and resource_id is None and query is None:
        raise BadRequestError(
            f"A {method} entry's url names a resource (Type/id) or a condition (Type?params)",
            (f"{where}.request.url",),
        )
    if (
        resource is not None
        and method in ("POST", "PUT")
        and resource.get("resourceType") != resource_type
    ):
        raise BadRequestError(
            f"The entry's resource is a {resource.get('resourceType')}, its url names "
            f"{resource_type}",
            (f"{where}.resource.resourceType",),
        )
    if_match = request.get("ifMatch")
    return Entry(
        index=index,
        method=method,
        resource_type=resource_type,
        resource_id=resource_id,
        query=query,
        version=version,
        full_url=full_url if isinstance(full_url, str) else None,
        resource=resource,
        if_match=_version_tag(if_match, f"{where}.request.ifMatch") if if_match else None,
        if_none_exist=request.get("ifNoneExist"),
        if_none_match=request.get("ifNoneMatch"),
    )


def _parse_url(url: str, base: str, where: str) -> tuple[str, str | None, str | None, str | None]:
    """(type, id, version, query) of an entry's request.url, relative or under this base."""
    if url.startswith(base + "/"):
        url = url[len(base) + 1 :]
    parts = urlsplit(url)
    if parts.scheme or parts.netloc:
        raise BadRequestError(
            f"request.url '{url}' is not on this server", (f"{where}.request.url",)
        )
    segments = [s for s in parts.path.split("/") if s]
    query = parts.query or None
    if not segments:
        raise BadRequestError(
            "request.url names no resource type (system-level requests are not supported "
            "in a Bundle)",
            (f"{where}.request.url",),
        )
    resource_type = segments[0]
    try:
        require_resource_type(resource_type)
    except FhirError as exc:
        raise BadRequestError(exc.diagnostics, (f"{where}.request.url",)) from None
    if len(segments) == 1:
        return resource_type, None, None, query
    if len(segments) == 2 and query is None:
        return resource_type, check_id(segments[1]), None, None
    if len(segments) == 4 and segments[2] == "_history" and query is None:
        return resource_type, check_id(segments[1]), segments[3], None
    raise BadRequestError(
        f"request.url '{url}' is not Type, Type/id, Type/id/_history/vid or Type?params",
        (f"{where}.request.url",),
    )


def _version_tag(value: Any, where: str) -> int:
    match = re.fullmatch(r'(?:W/)?"?(\d+)"?', str(value).strip())
    if match is None:
        raise BadRequestError(f"ifMatch '{value}' is not a version tag such as W/\"3\"", (where,))
    return int(match.group(1))


def _patch_operations(entry: Entry) -> Any:
    """A PATCH entry carries a Binary holding the JSON Patch document."""
    resource = entry.resource
    if not isinstance(resource, dict) or resource.get("resourceType") != "Binary":
        raise BadRequestError(
            "A PATCH entry's resource must be a Binary holding a JSON Patch document "
            "(FHIRPath Patch in Parameters is not supported)",
            ("resource",),
        )
    if resource.get("contentType") != _PATCH_TYPE:
        raise BadRequestError(
            f"The Binary's contentType must be {_PATCH_TYPE}", ("resource.contentType",)
        )
    try:
        return jsonio.loads(base64.b64decode(resource.get("data", ""), validate=True))
    except (binascii.Error, ValueError) as exc:
        raise BadRequestError(
            f"The Binary's data is not base64 JSON: {exc}", ("resource.data",)
        ) from None


def _check_unique_targets(entries: list[Entry]) -> None:
    """A transaction may not name the same resource in two entries (http.html#trules)."""
    seen: dict[tuple[str, str], int] = {}
    for entry in entries:
        if entry.resource_id is None or entry.method in ("GET", "HEAD"):
            continue
        key = (entry.resource_type, entry.resource_id)
        if key in seen:
            raise BadRequestError(
                f"Entries {seen[key]} and {entry.index} both write "
                f"{entry.resource_type}/{entry.resource_id}",
                (f"Bundle.entry[{entry.index}].request.url",),
            )
        seen[key] = entry.index
    full_urls: dict[str, int] = {}
    for entry in entries:
        if entry.full_url and entry.full_url.startswith("urn:"):
            if entry.full_url in full_urls:
                raise BadRequestError(
                    f"Entries {full_urls[entry.full_url]} and {entry.index} have the same "
                    f"fullUrl {entry.full_url}",
                    (f"Bundle.entry[{entry.index}].fullUrl",),
                )
            full_urls[entry.full_url] = entry.index


def rewrite_links(
    node: Any, mapping: dict[str, str], resolve: Callable[[str, str], str], path: str
) -> Any:
    """The resource with every link to another entry replaced by the id it was given:
    Reference.reference, uri-valued elements equal to a fullUrl, and narrative href/src
    (http.html#trules). `path` names the element in errors (Observation.subject.reference).

    Subtrees without a link are shared, not copied, and paths are only spelled out when an
    error needs one: a Synthea resource is mostly codings, and this ran for every one."""
    try:
        return _relink(node, mapping, resolve, "")
    except FhirError:
        return _relink_at(node, mapping, resolve, path, "")  # raises again, naming the element


def _relink(
    node: Any, mapping: dict[str, str], resolve: Callable[[str, str], str], key: str
) -> Any:
    if isinstance(node, dict):
        out: dict[str, Any] | None = None
        for k, value in node.items():
            if isinstance(value, str):
                if k != "reference" and k != "div" and k not in _URI_KEYS:
                    continue
            elif not isinstance(value, dict | list):
                continue
            new = _relink(value, mapping, resolve, k)
            if new is not value:
                if out is None:
                    out = dict(node)
                out[k] = new
        return node if out is None else out
    if isinstance(node, list):
        items: list[Any] | None = None
        for i, value in enumerate(node):
            if isinstance(value, dict | list | str):
                new = _relink(value, mapping, resolve, key)
                if new is not value:
                    if items is None:
                        items = list(node)
                    items[i] = new
        return node if items is None else items
    if isinstance(node, str):
        return _relink_value(node, mapping, resolve, key)
    return node


def _relink_at(
    node: Any, mapping: dict[str, str], resolve: Callable[[str, str], str], path: str, key: str
) -> Any:
    """_relink, spelling out each element's path for the error it raises."""
    if isinstance(node, dict):
        return {k: _relink_at(v, mapping, resolve, f"{path}.{k}", k) for k, v in node.items()}
    if isinstance(node, list):
        return [_relink_at(v, mapping, resolve, f"{path}[{i}]", key) for i, v in enumerate(node)]
    if isinstance(node, str):
        try:
            return _relink_value(node, mapping, resolve, key)
        except FhirError as exc:
            raise dataclasses.replace(exc, expression=(path,)) from None
    return node


def _relink_value(
    node: str, mapping: dict[str, str], resolve: Callable[[str, str], str], key: str
) -> str:
    if node in mapping and (key == "reference" or key in _URI_KEYS):
        return mapping[node]
    if key == "reference":
        match = _CONDITIONAL_REFERENCE.match(node)
        if match:
            try:
                return resolve(match.group(1), match.group(2))
            except FhirError as exc:
                raise BadRequestError(exc.diagnostics) from None
        if node.startswith(("urn:uuid:", "urn:oid:")):
            raise NotFoundError(f"The reference '{node}' names no entry of this Bundle")
    if key == "div" and mapping:
        for full_url, target in mapping.items():
            node = node.replace(f'"{full_url}"', f'"{target}"')
    return node


def _written(result: WriteResult) -> Outcome:
    record = result.record
    if record is None:
        return Outcome("204 No Content")
    if result.created:
        return Outcome("201 Created", record)
    return Outcome("200 OK", record)


def _failed(error: FhirError) -> Outcome:
    status = f"{error.status} {_REASONS.get(error.status, '')}".strip()
    return Outcome(status, outcome=error.outcome())


_REASONS = {
    200: "OK",
    201: "Created",
    204: "No Content",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    410: "Gone",
    412: "Precondition Failed",
    413: "Payload Too Large",
    422: "Unprocessable Entity",
}


def _in_entry(error: FhirError, index: int) -> FhirError:
    """The same error, told as entry `index`'s: expressions rooted at Bundle.entry[i]."""
    where = f"Bundle.entry[{index}]"
    expressions = tuple(
        e
        if e.startswith("Bundle.")
        else f"{where}.resource.{e.split('.', 1)[1]}"
        if "." in e and e[:1].isupper()
        else f"{where}.{e}"
        for e in error.expression
    ) or (where,)
    return type(error)(
        f"Entry {index}: {error.diagnostics}",
        expressions,
        error.extra_issues,
        error.headers,
        error.code,
    )


def _response_bundle(kind: str, outcomes: list[Outcome], base: str, prefer: str) -> bytes:
    entries = []
    for outcome in outcomes:
        response: dict[str, Any] = {"status": outcome.status}
        entry: dict[str, Any] = {}
        record = outcome.record
        if record is not None:
            entry["fullUrl"] = f"{base}/{record.resource_type}/{record.resource_id}"
            response["location"] = (
                f"{record.resource_type}/{record.resource_id}/_history/{record.version_id}"
            )
            response["etag"] = f'W/"{record.version_id}"'
            response["lastModified"] = format_instant(record.last_updated)
            if record.content is not None and prefer == "representation":
                entry["resource"] = jsonio.Fragment(record.content)
        if outcome.body is not None:
            entry["resource"] = outcome.body
        if outcome.outcome is not None:
            response["outcome"] = outcome.outcome
        elif prefer == "OperationOutcome" and record is not None:
            response["outcome"] = operation_outcome(
                [Issue("informational", f"{outcome.status}", "information")]
            )
        entry["response"] = response
        entries.append(entry)
    return jsonio.dumps(
        {
            "resourceType": "Bundle",
            "id": new_id(),
            "meta": {"lastUpdated": format_instant(now())},
            "type": kind,
            "entry": entries,
        }
    )


def query_pairs(query: str | None) -> list[tuple[str, str]]:
    return parse_qsl(query or "", keep_blank_values=True)
