"""The event log: gapless seqs under concurrency, group commit, subscriptions."""

from __future__ import annotations

import gc
import random
import sys
from pathlib import Path

import anyio
import pytest

from flowrun.flows import machine
from flowrun.flows.enums import TranscriptKind
from flowrun.flows.errors import ConcurrentUpdate, NotFound
from flowrun.flows.events import Event, TranscriptEntry
from flowrun.flows.run import Run, Usage
from flowrun.storage import RecordRow, StorageError
from tests.storekinds import AnyStore, StoreKind

from .storekit import WAIT, collect, created, entries, make_run, run_sql, seqs, store_at

pytestmark = pytest.mark.anyio


async def new_run(store: AnyStore) -> Run:
    run = make_run()
    stored, _ = await store.create_run(run, created(run))
    return stored


async def commit_usage(store: AnyStore, run_id: str) -> list[Event]:
    """Add a turn of usage, retrying on a lost compare-and-set (as the engine does)."""
    for _ in range(50):
        run = await store.get_run(run_id)
        new, events = machine.record_usage(run, 0, Usage(turns=1))
        try:
            return (await store.commit(new, events, expected_version=run.version))[1]
        except ConcurrentUpdate:
            continue
    raise AssertionError("commit kept losing")


async def test_seqs_are_gapless_under_concurrency(tmp_path: Path, store_kind: StoreKind) -> None:
    rng = random.Random(7)
    async with store_kind.store(tmp_path / "s.db") as store:
        runs = [await new_run(store) for _ in range(3)]
        returned: dict[str, list[int]] = {run.id: [1] for run in runs}

        async def append(run_id: str, size: int) -> None:
            events = await store.append_transcript(run_id, entries(size))
            assert seqs(events) == list(range(events[0].seq, events[0].seq + size))
            returned[run_id].extend(seqs(events))

        async def commit(run_id: str) -> None:
            returned[run_id].extend(seqs(await commit_usage(store, run_id)))

        async with anyio.create_task_group() as tg:
            for i in range(200):
                run_id = rng.choice(runs).id
                if i % 10 == 0:
                    tg.start_soon(commit, run_id)
                else:
                    tg.start_soon(append, run_id, rng.randint(1, 8))

        for run in runs:
            stored = await store.get_run(run.id)
            assert sorted(returned[run.id]) == list(range(1, stored.last_seq + 1))
            assert seqs(await store.events(run.id)) == list(range(1, stored.last_seq + 1))
        assert store.stats.largest_batch > 1  # group commit batched concurrent writers
        assert store.stats.transactions < 200


async def test_a_refused_write_does_not_poison_its_batch(tmp_path: Path, store_kind: StoreKind) -> None:
    async with store_kind.store(tmp_path / "s.db") as store:
        run = await new_run(store)
        before = store.stats.transactions
        outcomes: list[object] = []

        async def commit() -> None:
            new, events = machine.record_usage(run, 0, Usage(turns=1))
            try:
                outcomes.append(await store.commit(new, events, expected_version=run.version))
            except ConcurrentUpdate as exc:
                outcomes.append(exc)

        async def append() -> None:
            outcomes.append(await store.append_transcript(run.id, entries(2)))

        async with anyio.create_task_group() as tg:  # all queue before the writer wakes: one batch
            for i in range(12):
                tg.start_soon(commit if i % 3 == 0 else append)
        assert store.stats.transactions == before + 1
        assert sum(isinstance(o, ConcurrentUpdate) for o in outcomes) == 3
        stored = await store.get_run(run.id)
        assert stored.version == run.version + 1
        assert seqs(await store.events(run.id)) == list(range(1, stored.last_seq + 1))
        assert stored.last_seq == 1 + 8 * 2 + 1  # created, eight appends of two, one usage event


async def test_a_failing_transaction_falls_back_to_one_by_one(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with store_at(path) as store:
        run = await new_run(store)
        await run_sql(
            path,
            (
                "CREATE TRIGGER boom BEFORE INSERT ON records WHEN NEW.kind = 'boom' "
                "BEGIN SELECT RAISE(ABORT, 'boom refused'); END",
                (),
            ),
        )
        failures: list[BaseException] = []
        appended: list[list[Event]] = []

        async def put(kind: str) -> None:
            try:
                await store.put_record(RecordRow(id=f"rec_{kind}", kind=kind))
            except StorageError as exc:
                failures.append(exc)

        async def append() -> None:
            appended.append(await store.append_transcript(run.id, entries(3)))

        async with anyio.create_task_group() as tg:
            tg.start_soon(append)
            tg.start_soon(put, "boom")
            tg.start_soon(append)
            tg.start_soon(put, "plan")
        assert store.stats.fallbacks == 1
        assert len(failures) == 1 and "boom refused" in str(failures[0])
        assert [seqs(a) for a in appended] == [[2, 3, 4], [5, 6, 7]]
        assert await store.get_record("rec_plan") is not None
        assert await store.get_record("rec_boom") is None
        assert seqs(await store.events(run.id)) == list(range(1, 8))


async def test_subscribe_replays_then_goes_live(tmp_path: Path, store_kind: StoreKind) -> None:
    async with store_kind.store(tmp_path / "s.db") as store:
        run = await new_run(store)
        await store.append_transcript(run.id, entries(9))
        async with store.subscribe(run.id, after_seq=3) as stream:
            assert seqs(await collect(stream, 7)) == list(range(4, 11))
            await store.append_transcript(run.id, entries(5))
            await commit_usage(store, run.id)
            got = await collect(stream, 6)
            assert seqs(got) == list(range(11, 17))
            assert got[-1].data.type == "usage"
        async with store.subscribe(run.id) as stream:  # from the start
            assert seqs(await collect(stream, 16)) == list(range(1, 17))
        assert store.bus.subscriber_count() == 0


async def test_subscribe_while_writing_has_no_gap_or_duplicate(tmp_path: Path, store_kind: StoreKind) -> None:
    async with store_kind.store(tmp_path / "s.db") as store:
        run = await new_run(store)
        total = 1 + 150 * 2

        async def write() -> None:
            for _ in range(150):
                await store.append_transcript(run.id, entries(2))

        got: list[Event] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(write)
            for _ in range(5):
                await anyio.lowlevel.checkpoint()  # start reading mid-stream
            async with store.subscribe(run.id) as stream:
                got = await collect(stream, total)
        assert seqs(got) == list(range(1, total + 1))


async def test_a_slow_subscriber_does_not_block_and_catches_up(tmp_path: Path, store_kind: StoreKind) -> None:
    async with store_kind.store(tmp_path / "s.db", mailbox_capacity=4) as store:
        run = await new_run(store)
        async with store.subscribe(run.id) as stream:
            assert seqs(await collect(stream, 1)) == [1]  # registered on the bus
            with anyio.fail_after(WAIT):  # the writer never waits for the reader
                for _ in range(100):
                    await store.append_transcript(run.id, entries(1))
            assert seqs(await collect(stream, 100)) == list(range(2, 102))
            await store.append_transcript(run.id, entries(1))
            assert seqs(await collect(stream, 1)) == [102]


async def test_subscriptions_do_not_leak(tmp_path: Path, store_kind: StoreKind) -> None:
    async with store_kind.store(tmp_path / "s.db") as store:
        run = await new_run(store)
        bus = store.bus

        stream = store.subscribe(run.id)
        assert bus.subscriber_count(run.id) == 0  # registers on first read
        await collect(stream, 1)
        assert bus.subscriber_count(run.id) == 1
        await stream.aclose()
        assert bus.subscriber_count(run.id) == 0
        with pytest.raises(StopAsyncIteration):
            await anext(stream)

        async def dropped() -> None:
            async for event in store.subscribe(run.id):  # abandoned without closing
                assert event.seq == 1
                break

        await dropped()
        gc.collect()
        assert bus.subscriber_count(run.id) == 0

        reading = anyio.Event()

        async def cancelled() -> None:
            async with store.subscribe(run.id) as stream:
                await collect(stream, 1)
                reading.set()
                await collect(stream, 1)  # waits for a live event that never comes

        async with anyio.create_task_group() as tg:
            tg.start_soon(cancelled)
            with anyio.fail_after(WAIT):
                await reading.wait()
            assert bus.subscriber_count(run.id) == 1
            tg.cancel_scope.cancel()
        assert bus.subscriber_count(run.id) == 0


async def test_closing_the_store_ends_subscriptions(tmp_path: Path, store_kind: StoreKind) -> None:
    ended = anyio.Event()
    reading = anyio.Event()
    got: list[int] = []
    async with anyio.create_task_group() as tg:
        async with store_kind.store(tmp_path / "s.db") as store:
            run = await new_run(store)

            async def follow() -> None:
                async for event in store.subscribe(run.id):
                    got.append(event.seq)
                    reading.set()
                ended.set()

            tg.start_soon(follow)
            with anyio.fail_after(WAIT):
                await reading.wait()
        with anyio.fail_after(WAIT):
            await ended.wait()
    assert got == [1]


async def test_subscribing_to_an_unknown_run(tmp_path: Path, store_kind: StoreKind) -> None:
    async with store_kind.store(tmp_path / "s.db") as store, store.subscribe("run_nope") as stream:
        with pytest.raises(NotFound, match="run_nope"):
            await anext(stream)


async def test_two_stores_on_one_file(tmp_path: Path, store_kind: StoreKind) -> None:
    """Another process's writes reach a subscriber by polling; writes from both interleave
    without gaps, because seqs are assigned under the write lock."""
    path = tmp_path / "s.db"
    async with store_kind.store(path) as one, store_kind.store(path) as two:
        run = await new_run(one)
        async with two.subscribe(run.id) as stream:
            assert seqs(await collect(stream, 1)) == [1]
            await one.append_transcript(run.id, entries(10))
            assert seqs(await collect(stream, 10)) == list(range(2, 12))

            async def write(store: AnyStore) -> None:
                for _ in range(40):
                    await store.append_transcript(run.id, entries(2))
                await commit_usage(store, run.id)

            async with anyio.create_task_group() as tg:
                tg.start_soon(write, one)
                tg.start_soon(write, two)
            last = (await one.get_run(run.id)).last_seq
            assert last == 11 + 2 * (80 + 1)
            assert seqs(await collect(stream, last - 11)) == list(range(12, last + 1))
        assert seqs(await two.events(run.id)) == list(range(1, last + 1))


async def test_a_gap_in_live_events_is_filled_from_the_database(tmp_path: Path, store_kind: StoreKind) -> None:
    """Events another store wrote never reach this store's bus: the next local event arrives
    with a gap before it, and the subscriber reads the missing ones at once (no poll wait)."""
    path = tmp_path / "s.db"
    async with store_kind.store(path, poll_interval=30) as here, store_kind.store(path) as there:
        run = await new_run(here)
        async with here.subscribe(run.id) as stream:
            assert seqs(await collect(stream, 1)) == [1]
            await there.append_transcript(run.id, entries(2))  # seqs 2, 3: not on this bus
            await here.append_transcript(run.id, entries(1))  # seq 4: live, after a gap
            with anyio.fail_after(5):  # far less than the poll interval
                assert seqs(await collect(stream, 3)) == [2, 3, 4]


WRITER = """
import sys, anyio
from flowrun.flows.events import TranscriptEntry
from flowrun.storage import open_store

async def main(path: str, run_id: str, count: int) -> None:
    async with open_store(path) as store:
        for i in range(count):
            await store.append_transcript(run_id, [TranscriptEntry(kind="text", text=f"other {i}")])

anyio.run(main, sys.argv[1], sys.argv[2], int(sys.argv[3]))
"""


async def test_another_process_writing_the_same_run(tmp_path: Path, store_kind: StoreKind) -> None:
    path = tmp_path / "s.db"
    got: list[Event] = []
    other_seen = anyio.Event()
    async with store_kind.store(path) as store:
        run = await new_run(store)

        async def follow() -> None:
            async with store.subscribe(run.id) as stream:
                async for event in stream:
                    got.append(event)
                    text = getattr(event.data, "text", "")
                    if text.startswith("other"):
                        other_seen.set()
                    if text == "end":
                        return

        async def other_process() -> None:
            await anyio.run_process([sys.executable, "-c", WRITER, store_kind.url(path), run.id, "150"])

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                tg.start_soon(follow)
                async with anyio.create_task_group() as writers:
                    writers.start_soon(other_process)
                    here = 0
                    while not other_seen.is_set():  # write until the other process is writing too
                        await store.append_transcript(run.id, entries(1, prefix="here"))
                        here += 1
                    for _ in range(100):
                        await store.append_transcript(run.id, entries(1, prefix="here"))
                        here += 1
                await store.append_transcript(
                    run.id, [TranscriptEntry(kind=TranscriptKind.TEXT, text="end")]
                )
    texts = [getattr(e.data, "text", "") for e in got]
    assert seqs(got) == list(range(1, 1 + here + 150 + 2))
    assert sum(t.startswith("other") for t in texts) == 150
    assert sum(t.startswith("here") for t in texts) == here
    first_other = next(i for i, t in enumerate(texts) if t.startswith("other"))
    assert any(t.startswith("here") for t in texts[first_other:])  # the two processes interleaved
