"""The layers' one direction of dependency, checked by walking every module's imports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[1] / "app"

# package -> packages (and third-party roots) it must never import
FORBIDDEN = {
    "app.fhir": (
        "app.api",
        "app.security",
        "app.storage",
        "fastapi",
        "starlette",
        "sqlalchemy",
        "sqlmodel",
        "alembic",
        "uvicorn",
    ),
    "app.storage": ("app.api", "app.security", "fastapi", "starlette"),
    # tokens and keys: no HTTP framework, no storage
    "app.security": ("app.api", "app.storage", "fastapi", "starlette", "sqlalchemy", "sqlmodel"),
    # clinical logic knows FHIR resources as data only: no service, no storage, no HTTP
    "app.clinical": (
        "app.api",
        "app.storage",
        "app.fhir",
        "app.case",
        "fastapi",
        "starlette",
        "sqlalchemy",
        "sqlmodel",
    ),
    "app.case": ("app.api", "app.storage", "fastapi", "starlette", "sqlalchemy", "sqlmodel"),
    "app.api": ("app.storage", "sqlalchemy", "sqlmodel"),
    "app.search": (
        "app.api",
        "app.storage",
        "app.fhir.service",
        "app.fhir.store",
        "fastapi",
        "starlette",
        "sqlalchemy",
        "sqlmodel",
        "alembic",
    ),
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in APP.rglob("*.py"):
        module = ".".join(path.relative_to(APP.parent).with_suffix("").parts)
        out.append((module, path))
    return out


@pytest.mark.parametrize(("module", "path"), _modules(), ids=[m for m, _ in _modules()])
def test_module_respects_layering(module: str, path: Path) -> None:
    for package, forbidden in FORBIDDEN.items():
        if module == package or module.startswith(package + "."):
            bad = {i for i in _imports(path) for f in forbidden if i == f or i.startswith(f + ".")}
            assert not bad, f"{module} imports {sorted(bad)}"


def test_nothing_imports_the_api_except_the_composition_root() -> None:
    for module, path in _modules():
        if module.startswith("app.api") or module in {"app.main"}:
            continue
        assert not any(i.startswith("app.api") for i in _imports(path)), module
