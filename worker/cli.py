"""The `voxarena` command: serve, token, migrate."""

from __future__ import annotations

import argparse
import logging
import sys

from api.settings import Settings


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
    return serve(settings)


def cmd_token(args: argparse.Namespace) -> int:
    from api.auth import LocalIssuer

    settings = _settings(args)
    if settings.clerk_issuer or settings.clerk_jwks_url:
        print("voxarena token: Clerk settings are configured; tokens come from Clerk, not the embedded issuer",
              file=sys.stderr)
        return 2
    issuer = LocalIssuer(settings.data_dir)
    print(issuer.issue(args.user, ttl_seconds=args.ttl))
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from api.store.db import connect
    from api.store.migrations import migrate, schema_version

    settings = _settings(args)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = connect(settings.database_path)
    applied = migrate(db)
    print(f"{settings.database_path}: schema version {schema_version(db)}"
          + (f" (applied {', '.join(map(str, applied))})" if applied else " (up to date)"))
    db.conn.close()
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

    mig = sub.add_parser("migrate", help="apply database migrations")
    data_dir(mig)
    mig.set_defaults(func=cmd_migrate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ValueError as e:  # a bad setting: say which, do not dump a traceback
        logging.getLogger("voxarena").error("%s", e)
        print(f"voxarena: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
