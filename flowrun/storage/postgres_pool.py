"""A small pool of async psycopg connections (autocommit: every statement is its own snapshot).

`PostgresStore` keeps two: one for reads, and one of its own for lease statements (renewals,
claims, heartbeats), so a busy engine's reads never hold up the renewal of its leases: a lease
that lapses because its renewal queued behind reads is a run taken over from a live worker.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import psycopg

from .errors import StorageError


class ConnectionPool:
    def __init__(self, size: int, connect: Callable[[], Awaitable[psycopg.AsyncConnection[Any]]], label: str) -> None:
        self._size = size
        self._connect = connect
        self._label = label
        self._free: list[psycopg.AsyncConnection[Any] | None] = []
        self._limit = anyio.Semaphore(size)

    async def open(self) -> None:
        for _ in range(self._size):
            self._free.append(await self._connect())

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A connection of the pool. One whose use was cancelled or failed is closed and replaced
        on its next use: its protocol state is unknown (a query may still be in flight)."""
        async with self._limit:
            conn = self._free.pop()
            healthy = False
            try:
                if conn is None or conn.closed or conn.broken:
                    if conn is not None:
                        await close(conn)
                    conn = None
                    conn = await self._connect()
                yield conn
                healthy = True
            except psycopg.Error as exc:
                raise StorageError(f"cannot read {self._label}: {exc}", path=self._label) from exc
            finally:
                if not healthy and conn is not None:
                    await close(conn)
                    conn = None
                self._free.append(conn)

    async def close(self) -> None:
        """Wait for the connections in use, then close them all."""
        with anyio.CancelScope(shield=True):
            for _ in range(self._size):
                await self._limit.acquire()
        free, self._free = self._free, []
        for conn in free:
            if conn is not None:
                await close(conn)


async def close(conn: psycopg.AsyncConnection[Any]) -> None:
    with anyio.CancelScope(shield=True), contextlib.suppress(psycopg.Error):
        await conn.close()
