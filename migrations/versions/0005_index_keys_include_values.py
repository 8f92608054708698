"""search_token's and search_date's primary keys carry their values on PostgreSQL

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28

A criterion that does not drive a search is checked per candidate, by (res_key, param), and a
date sort reads each candidate's value the same way. With the values in the key's index that is
an index-only probe comparing integers first, not a descent of the value index comparing four
strings at every level (a pain search at 1M: ~4.1 ms to ~3.0 ms of execution, 195 probes).
SQLite's tables are clustered on the key already (WITHOUT ROWID), so nothing changes there.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INCLUDES = {"search_token": "system, code", "search_date": "low, high"}


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, columns in _INCLUDES.items():
        op.execute(
            f"ALTER TABLE {table} DROP CONSTRAINT pk_{table}, ADD CONSTRAINT pk_{table} "
            f"PRIMARY KEY (res_key, param, seq) INCLUDE ({columns})"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in _INCLUDES:
        op.execute(
            f"ALTER TABLE {table} DROP CONSTRAINT pk_{table}, ADD CONSTRAINT pk_{table} "
            "PRIMARY KEY (res_key, param, seq)"
        )
