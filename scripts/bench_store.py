"""Benchmarks for the SQLite store: transcript ingest rate and bytes stored per event.

    .venv/bin/python scripts/bench_store.py [--quick]

`bench_ingest` measures events/s through group commit in a few shapes of load (many coroutines
appending one entry at a time, a few appending in batches, one appender sending batches).
`bench_bytes_per_event` measures what one event costs on disk at 10 and at 10,000 events in a
run: it must stay flat (nothing re-serializes the run or its transcript per event).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

from flowrun.flows import machine
from flowrun.flows.enums import CheckpointMode, ExecutionMode, TranscriptKind
from flowrun.flows.events import RunCreated, TranscriptEntry
from flowrun.flows.run import Run
from flowrun.flows.template import FlowTemplate
from flowrun.storage import SQLiteStore

FLOW = FlowTemplate.model_validate(
    {
        "id": "bench",
        "name": "Bench",
        "steps": [{"name": "Plan", "skill": "plan"}, {"name": "Build", "skill": "build"}],
    }
)
TEXT = "Reading src/insights/reports.py to see how the weekly report totals are computed. " * 2


def _entry(i: int) -> TranscriptEntry:
    return TranscriptEntry(kind=TranscriptKind.TEXT, step=0, text=f"{i} {TEXT}", stream="s1")


async def _new_run(store: SQLiteStore) -> str:
    run = machine.create(
        Run(
            flow=FLOW,
            started_by="bench",
            sandbox_profile="local",
            execution_mode=ExecutionMode.BACKGROUND,
            checkpoint_mode=CheckpointMode.NONE,
        )
    )
    created = RunCreated(
        flow=run.flow_id,
        params={},
        started_by="bench",
        execution_mode="background",
        checkpoint_mode="none",
        sandbox_profile="local",
    )
    stored, _ = await store.create_run(run, [created])
    return stored.id


async def _ingest(
    store: SQLiteStore, *, appenders: int, calls: int, batch: int, runs: int
) -> dict[str, Any]:
    run_ids = [await _new_run(store) for _ in range(runs)]
    # entries are built up front: this measures the store, not pydantic
    payloads = [[_entry(i) for i in range(batch)] for _ in range(4)]
    before = store.stats
    transactions, operations = before.transactions, before.operations

    async def appender(n: int) -> None:
        run_id = run_ids[n % runs]
        for call in range(calls):
            await store.append_transcript(run_id, payloads[call % 4])

    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for n in range(appenders):
            tg.start_soon(appender, n)
    elapsed = time.perf_counter() - start
    events = appenders * calls * batch
    stats = store.stats
    commits = stats.transactions - transactions
    for run_id in run_ids:  # the log is whole
        assert (await store.get_run(run_id)).last_seq == 1 + events // runs
    return {
        "appenders": appenders,
        "entries_per_call": batch,
        "events": events,
        "seconds": round(elapsed, 3),
        "events_per_s": round(events / elapsed),
        "transactions": commits,
        "appends_per_transaction": round((stats.operations - operations) / max(commits, 1), 1),
    }


async def bench_ingest(path: str | os.PathLike[str], *, scale: float = 1.0) -> dict[str, Any]:
    """Transcript ingest through group commit, in four shapes of load."""
    n = max(1, int(scale * 100))
    async with SQLiteStore(path) as store:
        return {
            "8 appenders x 1 entry": await _ingest(
                store, appenders=8, calls=25 * n, batch=1, runs=8
            ),
            "64 appenders x 1 entry": await _ingest(
                store, appenders=64, calls=5 * n, batch=1, runs=16
            ),
            "8 appenders x 20 entries": await _ingest(
                store, appenders=8, calls=2 * n, batch=20, runs=8
            ),
            "1 appender x 200 entries": await _ingest(
                store, appenders=1, calls=2 * n, batch=200, runs=1
            ),
        }


def _usage(path: str) -> dict[str, int]:
    """Bytes in use (page size minus free space) per table, and the file's used pages."""
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        tables = dict(
            conn.execute(
                "SELECT name, sum(pgsize - unused) FROM dbstat WHERE aggregate = 0 GROUP BY name"
            ).fetchall()
        )
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        pages = (
            conn.execute("PRAGMA page_count").fetchone()[0]
            - conn.execute("PRAGMA freelist_count").fetchone()[0]
        )
    finally:
        conn.close()
    return {
        "events": tables.get("events", 0),
        "runs": tables.get("runs", 0),
        "file": pages * page_size,
    }


async def bench_bytes_per_event(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Bytes one event costs at 10 and at 10,000 events in a run, appended in small batches.

    `events_table_bytes_per_event`: bytes in use in the events table / events. `run_row_bytes`:
    the run's own row, which must not grow with its transcript. `file_bytes_per_event`: growth of
    the file's used pages / events (coarse at 10 events: a page is 4 KiB)."""
    label = os.fspath(path)
    result: dict[str, Any] = {}
    async with SQLiteStore(label) as store:
        base = await anyio.to_thread.run_sync(_usage, label)
        run_id = await _new_run(store)
        written = 1
        for target in (10, 10_000):
            while written < target:
                size = min(10, target - written)
                await store.append_transcript(run_id, [_entry(written + i) for i in range(size)])
                written += size
            usage = await anyio.to_thread.run_sync(_usage, label)
            result[f"at {target} events"] = {
                "events_table_bytes_per_event": round(
                    (usage["events"] - base["events"]) / written, 1
                ),
                "file_bytes_per_event": round((usage["file"] - base["file"]) / written, 1),
                "run_row_bytes": usage["runs"],
            }
    small, large = result["at 10 events"], result["at 10000 events"]
    result["flat"] = (
        abs(small["events_table_bytes_per_event"] - large["events_table_bytes_per_event"])
        < 0.25 * large["events_table_bytes_per_event"]
        and abs(small["run_row_bytes"] - large["run_row_bytes"]) <= 8  # last_seq's varint grows
    )
    return result


async def _main(quick: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="flowrun-bench-") as folder:
        ingest = await bench_ingest(Path(folder) / "ingest.db", scale=0.2 if quick else 1.0)
        size = await bench_bytes_per_event(Path(folder) / "bytes.db")
    print(json.dumps({"ingest": ingest, "bytes_per_event": size}, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a fifth of the ingest volume")
    args = parser.parse_args()
    anyio.run(_main, args.quick)


if __name__ == "__main__":
    main()
