"""Writes data/required_concepts.json: every required binding on a CodeableConcept or Coding
element of an R4B resource, with the codes it allows, read from the official R4B core package
(hl7.fhir.r4b.core 4.3.0, published on npm: `npm pack hl7.fhir.r4b.core@4.3.0`). fhir.resources'
models do not carry binding strengths, so this is the source; the server reads the file.

    python -m app.fhir.bindings_gen PACKAGE_DIR     # the unpacked package/ directory

A value set whose codes the package does not hold (ISO 3166 countries, a LOINC answer list, a
code system published only by THO) is written with "codes": null and the reason; UCUM units
are checked by the UCUM parser instead of a list.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DATA_PATH = Path(__file__).parent / "data" / "required_concepts.json"
UCUM = "http://unitsofmeasure.org"


def _concepts(concepts: list[dict[str, Any]]) -> Iterator[str]:
    for concept in concepts:
        yield concept["code"]
        yield from _concepts(concept.get("concept", []))


def bindings(package: Path) -> list[dict[str, Any]]:
    value_sets: dict[str, dict[str, Any]] = {}
    code_systems: dict[str, dict[str, Any]] = {}
    for path in package.glob("ValueSet-*.json"):
        data = json.loads(path.read_text())
        value_sets[data["url"]] = data
    for path in package.glob("CodeSystem-*.json"):
        data = json.loads(path.read_text())
        code_systems[data["url"]] = data
    out: list[dict[str, Any]] = []
    for path in sorted(package.glob("StructureDefinition-*.json")):
        definition = json.loads(path.read_text())
        if definition.get("kind") != "resource" or definition.get("derivation") != "specialization":
            continue
        for element in definition["snapshot"]["element"]:
            binding = element.get("binding") or {}
            types = {t["code"] for t in element.get("type", [])}
            if binding.get("strength") != "required" or not types & {"CodeableConcept", "Coding"}:
                continue
            url = binding["valueSet"].split("|")[0]
            entry: dict[str, Any] = {
                "type": definition["type"],
                "path": element["path"],
                "valueSet": url,
                "system": None,
                "codes": None,
            }
            includes = (value_sets.get(url) or {}).get("compose", {}).get("include", [])
            if len(includes) != 1:
                entry["reason"] = "the package does not define this value set's content"
            else:
                system = includes[0]["system"]
                entry["system"] = system
                listed = [c["code"] for c in includes[0].get("concept", [])]
                whole = code_systems.get(system, {}).get("concept")
                if listed:
                    entry["codes"] = listed
                elif system == UCUM:
                    entry["reason"] = "UCUM: checked by the UCUM parser"
                elif whole:
                    entry["codes"] = list(_concepts(whole))
                else:
                    entry["reason"] = f"the package does not hold the codes of {system}"
            out.append(entry)
    return out


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    table = bindings(Path(sys.argv[1]))
    DATA_PATH.write_text(json.dumps(table, indent=1) + "\n")
    print(f"wrote {len(table)} required bindings to {DATA_PATH}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
