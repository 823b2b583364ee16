"""`SQLiteStore`: the default `Store`, on one SQLite file in WAL mode.

One writer connection, owned by one writer task (see `writer.py`: group commit, `BEGIN
IMMEDIATE`, seqs assigned inside the transaction), and a small pool of read-only connections.
Several processes may open the same file: the write lock serialises their transactions and
subscriptions poll for events the other processes wrote. What it shares with `PostgresStore`
(every write, most reads) is in `common.py`.

    async with SQLiteStore("flowrun.db") as store:
        run, events = await store.create_run(run, [RunCreated(...)])
        async with store.subscribe(run.id) as stream:
            async for event in stream: ...
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import urllib.parse
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import aiosqlite
import anyio

from ..flows.errors import UsageError
from ..flows.redact import Redactor
from ..flows.run import Run
from .bus import DEFAULT_CAPACITY
from .common import StoreCore, StoreState
from .full import StoreFull
from .migrate import migrate
from .private import private_database
from .sqlite_conn import ReaderPool, connect, open_writer_connection, translate
from .sqlite_leases import SQLiteLeases
from .sqlite_reads import SQLiteNoteReads
from .writer import GroupWriter

logger = logging.getLogger("flowrun.storage")

_CHUNK = 500


class SQLiteStore(SQLiteLeases, SQLiteNoteReads, StoreCore):
    """The SQLite `Store`. An async context manager: entering opens and migrates the file and
    starts the writer task; leaving finishes queued writes, ends subscriptions and closes.

    Args:
        path: the database file (created if missing). `:memory:` is refused: the writer and
            the readers are separate connections and must share a file.
        poll_interval: how long a subscription waits for a live event before it looks in the
            database for events another process wrote.
        readers: read-only connections in the pool.
        mailbox_capacity: live events a subscriber may have pending before it falls back to
            reading the database.
        busy_timeout: seconds a transaction waits for another process's write lock.
        redactor: replaces secrets in everything written (runs, events, transcript, records)
            before it is encoded; runs returned by writes are the redacted ones. Without it, the
            common key formats are still redacted.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        poll_interval: float = 0.2,
        readers: int = 2,
        mailbox_capacity: int = DEFAULT_CAPACITY,
        busy_timeout: float = 30.0,
        max_batch_rows: int = 20000,
        redactor: Redactor | None = None,
    ) -> None:
        label = os.fspath(path)
        if not label or label == ":memory:" or label.startswith("file:"):
            raise UsageError(f"SQLiteStore needs a file path, got {label!r}")
        if poll_interval <= 0 or readers < 1 or busy_timeout < 0 or max_batch_rows < 1:
            raise UsageError(
                "SQLiteStore: poll_interval must be > 0, readers >= 1, busy_timeout >= 0, max_batch_rows >= 1"
            )
        self._init_core(label, poll_interval=poll_interval, redactor=redactor, mailbox_capacity=mailbox_capacity)
        self._reader_count = readers
        self._busy_ms = int(busy_timeout * 1000)
        self._max_batch_rows = max_batch_rows
        self._readers: ReaderPool | None = None
        self._read_only: StoreFull | None = None  # the disk was full when it opened: reads only

    # -- lifecycle ---------------------------------------------------------------------------------

    async def __aenter__(self) -> SQLiteStore:
        if self.state is not StoreState.NEW:
            raise UsageError(
                f"the store at {self.path} is {self.state.value}; a SQLiteStore can be entered once"
            )
        stack = AsyncExitStack()
        try:
            await anyio.to_thread.run_sync(private_database, self.path)
            conn = await stack.enter_async_context(connect(self.path, self._busy_ms, writer=True))
            await migrate(conn, self.path)
            readers = [
                await stack.enter_async_context(connect(self.path, self._busy_ms, writer=False))
                for _ in range(self._reader_count)
            ]
            self._readers = pool = ReaderPool(readers, self.path)
            stack.push_async_callback(pool.close)
            stack.callback(self._bus.close)
            raw = await anyio.to_thread.run_sync(open_writer_connection, self.path, self._busy_ms)
            stack.callback(raw.close)  # registered before the task group: closed after the writer ends
            task_group = await stack.enter_async_context(anyio.create_task_group())
            self._writer = writer = GroupWriter(
                raw, self.path, self._bus, self._step_cache, max_batch_rows=self._max_batch_rows
            )
            stack.callback(writer.close)
            await task_group.start(writer.run)
        except BaseException as exc:
            with anyio.CancelScope(shield=True):
                await stack.aclose()
            error = translate(exc, self.path, "open") if isinstance(exc, sqlite3.Error) else exc
            if not isinstance(error, StoreFull):
                self.state = StoreState.CLOSED
                if error is exc:
                    raise
                raise error from exc
            stack = await self._open_read_only(error)
        self._stack = stack
        self.state = StoreState.OPEN
        logger.debug("opened %s", self.path)
        return self

    async def _open_read_only(self, full: StoreFull) -> AsyncExitStack:
        """The disk is full (SQLite cannot even make its WAL index): open for reading only, so
        `flowrun runs` and `show` keep working. The file is read as it is on disk (`immutable`:
        no locks, no WAL index); every write is refused with the "disk full" error."""
        logger.warning("%s; reading only", full.message)
        stack = AsyncExitStack()
        uri = f"file:{urllib.parse.quote(self.path)}?mode=ro&immutable=1"
        try:
            readers = []
            for _ in range(self._reader_count):
                conn = await stack.enter_async_context(connect(uri, self._busy_ms, writer=False, uri=True))
                readers.append(conn)
            self._readers = pool = ReaderPool(readers, self.path)
            stack.push_async_callback(pool.close)
            stack.callback(self._bus.close)
        except BaseException:
            self.state = StoreState.CLOSED
            with anyio.CancelScope(shield=True):
                await stack.aclose()
            raise full from None
        self._read_only = full
        return stack

    def _open_writer(self) -> GroupWriter:
        self._check_open()
        if self._read_only is not None:
            raise StoreFull(self._read_only.message, path=self.path)
        assert self._writer is not None
        return self._writer

    @asynccontextmanager
    async def _reading(self, snapshot: bool = False) -> AsyncIterator[aiosqlite.Connection]:
        """A pooled read-only connection; with `snapshot`, all its reads see one committed state."""
        self._check_open()
        assert self._readers is not None
        async with self._readers.connection() as conn:
            try:
                if not snapshot:
                    yield conn
                    return
                try:
                    await conn.execute("BEGIN")
                    yield conn
                finally:
                    # shielded, so a cancelled read never hands on a connection mid-transaction;
                    # if BEGIN itself did not run there is nothing to roll back
                    with anyio.CancelScope(shield=True), contextlib.suppress(sqlite3.OperationalError):
                        await conn.execute("ROLLBACK")
            except sqlite3.Error as exc:
                raise translate(exc, self.path, "read") from exc

    async def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        async with self._reading() as conn:
            return list(await conn.execute_fetchall(sql, params))

    # -- reads in SQLite's own SQL -----------------------------------------------------------------

    async def _load_runs(self, where: str, params: Sequence[Any]) -> list[Run]:
        """The run rows and their steps, read in one snapshot."""
        async with self._reading(snapshot=True) as conn:
            rows = list(await conn.execute_fetchall(f"SELECT id, version, last_seq, json, flow FROM runs {where}", params))
            steps: dict[str, list[tuple[int, str]]] = {row[0]: [] for row in rows}
            ids = list(steps)
            for start in range(0, len(ids), _CHUNK):
                chunk = ids[start : start + _CHUNK]
                for run_id, index, json in await conn.execute_fetchall(
                    f"SELECT run_id, idx, json FROM steps WHERE run_id IN ({','.join('?' * len(chunk))}) "
                    "ORDER BY run_id, idx", chunk,
                ):
                    steps[run_id].append((index, json))
        return self._decode_runs([(*row, steps[row[0]]) for row in rows])

    async def events_json(self, run_id: str, after_seq: int, limit: int) -> list[tuple[int, str]]:
        """`(seq, event as JSON)` for stored events after `after_seq`, at most `limit`, without
        decoding them: the JSON is what `Event.model_dump_json()` gives (built by SQLite from
        the stored columns). For faces that only forward events (the websocket's replay).

        Raises:
            NotFound: no such run (only checked when there is no event to return).
            StorageCorrupt: the stored log has a gap.
        """
        return await self._events_json(
            run_id, after_seq, limit,
            "SELECT seq, '{\"run_id\":' || json_quote(run_id) || ',\"seq\":' || seq || "
            "',\"at\":\"' || replace(at, '.000000Z', 'Z') || '\",\"data\":' || data || '}' "
            "FROM events WHERE run_id = ? AND seq > ? ORDER BY seq LIMIT ?",
        )
