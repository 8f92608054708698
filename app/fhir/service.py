"""The resource service: the FHIR RESTful interactions, independent of HTTP and SQL.

Every write validates, then inside one store transaction locks the resource, checks If-Match,
stamps id/meta and appends a version. Responses reuse the bytes that were stored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

import jsonpatch
from jsonpointer import JsonPointerException

from app.fhir import jsonio
from app.fhir.access import Access
from app.fhir.errors import (
    BadRequestError,
    ForbiddenError,
    GoneError,
    Issue,
    MethodNotAllowedError,
    NotFoundError,
    PreconditionFailedError,
    UnprocessableError,
    operation_outcome,
)
from app.fhir.ids import check_id, new_id
from app.fhir.instants import after, format_instant, now
from app.fhir.models import require_resource_type, validate
from app.fhir.provenance import targeting
from app.fhir.scoped_store import ScopedStore
from app.fhir.store import (
    CurrentState,
    HistoryPage,
    HistoryQuery,
    SearchPage,
    Store,
    VersionRecord,
    WriteTx,
    run_write,
)
from app.search.index_values import IndexRows
from app.search.indexer import index_rows
from app.search.query import ANY_TYPE, SearchRequest, parse_search


@dataclass(frozen=True, slots=True)
class WriteResult:
    record: VersionRecord | None  # None: a delete that found nothing to delete
    created: bool = False
    matched: bool = False  # a conditional create found `record`: nothing was written


def stamp(data: dict[str, Any], resource_id: str, version_id: int, last_updated: datetime) -> bytes:
    """The stored form: the validated input with the server's id and meta, resourceType first."""
    meta = {
        k: v
        for k, v in (data.get("meta") or {}).items()
        if k not in {"versionId", "lastUpdated", "_versionId", "_lastUpdated"}
    }
    meta["versionId"] = str(version_id)
    meta["lastUpdated"] = format_instant(last_updated)
    out: dict[str, Any] = {"resourceType": data["resourceType"], "id": resource_id, "meta": meta}
    for key, value in data.items():
        if key not in out:
            out[key] = value
    return jsonio.dumps(out)


@dataclass(frozen=True, slots=True)
class Stamped:
    """A resource stamped as version 1 at `last_updated` (stamp()), ready for put_many_in."""

    resource_type: str
    resource_id: str
    content: bytes
    last_updated: datetime
    index: IndexRows


class ResourceService:
    def __init__(self, store: Store) -> None:
        self.store = store

    def bounded(self, access: Access) -> ResourceService:
        """The service as the token sees it: a token whose scopes reach part of a type (a
        patient's compartment, a v2 filter) stays inside on every path
        (app/fhir/scoped_store.py)."""
        if not access.bounded:
            return self
        return ResourceService(ScopedStore(self.store, access))

    # -- reads ------------------------------------------------------------------------------
    def read(self, resource_type: str, resource_id: str) -> VersionRecord:
        require_resource_type(resource_type)
        record = self.store.read(resource_type, check_id(resource_id))
        if record is None:
            raise NotFoundError(
                f"{resource_type}/{resource_id} is not known", (f"{resource_type}/{resource_id}",)
            )
        if record.deleted:
            raise _gone(record)
        return record

    def vread(self, resource_type: str, resource_id: str, version: str) -> VersionRecord:
        require_resource_type(resource_type)
        check_id(resource_id)
        if not version.isdigit():
            raise NotFoundError(
                f"Version '{version}' of {resource_type}/{resource_id} is not "
                "known: versions are whole numbers",
                ("vid",),
            )
        record = self.store.vread(resource_type, resource_id, int(version))
        if record is None:
            raise NotFoundError(f"{resource_type}/{resource_id}/_history/{version} is not known")
        if record.deleted:
            raise _gone(record)
        return record

    def search(
        self,
        resource_types: tuple[str, ...],
        pairs: list[tuple[str, str]],
        default_count: int,
        max_count: int,
        strict: bool = False,
        system: bool = False,
    ) -> tuple[SearchRequest, SearchPage, dict[str, Any] | None]:
        """Parse and run a search (`system`: of the whole server, where `_type` names the
        types). Unknown parameters are ignored and reported in the returned OperationOutcome,
        or refused (400) when the client asked for strict handling."""
        for resource_type in resource_types:
            require_resource_type(resource_type)
        parse_types = resource_types or (ANY_TYPE,)
        misplaced = [] if system else [k for k, _ in pairs if k == "_type"]
        if misplaced:  # _type is a system search's; on one type it is unknown
            pairs = [(k, v) for k, v in pairs if k != "_type"]
        request = parse_search(parse_types, pairs, default_count, max_count)
        request.unknown.extend(misplaced[:1])
        request.resource_types = resource_types
        outcome = None
        if request.unknown:
            names = ", ".join(sorted(set(request.unknown)))
            where = " / ".join(resource_types) or "every resource type"
            if strict:
                raise BadRequestError(
                    f"Unknown or unsupported search parameter(s) for {where}: {names}",
                    tuple(sorted(set(request.unknown))),
                    code="not-supported",
                )
            outcome = operation_outcome(
                [
                    Issue(
                        "not-supported",
                        f"Ignored unknown or unsupported search parameter(s) for {where}: {names}",
                        "warning",
                        tuple(sorted(set(request.unknown))),
                    )
                ]
            )
        page = self.store.search(request)
        if page.includes_cut:
            cut = Issue(
                "incomplete",
                f"_include/_revinclude stopped at {page.includes_cut} resources, this server's "
                "limit per page: ask for smaller pages (_count) to get every included resource",
                "warning",
                ("_include",),
            )
            issues = [*(outcome or {}).get("issue", []), cut.as_json()]
            outcome = {"resourceType": "OperationOutcome", "issue": issues}
        return request, page, outcome

    def history(self, query: HistoryQuery) -> HistoryPage:
        if query.resource_type is not None:
            require_resource_type(query.resource_type)
        if query.resource_id is not None:
            check_id(query.resource_id)
        return self.store.history(query)

    # -- writes -----------------------------------------------------------------------------
    # Each write is prepared outside the transaction (validation, index rows) and applied by an
    # `_..._in(tx, ...)` step, so a transaction Bundle can run many steps in one transaction.
    def create(
        self,
        resource_type: str,
        data: Any,
        if_none_exist: str | None = None,
        provenance: dict[str, Any] | None = None,
    ) -> WriteResult:
        require_resource_type(resource_type)
        validate(data, resource_type)
        resource_id = new_id()
        index = index_rows(data)
        return self._run(
            lambda tx: self.create_in(tx, resource_type, data, resource_id, index, if_none_exist),
            provenance,
        )

    def _run(
        self, work: Callable[[WriteTx], WriteResult], provenance: dict[str, Any] | None
    ) -> WriteResult:
        """run_write, storing the X-Provenance Provenance of what `work` wrote in the same
        transaction (app/fhir/provenance.py)."""
        if provenance is None:
            return run_write(self.store, work)
        provenance_id = new_id()

        def with_provenance(tx: WriteTx) -> WriteResult:
            result = work(tx)
            if result.record is not None and not result.matched:
                self.create_in(
                    tx, "Provenance", targeting(provenance, result.record), provenance_id
                )
            return result

        return run_write(self.store, with_provenance)

    def create_in(
        self,
        tx: WriteTx,
        resource_type: str,
        data: dict[str, Any],
        resource_id: str,
        index: IndexRows | None = None,
        if_none_exist: str | None = None,
    ) -> WriteResult:
        """Create (validated `data`); with If-None-Exist, return the one match instead."""
        if if_none_exist is not None:
            existing = self.existing_match(tx, resource_type, if_none_exist, "If-None-Exist")
            if existing is not None:
                return WriteResult(existing, matched=True)
        last_updated = now()
        record = VersionRecord(
            resource_type,
            resource_id,
            1,
            last_updated,
            "POST",
            stamp(data, resource_id, 1, last_updated),
        )
        tx.insert(record, index if index is not None else index_rows(data))
        return WriteResult(record, created=True)

    def update(
        self,
        resource_type: str,
        resource_id: str,
        data: Any,
        if_match: int | None = None,
        *,
        only_if_absent: bool = False,
        may_create: bool = True,
        provenance: dict[str, Any] | None = None,
    ) -> WriteResult:
        require_resource_type(resource_type)
        check_id(resource_id)
        validate(data, resource_type)
        _check_body_id(data, resource_id, resource_type)
        index = index_rows(data)
        return self._run(
            lambda tx: self.update_in(
                tx, resource_type, resource_id, data, if_match, index, only_if_absent, may_create
            ),
            provenance,
        )

    def update_in(
        self,
        tx: WriteTx,
        resource_type: str,
        resource_id: str,
        data: dict[str, Any],
        if_match: int | None = None,
        index: IndexRows | None = None,
        only_if_absent: bool = False,
        may_create: bool = True,
    ) -> WriteResult:
        """PUT by id. may_create=False: the caller may update but not create (403 if the
        resource does not exist)."""
        state = tx.current(resource_type, resource_id)
        if not may_create and (state is None or state.deleted):
            raise ForbiddenError(
                f"{resource_type}/{resource_id} does not exist, and the access token's scopes "
                f"allow updating {resource_type} but not creating it"
            )
        if only_if_absent and state is not None and not state.deleted:
            raise PreconditionFailedError(
                f"If-None-Match: * asked to create {resource_type}/{resource_id}, which exists "
                f"(version {state.version_id})",
                ("If-None-Match",),
            )
        _check_if_match(state, if_match, resource_type, resource_id)
        return self._write_version(
            tx, state, resource_id, "PUT", data, index if index is not None else index_rows(data)
        )

    def put_many_in(self, tx: WriteTx, items: list[Stamped]) -> None:
        """update_in (PUT by id) of each item, with the new ones written in one batch: a bulk
        load stores thousands of resources per transaction, and one executemany per table
        costs a fraction of one statement set per resource."""
        known = tx.existing([(item.resource_type, item.resource_id) for item in items])
        fresh: dict[tuple[str, str], tuple[VersionRecord, IndexRows]] = {}
        for item in items:
            key = (item.resource_type, item.resource_id)
            if key not in known:
                known.add(key)
                record = VersionRecord(
                    item.resource_type, item.resource_id, 1, item.last_updated, "PUT", item.content
                )
                fresh[key] = (record, item.index)
                continue
            if key in fresh:  # the same id again: what came before must be stored first
                tx.insert_many(list(fresh.values()))
                fresh.clear()
            data = jsonio.loads(item.content)
            self.update_in(tx, item.resource_type, item.resource_id, data, None, item.index)
        tx.insert_many(list(fresh.values()))

    def conditional_update(
        self,
        resource_type: str,
        query: str,
        data: Any,
        if_match: int | None = None,
        *,
        may_create: bool = True,
        provenance: dict[str, Any] | None = None,
    ) -> WriteResult:
        require_resource_type(resource_type)
        validate(data, resource_type)
        fresh_id = new_id()
        return self._run(
            lambda tx: self.conditional_update_in(
                tx, resource_type, query, data, if_match, fresh_id, may_create
            ),
            provenance,
        )

    def conditional_update_in(
        self,
        tx: WriteTx,
        resource_type: str,
        query: str,
        data: dict[str, Any],
        if_match: int | None,
        fresh_id: str,
        may_create: bool = True,
    ) -> WriteResult:
        """PUT Type?query (http.html#cond-update): no match creates (with the body's id if it
        has one), one match is updated, several are 412."""
        target = self.conditional_target(tx, resource_type, query, data.get("id"), fresh_id)
        return self.update_in(
            tx, resource_type, target, {**data, "id": target}, if_match, may_create=may_create
        )

    def existing_match(
        self, tx: WriteTx, resource_type: str, query: str, header: str
    ) -> VersionRecord | None:
        """A conditional create's match (`header` names where the condition came from): the
        one current resource, None for no match, 412 for several."""
        matches = self._matches(tx, resource_type, query, header)
        if len(matches) > 1:
            raise PreconditionFailedError(
                f"{header} '{query}' matches {len(matches)} {resource_type} resources; a "
                "conditional create needs at most one",
                (header,),
            )
        return _current_record(tx, resource_type, matches[0]) if matches else None

    def conditional_target(
        self, tx: WriteTx, resource_type: str, query: str, body_id: Any, fresh_id: str
    ) -> str:
        """The id a conditional update writes: the one match (which a body id must equal),
        else the body's id, else `fresh_id`; several matches are 412."""
        matches = self._matches(tx, resource_type, query, "The conditional update")
        if len(matches) > 1:
            raise PreconditionFailedError(
                f"The conditional update '{resource_type}?{query}' matches {len(matches)} "
                "resources; it needs at most one"
            )
        if not matches:
            return check_id(body_id) if body_id is not None else fresh_id
        if body_id is not None and body_id != matches[0]:
            raise BadRequestError(
                f"The resource id '{body_id}' is not the id of the resource the condition "
                f"matches ({resource_type}/{matches[0]})",
                (f"{resource_type}.id",),
            )
        return matches[0]

    def patch(
        self,
        resource_type: str,
        resource_id: str,
        operations: Any,
        if_match: int | None = None,
        provenance: dict[str, Any] | None = None,
    ) -> WriteResult:
        require_resource_type(resource_type)
        check_id(resource_id)
        patch = _json_patch(operations)
        return self._run(
            lambda tx: self.patch_in(tx, resource_type, resource_id, patch, if_match), provenance
        )

    def conditional_patch(
        self,
        resource_type: str,
        query: str,
        operations: Any,
        if_match: int | None = None,
        provenance: dict[str, Any] | None = None,
    ) -> WriteResult:
        require_resource_type(resource_type)
        patch = _json_patch(operations)

        def work(tx: WriteTx) -> WriteResult:
            target = self.one_match(tx, resource_type, query, "The conditional patch")
            return self.patch_in(tx, resource_type, target, patch, if_match)

        return self._run(work, provenance)

    def patch_in(
        self,
        tx: WriteTx,
        resource_type: str,
        resource_id: str,
        patch: jsonpatch.JsonPatch,
        if_match: int | None = None,
    ) -> WriteResult:
        state = tx.current(resource_type, resource_id)
        if state is None:
            raise NotFoundError(f"{resource_type}/{resource_id} is not known")
        if state.deleted:
            raise GoneError(f"{resource_type}/{resource_id} was deleted")
        _check_if_match(state, if_match, resource_type, resource_id)
        content = tx.current_content(state)
        assert content is not None
        try:
            patched = patch.apply(jsonio.loads(content))
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
            raise UnprocessableError(f"The patch cannot be applied: {exc}") from None
        validate(patched, resource_type)
        if patched.get("id") != resource_id:
            raise UnprocessableError(
                "A patch may not change the resource's id", (f"{resource_type}.id",)
            )
        return self._write_version(tx, state, resource_id, "PATCH", patched, index_rows(patched))

    def delete(
        self, resource_type: str, resource_id: str, if_match: int | None = None
    ) -> WriteResult:
        require_resource_type(resource_type)
        check_id(resource_id)
        return run_write(
            self.store, lambda tx: self.delete_in(tx, resource_type, resource_id, if_match)
        )

    def delete_in(
        self, tx: WriteTx, resource_type: str, resource_id: str, if_match: int | None = None
    ) -> WriteResult:
        state = tx.current(resource_type, resource_id)
        if state is not None and if_match is not None:
            _check_if_match(state, if_match, resource_type, resource_id)
        if state is None or state.deleted:
            return WriteResult(None)  # deleting what is not there succeeds, idempotently
        _check_mutable(resource_type)
        record = VersionRecord(
            resource_type,
            resource_id,
            state.version_id + 1,
            after(state.last_updated),
            "DELETE",
            None,
        )
        tx.append(state, record, IndexRows())
        return WriteResult(record)

    def conditional_delete(
        self, resource_type: str, query: str, multiple: bool = False
    ) -> list[WriteResult]:
        require_resource_type(resource_type)
        return run_write(
            self.store, lambda tx: self.conditional_delete_in(tx, resource_type, query, multiple)
        )

    def conditional_delete_in(
        self, tx: WriteTx, resource_type: str, query: str, multiple: bool
    ) -> list[WriteResult]:
        """DELETE Type?query: every match when the server allows several, else at most one."""
        limit = MAX_CONDITIONAL_DELETE + 1 if multiple else 2
        matches = self._matches(tx, resource_type, query, "The conditional delete", limit)
        if len(matches) > (MAX_CONDITIONAL_DELETE if multiple else 1):
            allowed = f"at most {MAX_CONDITIONAL_DELETE}" if multiple else "at most one"
            raise PreconditionFailedError(
                f"The conditional delete '{resource_type}?{query}' matches more than "
                f"{len(matches) - 1} resources; this server deletes {allowed} per request"
            )
        return [self.delete_in(tx, resource_type, match) for match in matches]

    def one_match(self, tx: WriteTx, resource_type: str, query: str, what: str) -> str:
        matches = self._matches(tx, resource_type, query, what)
        if not matches:
            raise NotFoundError(f"{what} '{resource_type}?{query}' matches no resource")
        if len(matches) > 1:
            raise PreconditionFailedError(
                f"{what} '{resource_type}?{query}' matches {len(matches)} resources; "
                "it needs exactly one"
            )
        return matches[0]

    def _matches(
        self, tx: WriteTx, resource_type: str, query: str, what: str, limit: int = 2
    ) -> list[str]:
        """Ids of the resources a conditional request's search matches (up to `limit`).

        The lock on the normalised query makes two requests with the same condition run one
        after the other on PostgreSQL (SQLite has one writer anyway), so two parallel
        conditional creates cannot both find nothing and both create."""
        request = conditional_search(resource_type, query, what)
        tx.lock(f"{resource_type}?{urlencode(sorted(parse_qsl(query, keep_blank_values=True)))}")
        return [resource_id for _, resource_id in tx.find(request, limit)]

    @staticmethod
    def _write_version(
        tx: WriteTx,
        state: CurrentState | None,
        resource_id: str,
        method: str,
        data: dict[str, Any],
        index: IndexRows,
    ) -> WriteResult:
        resource_type = data["resourceType"]
        if state is None:
            last_updated = now()
            content = stamp(data, resource_id, 1, last_updated)
            record = VersionRecord(resource_type, resource_id, 1, last_updated, method, content)
            tx.insert(record, index)
            return WriteResult(record, created=True)
        _check_mutable(resource_type)
        version_id = state.version_id + 1
        last_updated = after(state.last_updated)
        content = stamp(data, resource_id, version_id, last_updated)
        record = VersionRecord(
            resource_type, resource_id, version_id, last_updated, method, content
        )
        tx.append(state, record, index)
        return WriteResult(record, created=state.deleted)


# A record of what happened: created once, never changed or deleted through the API.
IMMUTABLE_TYPES = frozenset({"AuditEvent"})


def _check_mutable(resource_type: str) -> None:
    if resource_type in IMMUTABLE_TYPES:
        raise MethodNotAllowedError(
            f"{resource_type} resources are a record of what happened: they can be created, "
            "never updated, patched or deleted"
        )


# Conditional deletes of several resources stop here: one request should not empty a table.
MAX_CONDITIONAL_DELETE = 100


def conditional_search(resource_type: str, query: str, what: str) -> SearchRequest:
    """The search of a conditional interaction: criteria only, every parameter known."""
    pairs = parse_qsl(query, keep_blank_values=True)
    request = parse_search((resource_type,), pairs, 2, 2)
    if request.unknown:
        names = ", ".join(sorted(set(request.unknown)))
        raise BadRequestError(
            f"{what} uses unknown or unsupported search parameter(s) for {resource_type}: {names}",
            tuple(sorted(set(request.unknown))),
            code="not-supported",
        )
    if not request.criteria:
        raise BadRequestError(
            f"{what} '{resource_type}?{query}' has no search criteria: it would match everything"
        )
    return request


def _current_record(tx: WriteTx, resource_type: str, resource_id: str) -> VersionRecord:
    state = tx.current(resource_type, resource_id)
    assert state is not None
    assert not state.deleted
    return VersionRecord(
        resource_type,
        resource_id,
        state.version_id,
        state.last_updated,
        "GET",
        tx.current_content(state),
    )


def _check_body_id(data: dict[str, Any], resource_id: str, resource_type: str) -> None:
    body_id = data.get("id")
    if body_id is None:
        raise BadRequestError(
            f"The resource has no id; the URL names '{resource_id}'", (f"{resource_type}.id",)
        )
    if body_id != resource_id:
        raise BadRequestError(
            f"The resource id '{body_id}' does not match the id in the URL '{resource_id}'",
            (f"{resource_type}.id",),
        )


def _json_patch(operations: Any) -> jsonpatch.JsonPatch:
    try:
        return jsonpatch.JsonPatch(operations)
    except (jsonpatch.InvalidJsonPatch, JsonPointerException, TypeError, AttributeError) as exc:
        raise BadRequestError(f"The body is not a JSON Patch document: {exc}") from None


def _check_if_match(
    state: CurrentState | None, if_match: int | None, resource_type: str, resource_id: str
) -> None:
    if if_match is None:
        return
    current = None if state is None or state.deleted else state.version_id
    if current != if_match:
        found = "it does not exist" if current is None else f"the current version is {current}"
        raise PreconditionFailedError(
            f"If-Match asked for version {if_match} of {resource_type}/{resource_id}, but {found}"
        )


def _gone(record: VersionRecord) -> GoneError:
    return GoneError(
        f"{record.resource_type}/{record.resource_id} was deleted",
        headers={"ETag": f'W/"{record.version_id}"'},
    )
