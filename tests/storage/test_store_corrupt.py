"""A damaged or foreign file is reported clearly: which file, which table, which row, and why."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import anyio
import pytest

from flowrun.storage import SchemaTooNew, StorageCorrupt
from flowrun.storage.migrate import load_migrations, split_statements

from .storekit import collect, created, entries, make_run, run_sql, store_at

pytestmark = pytest.mark.anyio


async def test_unreadable_run_row_names_the_run_and_field(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with store_at(path) as store:
        run = make_run()
        await store.create_run(run, created(run))
        await run_sql(
            path,
            (
                "UPDATE runs SET json = json_set(json, '$.status', 'exploded') WHERE id = ?",
                (run.id,),
            ),
        )
        with pytest.raises(StorageCorrupt) as info:
            await store.get_run(run.id)
        message = info.value.message
        assert f"run {run.id}" in message and "'runs'" in message and str(path) in message
        assert "status" in message
        assert info.value.details["table"] == "runs"
        assert info.value.retryable is False


async def test_unreadable_step_row(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with store_at(path) as store:
        run = make_run()
        await store.create_run(run, created(run))
        await run_sql(
            path, ("UPDATE steps SET json = '{not json' WHERE run_id = ? AND idx = 1", (run.id,))
        )
        with pytest.raises(StorageCorrupt, match=f"step 1 of run {run.id}"):
            await store.get_run(run.id)
        await run_sql(path, ("DELETE FROM steps WHERE run_id = ? AND idx = 1", (run.id,)))
        with pytest.raises(StorageCorrupt, match="not numbered 0..N"):
            await store.get_run(run.id)


async def test_unreadable_event_names_its_seq(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with store_at(path) as store:
        run = make_run()
        await store.create_run(run, created(run))
        await store.append_transcript(run.id, entries(3))
        await run_sql(
            path,
            (
                'UPDATE events SET data = \'{"type": "nope"}\' WHERE run_id = ? AND seq = 3',
                (run.id,),
            ),
        )
        with pytest.raises(StorageCorrupt, match=f"event 3 of run {run.id}"):
            await store.events(run.id)
        assert len(await store.events(run.id, limit=2)) == 2  # the readable part still reads


async def test_a_gap_in_the_log_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with store_at(path) as store:
        run = make_run()
        await store.create_run(run, created(run))
        await store.append_transcript(run.id, entries(4))
        await run_sql(path, ("DELETE FROM events WHERE run_id = ? AND seq = 3", (run.id,)))
        with pytest.raises(StorageCorrupt, match="gap: seq 3 is missing"):
            await store.events(run.id)
        async with store.subscribe(run.id) as stream:
            with pytest.raises(StorageCorrupt, match="gap"):
                await collect(stream, 5)


async def test_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    await anyio.Path(path).write_bytes(b"these are my notes, not a database" * 200)
    with pytest.raises(StorageCorrupt, match="not a readable flowrun database") as info:
        async with store_at(path):
            pass
    assert str(path) in info.value.message


async def test_a_schema_from_a_newer_flowrun(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with store_at(path):
        pass
    await run_sql(path, ("PRAGMA user_version = 999", ()))
    with pytest.raises(SchemaTooNew, match="schema version 999") as info:
        async with store_at(path):
            pass
    assert "upgrade flowrun" in info.value.message


async def test_migrations_are_numbered_and_recorded(tmp_path: Path) -> None:
    migrations = load_migrations()
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    path = tmp_path / "s.db"
    async with store_at(path), store_at(path):  # two opens of a fresh file: migrated once
        pass

    def inspect() -> tuple[int, set[str], str]:
        conn = sqlite3.connect(path)
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            tables = {
                row[0]
                for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            }
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            return version, tables, mode
        finally:
            conn.close()

    version, tables, mode = await anyio.to_thread.run_sync(inspect)
    assert version == migrations[-1].version
    assert mode == "wal"
    assert {
        "runs", "steps", "events", "decisions", "records", "usage_counters", "flows", "chats",
        "messages", "integrations", "schedules", "webhook_deliveries", "tokens",
    } <= tables  # fmt: skip


def test_split_statements() -> None:
    script = "-- a comment\nCREATE TABLE a (x TEXT DEFAULT ';');\n\nCREATE INDEX a_x ON a (x);\n-- trailing\n"
    assert split_statements(script) == [
        "-- a comment\nCREATE TABLE a (x TEXT DEFAULT ';');",
        "CREATE INDEX a_x ON a (x);",
    ]
    with pytest.raises(ValueError, match="incomplete"):
        split_statements("CREATE TABLE b (x")


async def test_a_run_row_behind_its_log_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with store_at(path) as store:
        run = make_run()
        await store.create_run(run, created(run))
        await store.append_transcript(run.id, entries(4))
        await run_sql(path, ("UPDATE runs SET last_seq = 2 WHERE id = ?", (run.id,)))
        with pytest.raises(StorageCorrupt, match=f"run {run.id}.*runs.last_seq is behind"):
            await store.append_transcript(run.id, entries(1))
        assert len(await store.events(run.id)) == 5  # nothing half-written
