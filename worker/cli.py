"""The `voxarena` command: serve, token, user, migrate, reprice."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from core.settings import PREFIX, Settings

if TYPE_CHECKING:
    from core.secrets import SecretBox

MIN_PASSWORD = 8


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.from_env(
        host=getattr(args, "host", None),
        port=getattr(args, "port", None),
        data_dir=getattr(args, "data_dir", None),
    )


def cmd_serve(args: argparse.Namespace) -> int:
    from .server import serve

    settings = _settings(args)
    if args.no_worker:
        settings = settings.with_(worker_enabled=False)
    # Read once, then gone from the environment: every child (the local livekit-server, the job processes'
    # forkserver, anything a plugin starts) would otherwise inherit the keys. Jobs get the settings object itself.
    for name in [k for k in os.environ if k.startswith(PREFIX)]:
        del os.environ[name]
    return serve(settings)


def cmd_token(args: argparse.Namespace) -> int:
    from api.auth import local_issuer

    settings = _settings(args)
    if settings.clerk_issuer or settings.clerk_jwks_url:
        print(
            "voxarena token: Clerk settings are configured; tokens come from Clerk, not the embedded issuer",
            file=sys.stderr,
        )
        return 2
    issuer = local_issuer(settings)
    print(issuer.issue(args.user, ttl_seconds=args.ttl))
    return 0


def _read_password(stream: TextIO) -> str:
    """The password is the first line of stdin (never an argument: those show in `ps` and shell history)."""
    if stream.isatty():
        import getpass

        first = getpass.getpass("password: ")
        if getpass.getpass("again: ") != first:
            raise ValueError("the passwords differ")
        return first
    return stream.readline().rstrip("\r\n")


def cmd_user_create(args: argparse.Namespace) -> int:
    from api.passwords import hash_password
    from core.secrets import SecretBox
    from core.store import accounts
    from core.store.errors import ConflictError

    settings = _settings(args)
    email = accounts.normalize_email(args.email)
    if "@" not in email or any(c.isspace() for c in email):
        print(f"voxarena user create: not an email address: {args.email!r}", file=sys.stderr)
        return 2
    password = _read_password(sys.stdin)
    if len(password) < MIN_PASSWORD:
        print(
            f"voxarena user create: the password (read from stdin) must have at least {MIN_PASSWORD} characters",
            file=sys.stderr,
        )
        return 2
    db = _open_db(settings, SecretBox.from_settings(settings.secret_key, settings.data_dir))
    try:
        user = accounts.create_user(db, email, hash_password(password), args.admin)
    except ConflictError as e:
        print(f"voxarena user create: {e}", file=sys.stderr)
        return 1
    finally:
        db.conn.close()
    print(f"{user['id']} {user['email']}" + (" (admin)" if user["is_admin"] else ""))
    if settings.clerk_issuer or settings.clerk_jwks_url:
        print(
            "voxarena user create: note: Clerk settings are configured, so local login is off until they are removed",
            file=sys.stderr,
        )
    return 0


def _open_db(settings: Settings, secrets: SecretBox | None = None, *, read_only: bool = False) -> Any:
    """The configured database (PostgreSQL when VOXARENA_DATABASE_URL is set, else the SQLite file), migrated."""
    from core.store import pg
    from core.store.db import connect, prepare
    from core.store.migrations import migrate

    if settings.database_url:
        handle = pg.PgDatabase(settings.database_url)
        pg.migrate(handle)
        if read_only:
            handle.execute("SET default_transaction_read_only = on")
        return handle
    prepare(settings.database_path)
    db = connect(settings.database_path)
    if read_only:
        db.conn.execute("PRAGMA query_only = ON")
    else:
        migrate(db, secrets=secrets)
    return db


def cmd_migrate(args: argparse.Namespace) -> int:
    from core.secrets import SecretBox
    from core.store import pg
    from core.store.db import connect, prepare
    from core.store.migrations import migrate, schema_version

    settings = _settings(args)
    if settings.database_url:
        handle = pg.PgDatabase(settings.database_url)
        try:
            pg.migrate(handle)
            (version,) = handle.execute("SELECT MAX(version) FROM _migrations").fetchone() or (0,)
        finally:
            handle.close()
        print(f"{pg.redact(settings.database_url)}: schema version {version}")
        return 0
    prepare(settings.database_path)
    db = connect(settings.database_path)
    applied = migrate(db, secrets=SecretBox.from_settings(settings.secret_key, settings.data_dir))
    print(
        f"{settings.database_path}: schema version {schema_version(db)}"
        + (f" (applied {', '.join(map(str, applied))})" if applied else " (up to date)")
    )
    db.conn.close()
    return 0


def cmd_reprice(args: argparse.Namespace) -> int:
    import json

    from api.schemas.sessions import DateRange, date_bounds
    from api.services.reprice import reprice
    from pipelines.pricing import PriceBook

    settings = _settings(args)
    book = PriceBook.load(args.pricing)
    start, end = date_bounds(DateRange(start_date=args.start, end_date=args.end))
    db = _open_db(settings, read_only=True)
    report = reprice(db, book, start=start, end=end, owner_id=args.user)
    db.conn.close()
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
        return 0
    data = report.as_dict()
    print(f"re-priced under {data['to_version']} (recorded with {', '.join(data['from_versions']) or '-'})")
    print(f"{'provider/event type':32} {'events':>8} {'recorded USD':>16} {'re-priced USD':>16} {'difference':>14}")
    for name, line in [*data["by_provider"].items(), ("TOTAL", data["total"])]:
        print(
            f"{name:32} {line['events']:>8} {line['original_usd']:>16} {line['repriced_usd']:>16} "
            f"{line['difference_usd']:>14}"
            + (f"  ({line['unpriced_after']} unpriced)" if line["unpriced_after"] else "")
        )
    return 0


def cmd_db_copy(args: argparse.Namespace) -> int:
    from core.store import pg
    from core.store.copy import CopyRefused, copy_sqlite_to_postgres

    settings = _settings(args)
    if not pg.is_url(args.to):
        print("voxarena db copy: --to takes a postgresql:// URL", file=sys.stderr)
        return 2
    source = Path(args.source) if args.source else settings.database_path
    print(f"copying {source} into {pg.redact(args.to)} (one transaction; nothing is kept unless it verifies)")
    try:
        report = copy_sqlite_to_postgres(source, args.to, progress=print)
    except CopyRefused as e:
        print(f"voxarena db copy: {e}", file=sys.stderr)
        return 1
    print("verified:")
    for line in report.lines():
        print(f"  {line}")
    print(f"done: set VOXARENA_DATABASE_URL={pg.redact(args.to)} (with its password) on every node")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voxarena", description="Self-hosted voice-AI agents on LiveKit.")
    sub = parser.add_subparsers(dest="command", required=True)

    def data_dir(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data-dir", help="data directory (env VOXARENA_DATA_DIR, default ./data)")

    serve = sub.add_parser("serve", help="run the control API and the LiveKit worker in one process")
    serve.add_argument("--host", help="bind address (env VOXARENA_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="API port (env VOXARENA_PORT, default 8080)")
    serve.add_argument("--no-worker", action="store_true", help="serve the API only (env VOXARENA_WORKER_ENABLED)")
    data_dir(serve)
    serve.set_defaults(func=cmd_serve)

    token = sub.add_parser("token", help="print a bearer token from the embedded issuer")
    token.add_argument("--user", required=True, help="user id (the token's sub)")
    token.add_argument("--ttl", type=int, default=24 * 3600, help="lifetime in seconds (default 1 day)")
    data_dir(token)
    token.set_defaults(func=cmd_token)

    user = sub.add_parser("user", help="manage local accounts (they log in at POST /api/v1/auth/login)")
    user_sub = user.add_subparsers(dest="user_command", required=True)
    create = user_sub.add_parser("create", help="add a local account; its password is read from stdin")
    create.add_argument("email", help="the account's email (unique, case-insensitive)")
    create.add_argument("--admin", action="store_true", help="make the account an administrator")
    data_dir(create)
    create.set_defaults(func=cmd_user_create)

    rep = sub.add_parser("reprice", help="compare a period's costs under another pricing.yaml (read-only)")
    rep.add_argument("--pricing", required=True, help="the other price book")
    rep.add_argument("--start", help="first day (YYYY-MM-DD) or date-time, inclusive")
    rep.add_argument("--end", help="last day (YYYY-MM-DD, whole day) or date-time, inclusive")
    rep.add_argument("--user", help="only this user's usage")
    rep.add_argument("--json", action="store_true", help="machine-readable output")
    data_dir(rep)
    rep.set_defaults(func=cmd_reprice)

    mig = sub.add_parser("migrate", help="apply database migrations")
    data_dir(mig)
    mig.set_defaults(func=cmd_migrate)

    dbp = sub.add_parser("db", help="database tools")
    db_sub = dbp.add_subparsers(dest="db_command", required=True)
    cp = db_sub.add_parser("copy", help="copy the SQLite database into an empty PostgreSQL one, verified")
    cp.add_argument("--to", required=True, help="the PostgreSQL URL (postgresql://user:password@host:port/db)")
    cp.add_argument("--source", help="the SQLite file (default: voxarena.db in the data dir)")
    data_dir(cp)
    cp.set_defaults(func=cmd_db_copy)
    return parser


def main(argv: list[str] | None = None) -> int:
    from core.store.errors import StorageUnavailable

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except StorageUnavailable as e:  # the data dir or database cannot be written: one line, not a traceback
        print(f"voxarena: {e}", file=sys.stderr)
        return 2
    except ValueError as e:  # a bad setting or price book: say which, do not dump a traceback
        logging.getLogger("voxarena").error("%s", e)
        print(f"voxarena: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
