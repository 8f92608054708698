"""What a version's content becomes in the search index tables: the one conversion from
app.search's IndexRows to table rows, shared by the write paths (sql_store), the rebuild
(reindex) and the consistency check (consistency), so the three cannot disagree."""

from __future__ import annotations

from typing import Any

import orjson

from app.search.index_values import IndexRows
from app.search.indexer import index_rows


def extract(content: bytes) -> IndexRows:
    """A stored version's index rows, extracted afresh from its JSON bytes."""
    return index_rows(orjson.loads(content))


def table_rows(key: int, resource_type: str, index: IndexRows, kind: str) -> list[tuple[Any, ...]]:
    """One index table's rows of one resource, in the table's column order: res_key,
    resource_type, the kind's values (app.search.index_values.IndexRows.table_rows), seq.

    seq only numbers a resource's rows of one parameter table (the primary key is (res_key,
    param, seq)); it follows set order, which differs between processes, so it carries no
    meaning beyond uniqueness."""
    return [(key, resource_type, *row, seq) for seq, row in enumerate(index.table_rows(kind))]


def date_spans(index: IndexRows) -> dict[str, int]:
    """The widest date range (high - low, epoch microseconds) per parameter of one resource:
    what search_date_span must hold at least for its (type, parameter)."""
    spans: dict[str, int] = {}
    for param, low, high in index.date:
        spans[param] = max(high - low, spans.get(param, -1))
    return spans
