"""What a token may reach, enforced on every data path: a Store that keeps a bounded token
(patient-context scopes, app/fhir/compartment.py; v2 filtered scopes such as
`user/Observation.rs?category=laboratory`) inside its bounds, whichever interaction, operation
or Bundle entry reaches the data.

Wrapping the store rather than checking in each handler puts the rule where every read, write,
conditional match and history page already passes, so a new path cannot forget it:
- a resource outside the bounds reads as absent (404), also to writes, so neither its
  existence nor its version leaks through a 412, 422 or 410;
- what a write stores must be inside them (403; the transaction is rolled back);
- searches, also those inside writes (conditional matches and references), carry the bounds
  in SQL; history pages are bounded in SQL and each version is checked again, since a
  resource may have moved between patients.

Filters are checked with the search itself (the resource's id and the filter, as one search),
so a filter means exactly what the same search parameters mean. The bounds of each type and
interaction come from Access.compartment and Access.restriction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
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
from app.search.query import Chain, Criterion, Has, SearchRequest, parse_search

Find = Callable[[SearchRequest], bool]


def holds(record: VersionRecord, patient: str) -> bool:
    """Whether a stored version is in the patient's compartment (a delete holds nothing)."""
    return record.content is not None and in_patient_compartment(
        jsonio.loads(record.content), patient
    )


def filter_search(resource_type: str, pairs: tuple[tuple[str, str], ...]) -> SearchRequest:
    """A scope filter as a search of the type (403 if the type has no such parameter)."""
    request = parse_search((resource_type,), list(pairs), 1, 1)
    if request.unknown:
        raise ForbiddenError(
            f"The access token's scope filter names {', '.join(sorted(set(request.unknown)))}, "
            f"which is not a search parameter of {resource_type}"
        )
    return request


class ScopedStore:
    """The Store seen by a bounded token (see the module's docstring)."""

    def __init__(self, inner: Store, access: Access) -> None:
        self.inner = inner
        self.access = access

    def patient(self, resource_type: str, interactions: str) -> str | None:
        """The compartment bounding any of the interactions on the type."""
        for interaction in interactions:
            if (patient := self.access.compartment(resource_type, interaction)) is not None:
                return patient
        return None

    def filters(self, resource_type: str, interaction: str) -> tuple[tuple[str, str], ...]:
        return self.access.restriction(resource_type, interaction)

    def bounded(self, resource_type: str, interaction: str) -> bool:
        return self.patient(resource_type, interaction) is not None or bool(
            self.filters(resource_type, interaction)
        )

    def within(self, record: VersionRecord, interaction: str, find: Find | None = None) -> bool:
        """Whether the current version `record` is inside the bounds of `interaction`."""
        patient = self.patient(record.resource_type, interaction)
        if patient is not None and not holds(record, patient):
            return False
        pairs = self.filters(record.resource_type, interaction)
        if not pairs:
            return True
        request = filter_search(record.resource_type, (("_id", record.resource_id), *pairs))
        return (find or self._found)(request)

    def _found(self, request: SearchRequest) -> bool:
        return bool(self.inner.search(request).matches)

    def bound_links(self, criteria: list[Criterion | Chain | Has]) -> list[Criterion | Chain | Has]:
        """Chains and _has reach other resources: each gets the bounds of the type it reaches
        (its compartment and filters), so a search cannot test what the token may not see."""
        out: list[Criterion | Chain | Has] = []
        for criterion in criteria:
            if isinstance(criterion, Chain | Has):
                far = (
                    criterion.target_types[0]
                    if isinstance(criterion, Chain)
                    else criterion.source_type
                )
                pairs = self.filters(far, "s")
                criterion = replace(
                    criterion,
                    inner=self.bound_links([criterion.inner])[0],
                    compartment=self.patient(far, "s"),
                    also=tuple(filter_search(far, pairs).criteria) if pairs else (),
                )
            out.append(criterion)
        return out

    def _searchable(self) -> tuple[str, ...]:
        """The compartment's types the token may search (a system-wide search or history)."""
        return tuple(t for t in PATIENT_COMPARTMENT if self.access.allows(t, "s"))

    def may_return(self, record: VersionRecord) -> bool:
        """Whether a resource may be returned as an include or a $everything entry."""
        if not self.access.readable(record.resource_type):
            return False
        return any(
            self.access.allows(record.resource_type, i) and self.within(record, i) for i in "rs"
        )

    @contextmanager
    def write(self) -> Iterator[WriteTx]:
        with self.inner.write() as tx:
            yield ScopedTx(tx, self)

    def read(self, resource_type: str, resource_id: str) -> VersionRecord | None:
        record = self.inner.read(resource_type, resource_id)
        if record is None or not self.bounded(resource_type, "r"):
            return record
        if not record.deleted:
            return record if self.within(record, "r") else None
        # A delete holds no content: the version before it says whose it was (a 410 must not
        # tell another patient's token that the id existed). Filters match current resources
        # only, so a filtered token gets 404 for any deleted one.
        patient = self.patient(resource_type, "r")
        if self.filters(resource_type, "r") or patient is None:
            return None
        previous = self.inner.vread(resource_type, resource_id, record.version_id - 1)
        return record if previous is not None and holds(previous, patient) else None

    def vread(self, resource_type: str, resource_id: str, version_id: int) -> VersionRecord | None:
        record = self.inner.vread(resource_type, resource_id, version_id)
        if record is None or not self.bounded(resource_type, "r"):
            return record
        # the resource as it is now must be inside the bounds, and the version asked for in
        # the compartment (filters are judged on the current version: only it is indexed)
        if self.read(resource_type, resource_id) is None:
            return None
        patient = self.patient(resource_type, "r")
        if record.deleted or patient is None:
            return record
        return record if holds(record, patient) else None

    def search(self, request: SearchRequest) -> SearchPage:
        types = request.resource_types or self._searchable()
        if request.compartment is None and any(self.patient(t, "s") for t in types):
            request.compartment = self.patient(types[0], "s") or self.access.patient
            request.resource_types = types
        restrictions = {self.filters(t, "s") for t in types}
        if restrictions != {()}:
            if len(restrictions) > 1 or len(types) != 1:
                raise ForbiddenError(
                    "The access token's scopes filter some of these types: search each type "
                    "on its own"
                )
            request.criteria = [
                *request.criteria,
                *filter_search(types[0], restrictions.pop()).criteria,
            ]
        request.criteria = self.bound_links(request.criteria)
        page = self.inner.search(request)
        return replace(page, includes=[r for r in page.includes if self.may_return(r)])

    def history(self, query: HistoryQuery) -> HistoryPage:
        interaction = "r" if query.resource_id is not None else "s"
        types = (query.resource_type,) if query.resource_type else self._searchable()
        if not any(self.bounded(t, interaction) for t in types):
            return self.inner.history(query)
        if query.resource_id is not None:
            assert query.resource_type is not None
            if self.read(query.resource_type, query.resource_id) is None:
                raise NotFoundError(f"{query.resource_type}/{query.resource_id} is not known")
            page = self.inner.history(query)
        else:
            if any(self.filters(t, "s") for t in types):
                raise ForbiddenError(
                    "History of a type or of the server is not available to access tokens "
                    "whose scopes filter the resources they reach"
                )
            # resources in the compartment now (a deleted one has no index rows: its history
            # is left out rather than shown without knowing whose it was)
            page = self.inner.history(
                replace(query, compartment=self.access.patient, compartment_types=types)
            )
        patient = self.access.patient
        # a resource in the compartment now may have been another patient's before
        kept = [
            (k, r)
            for k, r in page.entries
            if r.deleted
            or patient is None
            or self.patient(r.resource_type, "rs") is None
            or holds(r, patient)
        ]
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
        kept = [r for r in page.matches if self.may_return(r)]
        # the total counted what the token may not see: kept only when it is this page's own
        whole = len(kept) == len(page.matches) and offset == 0 and not page.has_more
        return replace(page, matches=kept, total=page.total if whole else None)


class ScopedTx:
    """A write transaction that keeps what it reads and writes inside the token's bounds."""

    def __init__(self, inner: WriteTx, store: ScopedStore) -> None:
        self.inner = inner
        self.store = store

    def _found(self, request: SearchRequest) -> bool:
        return bool(self.inner.find(request, 1))

    def current(self, resource_type: str, resource_id: str) -> CurrentState | None:
        state = self.inner.current(resource_type, resource_id)
        if state is None or state.deleted:
            return state
        store = self.store
        if not (store.bounded(resource_type, "u") or store.bounded(resource_type, "d")):
            return state
        record = VersionRecord(
            resource_type,
            resource_id,
            state.version_id,
            state.last_updated,
            "",
            self.inner.current_content(state),
        )
        # a write on it is an update or a delete: inside the bounds of whichever is narrower
        if not all(store.within(record, i, self._found) for i in "ud"):
            raise NotFoundError(f"{resource_type}/{resource_id} is not known")
        return state

    def current_content(self, state: CurrentState) -> bytes | None:
        return self.inner.current_content(state)

    def _check_written(self, record: VersionRecord, interaction: str) -> None:
        """After the write, inside this transaction: is what was stored inside the bounds?"""
        if record.content is None or self.store.within(record, interaction, self._found):
            return
        raise ForbiddenError(
            f"The access token's scopes do not reach this {record.resource_type}: "
            + (
                f"a patient-context token may only write resources of Patient/{patient}"
                if (patient := self.store.patient(record.resource_type, interaction))
                else "it does not match the scope's filter"
            )
        )

    def insert(self, record: VersionRecord, index: IndexRows) -> None:
        self.inner.insert(record, index)
        self._check_written(record, "c")

    def existing(self, pairs: list[tuple[str, str]]) -> set[tuple[str, str]]:
        return self.inner.existing(pairs)

    def insert_many(self, items: list[tuple[VersionRecord, IndexRows]]) -> None:
        self.inner.insert_many(items)
        for record, _ in items:
            self._check_written(record, "c")

    def append(self, state: CurrentState, record: VersionRecord, index: IndexRows) -> None:
        if (
            state.deleted
            and record.content is not None
            and self.store.bounded(record.resource_type, "u")
        ):
            # whose the deleted resource was is not known here: its id is not reused
            raise ForbiddenError(
                f"{record.resource_type}/{record.resource_id} was deleted; an access token "
                "whose scopes reach part of a type cannot bring a deleted resource back"
            )
        self.inner.append(state, record, index)
        self._check_written(record, "u")

    def find(self, request: SearchRequest, limit: int) -> list[tuple[str, str]]:
        store = self.store
        for resource_type in request.resource_types:
            patient = store.patient(resource_type, "s")
            if patient is not None:
                request.compartment = patient
            pairs = store.filters(resource_type, "s")
            if pairs:
                if len(request.resource_types) != 1:
                    raise ForbiddenError("Filtered scopes reach one type at a time")
                extra = filter_search(resource_type, pairs).criteria
                request = replace(request, criteria=[*request.criteria, *extra])
        request = replace(request, criteria=store.bound_links(request.criteria))
        return self.inner.find(request, limit)

    def lock(self, key: str) -> None:
        self.inner.lock(key)
