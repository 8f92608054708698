"""Writes data/ucum_common.json: the canonical form (factor to root units, canonical unit
string, or null) of every code in FHIR's `ucum-common` value set, read from the official R4B
core package (`npm pack hl7.fhir.r4b.core@4.3.0`).

Building the pint registry behind app.search.ucum costs ~0.5 s in every process (the server,
each bulk-load worker); with the common codes computed once here, a process meets it only for a
code outside them. tests/search/test_ucum.py checks that the table equals what the registry
computes, so a new pint or ucumvert shows up as a failing test, not as a silent difference.

    python -m app.search.ucum_gen PACKAGE_DIR     # the unpacked package/ directory
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from app.search import ucum


def common_codes(package: Path) -> list[str]:
    value_set = json.loads((package / "ValueSet-ucum-common.json").read_text())
    codes = {c["code"] for part in value_set["compose"]["include"] for c in part["concept"]}
    return sorted(codes)


def table(codes: list[str]) -> dict[str, Any]:
    """code -> [factor, unit], or null for a valid code with no canonical form (Cel, [pH])."""
    return {
        code: list(converted) if (converted := ucum.compiled(code)) is not None else None
        for code in codes
        if ucum.parses(code)
    }


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    found = table(common_codes(Path(sys.argv[1])))
    lines = [f"{json.dumps(code)}: {json.dumps(found[code])}" for code in sorted(found)]
    ucum.COMMON_PATH.write_text("{\n" + ",\n".join(lines) + "\n}\n")
    print(f"wrote {len(found)} UCUM codes to {ucum.COMMON_PATH}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
