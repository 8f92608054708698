"""Writes data/patient_compartment.json from the R4B package's CompartmentDefinition-patient:
for each resource type in the Patient compartment, the search parameters that put a resource
there (a reference to the Patient through any of them).

    npm pack hl7.fhir.r4b.core@4.3.0 && tar xzf hl7.fhir.r4b.core-4.3.0.tgz
    python -m app.fhir.compartment_gen package/CompartmentDefinition-patient.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

TARGET = Path(__file__).parent / "data" / "patient_compartment.json"


def compartment(definition: dict[str, Any]) -> dict[str, list[str]]:
    return {
        entry["code"]: list(entry["param"])
        for entry in definition["resource"]
        if entry.get("param")
    }


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    definition = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    data = {
        "source": definition["url"],
        "version": definition.get("version"),
        "resources": compartment(definition),
    }
    TARGET.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {TARGET} ({len(data['resources'])} resource types)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
