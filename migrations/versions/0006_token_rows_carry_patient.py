"""search_token rows carry the resource's patient; the code index leads with (code, patient)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29

`Observation?patient=X&code=...` had driven from the patient's reference rows and probed each of
the patient's observations for the code (~200 index probes for 40 answers at 1M). With the
patient's hash on each token row it is one range of the code index. The column is filled by the
reindex that app.storage.migrate runs when the extraction fingerprint changes (it does here).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("search_token", sa.Column("patient", sa.BigInteger(), nullable=True))
    op.drop_index("ix_search_token_0", table_name="search_token")
    op.create_index(
        "ix_search_token_0",
        "search_token",
        ["resource_type", "param", "code", "patient", "system", "res_key"],
    )


def downgrade() -> None:
    op.drop_index("ix_search_token_0", table_name="search_token")
    op.create_index(
        "ix_search_token_0", "search_token", ["resource_type", "param", "code", "system", "res_key"]
    )
    op.drop_column("search_token", "patient")
