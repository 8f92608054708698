"""Index values bounded to their columns (app/storage/derived.py): a value that fits is itself;
a longer one is its head, U+001F and a hash, within the column's width and a B-tree entry."""

from __future__ import annotations

import pytest

from app.search.index_values import IndexRows
from app.storage.derived import MAX_BYTES, fit, fits, prefix_fits, table_rows
from app.storage.tables import INDEX_TABLES

WIDTHS = sorted(
    {
        column.type.length
        for table in INDEX_TABLES.values()
        for column in table.columns
        if getattr(column.type, "length", None)
    }
)
VALUES = [
    "",
    "a",
    "a" * 64,
    "a" * 255,
    "a" * 256,
    "é" * 300,
    "😀" * 500,
    "😀" * 501,
    "a" * 1024,
    "a" * 1025,
    "x" * 1_048_576,
]


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("value", VALUES, ids=lambda v: f"{len(v)}x{v[:1]!r}")
def test_a_stored_value_fits_its_column_and_an_index_entry(value: str, width: int) -> None:
    stored = fit(value, width)
    assert len(stored) <= width
    assert len(stored.encode()) <= MAX_BYTES
    assert fits(stored, width)
    if fits(value, width):
        assert stored == value
    else:
        assert "\x1f" in stored
        assert value.startswith(stored.split("\x1f")[0])
        assert fit(value[:-1] + "~", width) != stored  # another value, another form


def test_values_sharing_the_columns_width_stay_apart() -> None:
    long, twin = "a" * 300, "a" * 255 + "b" * 45
    assert fit(long, 255) != fit(twin, 255)
    assert fit(long, 255) == fit("a" * 300, 255)
    assert fit("a" * 255, 255) == "a" * 255


def test_prefix_fits_where_a_bounded_head_holds_the_prefix() -> None:
    assert prefix_fits("a" * 222, 255)
    assert not prefix_fits("a" * 223, 255)
    assert prefix_fits("a" * 991, 1024)
    assert not prefix_fits("😀" * 500, 1024)  # 2,000 bytes: past a head's 1,967
    for prefix in ("a" * 222, "é" * 200):
        assert fit(prefix + "z" * 2000, 255).startswith(prefix)


def test_table_rows_bound_each_varchar_column_and_nothing_else() -> None:
    index = IndexRows()
    index.token.add(("code", "s" * 300, "c" * 300, "t" * 300))
    index.token.add(("code", "http://loinc.org", "72514-3", None))
    index.patient = 7
    rows = sorted(table_rows(1, "Observation", index, "token"), key=repr)
    assert [row[:3] for row in rows] == [(1, "Observation", "code")] * 2
    short = next(row for row in rows if row[4] == "72514-3")
    assert short[3:7] == ("http://loinc.org", "72514-3", None, 7)
    bounded = next(row for row in rows if row is not short)
    assert [len(value) for value in bounded[3:6]] == [255, 255, 255]
    assert bounded[3:6] == (fit("s" * 300, 255), fit("c" * 300, 255), fit("t" * 300, 255))
    assert bounded[6] == 7
