"""A full disk (SQLite's SQLITE_FULL, made for real by capping the database's size with
`max_page_count` on the store's writer connection) stops the run where it is, parks it, says
"disk full", and leaves reading working; once space is freed a retry completes the run."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import anyio
import pytest

from flowrun.flows.enums import RunStatus
from flowrun.runtime.access import Actor
from flowrun.runtime.context import EngineConfig
from flowrun.storage.full import StoreFull
from flowrun.storage.sqlite import SQLiteStore

from .harness import catalog, running_engine, scripts, submit
from .test_cancel_elsewhere import Gate

pytestmark = pytest.mark.anyio
ANA = Actor("ana")


def writer_connection(store: object) -> sqlite3.Connection:
    """The group writer's own connection (the fault is injected there, and only there)."""
    assert isinstance(store, SQLiteStore) and store._writer is not None and store._writer._conn is not None
    return store._writer._conn


async def test_a_full_disk_parks_the_run_says_disk_full_and_reading_keeps_working(tmp_path: Path) -> None:
    gate = Gate()
    provider = scripts(build=[{"tools": [{"name": "gate", "expect": "any"}]},
                              {"text": "x" * 400_000, **submit("built")}])
    cat = catalog([{"name": "Build", "skill": "build"}], skills={"build": {"allowed_tools": ["gate"]}},
                  defaults={"sandbox_profile": "local"})
    gone = EngineConfig(owner="a-host-that-is-gone:1", snapshot_dir=tmp_path / "snapshots")
    async with running_engine(tmp_path, cat, provider, config=gone, tools={"gate": gate}) as engine:
        run = await engine.start_run(ANA, "test-flow")
        with anyio.fail_after(10):
            await gate.entered.wait()
        conn = writer_connection(engine.deps.store)
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages}")  # the disk is full from here
        gate.open.set()
        with anyio.fail_after(10):
            error = await engine.wait_halted(run.id)
        assert isinstance(error, StoreFull) and error.code == "disk_full"
        assert error.message.startswith("disk full:") and "flowrun retry" in error.message
        await engine.idle(10)  # the driver stopped; the engine did not crash
        # reading keeps working
        stored = await engine.get_run(ANA, run.id)
        # parked: the small write that records it interrupted still fitted (else the next start does it)
        assert stored.status == RunStatus.INTERRUPTED and "could not record" in (stored.error or "")
        assert [r.id for r in await engine.list_runs(ANA)] == [run.id]
        assert await engine.events(ANA, run.id)
        conn.execute("PRAGMA max_page_count = 1073741823")  # space freed
    # another process (the first one's owner id is gone) retries it
    async with running_engine(tmp_path, cat, provider, tools={"gate": gate}) as engine:
        run = await engine.get_run(ANA, run.id)
        assert run.status == RunStatus.INTERRUPTED
        await engine.retry(ANA, run.id)
        run = await engine.wait_until(ANA, run.id, timeout_s=30)
        assert run.status == RunStatus.COMPLETED, (run.error, run.blocked)
