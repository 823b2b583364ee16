"""Which notifications each person has read, on PostgreSQL (see `Store.mark_notes_read`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..flows.run import now
from .codec import format_time


class PostgresNoteReads:
    """Mixed into `PostgresStore`."""

    async def _rows(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[Any]:
        raise NotImplementedError

    async def mark_notes_read(self, workspace: str, actor: str, note_ids: Sequence[str]) -> None:
        if not note_ids:
            return
        await self._rows(
            "INSERT INTO notification_reads (workspace, actor, note_id, read_at) "
            "SELECT %s, %s, note, %s FROM unnest(%s::text[]) AS note "
            "ON CONFLICT (workspace, actor, note_id) DO NOTHING RETURNING note_id",
            (workspace, actor, format_time(now()), list(note_ids)))

    async def notes_read(self, workspace: str, actor: str, among: Sequence[str] | None = None) -> set[str]:
        sql = "SELECT note_id FROM notification_reads WHERE workspace = %s AND actor = %s"
        if among is None:
            rows = await self._rows(sql, (workspace, actor))
        else:
            rows = await self._rows(sql + " AND note_id = ANY(%s)", (workspace, actor, list(among)))
        return {row[0] for row in rows}
