"""The schema. One row per resource (its current version), one row per version.

A version's JSON is stored once, in resource_version; a read joins the current row to it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlmodel import Field, SQLModel

# SQLite only auto-numbers an INTEGER PRIMARY KEY; PostgreSQL should get a 64-bit identity.
BigKey = BigInteger().with_variant(Integer(), "sqlite")


class ResourceRow(SQLModel, table=True):
    __tablename__ = "resource"
    __table_args__ = (UniqueConstraint("resource_type", "resource_id", name="uq_resource_type_id"),)

    res_key: int | None = Field(
        default=None, sa_column=Column(BigKey, primary_key=True, autoincrement=True)
    )
    resource_type: str = Field(sa_column=Column(String(64), nullable=False))
    resource_id: str = Field(sa_column=Column(String(64), nullable=False))
    version_id: int = Field(sa_column=Column(Integer, nullable=False))
    last_updated: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    deleted: bool = Field(nullable=False)


class ResourceVersionRow(SQLModel, table=True):
    __tablename__ = "resource_version"
    __table_args__ = (
        UniqueConstraint("res_key", "version_id", name="uq_resource_version"),
        Index("ix_resource_version_res_key", "res_key", "version_key"),
        Index("ix_resource_version_type", "resource_type", "version_key"),
        Index("ix_resource_version_last_updated", "last_updated"),
    )

    version_key: int | None = Field(
        default=None, sa_column=Column(BigKey, primary_key=True, autoincrement=True)
    )
    res_key: int = Field(sa_column=Column(BigKey, ForeignKey("resource.res_key"), nullable=False))
    resource_type: str = Field(sa_column=Column(String(64), nullable=False))
    version_id: int = Field(sa_column=Column(Integer, nullable=False))
    last_updated: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    method: str = Field(sa_column=Column(String(8), nullable=False))
    content: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))


def _table(model: type[SQLModel]) -> Table:
    table = model.__table__  # type: ignore[attr-defined]
    assert isinstance(table, Table)
    return table


resource_table = _table(ResourceRow)
version_table = _table(ResourceVersionRow)
metadata = SQLModel.metadata


# -- search index: one table per parameter type, rewritten with each version -------------------
# Each table is keyed (res_key, param, seq), seq numbering one resource's rows: on SQLite a
# WITHOUT ROWID table clustered on that key, so rewriting one resource's rows and the EXISTS probe
# of one candidate need no separate index. Value indexes lead with (type, param, value) and end
# with res_key, so a criterion is answered from the index alone. Every index entry is a page
# written at commit (docs/architecture.md), hence partial indexes where most rows have no value.
# No foreign key to `resource`: the rows are derived data written by one path, and the check
# would cost a lookup per row.
def _index_table(
    name: str,
    *columns: Column[Any],
    indexes: list[tuple[tuple[str, ...], str | None] | None],
    key_includes: tuple[str, ...] = (),
) -> Table:
    table = Table(
        name,
        metadata,
        Column("res_key", BigKey, nullable=False),
        Column("resource_type", String(64), nullable=False),
        Column("param", String(100), nullable=False),
        *columns,
        Column("seq", SmallInteger, nullable=False),
        PrimaryKeyConstraint(
            "res_key", "param", "seq", name=f"pk_{name}", postgresql_include=list(key_includes)
        ),
        sqlite_with_rowid=False,
    )
    for number, index in enumerate(indexes):
        if index is None:
            continue  # retired: later indexes keep their names
        cols, present = index
        where = table.c[present].is_not(None) if present else None
        Index(
            f"ix_{name}_{number}",
            table.c.resource_type,
            table.c.param,
            *(table.c[c] for c in cols),
            table.c.res_key,
            sqlite_where=where,
            postgresql_where=where,
        )
    return table


token_table = _index_table(
    "search_token",
    Column("system", String(255)),
    Column("code", String(255)),
    Column("text", String(255)),
    # the resource's patient (app.search.index_values.IndexRows.patient): after the code, so
    # "this patient's rows of this code" is one range, and a code alone still a prefix
    Column("patient", BigInteger),
    indexes=[(("code", "patient", "system"), None), (("text",), "text")],
    # PostgreSQL: an EXISTS probe of one candidate's codes reads the key's index alone
    key_includes=("system", "code"),
)
string_table = _index_table(
    "search_string",
    Column("norm", String(255), nullable=False),
    Column("exact", String(1024), nullable=False),
    indexes=[(("norm",), None)],
)
date_table = _index_table(
    "search_date",
    Column("low", BigInteger, nullable=False),
    Column("high", BigInteger, nullable=False),
    indexes=[(("low", "high"), None), (("high", "low"), None)],
    # PostgreSQL: _sort=date and date probes read a candidate's values from the key's index
    # alone (SQLite's table is that index already)
    key_includes=("low", "high"),
)
# The widest [low, high] per (type, parameter) ever indexed. It only grows. A search whose
# values bound `low` from above (lt, le, eq) then also bounds `high` (high <= bound + span),
# so a date range is one bounded index scan instead of everything after its start.
date_span_table = Table(
    "search_date_span",
    metadata,
    Column("resource_type", String(64), primary_key=True),
    Column("param", String(100), primary_key=True),
    Column("max_span", BigInteger, nullable=False),
)
# Which extraction rules the rows were written with (app.search.indexer.index_fingerprint);
# app.storage.migrate.upgrade rebuilds the index when the code's differs. One row, id 1.
index_state_table = Table(
    "search_index_state",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("fingerprint", String(64), nullable=False),
)
number_table = _index_table(
    "search_number",
    Column("value", Float, nullable=False),
    indexes=[(("value",), None)],
)
quantity_table = _index_table(
    "search_quantity",
    Column("value", Float, nullable=False),
    Column("system", String(255)),
    Column("code", String(255)),
    Column("canon_value", Float),
    Column("canon_code", String(255)),
    indexes=[(("code", "value"), None), (("canon_code", "canon_value"), None), (("value",), None)],
)
reference_table = _index_table(
    "search_reference",
    Column("target_type", String(64)),
    Column("target_id", String(64)),
    Column("url", String(1024)),
    # 0, (target_id, target_type), retired by migration 0007: every row with an id has a type,
    # so ix_search_reference_target answers `subject=Patient/1` as well, and a bare id through
    # the parameter's target types; one index fewer is two B-tree pages fewer per Observation.
    indexes=[None, (("url",), "url")],
)
# Who points at a resource: reference criteria, _revinclude (also =*), chains, _has.
Index(
    "ix_search_reference_target",
    reference_table.c.target_type,
    reference_table.c.target_id,
    reference_table.c.resource_type,
    reference_table.c.param,
    reference_table.c.res_key,
    sqlite_where=reference_table.c.target_id.is_not(None),
    postgresql_where=reference_table.c.target_id.is_not(None),
)
uri_table = _index_table(
    "search_uri",
    Column("value", String(1024), nullable=False),
    indexes=[(("value",), None)],
)
# Composites pair a token (the first component) with a second component of any type.
composite_table = _index_table(
    "search_composite",
    Column("c1_system", String(255)),
    Column("c1_code", String(255)),
    Column("c2_system", String(255)),
    Column("c2_code", String(255)),
    Column("c2_value", Float),
    Column("c2_canon_value", Float),
    Column("c2_canon_code", String(255)),
    Column("c2_low", BigInteger),
    Column("c2_high", BigInteger),
    Column("c2_text", String(255)),
    indexes=[(("c1_code", "c1_system"), None)],
)
INDEX_TABLES = {
    "token": token_table,
    "string": string_table,
    "date": date_table,
    "number": number_table,
    "quantity": quantity_table,
    "reference": reference_table,
    "uri": uri_table,
    "composite": composite_table,
}


# Bulk export jobs ($export): shared by every server process, so any of them answers the status.
export_job_table = Table(
    "export_job",
    metadata,
    Column("job_id", String(64), primary_key=True),
    Column("status", String(16), nullable=False),  # accepted, complete, failed, cancelled
    Column("request_url", Text, nullable=False),
    Column("parameters", Text, nullable=False),  # JSON: level, types, since
    Column("transaction_time", DateTime(timezone=True), nullable=False),
    Column("progress", String(255)),
    Column("output", Text),  # JSON: the manifest's output list, when complete
    Column("error", Text),
    Column("updated", DateTime(timezone=True), nullable=False),
)
