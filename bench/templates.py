"""Resource templates for the CRUD cycle: one real example of each of the 9 types, taken from
the shared fixtures (Synthea bundles, HL7 examples) at bench start, or from the copy shipped in
bench/data/crud-templates.json when ../shared is absent (a clone on its own).

    python bench/templates.py --write   # refresh the shipped copy from ../shared/fixtures

Ids are removed; each reference to one of the 9 types becomes `Type/__REF_Type__` (the wrk
script puts the id of the resource of that type it created in the same iteration there); any
other reference (to a type outside the 9, or to a contained resource that is not a Medication)
is dropped, and `contained` with it (MedicationAdministration's contained Medication becomes a
reference to the Medication of the iteration).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# BENCH_FIXTURES: another fixtures folder (a missing one: the shipped templates are used)
FIXTURES = Path(os.environ.get("BENCH_FIXTURES", ROOT.parent / "shared" / "fixtures"))
SHIPPED = ROOT / "bench" / "data" / "crud-templates.json"

# creation order: each type refers only to types before it (as in the k6 script's order)
CRUD_TYPES = (
    "Patient",
    "Organization",
    "Practitioner",
    "Medication",
    "Encounter",
    "Condition",
    "Observation",
    "MedicationRequest",
    "MedicationAdministration",
)
# the HL7 example whose contained Medication and own shape are used (completed, IV dose)
MEDADMIN_EXAMPLE = "MedicationAdministration-medadmin0304.json"
PLACEHOLDER = "__REF_{}__"


def _rewrite(value: Any, target_of: dict[str, str]) -> Any:
    """`value` with references rewritten to placeholders, or None when it is to be dropped."""
    if isinstance(value, list):
        items = [_rewrite(item, target_of) for item in value]
        kept = [item for item in items if item is not None]
        return kept or None
    if not isinstance(value, dict):
        return value
    reference = value.get("reference")
    if isinstance(reference, str):
        target = target_of.get(reference) or reference.split("/", 1)[0]
        if target not in CRUD_TYPES or ("/" not in reference and reference not in target_of):
            return None
        return {**value, "reference": f"{target}/{PLACEHOLDER.format(target)}"}
    out = {}
    for key, item in value.items():
        rewritten = _rewrite(item, target_of)
        if rewritten is not None:
            out[key] = rewritten
    return out


def _clean(resource: dict[str, Any], target_of: dict[str, str]) -> dict[str, Any]:
    resource = {k: v for k, v in resource.items() if k not in ("id", "contained")}
    cleaned = _rewrite(resource, target_of)
    assert isinstance(cleaned, dict)
    return cleaned


def from_fixtures(fixtures: Path = FIXTURES) -> dict[str, dict[str, Any]]:
    """The first example of each type (Synthea bundles in file order, then the HL7 example)."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted((fixtures / "synthea").glob("*.json")):
        entries = json.loads(path.read_bytes())["entry"]
        target_of = {e["fullUrl"]: e["resource"]["resourceType"] for e in entries}
        for entry in entries:
            resource = entry["resource"]
            kind = resource["resourceType"]
            if kind in CRUD_TYPES and kind not in found:
                found[kind] = _clean(resource, target_of)
        if all(t in found for t in CRUD_TYPES if not t.startswith("Medication")):
            break
    administration = json.loads((fixtures / "hl7-examples" / MEDADMIN_EXAMPLE).read_bytes())
    contained = {f"#{c['id']}": c["resourceType"] for c in administration.get("contained", [])}
    medication = next(c for c in administration["contained"] if c["resourceType"] == "Medication")
    found["Medication"] = _clean(medication, {})
    found["MedicationAdministration"] = _clean(administration, contained)
    missing = [t for t in CRUD_TYPES if t not in found]
    if missing:
        raise RuntimeError(f"no example of {', '.join(missing)} in {fixtures}")
    return {kind: found[kind] for kind in CRUD_TYPES}


def load() -> tuple[dict[str, dict[str, Any]], str]:
    """The templates and where they came from."""
    if (FIXTURES / "synthea").is_dir() and (FIXTURES / "hl7-examples").is_dir():
        return from_fixtures(), str(FIXTURES)
    return json.loads(SHIPPED.read_bytes()), str(SHIPPED.relative_to(ROOT))


# One element changed per update, as the k6 script's changeResource does.
def changed(resource: dict[str, Any], iteration: int = 0) -> dict[str, Any]:
    kind = resource["resourceType"]
    flip = iteration % 2 == 0
    change: dict[str, Any]
    if kind in ("Patient", "Practitioner"):
        change = {"gender": "unknown" if flip else "other"}
    elif kind == "Organization":
        change = {"name": f"{resource.get('name', 'Organization')} (renamed)"}
    elif kind == "Encounter":
        change = {"status": "in-progress" if flip else "planned"}
    elif kind == "MedicationRequest":
        change = {"status": "on-hold" if flip else "draft"}
    elif kind == "Observation":
        change = {"issued": "2024-01-01T00:00:00.000+00:00"}
    elif kind == "Condition":
        change = {"recordedDate": "2024-01-01T00:00:00+00:00"}
    elif kind == "Medication":
        change = {"status": "inactive" if flip else "active"}
    else:  # MedicationAdministration
        change = {"status": "stopped" if flip else "completed"}
    return {**resource, **change}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--write", action="store_true", help=f"write {SHIPPED}")
    args = parser.parse_args()
    templates = from_fixtures()
    text = json.dumps(templates, indent=1, ensure_ascii=False) + "\n"
    if args.write:
        SHIPPED.parent.mkdir(exist_ok=True)
        SHIPPED.write_text(text)
        print(f"wrote {SHIPPED}")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
