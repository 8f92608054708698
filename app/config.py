"""Settings, read from the environment once (``get_settings``) or built explicitly in tests."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SQLITE_URL = f"sqlite:///{Path('data') / 'fhir.sqlite3'}"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", populate_by_name=True)

    database_url: str = Field(DEFAULT_SQLITE_URL, alias="DATABASE_URL")
    # The absolute base the server names itself by in Location headers and Bundle links. Empty:
    # taken from each request (scheme, host and root path), which is right behind most proxies.
    base_url: str = Field("", alias="FHIR_BASE_URL")
    max_body_bytes: int = Field(10 * 1024 * 1024, alias="FHIR_MAX_BODY_BYTES", gt=0)
    default_page_size: int = Field(50, alias="FHIR_DEFAULT_COUNT", gt=0)
    max_page_size: int = Field(1000, alias="FHIR_MAX_COUNT", gt=0)
    # Bulk export files; every server process must see the same directory.
    export_dir: Path = Field(Path("data") / "exports", alias="FHIR_EXPORT_DIR")
    max_bundle_entries: int = Field(10_000, alias="FHIR_MAX_BUNDLE_ENTRIES", gt=0)
    # Deepest nesting of objects and arrays in a JSON body (elements in an XML body), checked
    # before parsing. Capped: much deeper trees exhaust Python's recursion in validation.
    max_json_depth: int = Field(64, alias="FHIR_MAX_JSON_DEPTH", gt=0, le=100)
    # Longest query string (bytes, as sent); longer is 414. POST _search takes longer ones.
    max_query_bytes: int = Field(8192, alias="FHIR_MAX_QUERY_BYTES", gt=0)
    # Time budget of a search, history or $everything read (SQLite: the whole read; PostgreSQL:
    # each of its statements); past it the request is refused (400 too-costly) instead of
    # holding a worker. 0: no budget.
    search_timeout_ms: int = Field(10_000, alias="FHIR_SEARCH_TIMEOUT_MS", ge=0)
    # Conditional delete of several matches (up to 100) when true; otherwise >1 match is 412.
    conditional_delete_multiple: bool = Field(False, alias="FHIR_CONDITIONAL_DELETE_MULTIPLE")
    # Run migrations to head when the app starts (the CLI's serve does; tests may turn it off).
    migrate_on_start: bool = Field(True, alias="FHIR_MIGRATE_ON_START")
    # Where blocking database calls run. "inline": on the event loop (fastest for SQLite, whose
    # calls take microseconds and which has one writer anyway); "thread": in the thread pool, so
    # a PostgreSQL round trip does not stall other requests. "auto": inline on SQLite; on
    # PostgreSQL reads by id inline unless the process is confined to one CPU, the rest in
    # threads (app/api/context.py).
    db_calls: str = Field("auto", alias="FHIR_DB_CALLS", pattern="^(auto|inline|thread)$")
    # How long start-up waits for the database to answer before giving up.
    db_wait_seconds: float = Field(30.0, alias="FHIR_DB_WAIT_SECONDS", ge=0)
    db_pool_size: int = Field(10, alias="FHIR_DB_POOL_SIZE", gt=0)
    # uvicorn worker processes of `serve` (its --workers overrides): the container's knob.
    workers: int = Field(1, alias="FHIR_WORKERS", gt=0)
    sqlite_busy_timeout_ms: int = Field(10_000, alias="FHIR_SQLITE_BUSY_TIMEOUT_MS", ge=0)
    log_level: str = Field("info", alias="FHIR_LOG_LEVEL")
    # `text` (a line for people at a terminal, the default) or `json` (one object a line, for
    # log collectors: what a container should set); applied by `serve` (app/log_policy.py).
    log_format: str = Field("text", alias="FHIR_LOG_FORMAT", pattern="^(text|json)$")
    # OpenTelemetry tracing, off by default (it sends route templates and timings off the
    # host, and costs per request); on, a span per request over OTLP/HTTP configured by the
    # standard OTEL_* variables (app/api/tracing.py; needs the `otel` extra).
    otel: bool = Field(False, alias="FHIR_OTEL")
    # /metrics: the resource counts by type are one grouped COUNT over the resource table,
    # run at most this often (between counts, this process's own writes are added to them).
    metrics_count_seconds: float = Field(60.0, alias="FHIR_METRICS_COUNT_SECONDS", ge=0)

    # Authorization: the server is a SMART on FHIR resource server when FHIR_AUTH_JWKS (an
    # https URL or a file of the authorization server's JWKS) is set, with the issuer and
    # audience tokens must carry; or, for local use, when FHIR_AUTH_DEV trusts the development
    # key of `python -m app dev-token`. With neither, everyone is answered and `serve` binds to
    # loopback only unless FHIR_INSECURE_REMOTE_WITHOUT_AUTH says otherwise.
    auth_jwks: str = Field("", alias="FHIR_AUTH_JWKS")
    auth_issuer: str = Field("", alias="FHIR_AUTH_ISSUER")
    auth_audience: str = Field("", alias="FHIR_AUTH_AUDIENCE")
    auth_dev: bool = Field(False, alias="FHIR_AUTH_DEV")
    auth_dev_key: Path = Field(Path("data") / "dev-signing-key.pem", alias="FHIR_AUTH_DEV_KEY")
    # Advertised in /.well-known/smart-configuration and the CapabilityStatement.
    auth_authorize_url: str = Field("", alias="FHIR_AUTH_AUTHORIZE_URL")
    auth_token_url: str = Field("", alias="FHIR_AUTH_TOKEN_URL")
    insecure_remote_without_auth: bool = Field(False, alias="FHIR_INSECURE_REMOTE_WITHOUT_AUTH")
    # An AuditEvent per request under /fhir: "auto" records when authorization is configured.
    audit: str = Field("auto", alias="FHIR_AUDIT", pattern="^(auto|on|off)$")

    @property
    def audit_enabled(self) -> bool:
        return self.audit == "on" or (self.audit == "auto" and self.auth_enabled)

    @property
    def auth_enabled(self) -> bool:
        return bool(self.auth_jwks) or self.auth_dev


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
