"""The schema. One row per resource (its current version), one row per version.

A version's JSON is stored once, in resource_version; a read joins the current row to it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
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
