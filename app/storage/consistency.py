"""The database's consistency check (`python -m app check`): reindex's read-only twin.

For every resource (deleted ones included), in batches of resource keys, each batch read in
one snapshot (SQLite: a deferred read transaction; PostgreSQL: REPEATABLE READ, read only), so
a server writing meanwhile never shows a half-written resource:

- versions: rows 1..version_id of `resource_version`, none missing and none newer than the
  current row names; each of the resource's type, strictly later than the one before, with
  content exactly when the method is not DELETE;
- the current row: deleted exactly when its version has no content, the same last_updated;
  its content names the resource (resourceType, id) and the version (meta.versionId,
  meta.lastUpdated);
- the search index: the rows of each index table equal a fresh extraction of the current
  content (app.storage.derived, the conversion the writes and reindex use), none for a
  deleted resource; search_date_span at least as wide as each current date range;
- rows of `resource_version` or an index table whose res_key has no resource.

seq is not compared: it numbers rows in set order, which differs between processes.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import ColumnElement, Connection, Engine, Table, and_, select

from app.fhir.instants import format_instant
from app.search.index_values import IndexRows
from app.search.indexer import index_fingerprint
from app.storage.derived import date_spans, extract, table_rows
from app.storage.engine import SQLITE_BEGIN, is_sqlite
from app.storage.tables import INDEX_TABLES, date_span_table, index_state_table
from app.storage.tables import resource_table as r
from app.storage.tables import version_table as v

BATCH = 500
_SHOWN = 3  # differing rows listed per resource and table; the rest are counted


@dataclass(frozen=True, slots=True)
class Issue:
    """One inconsistency. `subject` is "Type/id", or "res_key N" for rows of no resource, or
    the table's name for a database-wide one; `kind` a stable code the tests match on."""

    subject: str
    kind: str
    message: str

    def __str__(self) -> str:
        return f"{self.subject}: {self.message}"


@dataclass(slots=True)
class CheckTotals:
    resources: int = 0
    versions: int = 0
    index_rows: int = 0
    issues: int = 0

    def summary(self) -> str:
        found = "no inconsistencies" if not self.issues else f"{self.issues:,} inconsistencies"
        return (
            f"checked {self.resources:,} resources, {self.versions:,} versions, "
            f"{self.index_rows:,} index rows: {found}"
        )


def check(engine: Engine, report: Callable[[Issue], None], batch_size: int = BATCH) -> CheckTotals:
    """Check the whole database, calling `report` with each inconsistency as it is found.
    Reads only; holds one batch (resources, their versions' metadata, current contents and
    index rows) in memory at a time."""
    checker = _Checker(report)
    with _snapshot(engine) as conn:
        stored = conn.execute(select(index_state_table.c.fingerprint)).scalar()
    checker.compare_index = stored == index_fingerprint()
    if not checker.compare_index:
        checker.found(
            index_state_table.name,
            "index-rules",
            f"the search index was written by other extraction rules (fingerprint {stored}, "
            f"the code's {index_fingerprint()}); `python -m app migrate` rebuilds it. "
            "Index rows were not compared.",
        )
    after: int | None = None
    while True:
        with _snapshot(engine) as conn:
            last = checker.batch(conn, after, batch_size)
        if last is None:
            break
        after = last
    # Spans only grow, so the table as it is now must cover every range seen on the way.
    with _snapshot(engine) as conn:
        checker.spans({(t, p): s for t, p, s in conn.execute(select(date_span_table))})
    return checker.totals


@contextmanager
def _snapshot(engine: Engine) -> Iterator[Connection]:
    """A read-only transaction whose statements all see one state of the database."""
    with engine.connect() as conn:
        if is_sqlite(engine):
            # WAL: the first read fixes the snapshot until the transaction ends
            conn = conn.execution_options(**{SQLITE_BEGIN: "DEFERRED"})
        else:
            conn = conn.execution_options(
                isolation_level="REPEATABLE READ", postgresql_readonly=True
            )
        with conn.begin() as transaction:
            yield conn
            transaction.rollback()


@dataclass(slots=True)
class _Version:
    version_id: int
    resource_type: str
    last_updated: datetime
    method: str
    deleted: bool


class _Checker:
    def __init__(self, report: Callable[[Issue], None]) -> None:
        self.report = report
        self.totals = CheckTotals()
        self.compare_index = True
        # (type, param) -> the widest current date range seen, and a resource that has it
        self.widest: dict[tuple[str, str], tuple[int, str]] = {}

    def found(self, subject: str, kind: str, message: str) -> None:
        self.totals.issues += 1
        self.report(Issue(subject, kind, message))

    def batch(self, conn: Connection, after: int | None, size: int) -> int | None:
        """Check the `size` resources after key `after` and every version and index row in
        their key range (up to the last one's key; past it when this is the last batch, so
        rows of no resource at either end are seen). Returns the last key, None at the end."""
        newer = [r.c.res_key > after] if after is not None else []
        resources = conn.execute(
            select(
                r.c.res_key,
                r.c.resource_type,
                r.c.resource_id,
                r.c.version_id,
                r.c.last_updated,
                r.c.deleted,
                v.c.content,
            )
            .select_from(
                r.outerjoin(v, and_(v.c.res_key == r.c.res_key, v.c.version_id == r.c.version_id))
            )
            .where(*newer)
            .order_by(r.c.res_key)
            .limit(size)
        ).all()
        last = resources[-1][0] if len(resources) == size else None

        def in_range(table: Table) -> list[ColumnElement[bool]]:
            conds = [table.c.res_key > after] if after is not None else []
            if last is not None:
                conds.append(table.c.res_key <= last)
            return conds

        versions: dict[int, list[_Version]] = defaultdict(list)
        for key, rtype, vid, updated, method, no_content in conn.execute(
            select(
                v.c.res_key,
                v.c.resource_type,
                v.c.version_id,
                v.c.last_updated,
                v.c.method,
                v.c.content.is_(None),
            )
            .where(*in_range(v))
            .order_by(v.c.res_key, v.c.version_id)
        ):
            versions[key].append(_Version(vid, rtype, _utc(updated), method, bool(no_content)))
            self.totals.versions += 1
        index: dict[str, dict[int, list[tuple[Any, ...]]]] = {}
        for kind, table in INDEX_TABLES.items():
            by_key: dict[int, list[tuple[Any, ...]]] = defaultdict(list)
            for row in conn.execute(
                select(table).where(*in_range(table)).order_by(table.c.res_key)
            ):
                by_key[row[0]].append(tuple(row))
                self.totals.index_rows += 1
            index[kind] = by_key

        known = set()
        for key, rtype, rid, current, updated, deleted, content in resources:
            known.add(key)
            self.totals.resources += 1
            self.resource(
                key,
                rtype,
                rid,
                current,
                _utc(updated),
                bool(deleted),
                bytes(content) if content is not None else None,
                versions.get(key, []),
                {kind: rows.get(key, []) for kind, rows in index.items()},
            )
        for key in sorted(versions.keys() - known):
            self.found(
                f"res_key {key}",
                "orphan-version",
                f"{len(versions[key])} resource_version rows, but no resource row",
            )
        for kind, table in INDEX_TABLES.items():
            for key in sorted(index[kind].keys() - known):
                self.found(
                    f"res_key {key}",
                    "orphan-index",
                    f"{len(index[kind][key])} {table.name} rows, but no resource row",
                )
        return last

    def resource(
        self,
        key: int,
        rtype: str,
        rid: str,
        current: int,
        updated: datetime,
        deleted: bool,
        content: bytes | None,
        versions: list[_Version],
        stored: dict[str, list[tuple[Any, ...]]],
    ) -> None:
        subject = f"{rtype}/{rid}"

        def issue(kind: str, message: str) -> None:
            self.found(subject, kind, message)

        newest = _check_versions(versions, rtype, current, issue)
        if newest is not None:
            _check_current(newest, deleted, updated, issue)
        fresh = None
        if content is not None and not deleted:
            fresh = _check_content(content, rtype, rid, current, newest, issue)
        if not self.compare_index:
            return
        if deleted:
            left = [
                f"{len(rows)} {INDEX_TABLES[kind].name}" for kind, rows in stored.items() if rows
            ]
            if left:
                issue("index-on-deleted", f"deleted, yet index rows remain: {', '.join(left)}")
            return
        if newest is None or content is None or fresh is None:
            return  # nothing to compare the rows with; what is wrong was reported above
        for kind, table in INDEX_TABLES.items():
            _compare_rows(table.name, table_rows(key, rtype, fresh, kind), stored[kind], issue)
        for param, span in date_spans(fresh).items():
            seen = self.widest.get((rtype, param))
            if seen is None or span > seen[0]:
                self.widest[(rtype, param)] = (span, subject)

    def spans(self, stored: dict[tuple[str, str], int]) -> None:
        for (rtype, param), (span, subject) in sorted(self.widest.items()):
            have = stored.get((rtype, param))
            if have is None or have < span:
                self.found(
                    subject,
                    "date-span",
                    f"its {param} range is {span} µs wide, but search_date_span holds "
                    f"{have} for {rtype}.{param} (date searches can miss it and others)",
                )


def _check_versions(
    versions: list[_Version], resource_type: str, current: int, issue: Callable[[str, str], None]
) -> _Version | None:
    """The version rows 1..current, each once; returns the current one if it is there."""
    ids = [version.version_id for version in versions]
    missing = sorted(set(range(1, current + 1)) - set(ids))
    if missing:
        issue(
            "version-missing",
            f"version {_ranges(missing)} missing from resource_version (current row: "
            f"version {current})",
        )
    invalid = [i for i in ids if i < 1]
    if invalid:
        issue("version-invalid", f"resource_version holds version {_ranges(sorted(invalid))}")
    beyond = [i for i in ids if i > current]
    if beyond:
        issue(
            "not-newest",
            f"the current row names version {current}, but resource_version holds version "
            f"{_ranges(sorted(beyond))}",
        )
    previous: _Version | None = None
    newest = None
    for version in versions:
        if version.resource_type != resource_type:
            issue(
                "version-type",
                f"version {version.version_id} is stored as a {version.resource_type}",
            )
        if version.deleted != (version.method == "DELETE"):
            issue(
                "version-content",
                f"version {version.version_id} ({version.method}) "
                + ("has no content" if version.deleted else "has content"),
            )
        if previous is not None and version.last_updated <= previous.last_updated:
            issue(
                "version-order",
                f"version {version.version_id} was stored at {version.last_updated.isoformat()},"
                f" not after version {previous.version_id} "
                f"({previous.last_updated.isoformat()})",
            )
        if version.version_id == current:
            newest = version
        previous = version
    return newest


def _check_current(
    newest: _Version, deleted: bool, updated: datetime, issue: Callable[[str, str], None]
) -> None:
    if deleted != newest.deleted:
        state = "deleted" if deleted else "not deleted"
        content = "no content" if newest.deleted else "content"
        issue(
            "current-deleted",
            f"the current row says {state}, but version {newest.version_id} has {content}",
        )
    if updated != newest.last_updated:
        issue(
            "current-last-updated",
            f"the current row's last_updated {updated.isoformat()} is not version "
            f"{newest.version_id}'s ({newest.last_updated.isoformat()})",
        )


def _check_content(
    content: bytes,
    resource_type: str,
    resource_id: str,
    current: int,
    newest: _Version | None,
    issue: Callable[[str, str], None],
) -> IndexRows | None:
    """The content's index rows, after checking it names this resource and version (None if
    it cannot be read)."""
    try:
        data = orjson.loads(content)
        named = (data.get("resourceType"), data.get("id"))
        meta = data.get("meta") or {}
    except (orjson.JSONDecodeError, AttributeError) as exc:
        issue("content", f"version {current}'s content is not a JSON object ({exc})")
        return None
    if named != (resource_type, resource_id):
        issue("content", f"version {current}'s content is {named[0]}/{named[1]}")
    if meta.get("versionId") != str(current):
        issue("content", f"version {current}'s content has meta.versionId {meta.get('versionId')}")
    if newest is not None:
        stamped = format_instant(newest.last_updated)
        if meta.get("lastUpdated") != stamped:
            issue(
                "content",
                f"version {current}'s content has meta.lastUpdated {meta.get('lastUpdated')}, "
                f"stored as {stamped}",
            )
    try:
        return extract(content)
    except Exception as exc:  # a resource the indexer cannot read is itself the finding
        issue("content", f"version {current}'s content cannot be indexed: {exc!r}")
        return None


def _compare_rows(
    table: str,
    expected: list[tuple[Any, ...]],
    stored: list[tuple[Any, ...]],
    issue: Callable[[str, str], None],
) -> None:
    # (resource_type, param, values...): res_key is the same by construction, seq is set order
    want = Counter(row[1:-1] for row in expected)
    have = Counter(row[1:-1] for row in stored)
    if want == have:
        return
    missing = list((want - have).elements())
    extra = list((have - want).elements())
    if missing:
        issue(
            "index-missing",
            f"{len(missing)} {table} rows missing: {_shown(missing)}",
        )
    if extra:
        issue(
            "index-extra",
            f"{len(extra)} {table} rows that a fresh extraction does not give: {_shown(extra)}",
        )


def _shown(rows: list[tuple[Any, ...]]) -> str:
    """A few rows, each as (resource_type, param, values...)."""
    shown = "; ".join(_tuple(row) for row in sorted(rows, key=repr)[:_SHOWN])
    return shown + (f"; and {len(rows) - _SHOWN} more" if len(rows) > _SHOWN else "")


def _tuple(values: tuple[Any, ...]) -> str:
    return "(" + ", ".join(repr(value) for value in values) + ")"


def _ranges(numbers: list[int]) -> str:
    parts: list[str] = []
    start = prev = numbers[0]
    for number in [*numbers[1:], None]:
        if number is not None and number == prev + 1:
            prev = number
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if number is not None:
            start = prev = number
    return ", ".join(parts)


def _utc(value: datetime) -> datetime:
    # SQLite hands back the naive UTC value that was stored; PostgreSQL an aware one.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
