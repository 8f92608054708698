"""Command line: `python -m app serve | migrate | load | load-case | export | check | backup |
dev-token`.

Every command ends with one of these exit statuses (EXIT_STATUSES, also in `--help`), and says
why on stderr as `python -m app COMMAND: error: ...` when it is not 0."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import TYPE_CHECKING

from app.config import Settings, get_settings

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

OK = 0
FAILED = 1  # it ran, and found or met failures (entries not loaded, inconsistencies, a bad copy)
REFUSED = 2  # it did not start: wrong arguments, missing files, a refused setting or schema
UNAVAILABLE = 3  # the database did not answer within FHIR_DB_WAIT_SECONDS
INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)
EXIT_STATUSES = f"""exit status:
  {OK}    done
  {FAILED}    done, with failures reported (entries not loaded, inconsistencies, a bad copy)
  {REFUSED}    not started: wrong arguments, missing files, a refused setting, an old schema
  {UNAVAILABLE}    the database did not answer within FHIR_DB_WAIT_SECONDS
  {INTERRUPTED}  interrupted"""


class CliError(Exception):
    """Ends a command with `status`, `message` on stderr."""

    def __init__(self, message: str, status: int = REFUSED) -> None:
        super().__init__(message)
        self.status = status


def _connect(settings: Settings, migrate: bool = True) -> Engine:
    """The database's engine once it answers (and, by default, its schema upgraded)."""
    from sqlalchemy.exc import OperationalError

    from app.storage.engine import make_engine, wait_for_database
    from app.storage.migrate import upgrade

    engine = make_engine(settings)
    try:
        wait_for_database(engine, settings.db_wait_seconds)
    except OperationalError as exc:
        engine.dispose()
        # the driver's first line names the host and what failed, never the password
        reason = str(exc.orig or exc).strip().splitlines()[0]
        raise CliError(f"the database did not answer: {reason}", UNAVAILABLE) from None
    if migrate:
        upgrade(engine)
    return engine


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    settings = get_settings()
    from app.log_policy import configure, uvicorn_log_config

    if settings.log_format == "json":  # serve's own lines (the migration's) JSON too
        configure(settings.log_level, settings.log_format)
    if not settings.auth_enabled and args.host not in _LOOPBACK:
        if not settings.insecure_remote_without_auth:
            raise CliError(
                f"refusing to serve {args.host} without authorization: anyone who can reach "
                "it could read and change every record. Configure FHIR_AUTH_JWKS, "
                "FHIR_AUTH_ISSUER and FHIR_AUTH_AUDIENCE, or bind to 127.0.0.1, or set "
                "FHIR_INSECURE_REMOTE_WITHOUT_AUTH=true if something in front of this server "
                "does the authorization."
            )
        logging.getLogger("app").warning(
            "INSECURE: serving %s without authorization (FHIR_INSECURE_REMOTE_WITHOUT_AUTH)",
            args.host,
        )
    if settings.migrate_on_start:
        # Once here, before workers start, so they do not race each other.
        _connect(settings).dispose()
    if args.load_case:
        _load_case(args)
    # uvicorn's access log prints each path with its query string (ids, names): off, always.
    # The app's own request line (app.access: route template, status, duration, client id)
    # replaces it. The configuration is applied in every worker process too.
    uvicorn.run(
        "app.main:app",
        host=args.host,
        port=args.port,
        workers=args.workers or settings.workers,
        log_level=settings.log_level,
        log_config=uvicorn_log_config(settings.log_level, settings.log_format),
        access_log=False,
    )
    return 0


_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _dev_token(args: argparse.Namespace) -> int:
    from app.security.devkeys import DEV_AUDIENCE, mint

    settings = get_settings()
    token = mint(
        settings.auth_dev_key,
        [s for part in args.scope for s in part.split()],
        patient=args.patient,
        subject=args.sub,
        client_id=args.client,
        audience=settings.auth_audience or DEV_AUDIENCE,
        lifetime_seconds=args.minutes * 60,
    )
    print(token)
    return 0


def _load_case(_: argparse.Namespace) -> int:
    from app.case.load import load_case
    from app.fhir.service import ResourceService
    from app.storage.sql_store import SqlStore

    engine = _connect(get_settings())
    patient_id, loaded = load_case(ResourceService(SqlStore(engine)))
    engine.dispose()
    state = "loaded" if loaded else "already loaded"
    print(f"the ketamine case is {state}: Patient/{patient_id}")
    return 0


def _migrate(_: argparse.Namespace) -> int:
    from app.storage.migrate import current_revision

    engine = _connect(get_settings())
    print(f"database at revision {current_revision(engine)}")
    engine.dispose()
    return 0


def _load(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tqdm import tqdm

    from app.fhir.loading import Totals, Unit, load
    from app.fhir.service import ResourceService
    from app.storage.sql_store import SqlStore

    paths = [Path(p) for p in args.paths]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise CliError(f"no such file or directory: {', '.join(missing)}")
    engine = _connect(get_settings())
    size = sum(
        f.stat().st_size
        for p in paths
        for f in ([p] if p.is_file() else p.rglob("*"))
        if f.is_file()
    )
    bar = tqdm(total=size, unit="B", unit_scale=True, file=sys.stderr, disable=args.quiet)

    def progress(unit: Unit, totals: Totals) -> None:
        for failure in unit.failures:
            tqdm.write(f"FAILED {failure.where}: {failure.reason}", file=sys.stderr)
        rate = totals.stored / max(bar.format_dict["elapsed"], 1e-9)
        bar.set_postfix_str(f"{totals.stored:,} resources, {rate:,.0f}/s, {totals.failed} failed")
        bar.update(unit.size)

    began = time.perf_counter()
    totals = load(
        ResourceService(SqlStore(engine)),
        paths,
        workers=args.workers,
        validate=not args.trusted,
        on_unit=progress,
    )
    bar.close()
    engine.dispose()
    seconds = time.perf_counter() - began  # after start-up and migrations
    print(
        f"loaded {totals.stored:,} resources; {totals.failed:,} failed "
        f"({seconds:.1f} s, {totals.stored / max(seconds, 1e-9):,.0f} resources/s)"
    )
    return FAILED if totals.failed else OK


def _export(args: argparse.Namespace) -> int:
    import shutil
    import tempfile
    from pathlib import Path

    from tqdm import tqdm

    from app.fhir.errors import FhirError
    from app.fhir.export import parameters, write_files
    from app.fhir.instants import format_instant, now
    from app.storage.sql_store import SqlStore

    dest = Path(args.dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise CliError(f"{dest} exists and is not an empty directory")
    params = [("_type", t) for t in args.type or ()]
    if args.since:
        params.append(("_since", args.since))
    try:
        types, since = parameters(params)
    except FhirError as exc:
        message = exc.diagnostics.replace("_type", "--type").replace("_since", "--since")
        raise CliError(message) from None
    engine = _connect(get_settings())
    until = now()  # what was committed by now: later writes wait for the next export
    dest.parent.mkdir(parents=True, exist_ok=True)
    # Written beside DEST and renamed once complete: DEST never holds a partial export.
    partial = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    bar = tqdm(unit=" resources", file=sys.stderr, disable=args.quiet)
    try:
        counts = write_files(
            SqlStore(engine),
            partial,
            types,
            since,
            until,
            args.patients,
            lambda written: bar.update(written - bar.n),
        )
        if dest.exists():
            dest.rmdir()
        partial.rename(dest)
    finally:
        bar.close()
        shutil.rmtree(partial, ignore_errors=True)
        engine.dispose()
    total = sum(counts.values())
    print(
        f"exported {total:,} resources of {len(counts)} types to {dest} "
        f"(as of {format_instant(until)})"
    )
    return OK


def _check(args: argparse.Namespace) -> int:
    logging.getLogger("alembic").setLevel(logging.WARNING)  # its INFO lines are noise here
    from pathlib import Path

    from alembic.script import ScriptDirectory

    from app.storage.backup import BackupError, sqlite_path
    from app.storage.consistency import Issue, check
    from app.storage.migrate import alembic_config, current_revision

    settings = get_settings()
    try:
        database = sqlite_path(settings.database_url)
    except BackupError:
        database = None  # in memory: nothing to check but it answers
    if database is not None and not database.startswith("file:") and not Path(database).is_file():
        raise CliError(f"no database at {database}")  # (connecting would create one)
    engine = _connect(settings, migrate=False)  # read only
    try:
        head = ScriptDirectory.from_config(alembic_config()).get_current_head()
        revision = current_revision(engine)
        if revision != head:
            raise CliError(
                f"the database is at schema revision {revision}, this code's is {head}: "
                "`python -m app migrate` first"
            )

        def report(issue: Issue) -> None:
            print(issue, flush=True)

        totals = check(engine, report, batch_size=args.batch)
    finally:
        engine.dispose()
    print(totals.summary())
    return FAILED if totals.issues else OK


def _backup(args: argparse.Namespace) -> int:
    from pathlib import Path

    from app.storage.backup import (
        BackupError,
        BackupRefused,
        backup_sqlite,
        postgres_commands,
        sqlite_path,
    )

    settings = get_settings()
    try:
        source = sqlite_path(settings.database_url)
        if source is None:
            dump, restore = postgres_commands(settings.database_url)
            raise CliError(
                "backup copies SQLite databases; this server uses PostgreSQL, whose own tools "
                "make a consistent online dump:\n"
                f"  {dump}\n"
                "and restore it (into an empty database, or replacing this one's objects) with:\n"
                f"  {restore}\n"
                "(pg_dump's major version must be at least the server's.)"
            )
        result = backup_sqlite(
            source, Path(args.dest), busy_timeout_s=settings.sqlite_busy_timeout_ms / 1000
        )
    except BackupRefused as exc:
        raise CliError(str(exc)) from None
    except BackupError as exc:
        raise CliError(f"backup failed: {exc}", FAILED) from None
    print(result.summary())
    return 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m app",
        description="Ketamine infusion FHIR R4B server",
        epilog=EXIT_STATUSES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--workers", type=_positive, default=None, help="worker processes (default: FHIR_WORKERS)"
    )
    serve.add_argument(
        "--load-case", action="store_true", help="load the shipped case first if it is not there"
    )
    serve.set_defaults(func=_serve)
    migrate = commands.add_parser("migrate", help="upgrade the database schema to the newest")
    migrate.set_defaults(func=_migrate)
    case = commands.add_parser("load-case", help="load the shipped ketamine case (once)")
    case.set_defaults(func=_load_case)
    loader = commands.add_parser(
        "load",
        help="load Bundles (transaction, batch, collection), resources and NDJSON files",
    )
    loader.add_argument("paths", nargs="+", metavar="FILE_OR_DIR")
    loader.add_argument("--workers", type=int, default=None, help="preparing processes")
    loader.add_argument("--quiet", action="store_true", help="no progress bar")
    loader.add_argument(
        "--trusted",
        action="store_true",
        help="skip validation (for this server's own $export): only types and ids are checked",
    )
    loader.set_defaults(func=_load)
    exporter = commands.add_parser(
        "export",
        help="write the current resources to DIR as one NDJSON file per type (the $export "
        "layout; `load DIR --trusted` reads it back)",
    )
    exporter.add_argument("dest", metavar="DIR", help="a new or empty directory")
    exporter.add_argument(
        "--type", action="append", help="only these types (comma-separated, repeatable)"
    )
    exporter.add_argument("--since", help="only resources changed after this instant or date")
    exporter.add_argument(
        "--patients",
        action="store_true",
        help="the patient compartments only: Patients and the resources that refer to one",
    )
    exporter.add_argument("--quiet", action="store_true", help="no progress bar")
    exporter.set_defaults(func=_export)
    dev = commands.add_parser(
        "dev-token",
        help="mint an access token with the local development key (trusted only by a server "
        "started with FHIR_AUTH_DEV=true)",
    )
    dev.add_argument(
        "--scope",
        action="append",
        required=True,
        help="SMART scopes, e.g. 'user/*.cruds' or 'system/Observation.rs' (repeatable)",
    )
    dev.add_argument("--patient", help="the patient in context (the token's patient claim)")
    dev.add_argument("--sub", default="dev-user", help="the token's subject")
    dev.add_argument("--client", default="dev-client", help="the token's client_id")
    dev.add_argument("--minutes", type=int, default=60, help="lifetime")
    dev.set_defaults(func=_dev_token)
    checker = commands.add_parser(
        "check",
        help="check the database: versions, current rows and search index rows (read only; "
        "exit status 1 when anything is inconsistent)",
    )
    checker.add_argument(
        "--batch", type=_positive, default=500, help="resources read per snapshot (memory bound)"
    )
    checker.set_defaults(func=_check)
    backup = commands.add_parser(
        "backup",
        help="copy the SQLite database to DEST while the server may run, and check the copy "
        "(PostgreSQL: use pg_dump)",
    )
    backup.add_argument("dest", metavar="DEST", help="a new file, or a directory to put it in")
    backup.set_defaults(func=_backup)
    return parser


def main(argv: list[str] | None = None) -> int:
    from pydantic import ValidationError

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)  # a line per plugin
    parser = build_parser()
    args = parser.parse_args(argv)  # wrong arguments: argparse's message, status 2 (REFUSED)
    command = f"{parser.prog} {args.command}"
    try:
        status: int = args.func(args)
    except CliError as exc:
        print(f"{command}: error: {exc}", file=sys.stderr)
        return exc.status
    except ValidationError as exc:  # a setting in the environment is wrong
        wrong = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_url=False)
        )
        print(f"{command}: error: configuration: {wrong}", file=sys.stderr)
        return REFUSED
    except KeyboardInterrupt:
        print(f"{command}: interrupted", file=sys.stderr)
        return INTERRUPTED
    return status


if __name__ == "__main__":
    sys.exit(main())
