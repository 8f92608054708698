"""resource and version tables

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigKey = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "resource",
        sa.Column("res_key", BigKey, autoincrement=True, nullable=False),
        sa.Column("resource_type", sa.String(length=64), nullable=False),
        sa.Column("resource_id", sa.String(length=64), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("last_updated", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("res_key"),
        sa.UniqueConstraint("resource_type", "resource_id", name="uq_resource_type_id"),
    )
    op.create_table(
        "resource_version",
        sa.Column("version_key", BigKey, autoincrement=True, nullable=False),
        sa.Column("res_key", BigKey, nullable=False),
        sa.Column("resource_type", sa.String(length=64), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("last_updated", sa.DateTime(timezone=True), nullable=False),
        sa.Column("method", sa.String(length=8), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=True),
        sa.ForeignKeyConstraint(["res_key"], ["resource.res_key"]),
        sa.PrimaryKeyConstraint("version_key"),
        sa.UniqueConstraint("res_key", "version_id", name="uq_resource_version"),
    )
    op.create_index("ix_resource_version_last_updated", "resource_version", ["last_updated"])
    op.create_index("ix_resource_version_res_key", "resource_version", ["res_key", "version_key"])
    op.create_index(
        "ix_resource_version_type", "resource_version", ["resource_type", "version_key"]
    )


def downgrade() -> None:
    op.drop_table("resource_version")
    op.drop_table("resource")
