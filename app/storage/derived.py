"""What a version's content becomes in the search index tables: the one conversion from
app.search's IndexRows to table rows, shared by the write paths (sql_store), the rebuild
(reindex) and the consistency check (consistency), so the three cannot disagree.

Values longer than their column are stored *bounded* (`fit`): the column's width less 33
characters of the value, U+001F, and a 128-bit hash of the whole value in hex. A FHIR string
may hold a megabyte, but a varchar holds its width (PostgreSQL refuses more) and a B-tree entry
at most ~2,700 bytes (PostgreSQL refuses a longer index row), so an index never sees more than
the bounded form. No FHIR value and no search value holds U+001F (control characters are
refused in both), so a value that fits is stored as it is and can never equal a bounded one:
searches for ordinary values compare them as they are, and a search for a long value compares
its bounded form, which equals the stored one exactly when the values are equal (up to a
collision of the 128-bit hash: HAPI FHIR finds tokens by 64-bit hashes of the whole value).
Prefix comparisons (token `:text`, uri `:below`) see the value's first width - 33 characters,
so a longer search prefix matches a long stored value only when it is the whole value."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
from sqlalchemy import String, Table

from app.search.index_values import IndexRows
from app.search.indexer import index_rows
from app.storage.tables import INDEX_TABLES

MAX_BYTES = 2000  # of one value in an index entry: with type, param and key, under 2,704
_ANY_CHARS = MAX_BYTES // 4  # this many characters fit MAX_BYTES whatever they are
_MARK = "\x1f"  # unit separator: in no stored or searched value (datatypes.html#string)
_HASH_CHARS = 32  # blake2b, 16 bytes, hex
_TAIL = 1 + _HASH_CHARS
_ANY_HEAD_CHARS = (MAX_BYTES - _TAIL) // 4  # this many characters fit a head whatever they are


def fits(value: str, width: int) -> bool:
    """Whether the value is stored as it is in a column of `width` characters."""
    if len(value) <= _ANY_CHARS:
        return len(value) <= width
    return len(value) <= width and len(value.encode("utf-8", "surrogatepass")) <= MAX_BYTES


def _head(value: str, width: int) -> str:
    head = value[: width - _TAIL]
    if len(head) > _ANY_HEAD_CHARS:
        encoded = head.encode("utf-8", "surrogatepass")[: MAX_BYTES - _TAIL]
        head = encoded.decode("utf-8", "ignore")
    return head


def fit(value: str, width: int) -> str:
    """The value as a column of `width` characters stores it: itself when it fits, else its
    head, U+001F and the hash of the whole value (the module's docstring)."""
    if fits(value, width):
        return value
    digest = hashlib.blake2b(value.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
    return f"{_head(value, width)}{_MARK}{digest}"


def prefix_fits(prefix: str, width: int) -> bool:
    """Whether a starts-with comparison with `prefix` is decided by the stored forms: every
    stored value that starts with it keeps it whole (a fitting value, or a bounded value whose
    head is at least this long)."""
    return len(prefix) <= width - _TAIL and (
        len(prefix) <= _ANY_HEAD_CHARS
        or len(prefix.encode("utf-8", "surrogatepass")) <= MAX_BYTES - _TAIL
    )


def _bounded_columns(table: Table) -> tuple[tuple[int, int, int], ...]:
    """(position in an IndexRows row, width, length up to which any value fits) of the
    table's varchar value columns. A row starts with the parameter code (the `param` column,
    always short)."""
    values = list(table.columns)[2:-1]  # res_key, resource_type ... seq
    return tuple(
        (position, column.type.length, min(column.type.length, _ANY_CHARS))
        for position, column in enumerate(values)
        if position > 0 and isinstance(column.type, String) and column.type.length
    )


_BOUNDED = {kind: _bounded_columns(table) for kind, table in INDEX_TABLES.items()}


def _fitted(row: tuple[Any, ...], columns: tuple[tuple[int, int, int], ...]) -> tuple[Any, ...]:
    for position, width, _ in columns:
        value = row[position]
        if value is not None and not fits(value, width):
            row = (*row[:position], fit(value, width), *row[position + 1 :])
    return row


def extract(content: bytes) -> IndexRows:
    """A stored version's index rows, extracted afresh from its JSON bytes."""
    return index_rows(orjson.loads(content))


def table_rows(key: int, resource_type: str, index: IndexRows, kind: str) -> list[tuple[Any, ...]]:
    """One index table's rows of one resource, in the table's column order: res_key,
    resource_type, the kind's values (app.search.index_values.IndexRows.table_rows, each
    bounded to its column by `fit`), seq.

    seq only numbers a resource's rows of one parameter table (the primary key is (res_key,
    param, seq)); it follows set order, which differs between processes, so it carries no
    meaning beyond uniqueness."""
    columns = _BOUNDED[kind]
    out = []
    for seq, row in enumerate(index.table_rows(kind)):
        for position, _, quick in columns:
            value = row[position]
            if value is not None and len(value) > quick:  # rare: check it, bound what must be
                row = _fitted(row, columns)
                break
        out.append((key, resource_type, *row, seq))
    return out


def date_spans(index: IndexRows) -> dict[str, int]:
    """The widest date range (high - low, epoch microseconds) per parameter of one resource:
    what search_date_span must hold at least for its (type, parameter)."""
    spans: dict[str, int] = {}
    for param, low, high in index.date:
        spans[param] = max(high - low, spans.get(param, -1))
    return spans
