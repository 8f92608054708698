"""search index tables keyed (res_key, param, seq), without the foreign key; partial indexes;
search_index_state

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28

The index is derived data: the tables are dropped and made again, and
app.storage.migrate.upgrade refills them (search_index_state no longer matches).
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigKey = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

_TABLES: dict[str, list[sa.Column[Any]]] = {
    "search_token": [
        sa.Column("system", sa.String(255)),
        sa.Column("code", sa.String(255)),
        sa.Column("text", sa.String(255)),
    ],
    "search_string": [
        sa.Column("norm", sa.String(255), nullable=False),
        sa.Column("exact", sa.String(1024), nullable=False),
    ],
    "search_date": [
        sa.Column("low", sa.BigInteger(), nullable=False),
        sa.Column("high", sa.BigInteger(), nullable=False),
    ],
    "search_number": [sa.Column("value", sa.Float(), nullable=False)],
    "search_quantity": [
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("system", sa.String(255)),
        sa.Column("code", sa.String(255)),
        sa.Column("canon_value", sa.Float()),
        sa.Column("canon_code", sa.String(255)),
    ],
    "search_reference": [
        sa.Column("target_type", sa.String(64)),
        sa.Column("target_id", sa.String(64)),
        sa.Column("url", sa.String(1024)),
    ],
    "search_uri": [sa.Column("value", sa.String(1024), nullable=False)],
    "search_composite": [
        sa.Column("c1_system", sa.String(255)),
        sa.Column("c1_code", sa.String(255)),
        sa.Column("c2_system", sa.String(255)),
        sa.Column("c2_code", sa.String(255)),
        sa.Column("c2_value", sa.Float()),
        sa.Column("c2_canon_value", sa.Float()),
        sa.Column("c2_canon_code", sa.String(255)),
        sa.Column("c2_low", sa.BigInteger()),
        sa.Column("c2_high", sa.BigInteger()),
        sa.Column("c2_text", sa.String(255)),
    ],
}
# (table, index number, value columns, the column a partial index requires to be present)
_INDEXES: list[tuple[str, int, list[str], str | None]] = [
    ("search_token", 0, ["code", "system"], None),
    ("search_token", 1, ["text"], "text"),
    ("search_string", 0, ["norm"], None),
    ("search_date", 0, ["low", "high"], None),
    ("search_date", 1, ["high", "low"], None),
    ("search_number", 0, ["value"], None),
    ("search_quantity", 0, ["code", "value"], None),
    ("search_quantity", 1, ["canon_code", "canon_value"], None),
    ("search_quantity", 2, ["value"], None),
    ("search_reference", 0, ["target_id", "target_type"], None),
    ("search_reference", 1, ["url"], "url"),
    ("search_uri", 0, ["value"], None),
    ("search_composite", 0, ["c1_code", "c1_system"], None),
]


def upgrade() -> None:
    for name in _TABLES:
        op.drop_table(name)
    op.execute("DELETE FROM search_date_span")
    for name, columns in _TABLES.items():
        op.create_table(
            name,
            sa.Column("res_key", BigKey, nullable=False),
            sa.Column("resource_type", sa.String(64), nullable=False),
            sa.Column("param", sa.String(100), nullable=False),
            *columns,
            sa.Column("seq", sa.SmallInteger(), nullable=False),
            sa.PrimaryKeyConstraint("res_key", "param", "seq", name=f"pk_{name}"),
            sqlite_with_rowid=False,
        )
    for name, number, columns, present in _INDEXES:
        where = sa.text(f"{present} IS NOT NULL") if present else None
        op.create_index(
            f"ix_{name}_{number}",
            name,
            ["resource_type", "param", *columns, "res_key"],
            sqlite_where=where,
            postgresql_where=where,
        )
    where = sa.text("target_id IS NOT NULL")
    op.create_index(
        "ix_search_reference_target",
        "search_reference",
        ["target_type", "target_id", "resource_type", "param", "res_key"],
        sqlite_where=where,
        postgresql_where=where,
    )
    op.create_table(
        "search_index_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    raise NotImplementedError("the search index is rebuilt forward only")
