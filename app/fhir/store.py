"""What the FHIR layer needs from storage: a small protocol, implemented in app/storage.

The FHIR layer decides versions, meta and preconditions; the store only keeps versions safely.
A write runs inside one database transaction that holds the resource's row lock.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, TypeVar

from app.fhir.errors import BadRequestError
from app.search.index_values import IndexRows
from app.search.query import SearchRequest

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class VersionRecord:
    """One stored version. `content` is the resource's JSON bytes; None for a delete."""

    resource_type: str
    resource_id: str
    version_id: int
    last_updated: datetime
    method: str  # the interaction that wrote it: POST, PUT, PATCH or DELETE
    content: bytes | None

    @property
    def deleted(self) -> bool:
        return self.content is None


@dataclass(frozen=True, slots=True)
class CurrentState:
    """The current row of a resource, as seen (and locked) inside a write."""

    key: int
    resource_type: str
    resource_id: str
    version_id: int
    last_updated: datetime
    deleted: bool


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    resource_type: str | None = None
    resource_id: str | None = None
    since: datetime | None = None
    at: tuple[datetime, datetime] | None = None  # [low, high) the version must overlap
    count: int = 50
    before: int | None = None  # page cursor: only versions older than this key
    # a patient id: only resources of these types in that patient's compartment now
    compartment: str | None = None
    compartment_types: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class HistoryPage:
    entries: list[tuple[int, VersionRecord]]  # (history key, version), newest first
    next_before: int | None  # cursor for the next page, None on the last
    total: int | None


@dataclass(frozen=True, slots=True)
class SearchPage:
    matches: list[VersionRecord]
    includes: list[VersionRecord]
    total: int | None  # None: not counted (asked not to, or more than the counting cap)
    has_more: bool
    includes_cut: int = 0  # > 0: includes stopped at this many (the cap); more would follow


class WriteConflictError(Exception):
    """Another writer got there first (unique key, serialisation failure): retry the write."""


class StorageUnavailableError(Exception):
    """The database cannot be reached or is not accepting writes right now."""


class CommitOutcomeUnknownError(StorageUnavailableError):
    """The database went away during a write's COMMIT and did not come back in time to tell
    whether the write happened."""


class StorageReadOnlyError(StorageUnavailableError):
    """The database refuses writes (a read-only file or mount, a read-only server); reads
    still work."""


class StorageFullError(StorageUnavailableError):
    """The database has no room for a write (disk full, SQLite's max_page_count); the
    transaction was rolled back."""


class QueryTimeoutError(BadRequestError):
    """A search, history or $everything read ran past its time budget and was stopped: 400
    too-costly, like the other search limits (a FhirError, so a batch answers it per entry)."""

    issue_code = "too-costly"

    def __init__(self, budget_ms: int) -> None:
        super().__init__(
            f"The search ran longer than this server's limit of {budget_ms} ms "
            "(FHIR_SEARCH_TIMEOUT_MS) and was stopped; narrow it (more selective parameters, "
            "fewer _include/_revinclude, no _sort or _total=accurate) and try again"
        )


class WriteTx(Protocol):
    def current(self, resource_type: str, resource_id: str) -> CurrentState | None:
        """The resource's current row, locked for the rest of the transaction."""

    def current_content(self, state: CurrentState) -> bytes | None: ...

    def insert(self, record: VersionRecord, index: IndexRows) -> None:
        """Store the first version of a new resource (WriteConflictError if the id exists),
        with its search index rows."""

    def existing(self, pairs: list[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which of these (type, id) have a row (current or deleted), in one lookup."""

    def insert_many(self, items: list[tuple[VersionRecord, IndexRows]]) -> None:
        """insert() of many new resources at once (a bulk load)."""

    def append(self, state: CurrentState, record: VersionRecord, index: IndexRows) -> None:
        """Store the next version of an existing resource, make it current, and replace its
        index rows (none for a delete)."""

    def find(self, request: SearchRequest, limit: int) -> list[tuple[str, str]]:
        """(type, id) of up to `limit` current resources matching `request`, as this
        transaction sees them (its own writes included)."""

    def lock(self, key: str) -> None:
        """Hold a lock named `key` until the transaction ends: writers that take the same key
        run one after another (a conditional create's search, then its insert)."""


class Store(Protocol):
    def write(self) -> AbstractContextManager[WriteTx]: ...

    def read(self, resource_type: str, resource_id: str) -> VersionRecord | None: ...

    def vread(
        self, resource_type: str, resource_id: str, version_id: int
    ) -> VersionRecord | None: ...

    def history(self, query: HistoryQuery) -> HistoryPage: ...

    def search(self, request: SearchRequest) -> SearchPage: ...

    def everything(
        self,
        patient_id: str,
        types: tuple[str, ...],
        since: datetime | None,
        count: int,
        offset: int,
    ) -> SearchPage:
        """The patient and the current resources that refer to it (Patient/$everything)."""


def run_write(store: Store, work: Callable[[WriteTx], T], attempts: int = 5) -> T:
    """Run `work` in one write transaction, again from the start if a concurrent writer won."""
    for attempt in range(attempts):
        try:
            with store.write() as tx:
                return work(tx)
        except WriteConflictError:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")
