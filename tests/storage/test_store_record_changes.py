"""Records changed since a cursor (both stores): a poll reads only the writes it has not read, and
misses none, not two written in the same instant, not those of another process meanwhile."""

from __future__ import annotations

from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

from flowrun.storage import RecordRow
from flowrun.storage.migrate import load_migrations
from tests.storekinds import AnyStore, StoreKind

pytestmark = pytest.mark.anyio

NOTE = "notification"


def note(note_id: str, text: str = "") -> RecordRow:
    return RecordRow(id=note_id, kind=NOTE, title=text or note_id)


async def test_a_poll_reads_only_what_changed_since_the_last(tmp_path: Path, store_kind: StoreKind) -> None:
    async with store_kind.store(tmp_path / "s.db") as store:
        assert (await store.records_changed(NOTE)).model_dump() == {"records": [], "cursor": 0}
        for i in range(3):
            await store.put_record(note(f"note_{i}"))
        await store.put_record(RecordRow(id="plan_1", kind="plan", title="not a notification"))
        first = await store.records_changed(NOTE)
        assert [r.id for r in first.records] == ["note_0", "note_1", "note_2"]

        quiet = await store.records_changed(NOTE, first.cursor)
        assert (quiet.records, quiet.cursor) == ([], first.cursor)  # old records are not read again

        await store.put_record(note("note_3"))
        await store.put_record(note("note_0", "delivered"))  # written again: comes back, changed
        second = await store.records_changed(NOTE, first.cursor)
        assert [(r.id, r.title) for r in second.records] == [("note_3", "note_3"), ("note_0", "delivered")]
        assert second.cursor > first.cursor
        assert (await store.records_changed(NOTE, second.cursor)).records == []

        paged = await store.records_changed(NOTE, 0, limit=2)  # a bounded read resumes where it stopped
        rest = await store.records_changed(NOTE, paged.cursor)
        assert [r.id for r in paged.records + rest.records] == ["note_1", "note_2", "note_3", "note_0"]
        assert [r.id for r in (await store.records_changed("plan")).records] == ["plan_1"]


async def test_writes_in_the_same_instant_and_from_two_processes_are_all_read_once(
        tmp_path: Path, store_kind: StoreKind) -> None:
    path = tmp_path / "s.db"
    async with store_kind.store(path) as one, store_kind.store(path) as two:
        async with anyio.create_task_group() as tg:  # waiting at once: one group commit, one instant
            for i in range(4):
                tg.start_soon(one.put_record, note(f"note_same_{i}"))
        same = await two.records_changed(NOTE)
        assert sorted(r.id for r in same.records) == [f"note_same_{i}" for i in range(4)]
        assert one._open_writer().stats.fallbacks == 0  # one transaction, not four after a failed one

        seen: list[str] = []
        cursor = same.cursor
        written = anyio.Event()

        async def write(store: AnyStore, prefix: str) -> None:
            for i in range(25):
                await store.put_record(note(f"note_{prefix}_{i:02d}"))

        async def follow() -> None:
            nonlocal cursor
            while True:
                done = written.is_set()
                page = await two.records_changed(NOTE, cursor)
                seen.extend(r.id for r in page.records)
                cursor = page.cursor
                if done:
                    return
                await anyio.lowlevel.checkpoint()

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                tg.start_soon(follow)
                async with anyio.create_task_group() as writers:
                    writers.start_soon(write, one, "a")
                    writers.start_soon(write, two, "b")
                written.set()
        expected = sorted(f"note_{p}_{i:02d}" for p in "ab" for i in range(25))
        assert sorted(seen) == expected, "each write read exactly once, none missed"


async def test_records_stored_before_the_migration_are_numbered_in_order(
        tmp_path: Path, store_kind: StoreKind, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "s.db"
    dialect = "postgres" if store_kind.postgres else "sqlite"
    before = load_migrations(dialect)[:5]
    monkeypatch.setattr("flowrun.storage.migrate.load_migrations", lambda *_: before)
    monkeypatch.setattr("flowrun.storage.postgres.load_migrations", lambda *_: before)
    async with store_kind.store(path):
        pass
    for i in (2, 1, 3):  # inserted out of id order, by a flowrun of schema version 5
        await store_kind.poke(path, sqlite="INSERT INTO records (id, kind, json) VALUES (?, ?, ?)",
                              postgres="INSERT INTO records (id, kind, json) VALUES (?, ?, ?)",
                              params=(f"note_{i}", NOTE, note(f"note_{i}").model_dump_json()))
    monkeypatch.undo()
    async with store_kind.store(path) as store:
        old = await store.records_changed(NOTE)
        order = ["note_2", "note_1", "note_3"] if not store_kind.postgres else ["note_1", "note_2", "note_3"]
        assert [r.id for r in old.records] == order  # SQLite: as inserted; PostgreSQL: by id
        await store.put_record(note("note_0"))
        assert [r.id for r in (await store.records_changed(NOTE, old.cursor)).records] == ["note_0"]
