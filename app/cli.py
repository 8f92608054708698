"""Command line: `python -m app serve | migrate | load | load-case | dev-token | check |
backup`."""

from __future__ import annotations

import argparse
import logging
import sys
import time

from app.config import get_settings


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    settings = get_settings()
    if not settings.auth_enabled and args.host not in _LOOPBACK:
        if not settings.insecure_remote_without_auth:
            print(
                f"refusing to serve {args.host} without authorization: anyone who can reach "
                "it could read and change every record. Configure FHIR_AUTH_JWKS, "
                "FHIR_AUTH_ISSUER and FHIR_AUTH_AUDIENCE, or bind to 127.0.0.1, or set "
                "FHIR_INSECURE_REMOTE_WITHOUT_AUTH=true if something in front of this server "
                "does the authorization.",
                file=sys.stderr,
            )
            return 2
        logging.getLogger("app").warning(
            "INSECURE: serving %s without authorization (FHIR_INSECURE_REMOTE_WITHOUT_AUTH)",
            args.host,
        )
    if settings.migrate_on_start:
        # Once here, before workers start, so they do not race each other.
        from app.storage.engine import make_engine, wait_for_database
        from app.storage.migrate import upgrade

        engine = make_engine(settings)
        wait_for_database(engine, settings.db_wait_seconds)
        upgrade(engine)
        engine.dispose()
    if args.load_case:
        _load_case(args)
    from app.log_policy import uvicorn_log_config

    # uvicorn's access log prints each path with its query string (ids, names): off, always.
    # The app's own request line (app.access: route template, status, duration, client id)
    # replaces it. The configuration is applied in every worker process too.
    uvicorn.run(
        "app.main:app",
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=settings.log_level,
        log_config=uvicorn_log_config(settings.log_level),
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
    from app.storage.engine import make_engine, wait_for_database
    from app.storage.migrate import upgrade
    from app.storage.sql_store import SqlStore

    settings = get_settings()
    engine = make_engine(settings)
    wait_for_database(engine, settings.db_wait_seconds)
    upgrade(engine)
    patient_id, loaded = load_case(ResourceService(SqlStore(engine)))
    engine.dispose()
    state = "loaded" if loaded else "already loaded"
    print(f"the ketamine case is {state}: Patient/{patient_id}")
    return 0


def _migrate(_: argparse.Namespace) -> int:
    from app.storage.engine import make_engine
    from app.storage.migrate import current_revision, upgrade

    engine = make_engine(get_settings())
    upgrade(engine)
    print(f"database at revision {current_revision(engine)}")
    engine.dispose()
    return 0


def _load(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tqdm import tqdm

    from app.fhir.loading import Totals, Unit, load
    from app.fhir.service import ResourceService
    from app.storage.engine import make_engine, wait_for_database
    from app.storage.migrate import upgrade
    from app.storage.sql_store import SqlStore

    paths = [Path(p) for p in args.paths]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        print(f"no such file or directory: {', '.join(missing)}", file=sys.stderr)
        return 2
    settings = get_settings()
    engine = make_engine(settings)
    wait_for_database(engine, settings.db_wait_seconds)
    upgrade(engine)
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
    return 1 if totals.failed else 0


def _check(args: argparse.Namespace) -> int:
    logging.getLogger("alembic").setLevel(logging.WARNING)  # its INFO lines are noise here
    from pathlib import Path

    from alembic.script import ScriptDirectory

    from app.storage.backup import BackupError, sqlite_path
    from app.storage.consistency import Issue, check
    from app.storage.engine import make_engine, wait_for_database
    from app.storage.migrate import alembic_config, current_revision

    settings = get_settings()
    try:
        database = sqlite_path(settings.database_url)
    except BackupError:
        database = None  # in memory: nothing to check but it answers
    if database is not None and not database.startswith("file:") and not Path(database).is_file():
        print(f"no database at {database}", file=sys.stderr)  # (connecting would create one)
        return 2
    engine = make_engine(settings)
    try:
        wait_for_database(engine, settings.db_wait_seconds)
        head = ScriptDirectory.from_config(alembic_config()).get_current_head()
        revision = current_revision(engine)
        if revision != head:
            print(
                f"the database is at schema revision {revision}, this code's is {head}: "
                "`python -m app migrate` first",
                file=sys.stderr,
            )
            return 2

        def report(issue: Issue) -> None:
            print(issue, flush=True)

        totals = check(engine, report, batch_size=args.batch)
    finally:
        engine.dispose()
    print(totals.summary())
    return 1 if totals.issues else 0


def _backup(args: argparse.Namespace) -> int:
    from pathlib import Path

    from app.storage.backup import BackupError, backup_sqlite, postgres_commands, sqlite_path

    settings = get_settings()
    try:
        source = sqlite_path(settings.database_url)
        if source is None:
            dump, restore = postgres_commands(settings.database_url)
            print(
                "backup copies SQLite databases; this server uses PostgreSQL, whose own tools "
                "make a consistent online dump:\n"
                f"  {dump}\n"
                "and restore it (into an empty database, or replacing this one's objects) with:\n"
                f"  {restore}\n"
                "(pg_dump's major version must be at least the server's.)",
                file=sys.stderr,
            )
            return 2
        result = backup_sqlite(
            source, Path(args.dest), busy_timeout_s=settings.sqlite_busy_timeout_ms / 1000
        )
    except BackupError as exc:
        print(f"backup failed: {exc}", file=sys.stderr)
        return 1
    print(result.summary())
    return 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m app", description="Ketamine infusion FHIR R4B server"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
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
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
