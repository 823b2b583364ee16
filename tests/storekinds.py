"""One contract, two stores: the `store_kind` fixture runs a test on SQLite and on PostgreSQL.

PostgreSQL is found at `FLOWRUN_TEST_DATABASE_URL` (default: this project's machines,
`postgresql://postgres@127.0.0.1:5432/test`). Each test gets its own schema, dropped afterwards,
so parallel runs never collide. Without a server the PostgreSQL variants skip, saying why; with
`CI=true` they fail instead: CI must run them.
"""

from __future__ import annotations

import functools
import hashlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flowrun.storage.postgres import PostgresStore
from flowrun.storage.sqlite import SQLiteStore

AnyStore = SQLiteStore | PostgresStore

PG_URL = os.environ.get("FLOWRUN_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
KINDS = ["sqlite", "postgres"]


@functools.cache
def postgres_missing() -> str | None:
    """Why PostgreSQL tests cannot run here, or None when they can."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install -e '.[postgres]')"
    try:
        with psycopg.connect(PG_URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"no PostgreSQL at {PG_URL} ({str(exc).strip().splitlines()[0]})"
    return None


def require_postgres() -> None:
    reason = postgres_missing()
    if reason is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true: PostgreSQL tests must run, but {reason}")
    pytest.skip(f"PostgreSQL tests skipped: {reason} (set FLOWRUN_TEST_DATABASE_URL)")


class StoreKind:
    """Makes stores of one kind. `store(path)` twice with one path: two stores on one database
    (for PostgreSQL, one schema named after the path). A child process given `name` and `token`
    makes stores on the same databases as the parent's (the parent drops them)."""

    def __init__(self, name: str, token: str | None = None) -> None:
        self.name = name
        self.token = self._token = token or secrets.token_hex(4)
        self.schemas: set[str] = set()

    def __repr__(self) -> str:
        return self.name

    @property
    def postgres(self) -> bool:
        return self.name == "postgres"

    def schema_for(self, path: Path) -> str:
        digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
        schema = f"t_{self._token}_{digest}"
        self.schemas.add(schema)
        return schema

    def url(self, path: Path) -> str:
        """What `FLOWRUN_DATABASE_URL` would say for a child process: a file, or a URL naming
        the test's schema."""
        if not self.postgres:
            return str(path)
        return f"{PG_URL}{'&' if '?' in PG_URL else '?'}options=-csearch_path%3D{self.schema_for(path)}"

    def store(self, path: Path, *, poll_interval: float = 0.02, mailbox_capacity: int = 1024,
              **options: Any) -> AnyStore:
        if self.postgres:
            return PostgresStore(PG_URL, schema=self.schema_for(path), mailbox_capacity=mailbox_capacity,
                                 poll_interval=max(poll_interval, 0.5), **options)
        return SQLiteStore(path, poll_interval=poll_interval, mailbox_capacity=mailbox_capacity, **options)

    async def poke(self, path: Path, *, sqlite: str, postgres: str, params: tuple[object, ...] = ()) -> None:
        """Change the database behind the store's back (as a broken disk or an old bug would),
        in the kind's own SQL dialect (`?` placeholders in both)."""
        import anyio

        def poke() -> None:
            if self.postgres:
                import psycopg

                with psycopg.connect(PG_URL, autocommit=True,
                                     options=f"-csearch_path={self.schema_for(path)}") as conn:
                    conn.execute(postgres.replace("?", "%s").encode(), params)
                return
            import sqlite3

            lite = sqlite3.connect(path, isolation_level=None)
            try:
                lite.execute(sqlite, params)
            finally:
                lite.close()

        await anyio.to_thread.run_sync(poke)

    def drop(self) -> None:
        if not self.schemas:
            return
        import psycopg

        with psycopg.connect(PG_URL, autocommit=True) as conn:
            for schema in self.schemas:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'.encode())
        self.schemas.clear()


@pytest.fixture(params=KINDS)
def store_kind(request: pytest.FixtureRequest) -> Iterator[StoreKind]:
    if request.param == "postgres":
        require_postgres()
    kind = StoreKind(request.param)
    try:
        yield kind
    finally:
        kind.drop()


@pytest.fixture
def postgres_kind() -> Iterator[StoreKind]:
    """PostgreSQL only (tests of what only it has: NOTIFY, several machines' clocks...)."""
    require_postgres()
    kind = StoreKind("postgres")
    try:
        yield kind
    finally:
        kind.drop()
