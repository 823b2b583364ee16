"""Which PostgreSQL driver for the event-ingest path: asyncpg or psycopg 3? Measured, not guessed.

    FLOWRUN_TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test \
        .venv/bin/python scripts/bench_pg_drivers.py [--quick]

Both drivers run the transaction the store runs for transcript appends (lock the run rows,
insert the events with their seqs, move `last_seq`, NOTIFY, commit), in a private schema that is
dropped afterwards, in three shapes:
- `single`: one event per transaction, one after another (a lone streaming step): p50/p99 latency;
- `group`: 50 events over 10 runs per transaction (what group commit makes of a busy moment);
- `concurrent`: 8 tasks appending one event per transaction at once (no group commit at all).
psycopg 3 is measured both as its asyncio API and as its blocking API called from a worker
thread, one hop per transaction (the shape the store's group writer uses for SQLite).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

URL = os.environ.get("FLOWRUN_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
ROW = json.dumps({"type": "transcript", "kind": "text", "step": 0, "stream": "s1",
                  "text": "Reading src/insights/reports.py to see how the weekly totals are computed. " * 2})
SCHEMA_SQL = [
    "CREATE TABLE runs (id TEXT PRIMARY KEY, version BIGINT NOT NULL, last_seq BIGINT NOT NULL)",
    "CREATE TABLE events (run_id TEXT NOT NULL, seq BIGINT NOT NULL, at TEXT NOT NULL, type TEXT NOT NULL, "
    "data TEXT NOT NULL, PRIMARY KEY (run_id, seq))",
]
LOCK = "SELECT id, last_seq FROM runs WHERE id = ANY({p1}) ORDER BY id FOR UPDATE"
INSERT = "INSERT INTO events (run_id, seq, at, type, data) VALUES ({p1}, {p2}, {p3}, {p4}, {p5})"
UPDATE = "UPDATE runs SET last_seq = {p1} WHERE id = {p2}"
NOTIFY = "SELECT pg_notify('bench_events', {p1})"

Batch = list[str]  # run ids, one per event to append
Tx = Callable[[Batch], Awaitable[None]]


def _plan(locked: dict[str, int], batch: Batch) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    rows: list[tuple[Any, ...]] = []
    for run_id in batch:
        locked[run_id] += 1
        rows.append((run_id, locked[run_id], "2026-01-01T00:00:00.000000Z", "transcript", ROW))
    return rows, [(seq, run_id) for run_id, seq in locked.items()]


async def _asyncpg(schema: str) -> tuple[Tx, Callable[[], Awaitable[None]]]:
    import asyncpg

    conn = await asyncpg.connect(URL, server_settings={"search_path": schema})
    sql = {k: v.format(p1="$1", p2="$2", p3="$3", p4="$4", p5="$5")
           for k, v in {"lock": LOCK, "insert": INSERT, "update": UPDATE, "notify": NOTIFY}.items()}

    async def tx(batch: Batch) -> None:
        async with conn.transaction():
            locked = {r[0]: r[1] for r in await conn.fetch(sql["lock"], sorted(set(batch)))}
            rows, updates = _plan(locked, batch)
            await conn.executemany(sql["insert"], rows)
            await conn.executemany(sql["update"], updates)
            await conn.execute(sql["notify"], f"{batch[0]}:{locked[batch[0]]}")

    return tx, conn.close


async def _psycopg_async(schema: str) -> tuple[Tx, Callable[[], Awaitable[None]]]:
    import psycopg

    conn = await psycopg.AsyncConnection.connect(URL, options=f"-csearch_path={schema}")
    sql = {k: v.format(p1="%s", p2="%s", p3="%s", p4="%s", p5="%s")
           for k, v in {"lock": LOCK, "insert": INSERT, "update": UPDATE, "notify": NOTIFY}.items()}

    async def tx(batch: Batch) -> None:
        async with conn.transaction():
            cur = await conn.execute(sql["lock"], (sorted(set(batch)),))
            locked = {r[0]: r[1] for r in await cur.fetchall()}
            rows, updates = _plan(locked, batch)
            async with conn.cursor() as c:
                await c.executemany(sql["insert"], rows)
                await c.executemany(sql["update"], updates)
            await conn.execute(sql["notify"], (f"{batch[0]}:{locked[batch[0]]}",))

    return tx, conn.close


async def _psycopg_thread(schema: str) -> tuple[Tx, Callable[[], Awaitable[None]]]:
    import psycopg

    conn = psycopg.connect(URL, options=f"-csearch_path={schema}")
    limiter = anyio.CapacityLimiter(1)
    sql = {k: v.format(p1="%s", p2="%s", p3="%s", p4="%s", p5="%s")
           for k, v in {"lock": LOCK, "insert": INSERT, "update": UPDATE, "notify": NOTIFY}.items()}

    def sync_tx(batch: Batch) -> None:
        with conn.transaction():
            locked = {r[0]: r[1] for r in conn.execute(sql["lock"], (sorted(set(batch)),)).fetchall()}
            rows, updates = _plan(locked, batch)
            with conn.cursor() as c:
                c.executemany(sql["insert"], rows)
                c.executemany(sql["update"], updates)
            conn.execute(sql["notify"], (f"{batch[0]}:{locked[batch[0]]}",))

    async def tx(batch: Batch) -> None:
        await anyio.to_thread.run_sync(sync_tx, batch, limiter=limiter)

    async def close() -> None:
        conn.close()

    return tx, close


async def _measure(name: str, make: Callable[[str], Awaitable[tuple[Tx, Callable[[], Awaitable[None]]]]],
                   scale: int) -> dict[str, Any]:
    import psycopg

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = await psycopg.AsyncConnection.connect(URL, autocommit=True)
    await admin.execute(f"CREATE SCHEMA {schema}")
    try:
        for statement in SCHEMA_SQL:
            await admin.execute(statement.replace("TABLE ", f"TABLE {schema}.", 1))
        runs = [f"run_{i:02d}" for i in range(10)]
        async with admin.cursor() as c:
            await c.executemany(f"INSERT INTO {schema}.runs VALUES (%s, 1, 0)", [(r,) for r in runs])
        result: dict[str, Any] = {"driver": name}
        tx, close = await make(schema)
        try:
            for _ in range(20):  # warm up
                await tx([runs[0]])
            latencies = []
            for i in range(10 * scale):
                t0 = time.perf_counter()
                await tx([runs[i % 10]])
                latencies.append(time.perf_counter() - t0)
            latencies.sort()
            result["single_p50_ms"] = round(statistics.median(latencies) * 1000, 3)
            result["single_p99_ms"] = round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 3)
            t0 = time.perf_counter()
            batches = 2 * scale
            for _ in range(batches):
                await tx([runs[i % 10] for i in range(50)])
            result["group_events_per_s"] = round(batches * 50 / (time.perf_counter() - t0))
        finally:
            await close()
        conns = [await make(schema) for _ in range(8)]
        try:
            per_task = 2 * scale

            async def appender(tx: Tx, run_id: str) -> None:
                for _ in range(per_task):
                    await tx([run_id])

            t0 = time.perf_counter()
            async with anyio.create_task_group() as tg:
                for i, (tx, _) in enumerate(conns):
                    tg.start_soon(appender, tx, runs[i])
            result["concurrent_events_per_s"] = round(8 * per_task / (time.perf_counter() - t0))
        finally:
            for _, close in conns:
                await close()
        return result
    finally:
        await admin.execute(f"DROP SCHEMA {schema} CASCADE")
        await admin.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per driver (best kept)")
    args = parser.parse_args()
    scale = 20 if args.quick else 100
    drivers = [("asyncpg", _asyncpg), ("psycopg3 async", _psycopg_async), ("psycopg3 thread", _psycopg_thread)]
    best: dict[str, dict[str, Any]] = {}
    for _ in range(1 if args.quick else args.rounds):
        for name, make in drivers:  # interleaved, so machine noise hits every driver alike
            got = await _measure(name, make, scale)
            kept = best.setdefault(name, got)
            for key in ("single_p50_ms", "single_p99_ms"):
                kept[key] = min(kept[key], got[key])
            for key in ("group_events_per_s", "concurrent_events_per_s"):
                kept[key] = max(kept[key], got[key])
    for row in best.values():
        print(json.dumps(row))


if __name__ == "__main__":
    anyio.run(main)
