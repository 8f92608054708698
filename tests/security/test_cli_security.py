"""Safe defaults of `python -m app serve`, and `python -m app dev-token` against a server in
development mode."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app import cli
from app.config import Settings, get_settings
from app.main import create_app
from tests.asgi_client import asgi_client
from tests.helpers import assert_outcome


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    for name in ("FHIR_AUTH_JWKS", "FHIR_AUTH_DEV", "FHIR_INSECURE_REMOTE_WITHOUT_AUTH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'cli.sqlite3'}")
    monkeypatch.setenv("FHIR_AUTH_DEV_KEY", str(tmp_path / "dev.pem"))
    get_settings.cache_clear()
    served: list[dict[str, Any]] = []
    monkeypatch.setattr("uvicorn.run", lambda *a, **k: served.append(k))
    monkeypatch.setattr(cli, "_served", served, raising=False)
    yield tmp_path
    get_settings.cache_clear()


def test_without_authorization_serve_binds_loopback_only(
    environment: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["serve", "--host", "0.0.0.0"]) == 2
    assert "refusing to serve 0.0.0.0 without authorization" in capsys.readouterr().err
    assert cli._served == []  # type: ignore[attr-defined]
    assert cli.main(["serve"]) == 0  # the default host is 127.0.0.1
    assert cli._served[-1]["host"] == "127.0.0.1"  # type: ignore[attr-defined]
    monkeypatch.setenv("FHIR_INSECURE_REMOTE_WITHOUT_AUTH", "true")
    get_settings.cache_clear()
    assert cli.main(["serve", "--host", "0.0.0.0"]) == 0
    monkeypatch.delenv("FHIR_INSECURE_REMOTE_WITHOUT_AUTH")
    monkeypatch.setenv("FHIR_AUTH_DEV", "true")
    get_settings.cache_clear()
    assert cli.main(["serve", "--host", "0.0.0.0"]) == 0  # tokens are required: any address


def test_dev_tokens_open_a_development_server(
    environment: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        cli.main(["dev-token", "--scope", "user/Patient.rs", "--scope", "user/Observation.rs"]) == 0
    )
    minted = capsys.readouterr().out.strip()
    settings = Settings(
        DATABASE_URL=f"sqlite:///{environment / 'dev.sqlite3'}",
        FHIR_AUTH_DEV=True,
        FHIR_AUTH_DEV_KEY=environment / "dev.pem",
    )
    with asgi_client(create_app(settings)) as client:
        headers = {"Authorization": f"Bearer {minted}"}
        assert client.get("/fhir/Patient", headers=headers).status_code == 200
        assert_outcome(client.get("/fhir/Condition", headers=headers), 403, "forbidden")
        assert_outcome(client.get("/fhir/Patient"), 401, "login")
    production = Settings(
        DATABASE_URL=f"sqlite:///{environment / 'prod.sqlite3'}",
        FHIR_AUTH_JWKS=str(environment / "jwks.json"),
        FHIR_AUTH_ISSUER="https://auth.example.org",
        FHIR_AUTH_AUDIENCE="https://fhir.example.org/fhir",
    )
    (environment / "jwks.json").write_text('{"keys": []}')
    with pytest.raises(Exception, match="no signature keys"), asgi_client(create_app(production)):
        pass


def test_serve_never_runs_uvicorns_access_log(environment: Path) -> None:
    """uvicorn's access line prints each path with its query string (ids, names): `serve`
    turns it off and hands uvicorn the log configuration of app/log_policy.py (the
    app.access line replaces it; tracebacks without messages), whatever the arguments."""
    assert cli.main(["serve", "--workers", "2"]) == 0
    served = cli._served[-1]  # type: ignore[attr-defined]
    assert served["access_log"] is False
    config = served["log_config"]
    assert config["loggers"]["uvicorn.access"]["handlers"] == []
    assert config["loggers"]["app"]["level"] == get_settings().log_level.upper()
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["serve", "--access-log"])
