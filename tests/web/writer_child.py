"""Another process writing a run's log: appends N transcript entries to the same SQLite file,
one commit each, then prints `done` (the test reads its stdout)."""

from __future__ import annotations

import sys

import anyio

from flowrun.flows.enums import TranscriptKind
from flowrun.flows.events import TranscriptEntry
from flowrun.storage.sqlite import SQLiteStore


async def main(db: str, run_id: str, count: int) -> None:
    async with SQLiteStore(db) as store:
        for n in range(count):
            await store.append_transcript(run_id, [TranscriptEntry(kind=TranscriptKind.INFO, text=f"from afar {n}")])
    print("done", flush=True)  # noqa: T201 - the parent test reads it


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2], int(sys.argv[3]))
