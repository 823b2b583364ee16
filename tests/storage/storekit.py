"""Helpers for the storage tests: runs to store and a store on a temp file."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import anyio

from flowrun.flows import machine
from flowrun.flows.enums import CheckpointMode, ExecutionMode, TranscriptKind
from flowrun.flows.events import Event, EventData, RunCreated, TranscriptEntry
from flowrun.flows.run import Run
from flowrun.flows.template import FlowTemplate
from flowrun.storage import SQLiteStore

FLOW = FlowTemplate.model_validate(
    {
        "id": "review",
        "name": "Review",
        "steps": [
            {"name": "Plan", "skill": "plan"},
            {"name": "Build", "skill": "build"},
            {"name": "Ship", "skill": "ship", "checkpoint": "Sign off before the PR opens."},
        ],
    }
)

WAIT = 10.0  # seconds: the bound on every wait in these tests


def make_run(
    *,
    workspace: str = "default",
    started_by: str = "ana",
    mode: ExecutionMode = ExecutionMode.INTERACTIVE,
    flow: FlowTemplate = FLOW,
) -> Run:
    return machine.create(
        Run(
            flow=flow,
            workspace=workspace,
            started_by=started_by,
            sandbox_profile="local",
            execution_mode=mode,
            checkpoint_mode=CheckpointMode.TEMPLATE,
        )
    )


def created(run: Run) -> list[EventData]:
    return [
        RunCreated(
            flow=run.flow_id,
            params=run.params,
            started_by=run.started_by,
            execution_mode=run.execution_mode.value,
            checkpoint_mode=run.checkpoint_mode.value,
            sandbox_profile=run.sandbox_profile,
        )
    ]


def entries(n: int, prefix: str = "line", step: int | None = 0) -> list[TranscriptEntry]:
    return [
        TranscriptEntry(kind=TranscriptKind.TEXT, step=step, text=f"{prefix} {i}") for i in range(n)
    ]


def store_at(
    path: Path, *, poll_interval: float = 0.02, mailbox_capacity: int = 1024
) -> SQLiteStore:
    """A store with a short poll interval, so cross-store tests do not wait long."""
    return SQLiteStore(path, poll_interval=poll_interval, mailbox_capacity=mailbox_capacity)


def seqs(events: Sequence[Event]) -> list[int]:
    return [event.seq for event in events]


async def collect(stream: AsyncIterator[Event], count: int) -> list[Event]:
    """Take `count` events from an async iterator of events, bounded in time."""
    got: list[Event] = []
    with anyio.fail_after(WAIT):
        while len(got) < count:
            got.append(await anext(stream))
    return got


async def run_sql(path: Path, *statements: tuple[str, tuple[object, ...]]) -> None:
    """Poke the file directly (in a thread), as a broken disk or an old bug would."""

    def poke() -> None:
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            for sql, params in statements:
                conn.execute(sql, params)
        finally:
            conn.close()

    await anyio.to_thread.run_sync(poke)
