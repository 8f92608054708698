"""Fewer index entries per write: one reference index; resource-rooted composites not stored

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29

Each index entry is a B-tree page written at commit, and on SQLite the commit's page writes were
most of what indexing cost a create (docs/architecture.md). ix_search_reference_0 held the same
columns as ix_search_reference_target in another order; the target index answers reference
criteria now. The rows of Observation's code-value-quantity, code-value-concept and
code-value-date are read from the code and value rows (app/search/aliases.py, PAIRED): the
extraction fingerprint changes, so app.storage.migrate's reindex removes them.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_search_reference_0", table_name="search_reference")


def downgrade() -> None:
    op.create_index(
        "ix_search_reference_0",
        "search_reference",
        ["resource_type", "param", "target_id", "target_type", "res_key"],
    )
