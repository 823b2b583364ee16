"""Which notifications each person has read, on SQLite (see `Store.mark_notes_read`)."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager

import aiosqlite

from ..flows.run import now
from .codec import format_time
from .sqlite_leases import LeaseStatement
from .transaction import Op

_CHUNK = 500  # ids per statement: well under SQLite's bound-parameter limit


class SQLiteNoteReads:
    """Mixed into `SQLiteStore`."""

    def _reading(self, snapshot: bool = False) -> AbstractAsyncContextManager[aiosqlite.Connection]:
        raise NotImplementedError

    async def _write(self, op: Op[list[str]]) -> list[str]:
        raise NotImplementedError

    async def mark_notes_read(self, workspace: str, actor: str, note_ids: Sequence[str]) -> None:
        if not note_ids:
            return
        at = format_time(now())
        rows = ", ".join("(?, ?, ?, ?)" for _ in note_ids)
        params = [value for note in note_ids for value in (workspace, actor, note, at)]
        await self._write(LeaseStatement(
            f"INSERT INTO notification_reads (workspace, actor, note_id, read_at) VALUES {rows} "
            "ON CONFLICT (workspace, actor, note_id) DO NOTHING", params))

    async def notes_read(self, workspace: str, actor: str, among: Sequence[str] | None = None) -> set[str]:
        sql = "SELECT note_id FROM notification_reads WHERE workspace = ? AND actor = ?"
        async with self._reading() as conn:
            if among is None:
                return {row[0] for row in await conn.execute_fetchall(sql, (workspace, actor))}
            ids = sorted(set(among))
            found: set[str] = set()
            for start in range(0, len(ids), _CHUNK):
                chunk = ids[start : start + _CHUNK]
                found.update(row[0] for row in await conn.execute_fetchall(
                    f"{sql} AND note_id IN ({','.join('?' * len(chunk))})", (workspace, actor, *chunk)))
            return found
