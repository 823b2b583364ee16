"""Which notifications each person has read, on SQLite (see `Store.mark_notes_read`)."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager

import aiosqlite

from ..flows.run import now
from .codec import format_time
from .sqlite_leases import LeaseStatement
from .transaction import Op


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

    async def notes_read(self, workspace: str, actor: str) -> set[str]:
        async with self._reading() as conn:
            rows = await conn.execute_fetchall(
                "SELECT note_id FROM notification_reads WHERE workspace = ? AND actor = ?", (workspace, actor))
        return {row[0] for row in rows}
