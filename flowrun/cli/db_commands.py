"""`flowrun db migrate` and `flowrun db check`: the database named by `FLOWRUN_DATABASE_URL`
(PostgreSQL) or `$FLOWRUN_HOME/flowrun.db` (SQLite, the default)."""

from __future__ import annotations

import argparse
import sqlite3
import sys
from pathlib import Path
from typing import Any


def _settings() -> Any:
    from ..config import Settings

    return Settings.from_env()


async def _versions(target: str) -> tuple[int, int, str]:
    """(schema version, newest known, a label to print) of the database at `target`."""
    from ..storage.factory import is_postgres_url
    from ..storage.migrate import load_migrations

    if is_postgres_url(target):
        from ..flows.errors import WorldError
        from ..storage.factory import open_store

        open_store(target)  # a clear error if the driver is missing
        import psycopg

        from ..storage.postgres import redacted, schema_version

        try:
            current, latest = await schema_version(target)
        except psycopg.Error as exc:
            raise WorldError(f"cannot reach {redacted(target)}: {str(exc).strip()}") from None
        return current, latest, redacted(target)
    latest = len(load_migrations())
    return _sqlite_version(target), latest, target


def _sqlite_version(target: str) -> int:
    if not Path(target).exists():
        return 0
    conn = sqlite3.connect(f"file:{target}?mode=ro", uri=True)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


async def migrate(args: argparse.Namespace) -> int:
    """Open the store, which applies every pending migration (one process at a time)."""
    from ..storage.factory import open_store

    settings = _settings()
    if not settings.database_url:
        settings.home.mkdir(parents=True, exist_ok=True)
    before, latest, label = await _versions(settings.database)
    async with open_store(settings.database):
        pass
    after, _, _ = await _versions(settings.database)
    if after == before:
        print(f"{label}: schema is up to date (version {after})")
    else:
        print(f"{label}: migrated from version {before} to {after}")
    return 0


async def check(args: argparse.Namespace) -> int:
    """Exit 0 when the database is reachable and at this flowrun's schema version; 1 otherwise."""
    settings = _settings()
    current, latest, label = await _versions(settings.database)
    if current == latest:
        print(f"{label}: ok, schema version {current}")
        return 0
    if current > latest:
        print(f"{label}: schema version {current} is newer than this flowrun knows ({latest}); upgrade flowrun",
              file=sys.stderr)
    else:
        print(f"{label}: schema version {current}, {latest - current} migration(s) pending: run `flowrun db migrate`",
              file=sys.stderr)
    return 1


def add_db_commands(sub: Any) -> None:
    p = sub.add_parser("db", help="the database: `migrate` it, or `check` it is reachable and current")
    db = p.add_subparsers(title="db commands", metavar="ACTION", required=True)
    db.add_parser("migrate", help="apply pending migrations").set_defaults(handler="db_commands:migrate")
    db.add_parser("check", help="exit 0 if reachable and up to date").set_defaults(handler="db_commands:check")
