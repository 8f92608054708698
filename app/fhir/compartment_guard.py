"""Patient-context access on every data path: a Store that keeps a patient-context token inside
its patient's compartment (app/fhir/compartment.py), whichever interaction, operation or Bundle
entry reaches the data.

Wrapping the store rather than checking in each handler puts the rule where every read, write,
conditional match and history page already passes, so a new path cannot forget it:
- a resource outside the compartment reads as absent (404), also to writes, so neither its
  existence nor its version leaks through a 412, 422 or 410;
- what a write stores must be in the compartment (403);
- searches inside writes (conditional matches, conditional references) and history pages are
  bounded to the compartment in SQL, and each version is checked again, since a resource may
  have moved between patients.

Only patient-context grants are bounded (Access.compartment): a token that also holds a user or
system grant for an interaction on a type is not bounded there.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime

from app.fhir import jsonio
from app.fhir.access import Access
from app.fhir.compartment import PATIENT_COMPARTMENT, in_patient_compartment
from app.fhir.errors import ForbiddenError, NotFoundError
from app.fhir.store import (
    CurrentState,
    HistoryPage,
    HistoryQuery,
    SearchPage,
    Store,
    VersionRecord,
    WriteTx,
)
from app.search.index_values import IndexRows
from app.search.query import SearchRequest


def holds(record: VersionRecord, patient: str) -> bool:
    """Whether a stored version is in the patient's compartment (a delete holds nothing)."""
    return record.content is not None and in_patient_compartment(
        jsonio.loads(record.content), patient
    )


def may_return(access: Access, record: VersionRecord) -> bool:
    """Whether a resource may be returned to the token as a search result or an include:
    readable, and in the compartment when only patient-context grants make it readable."""
    rt = record.resource_type
    if not access.readable(rt):
        return False
    for interaction in "rs":
        if access.allows(rt, interaction) and access.compartment(rt, interaction) is None:
            return True
    return access.patient is not None and holds(record, access.patient)


class CompartmentStore:
    """The Store seen by a patient-context token (see the module's docstring)."""

    def __init__(self, inner: Store, access: Access) -> None:
        assert access.patient is not None
        self.inner = inner
        self.access = access
        self.patient = access.patient

    def _bound(self, resource_type: str, interactions: str) -> bool:
        return any(self.access.compartment(resource_type, i) is not None for i in interactions)

    def _searchable(self) -> tuple[str, ...]:
        """The compartment's types the token may search (a system-wide search or history)."""
        return tuple(t for t in PATIENT_COMPARTMENT if self.access.allows(t, "s"))

    @contextmanager
    def write(self) -> Iterator[WriteTx]:
        with self.inner.write() as tx:
            yield CompartmentTx(tx, self)

    def read(self, resource_type: str, resource_id: str) -> VersionRecord | None:
        record = self.inner.read(resource_type, resource_id)
        if record is None or not self._bound(resource_type, "r"):
            return record
        if record.deleted:
            # a delete holds no content: the version before it says whose it was (a 410
            # must not tell another patient's token that the id existed)
            previous = self.inner.vread(resource_type, resource_id, record.version_id - 1)
            return record if previous is not None and holds(previous, self.patient) else None
        return record if holds(record, self.patient) else None

    def vread(self, resource_type: str, resource_id: str, version_id: int) -> VersionRecord | None:
        record = self.inner.vread(resource_type, resource_id, version_id)
        if record is None or not self._bound(resource_type, "r"):
            return record
        # the version asked for, and the resource as it is now, must both be the patient's
        if self.read(resource_type, resource_id) is None:
            return None
        if record.deleted:
            return record
        return record if holds(record, self.patient) else None

    def search(self, request: SearchRequest) -> SearchPage:
        if request.compartment is None and any(
            self._bound(t, "s") for t in request.resource_types or ("Patient",)
        ):
            request.compartment = self.patient
            if not request.resource_types:
                request.resource_types = self._searchable()
        page = self.inner.search(request)
        included = [r for r in page.includes if may_return(self.access, r)]
        return replace(page, includes=included)

    def history(self, query: HistoryQuery) -> HistoryPage:
        interaction = "r" if query.resource_id is not None else "s"
        types = (query.resource_type,) if query.resource_type else self._searchable()
        if not any(self._bound(t, interaction) for t in types):
            return self.inner.history(query)
        if query.resource_id is not None:
            assert query.resource_type is not None
            if self.read(query.resource_type, query.resource_id) is None:
                raise NotFoundError(f"{query.resource_type}/{query.resource_id} is not known")
            page = self.inner.history(query)
        else:
            # resources in the compartment now (a deleted one has no index rows: its history
            # is left out rather than shown without knowing whose it was)
            page = self.inner.history(
                replace(query, compartment=self.patient, compartment_types=types)
            )
        # a resource in the compartment now may have been another patient's before
        kept = [(k, r) for k, r in page.entries if r.deleted or holds(r, self.patient)]
        total = page.total if len(kept) == len(page.entries) else None
        return HistoryPage(kept, page.next_before, total)

    def everything(
        self,
        patient_id: str,
        types: tuple[str, ...],
        since: datetime | None,
        count: int,
        offset: int,
    ) -> SearchPage:
        page = self.inner.everything(patient_id, types, since, count, offset)
        matches = [r for r in page.matches if may_return(self.access, r)]
        return replace(page, matches=matches)


class CompartmentTx:
    """A write transaction that keeps what it reads and writes in the compartment."""

    def __init__(self, inner: WriteTx, store: CompartmentStore) -> None:
        self.inner = inner
        self.store = store

    def current(self, resource_type: str, resource_id: str) -> CurrentState | None:
        state = self.inner.current(resource_type, resource_id)
        if state is None or state.deleted or not self.store._bound(resource_type, "ud"):
            return state
        content = self.inner.current_content(state)
        if content is None or not in_patient_compartment(jsonio.loads(content), self.store.patient):
            raise NotFoundError(f"{resource_type}/{resource_id} is not known")
        return state

    def current_content(self, state: CurrentState) -> bytes | None:
        return self.inner.current_content(state)

    def _check_written(self, record: VersionRecord, interaction: str) -> None:
        if record.content is None or not self.store._bound(record.resource_type, interaction):
            return
        if not holds(record, self.store.patient):
            raise ForbiddenError(
                f"The {record.resource_type} is not in Patient/{self.store.patient}'s "
                "compartment: a patient-context token may only write resources of its patient"
            )

    def insert(self, record: VersionRecord, index: IndexRows) -> None:
        self._check_written(record, "c")
        self.inner.insert(record, index)

    def existing(self, pairs: list[tuple[str, str]]) -> set[tuple[str, str]]:
        return self.inner.existing(pairs)

    def insert_many(self, items: list[tuple[VersionRecord, IndexRows]]) -> None:
        for record, _ in items:
            self._check_written(record, "c")
        self.inner.insert_many(items)

    def append(self, state: CurrentState, record: VersionRecord, index: IndexRows) -> None:
        if (
            state.deleted
            and record.content is not None
            and self.store._bound(record.resource_type, "cu")
        ):
            # whose the deleted resource was is not checked here: its id is not reused
            raise ForbiddenError(
                f"{record.resource_type}/{record.resource_id} was deleted; a patient-context "
                "token cannot bring a deleted resource back"
            )
        self._check_written(record, "u")
        self.inner.append(state, record, index)

    def find(self, request: SearchRequest, limit: int) -> list[tuple[str, str]]:
        if any(self.store._bound(t, "s") for t in request.resource_types):
            request.compartment = self.store.patient
        return self.inner.find(request, limit)

    def lock(self, key: str) -> None:
        self.inner.lock(key)
