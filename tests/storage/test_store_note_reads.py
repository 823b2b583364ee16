"""Which notifications each person has read: per person, idempotent, seen by every process (both stores)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.storekinds import StoreKind

pytestmark = pytest.mark.anyio


async def test_read_state_is_per_person_and_idempotent(tmp_path: Path, store_kind: StoreKind) -> None:
    path = tmp_path / "s.db"
    async with store_kind.store(path) as one, store_kind.store(path) as two:
        assert await one.notes_read("default", "ana") == set()
        await one.mark_notes_read("default", "ana", ["note_1", "note_2"])
        await one.mark_notes_read("default", "ana", ["note_2", "note_3"])  # again: no error, no duplicate
        await one.mark_notes_read("default", "ana", [])
        assert await two.notes_read("default", "ana") == {"note_1", "note_2", "note_3"}  # another process
        assert await two.notes_read("default", "bob") == set()  # per person
        assert await two.notes_read("team", "ana") == set()  # and per workspace
        await two.mark_notes_read("team", "ana", ["note_9"])
        assert await one.notes_read("team", "ana") == {"note_9"}
        among = await one.notes_read("default", "ana", among=["note_3", "note_1", "note_4"])
        assert among == {"note_1", "note_3"}  # only the ids asked about (a poll's window)
        assert await one.notes_read("default", "ana", among=[]) == set()
