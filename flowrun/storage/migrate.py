"""A tiny migration runner: numbered SQL files, applied in order, tracked by `PRAGMA user_version`.

Files live in `flowrun/storage/migrations/` and are named `NNNN_what.sql`, numbered from 1 with no
gaps. Each file runs in its own `BEGIN IMMEDIATE` transaction that also sets `user_version`, so a
crash leaves the database at the last whole migration, and two processes opening one fresh file
at once do not both apply it (the second re-reads the version under the write lock and skips).
"""

from __future__ import annotations

import logging
import re
import sqlite3
from dataclasses import dataclass
from importlib import resources

import aiosqlite
import anyio

from .errors import SchemaTooNew

logger = logging.getLogger("flowrun.storage")

_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


def split_statements(script: str) -> list[str]:
    """Split a SQL script into whole statements (so they can run inside our own transaction;
    `executescript` would commit it first)."""
    statements: list[str] = []
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statement = buffer.strip()
            if statement.rstrip(";").strip():
                statements.append(statement)
            buffer = ""
    if buffer.strip() and _strip_comments(buffer).strip():
        raise ValueError(
            f"incomplete SQL statement at the end of the script: {buffer.strip()[:80]!r}"
        )
    return statements


def _strip_comments(text: str) -> str:
    return "\n".join(line.split("--", 1)[0] for line in text.splitlines())


def load_migrations(dialect: str = "sqlite") -> list[Migration]:
    """Read the packaged migrations of a dialect (`sqlite`, or `postgres` from its subfolder),
    checking they are numbered 1..N without gaps.

    Raises:
        RuntimeError: a file is misnamed or the numbering has a gap (a packaging bug).
    """
    folder = resources.files("flowrun.storage").joinpath("migrations")
    if dialect != "sqlite":
        folder = folder.joinpath(dialect)
    migrations: list[Migration] = []
    for entry in folder.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _NAME.match(entry.name)
        if match is None:
            raise RuntimeError(f"migration file {entry.name!r} is not named NNNN_name.sql")
        statements = tuple(split_statements(entry.read_text(encoding="utf-8")))
        migrations.append(Migration(int(match.group(1)), entry.name, statements))
    migrations.sort(key=lambda m: m.version)
    for expected, migration in enumerate(migrations, start=1):
        if migration.version != expected:
            raise RuntimeError(
                f"migrations are not numbered 1..N: expected {expected:04d}, found {migration.name!r}"
            )
    return migrations


async def user_version(conn: aiosqlite.Connection) -> int:
    rows = list(await conn.execute_fetchall("PRAGMA user_version"))
    return int(rows[0][0])


async def migrate(
    conn: aiosqlite.Connection, label: str, migrations: list[Migration] | None = None
) -> int:
    """Bring the database up to the newest migration; returns the schema version.

    `conn` must be in autocommit mode (`isolation_level=None`).

    Raises:
        SchemaTooNew: the file was migrated by a newer flowrun.
    """
    if migrations is None:
        migrations = await anyio.to_thread.run_sync(load_migrations)
    latest = migrations[-1].version if migrations else 0
    current = await user_version(conn)
    if current > latest:
        raise SchemaTooNew(
            f"the database {label} has schema version {current}, newer than this flowrun knows ({latest}); "
            "upgrade flowrun to open it",
            path=label,
            schema_version=current,
            supported=latest,
        )
    for migration in migrations:
        if migration.version <= current:
            continue
        await conn.execute("BEGIN IMMEDIATE")
        try:
            current = await user_version(conn)  # another process may have migrated meanwhile
            if migration.version > current:
                for statement in migration.statements:
                    await conn.execute(statement)
                await conn.execute(f"PRAGMA user_version = {migration.version:d}")
                current = migration.version
                logger.info("applied migration %s to %s", migration.name, label)
            await conn.execute("COMMIT")
        except BaseException:
            with anyio.CancelScope(shield=True):
                await conn.execute("ROLLBACK")
            raise
    return current
