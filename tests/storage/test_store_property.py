"""Property: any interleaving of writes and subscriptions gives gapless, duplicate-free logs.

Hypothesis draws a program: writes (commits, transcript appends of random sizes) across a few
runs, issued through either of two stores on the same file (so some subscribers only learn of
them by polling), each started after a random number of scheduler turns, and subscriptions from
a random `after_seq` started at random points. Every subscriber must see exactly the seqs after
its start, in order; every run's stored log must be 1..last_seq.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowrun.flows import machine
from flowrun.flows.enums import TranscriptKind
from flowrun.flows.errors import ConcurrentUpdate
from flowrun.flows.events import Event, TranscriptEntry
from flowrun.flows.run import Usage
from tests.storekinds import AnyStore, StoreKind

from .storekit import WAIT, created, entries, make_run, seqs

pytestmark = pytest.mark.anyio

RUNS = 3
END = "end of the program"


@dataclass(frozen=True)
class Append:
    run: int
    size: int
    via: int
    delay: int


@dataclass(frozen=True)
class Commit:
    run: int
    via: int
    delay: int


@dataclass(frozen=True)
class Subscribe:
    run: int
    at: float  # after_seq as a fraction of the run's last_seq when it starts
    via: int
    delay: int


Step = Append | Commit | Subscribe

runs = st.integers(0, RUNS - 1)
stores = st.integers(0, 1)
delays = st.integers(0, 6)
steps = st.one_of(
    st.builds(Append, runs, st.integers(1, 40), stores, delays),
    st.builds(Commit, runs, stores, delays),
    st.builds(Subscribe, runs, st.floats(0, 1), stores, delays),
)

_files = itertools.count()


async def turns(n: int) -> None:
    for _ in range(n):
        await anyio.lowlevel.checkpoint()


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(program=st.lists(steps, min_size=1, max_size=25))
async def test_any_interleaving_is_gapless(tmp_path: Path, program: list[Step]) -> None:
    await interleave(tmp_path, program, StoreKind("sqlite"))


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(program=st.lists(steps, min_size=1, max_size=25))
async def test_any_interleaving_is_gapless_on_postgres(
    tmp_path: Path, program: list[Step], postgres_kind: StoreKind
) -> None:
    """Fewer examples: each opens two stores on their own connections."""
    await interleave(tmp_path, program, postgres_kind)


async def interleave(tmp_path: Path, program: list[Step], store_kind: StoreKind) -> None:
    # PostgreSQL: one schema for every example (each makes its own runs); migrating costs more
    path = tmp_path / ("p.db" if store_kind.postgres else f"p{next(_files)}.db")
    async with (
        store_kind.store(path, mailbox_capacity=16) as first,
        store_kind.store(path, mailbox_capacity=16) as second,
    ):
        via: list[AnyStore] = [first, second]
        run_ids: list[str] = []
        for _ in range(RUNS):
            run = make_run()
            await first.create_run(run, created(run))
            run_ids.append(run.id)
        seen: list[tuple[int, list[Event]]] = []  # (after_seq, events) per subscriber

        async def append(step: Append) -> None:
            await turns(step.delay)
            events = await via[step.via].append_transcript(run_ids[step.run], entries(step.size))
            assert seqs(events) == list(range(events[0].seq, events[0].seq + step.size))

        async def commit(step: Commit) -> None:
            await turns(step.delay)
            store = via[step.via]
            while True:
                run = await store.get_run(run_ids[step.run])
                new, events = machine.record_usage(run, None, Usage(turns=1))
                try:
                    await store.commit(new, events, expected_version=run.version)
                    return
                except ConcurrentUpdate:
                    continue

        async def subscribe(step: Subscribe, started: anyio.Event) -> None:
            await turns(step.delay)
            store = via[step.via]
            run_id = run_ids[step.run]
            after = int(step.at * (await store.get_run(run_id)).last_seq)
            got: list[Event] = []
            seen.append((after, got))
            async with store.subscribe(run_id, after) as stream:
                started.set()
                async for event in stream:
                    got.append(event)
                    if getattr(event.data, "text", None) == END:
                        return

        with anyio.fail_after(WAIT * 3):
            async with anyio.create_task_group() as subscribers:
                async with anyio.create_task_group() as writers:
                    for step in program:
                        if isinstance(step, Append):
                            writers.start_soon(append, step)
                        elif isinstance(step, Commit):
                            writers.start_soon(commit, step)
                        else:
                            started = anyio.Event()
                            subscribers.start_soon(subscribe, step, started)
                            writers.start_soon(started.wait)  # writing ends after it subscribed
                for run_id in run_ids:  # every subscriber stops at its run's last event
                    await first.append_transcript(
                        run_id, [TranscriptEntry(kind=TranscriptKind.INFO, text=END)]
                    )

        for run_id in run_ids:
            last = (await second.get_run(run_id)).last_seq
            assert seqs(await second.events(run_id)) == list(range(1, last + 1))
        for after, got in seen:
            run_id = got[-1].run_id
            last = (await first.get_run(run_id)).last_seq
            assert seqs(got) == list(range(after + 1, last + 1)), (
                f"subscriber after {after} of {run_id}"
            )
        assert first.bus.subscriber_count() == 0 and second.bus.subscriber_count() == 0
