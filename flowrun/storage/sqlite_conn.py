"""SQLite connections: the group writer's plain sqlite3 one, the aiosqlite readers and their pool,
and the translation of sqlite3 errors into the store's errors."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiosqlite
import anyio

from .errors import StorageCorrupt, StorageError, StoreClosed
from .full import full_error, is_disk_full


def open_writer_connection(path: str, busy_ms: int) -> sqlite3.Connection:
    """The group writer's own connection: plain sqlite3, driven one transaction per thread hop
    (aiosqlite would cost a hop per statement). WAL mode was set by the migrating connection."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {busy_ms:d}")
    conn.execute("PRAGMA synchronous = NORMAL")  # FULL for decisions: see the writer
    return conn


@asynccontextmanager
async def connect(path: str, busy_ms: int, *, writer: bool, uri: bool = False) -> AsyncIterator[aiosqlite.Connection]:
    conn = await aiosqlite.connect(path, isolation_level=None, uri=uri)
    try:
        await conn.execute(f"PRAGMA busy_timeout = {busy_ms:d}")
        if writer:
            rows = list(await conn.execute_fetchall("PRAGMA journal_mode = WAL"))
            if str(rows[0][0]).lower() != "wal":
                raise StorageError(
                    f"{path} cannot use WAL mode (journal_mode is {rows[0][0]})", path=path
                )
            await conn.execute("PRAGMA synchronous = NORMAL")  # FULL for decisions: see writer
        else:
            await conn.execute("PRAGMA query_only = ON")
        yield conn
    finally:
        with anyio.CancelScope(shield=True):
            await conn.close()


class ReaderPool:
    """Read-only connections, one per reader at a time (so a read transaction is its own)."""

    def __init__(self, conns: list[aiosqlite.Connection], label: str) -> None:
        self._free = list(conns)
        self._size = len(conns)
        self._limit = anyio.Semaphore(len(conns))
        self._label = label
        self._closed = False

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._limit:
            if self._closed:
                raise StoreClosed(f"the store at {self._label} is closed")
            conn = self._free.pop()
            try:
                yield conn
            finally:
                self._free.append(conn)

    async def close(self) -> None:
        """Refuse new reads and wait for the running ones to finish."""
        self._closed = True
        with anyio.CancelScope(shield=True):
            for _ in range(self._size):
                await self._limit.acquire()


def translate(exc: sqlite3.Error, path: str, doing: str) -> Exception:
    if is_disk_full(exc, path):
        return full_error(path, exc, doing)
    name = getattr(exc, "sqlite_errorname", "")
    if name in ("SQLITE_CORRUPT", "SQLITE_NOTADB"):
        return StorageCorrupt(
            f"{path} is not a readable flowrun database ({doing}): {exc}", path=path
        )
    return StorageError(f"cannot {doing} {path}: {exc}", path=path)
