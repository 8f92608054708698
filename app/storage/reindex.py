"""Rebuild every current resource's search index rows (after the index schema or the registry
changes). Runs inside the caller's transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, and_, delete, false, insert, select

from app.storage.derived import date_spans, extract, table_rows
from app.storage.tables import INDEX_TABLES, date_span_table
from app.storage.tables import resource_table as r
from app.storage.tables import version_table as v

_BATCH = 500


def reindex(connection: Connection) -> int:
    """Recompute the index rows of every current resource; returns how many were indexed."""
    for table in INDEX_TABLES.values():
        connection.execute(delete(table))
    connection.execute(delete(date_span_table))
    spans: dict[tuple[str, str], int] = {}
    current = (
        select(r.c.res_key, r.c.resource_type, v.c.content)
        .select_from(r.join(v, and_(v.c.res_key == r.c.res_key, v.c.version_id == r.c.version_id)))
        .where(r.c.deleted == false())
        .order_by(r.c.res_key)
    )
    count = 0
    last_key = -1
    while True:
        rows = connection.execute(current.where(r.c.res_key > last_key).limit(_BATCH)).all()
        if not rows:
            if spans:
                connection.execute(
                    insert(date_span_table),
                    [
                        {"resource_type": t, "param": p, "max_span": s}
                        for (t, p), s in spans.items()
                    ],
                )
            return count
        batches: dict[str, list[dict[str, Any]]] = {kind: [] for kind in INDEX_TABLES}
        for res_key, resource_type, content in rows:
            index = extract(content)
            for param, span in date_spans(index).items():
                spans[(resource_type, param)] = max(span, spans.get((resource_type, param), -1))
            for kind, table in INDEX_TABLES.items():
                names = [c.name for c in table.columns]
                batches[kind].extend(
                    dict(zip(names, row, strict=True))
                    for row in table_rows(res_key, resource_type, index, kind)
                )
        for kind, values in batches.items():
            if values:
                connection.execute(insert(INDEX_TABLES[kind]), values)
        count += len(rows)
        last_key = rows[-1][0]
