"""Every setting is documented: the README's configuration table names each environment
variable Settings reads (issue 8: configuration documented in one table), and names no other."""

from __future__ import annotations

import re
from pathlib import Path

from app.config import Settings

README = Path(__file__).resolve().parents[1] / "README.md"


def _table_variables() -> set[str]:
    text = README.read_text()
    table = text.split("## Configuration", 1)[1].split("\n\n", 2)[1]
    return {name for row in table.splitlines() for name in re.findall(r"`([A-Z][A-Z_]+)`", row)}


def test_the_configuration_table_names_every_setting_and_no_other() -> None:
    variables = {field.alias or name for name, field in Settings.model_fields.items()}
    assert _table_variables() == variables
