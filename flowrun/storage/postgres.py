"""`PostgresStore`: the `Store` for several machines, on PostgreSQL (`pip install flowrun[postgres]`).

The same protocol and guarantees as `SQLiteStore`, with the same planner for writes (see
`postgres_writer`): per-run gapless seqs assigned in the transaction, commit before publish,
compare-and-set on the run version, idempotent decision ids. Reads use a few async psycopg
connections. Events committed by other processes are announced with LISTEN/NOTIFY (the payload
is `run_id seq origin`; subscribers read the rows), so a subscription hears them at once; it
still looks in the database after `poll_interval` of quiet, in case a notification was lost
with a dropped connection.

    async with PostgresStore("postgresql://flowrun@db.internal/flowrun") as store: ...

Driver: psycopg 3, chosen by measurement (`scripts/bench_pg_drivers.py`, see the README).
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Mapping, Sequence
from contextlib import AsyncExitStack
from typing import Any

import anyio
import psycopg
from psycopg import sql as pg_sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from ..flows.errors import UsageError
from ..flows.redact import Redactor
from ..flows.run import Run
from .bus import DEFAULT_CAPACITY
from .common import StoreCore, StoreState
from .errors import SchemaTooNew, StorageError
from .factory import is_postgres_url
from .migrate import load_migrations
from .postgres_leases import PostgresLeases
from .postgres_pool import ConnectionPool, close
from .postgres_reads import PostgresNoteReads
from .postgres_writer import EVENTS_CHANNEL, WORK_CHANNEL, PgGroupWriter, channel, pg_placeholders

logger = logging.getLogger("flowrun.storage")

_MIGRATION_LOCK = 7_246_001  # pg_advisory_xact_lock key: one migrating process at a time


def _conninfo_dict(url: str) -> dict[str, Any]:
    try:
        return dict(conninfo_to_dict(url))
    except psycopg.ProgrammingError as exc:
        raise UsageError(f"not a valid PostgreSQL URL ({exc})") from None


def redacted(url: str) -> str:
    """The URL as it may be shown: no password."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql://<unparseable url>"
    host, port, user, db = (str(parts.get(k) or "") for k in ("host", "port", "user", "dbname"))
    return f"postgresql://{user + '@' if user else ''}{host}{':' + port if port else ''}/{db}"


class PostgresStore(PostgresLeases, PostgresNoteReads, StoreCore):
    """The PostgreSQL `Store`. An async context manager, entered once, like `SQLiteStore`.

    Args:
        url: a libpq URL (`postgresql://user@host:5432/db`).
        schema: keep flowrun's tables in this schema (created if missing); default: the
            connection's search_path (usually `public`). Tests use one schema per run.
        poll_interval: how long a subscription waits without any notification before it looks
            in the database anyway.
        readers: async connections for reads (and lease statements).
        redactor: replaces secrets in everything written, as `SQLiteStore`'s does.
    """

    NO_LIMIT = None

    def __init__(
        self,
        url: str,
        *,
        schema: str | None = None,
        poll_interval: float = 2.0,
        readers: int = 3,
        mailbox_capacity: int = DEFAULT_CAPACITY,
        max_batch_rows: int = 20000,
        connect_timeout: float = 10.0,
        redactor: Redactor | None = None,
    ) -> None:
        if not is_postgres_url(url):
            raise UsageError(f"PostgresStore needs a postgresql:// URL, got {redacted(url)!r}")
        if poll_interval <= 0 or readers < 1 or max_batch_rows < 1:
            raise UsageError("PostgresStore: poll_interval must be > 0, readers >= 1, max_batch_rows >= 1")
        if schema is None:  # the URL may name one: ?options=-csearch_path%3Dname
            found = re.search(r"-c\s*search_path=(\w+)", str(_conninfo_dict(url).get("options") or ""))
            schema = found.group(1) if found else None
        if schema is not None and not schema.replace("_", "").isalnum():
            raise UsageError(f"schema must be letters, digits and underscores, got {schema!r}")
        self.url = url
        self.schema = schema
        self._init_core(redacted(url) + (f"#{schema}" if schema else ""),  # the label errors name
                        poll_interval=poll_interval, redactor=redactor, mailbox_capacity=mailbox_capacity)
        self._conninfo = make_conninfo(
            url, connect_timeout=max(1, int(connect_timeout)),
            **({"options": f"-csearch_path={schema}"} if schema else {}),
        )
        self._max_batch_rows = max_batch_rows
        self._origin = secrets.token_hex(6)  # tells this store's notifications from others'
        self._pg_writer: PgGroupWriter | None = None
        self._reads = ConnectionPool(readers, self._connect, self.path)
        self._leasing = ConnectionPool(1, self._connect, self.path)  # see `postgres_pool`
        self._work: anyio.Event | None = None
        self._work_flag = False
        self._events_channel = channel(EVENTS_CHANNEL, schema)
        self._work_channel = channel(WORK_CHANNEL, schema)

    # -- lifecycle ---------------------------------------------------------------------------------

    async def __aenter__(self) -> PostgresStore:
        if self.state is not StoreState.NEW:
            raise UsageError(f"the store at {self.path} is {self.state.value}; a PostgresStore can be entered once")
        stack = AsyncExitStack()
        try:
            await migrate_postgres(self._conninfo, self.path, self.schema)
            for pool in (self._reads, self._leasing):
                stack.push_async_callback(pool.close)
                await pool.open()
            stack.callback(self._bus.close)
            writer = PgGroupWriter(lambda: psycopg.connect(self._conninfo, autocommit=True), self.path, self._bus,
                                   self._step_cache, origin=self._origin, max_batch_rows=self._max_batch_rows,
                                   schema=self.schema)
            await anyio.to_thread.run_sync(writer.open)
            stack.callback(writer.close_connection)
            task_group = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(task_group.cancel_scope.cancel)  # the listener: after the writer ends
            self._writer = self._pg_writer = writer
            stack.callback(writer.close)
            await task_group.start(writer.run)
            await task_group.start(self._listen)
        except BaseException as exc:
            self.state = StoreState.CLOSED
            with anyio.CancelScope(shield=True):
                await stack.aclose()
            if isinstance(exc, psycopg.Error):
                raise StorageError(f"cannot open {self.path}: {exc}", path=self.path) from exc
            raise
        self._stack = stack
        self.state = StoreState.OPEN
        return self

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        conn = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
        # lease and heartbeat statements run here: like the writer's batches without a decision,
        # they need not wait for the disk (see `PgGroupWriter`)
        await conn.execute("SET synchronous_commit = off")
        return conn

    async def _rows(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = (), *, lease: bool = False) -> list[Any]:
        """One statement in psycopg's own placeholders (`%s`, `%(name)s`); with `lease`, on the
        connection kept for lease statements."""
        self._check_open()
        async with (self._leasing if lease else self._reads).connection() as conn:
            cursor = await conn.execute(sql, params)
            return await cursor.fetchall()

    async def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return await self._rows(pg_placeholders(sql), params)

    # -- listening ---------------------------------------------------------------------------------

    async def _listen(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Hand other processes' notifications to the bus (events) and to `wait_for_work`."""
        started = False
        delay = 0.2
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
            except psycopg.Error as exc:
                if not started:
                    raise StorageError(f"cannot listen on {self.path}: {exc}", path=self.path) from exc
                logger.warning("cannot listen on %s (%s); retrying in %.1fs", self.path, exc, delay)
                await anyio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            try:
                await conn.execute(f"LISTEN {self._events_channel}".encode())
                await conn.execute(f"LISTEN {self._work_channel}".encode())
                if not started:
                    started = True
                    task_status.started()
                else:  # notifications may have been lost while disconnected
                    self._bus.nudge()
                    self._wake_work()
                delay = 0.2
                async for note in conn.notifies():
                    if note.channel == self._work_channel:
                        self._wake_work()
                        continue
                    run_id, _, rest = note.payload.partition(" ")
                    if not rest.endswith(self._origin):
                        self._bus.nudge(run_id)
            except psycopg.Error as exc:
                logger.warning("lost the notification connection to %s (%s); reconnecting", self.path, exc)
            finally:
                with anyio.CancelScope(shield=True):
                    await close(conn)

    def _announced(self, run_id: str) -> bool:
        return self._pg_writer is not None and self._pg_writer.announced(run_id)

    def _wake_work(self) -> None:
        self._work_flag = True
        if self._work is not None:
            self._work.set()

    # -- reads in PostgreSQL's own SQL ------------------------------------------------------------

    async def _load_runs(self, where: str, params: Sequence[Any]) -> list[Run]:
        """One statement (so one snapshot, one round trip): each run row with its steps."""
        rows = await self._query(
            "SELECT id, version, last_seq, json, flow, ARRAY(SELECT idx FROM steps WHERE run_id = runs.id ORDER BY idx), "
            f"ARRAY(SELECT json FROM steps WHERE run_id = runs.id ORDER BY idx) FROM runs {where}", params,
        )
        return self._decode_runs([(*row[:5], list(zip(row[5], row[6], strict=True))) for row in rows])

    async def events_json(self, run_id: str, after_seq: int, limit: int) -> list[tuple[int, str]]:
        """`(seq, event as JSON)` without decoding, as `SQLiteStore.events_json` (the websocket's
        replay): the JSON is what `Event.model_dump_json()` gives, built from the stored columns."""
        return await self._events_json(
            run_id, after_seq, limit,
            "SELECT seq, '{\"run_id\":' || to_json(run_id)::text || ',\"seq\":' || seq || "
            "',\"at\":\"' || replace(at, '.000000Z', 'Z') || '\",\"data\":' || data || '}' "
            "FROM events WHERE run_id = ? AND seq > ? ORDER BY seq LIMIT ?",
        )


# -- migrations ----------------------------------------------------------------------------------------


async def schema_version(conninfo: str) -> tuple[int, int]:
    """(the database's schema version, the newest this flowrun knows); 0 for an empty database."""
    latest = len(load_migrations("postgres"))
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        cursor = await conn.execute("SELECT to_regclass('flowrun_schema') IS NOT NULL")
        exists = await cursor.fetchone()
        if not exists or not exists[0]:
            return 0, latest
        cursor = await conn.execute("SELECT coalesce(max(version), 0) FROM flowrun_schema")
        row = await cursor.fetchone()
        return (int(row[0]) if row else 0), latest


async def migrate_postgres(conninfo: str, label: str, schema: str | None) -> int:
    """Bring the database (schema) up to the newest migration in one transaction, one migrating
    process at a time; returns the schema version.

    Raises:
        SchemaTooNew: the database was migrated by a newer flowrun.
    """
    migrations = load_migrations("postgres")
    latest = migrations[-1].version if migrations else 0
    async with await psycopg.AsyncConnection.connect(conninfo) as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        if schema is not None:
            await conn.execute(pg_sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(pg_sql.Identifier(schema)))
        await conn.execute("CREATE TABLE IF NOT EXISTS flowrun_schema (version INTEGER PRIMARY KEY, "
                           "name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
        cursor = await conn.execute("SELECT coalesce(max(version), 0) FROM flowrun_schema")
        row = await cursor.fetchone()
        current = int(row[0]) if row else 0
        if current > latest:
            raise SchemaTooNew(
                f"the database {label} has schema version {current}, newer than this flowrun knows ({latest}); "
                "upgrade flowrun to open it", path=label, schema_version=current, supported=latest,
            )
        for migration in migrations:
            if migration.version <= current:
                continue
            for statement in migration.statements:
                await conn.execute(statement.encode())  # bytes: no placeholders in DDL
            await conn.execute("INSERT INTO flowrun_schema (version, name) VALUES (%s, %s)",
                               (migration.version, migration.name))
            logger.info("applied migration %s to %s", migration.name, label)
            current = migration.version
    return current
