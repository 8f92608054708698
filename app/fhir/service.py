"""The resource service: the FHIR RESTful interactions, independent of HTTP and SQL.

Every write validates, then inside one store transaction locks the resource, checks If-Match,
stamps id/meta and appends a version. Responses reuse the bytes that were stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jsonpatch

from app.fhir import jsonio
from app.fhir.errors import (
    BadRequestError,
    GoneError,
    Issue,
    NotFoundError,
    PreconditionFailedError,
    UnprocessableError,
    operation_outcome,
)
from app.fhir.ids import check_id, new_id
from app.fhir.instants import after, format_instant, now
from app.fhir.models import require_resource_type, validate
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


class ResourceService:
    def __init__(self, store: Store) -> None:
        self.store = store

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
    ) -> tuple[SearchRequest, SearchPage, dict[str, Any] | None]:
        """Parse and run a search. Unknown parameters are ignored and reported in the returned
        OperationOutcome, or refused (400) when the client asked for strict handling."""
        for resource_type in resource_types:
            require_resource_type(resource_type)
        parse_types = resource_types or (ANY_TYPE,)
        request = parse_search(parse_types, pairs, default_count, max_count)
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
        return request, self.store.search(request), outcome

    def history(self, query: HistoryQuery) -> HistoryPage:
        if query.resource_type is not None:
            require_resource_type(query.resource_type)
        if query.resource_id is not None:
            check_id(query.resource_id)
        return self.store.history(query)

    # -- writes -----------------------------------------------------------------------------
    def create(self, resource_type: str, data: Any) -> WriteResult:
        require_resource_type(resource_type)
        validate(data, resource_type)
        resource_id = new_id()
        index = index_rows(data)

        def work(tx: WriteTx) -> WriteResult:
            last_updated = now()
            record = VersionRecord(
                resource_type,
                resource_id,
                1,
                last_updated,
                "POST",
                stamp(data, resource_id, 1, last_updated),
            )
            tx.insert(record, index)
            return WriteResult(record, created=True)

        return run_write(self.store, work)

    def update(
        self, resource_type: str, resource_id: str, data: Any, if_match: int | None = None
    ) -> WriteResult:
        require_resource_type(resource_type)
        check_id(resource_id)
        validate(data, resource_type)
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
        index = index_rows(data)

        def work(tx: WriteTx) -> WriteResult:
            state = tx.current(resource_type, resource_id)
            _check_if_match(state, if_match, resource_type, resource_id)
            return self._write_version(tx, state, resource_id, "PUT", data, index)

        return run_write(self.store, work)

    def patch(
        self, resource_type: str, resource_id: str, operations: Any, if_match: int | None = None
    ) -> WriteResult:
        require_resource_type(resource_type)
        check_id(resource_id)
        try:
            patch = jsonpatch.JsonPatch(operations)
        except (jsonpatch.InvalidJsonPatch, TypeError, AttributeError) as exc:
            raise BadRequestError(f"The body is not a JSON Patch document: {exc}") from None

        def work(tx: WriteTx) -> WriteResult:
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
            return self._write_version(
                tx, state, resource_id, "PATCH", patched, index_rows(patched)
            )

        return run_write(self.store, work)

    def delete(
        self, resource_type: str, resource_id: str, if_match: int | None = None
    ) -> WriteResult:
        require_resource_type(resource_type)
        check_id(resource_id)

        def work(tx: WriteTx) -> WriteResult:
            state = tx.current(resource_type, resource_id)
            if state is not None and if_match is not None:
                _check_if_match(state, if_match, resource_type, resource_id)
            if state is None or state.deleted:
                return WriteResult(None)  # deleting what is not there succeeds, idempotently
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

        return run_write(self.store, work)

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
        version_id = state.version_id + 1
        last_updated = after(state.last_updated)
        content = stamp(data, resource_id, version_id, last_updated)
        record = VersionRecord(
            resource_type, resource_id, version_id, last_updated, method, content
        )
        tx.append(state, record, index)
        return WriteResult(record, created=state.deleted)


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
