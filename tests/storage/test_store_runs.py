"""Runs in the SQLite store: round trips, compare-and-set, decisions, daily caps, records."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import anyio
import pytest

from flowrun.flows import machine
from flowrun.flows.enums import DecisionKind, ExecutionMode, Outcome, RunStatus, StepStatus
from flowrun.flows.errors import (
    ConcurrentUpdate,
    DecisionConflict,
    NotFound,
    StartRefused,
    UsageError,
)
from flowrun.flows.events import RunStatusChanged, StepStatusChanged
from flowrun.flows.redact import Redactor
from flowrun.flows.run import Decision, Run, StepResult, Usage
from flowrun.storage import RecordRow, RunFilter, SQLiteStore, StoreClosed
from tests.storekinds import AnyStore, StoreKind

from .storekit import created, entries, make_run, seqs

pytestmark = pytest.mark.anyio


async def started(store: AnyStore, run: Run | None = None) -> Run:
    """A run created and started (version 2)."""
    run = run or make_run()
    run, _ = await store.create_run(run, created(run))
    new, events = machine.start(run)
    run, _ = await store.commit(new, events, expected_version=run.version)
    return run


async def test_round_trip_with_steps(tmp_path: Path, store_kind: StoreKind) -> None:
    async with store_kind.store(tmp_path / "s.db") as store:
        run = make_run(mode=ExecutionMode.BACKGROUND)
        stored, events = await store.create_run(run, created(run))
        assert (stored.version, stored.last_seq, seqs(events)) == (1, 1, [1])
        assert events[0].data.type == "run_created"

        new, step_events = machine.start(stored)
        new, more = machine.begin_step(new, 0)
        new, done = machine.finish_step(
            new, 0, StepResult(outcome=Outcome.SUCCESS, summary="planned")
        )
        new, usage = machine.record_usage(new, 0, Usage(turns=3, input_tokens=120, cost_usd=0.25))
        committed, events = await store.commit(
            new, [*step_events, *more, *done, *usage], expected_version=stored.version
        )
        assert committed.version == 2
        assert committed.last_seq == 1 + len(events)
        assert seqs(events) == list(range(2, 2 + len(events)))

        loaded = await store.get_run(run.id)
        assert loaded == committed
        assert loaded.steps[0].summary == "planned"
        assert loaded.steps[0].status == StepStatus.COMPLETED
        assert loaded.usage.turns == 3
        assert loaded.task is not None
        assert [s.name for s in loaded.steps] == ["Plan", "Build", "Ship"]

    async with store_kind.store(tmp_path / "s.db") as reopened:  # durable across a reopen
        assert await reopened.get_run(run.id) == committed
        assert seqs(await reopened.events(run.id)) == list(range(1, committed.last_seq + 1))


async def test_commit_is_compare_and_set(tmp_path: Path, store_kind: StoreKind) -> None:
    async with store_kind.store(tmp_path / "s.db") as store:
        run = await started(store)
        new, events = machine.begin_step(run, 0)
        with pytest.raises(ConcurrentUpdate) as info:
            await store.commit(new, events, expected_version=run.version - 1)
        assert info.value.details == {"run_id": run.id, "expected_version": 1, "version": 2}
        assert "reload" in info.value.message
        assert await store.get_run(run.id) == run  # nothing written

        ok, _ = await store.commit(new, events, expected_version=run.version)
        assert ok.version == run.version + 1
        with pytest.raises(ConcurrentUpdate):  # the same version twice: the second loses
            await store.commit(new, events, expected_version=run.version)

        ghost = make_run()
        with pytest.raises(NotFound, match=ghost.id):
            await store.commit(ghost, [], expected_version=1)


async def test_only_changed_steps_are_written(tmp_path: Path, store_kind: StoreKind) -> None:
    path = tmp_path / "s.db"
    async with store_kind.store(path) as store:
        run = await started(store)
        # change step 2 behind the store's back: a commit that does not touch step 2 must not
        # rewrite it (so the poke survives), while step 0 (changed) is written
        await store_kind.poke(
            path,
            sqlite="UPDATE steps SET json = json_set(json, '$.summary', 'poked') WHERE run_id = ? AND idx = 2",
            postgres="UPDATE steps SET json = jsonb_set(json::jsonb, '{summary}', '\"poked\"')::text "
            "WHERE run_id = ? AND idx = 2",
            params=(run.id,),
        )
        new, events = machine.begin_step(run, 0)
        await store.commit(new, events, expected_version=run.version)
        loaded = await store.get_run(run.id)
        assert loaded.steps[0].status == StepStatus.RUNNING
        assert loaded.steps[2].summary == "poked"


async def test_transcript_appends_touch_only_events_and_last_seq(tmp_path: Path, store_kind: StoreKind) -> None:
    path = tmp_path / "s.db"
    async with store_kind.store(path) as store:
        run = await started(store)
        await store_kind.poke(
            path,
            sqlite="UPDATE runs SET json = json_set(json, '$.error', 'poked') WHERE id = ?",
            postgres="UPDATE runs SET json = jsonb_set(json::jsonb, '{error}', '\"poked\"')::text WHERE id = ?",
            params=(run.id,),
        )
        appended = await store.append_transcript(run.id, entries(5))
        assert seqs(appended) == [3, 4, 5, 6, 7]
        assert [e.data.text for e in appended] == [f"line {i}" for i in range(5)]  # type: ignore[union-attr]
        loaded = await store.get_run(run.id)
        assert loaded.error == "poked"  # the run row's JSON was not rewritten
        assert (loaded.version, loaded.last_seq) == (run.version, 7)
        assert await store.append_transcript(run.id, []) == []
        with pytest.raises(NotFound, match="run_missing"):
            await store.append_transcript("run_missing", entries(1))


async def test_decision_rows_are_idempotent(tmp_path: Path, store_kind: StoreKind) -> None:
    async with store_kind.store(tmp_path / "s.db") as store:
        run = await started(store)
        new, events = machine.pause_at(run, 2, "Sign off before the PR opens.")
        paused, _ = await store.commit(new, events, expected_version=run.version)

        decision = Decision(
            kind=DecisionKind.APPROVE, actor="ana", comment="ship it", decision_id="dec-1"
        )
        decided, events = machine.decide(paused, decision)
        committed, _ = await store.commit(
            decided, events, expected_version=paused.version, decision_id="dec-1"
        )

        row = await store.get_decision("dec-1")
        assert row is not None
        assert (row.decision_id, row.run_id, row.step) == ("dec-1", run.id, 2)
        assert row.decision == decided.steps[2].decision
        assert await store.get_decision("dec-2") is None

        # the same decision_id again (even against the current version) is refused, naming the first
        with pytest.raises(DecisionConflict) as info:
            await store.commit(
                decided, events, expected_version=committed.version, decision_id="dec-1"
            )
        assert info.value.code == "already_decided"
        assert "dec-1" in info.value.message and "approve by ana" in info.value.message
        assert info.value.details["step"] == 2
        assert await store.get_run(run.id) == committed  # nothing written

        with pytest.raises(UsageError, match="no 'decision' event"):
            await store.commit(decided, [], expected_version=committed.version, decision_id="dec-3")


async def test_concurrent_commits_with_one_decision_id_record_it_once(tmp_path: Path, store_kind: StoreKind) -> None:
    async with store_kind.store(tmp_path / "s.db") as store:
        run = await started(store)
        new, events = machine.pause_at(run, 2, "Sign off")
        paused, _ = await store.commit(new, events, expected_version=run.version)
        outcomes: list[object] = []

        async def decide(kind: DecisionKind) -> None:
            decided, events = machine.decide(
                paused, Decision(kind=kind, actor="ana", decision_id="dec-x")
            )
            try:
                outcomes.append(
                    await store.commit(
                        decided, events, expected_version=paused.version, decision_id="dec-x"
                    )
                )
            except ConcurrentUpdate as exc:
                outcomes.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(decide, DecisionKind.APPROVE)
            tg.start_soon(decide, DecisionKind.REJECT)
        assert sum(isinstance(o, ConcurrentUpdate) for o in outcomes) == 1
        row = await store.get_decision("dec-x")
        final = await store.get_run(run.id)
        assert row is not None and final.steps[2].decision == row.decision


async def test_daily_cap(tmp_path: Path, store_kind: StoreKind) -> None:
    day = date(2025, 3, 1)
    async with store_kind.store(tmp_path / "s.db") as store:
        for _ in range(5):
            run = make_run(workspace="acme")
            await store.create_run(run, created(run), daily_cap=5, day=day)
        assert await store.runs_started("acme", day) == 5

        sixth = make_run(workspace="acme")
        with pytest.raises(StartRefused) as info:
            await store.create_run(sixth, created(sixth), daily_cap=5, day=day)
        error = info.value
        assert error.code == "daily_cap_reached"
        assert "daily cap of 5 runs" in error.message and "'acme'" in error.message
        assert "resets at 00:00 UTC tomorrow" in error.message
        assert error.details["resets_at"] == "2025-03-02T00:00:00+00:00"
        assert error.details["workspace"] == "acme" and error.details["cap"] == 5
        with pytest.raises(NotFound):  # nothing was written
            await store.get_run(sixth.id)
        assert await store.runs_started("acme", day) == 5

        other = make_run(workspace="globex")  # another workspace, same day
        await store.create_run(other, created(other), daily_cap=5, day=day)
        tomorrow = make_run(workspace="acme")  # same workspace, next day
        await store.create_run(tomorrow, created(tomorrow), daily_cap=5, day=date(2025, 3, 2))
        uncapped = make_run(workspace="acme")  # no cap given: not counted
        await store.create_run(uncapped, created(uncapped))
        assert await store.runs_started("acme", day) == 5
        assert await store.runs_started("globex", day) == 1
        assert await store.runs_started("acme", date(2025, 3, 2)) == 1


async def test_daily_cap_holds_under_concurrent_starts(tmp_path: Path, store_kind: StoreKind) -> None:
    day = date(2025, 3, 1)
    refused: list[StartRefused] = []
    async with store_kind.store(tmp_path / "s.db") as store:

        async def start() -> None:
            run = make_run(workspace="busy")
            try:
                await store.create_run(run, created(run), daily_cap=5, day=day)
            except StartRefused as exc:
                refused.append(exc)

        async with anyio.create_task_group() as tg:
            for _ in range(12):
                tg.start_soon(start)
        assert len(refused) == 7
        assert await store.runs_started("busy", day) == 5
        assert len(await store.list_runs(RunFilter(workspace="busy"))) == 5


async def test_create_refuses_a_duplicate_id(tmp_path: Path, store_kind: StoreKind) -> None:
    async with store_kind.store(tmp_path / "s.db") as store:
        run = make_run()
        await store.create_run(run, created(run))
        with pytest.raises(UsageError) as info:
            await store.create_run(run, created(run))
        assert info.value.code == "already_exists"


async def test_commit_pair_writes_both_or_neither(tmp_path: Path, store_kind: StoreKind) -> None:
    async with store_kind.store(tmp_path / "s.db") as store:
        run = await started(store)
        new, events = machine.fail(run, "tests failed")
        failed, _ = await store.commit(new, events, expected_version=run.version)

        original, clone, original_events, clone_events = machine.clone_for_retry(failed, "bo")
        stale = (original, original_events, failed.version - 1)
        with pytest.raises(ConcurrentUpdate):
            await store.commit_pair(stale, (clone, [*created(clone), *clone_events]))
        with pytest.raises(NotFound):
            await store.get_run(clone.id)
        assert (await store.get_run(run.id)).retried_as == []

        first, second = await store.commit_pair(
            (original, original_events, failed.version), (clone, [*created(clone), *clone_events])
        )
        assert first.retried_as == [clone.id] and first.version == failed.version + 1
        assert second.retry_of == run.id and (second.version, second.last_seq) == (1, 2)
        assert await store.get_run(clone.id) == second
        assert (await store.get_run(run.id)).retried_as == [clone.id]

        with pytest.raises(UsageError, match="both runs"):
            await store.commit_pair((first, [], first.version), (first, []))


async def test_list_runs_newest_first_with_filters(tmp_path: Path, store_kind: StoreKind) -> None:
    async with store_kind.store(tmp_path / "s.db") as store:
        made: list[Run] = []
        for i in range(6):
            run = make_run(workspace="a" if i % 2 else "b", started_by="ana" if i < 3 else "bo")
            stored, _ = await store.create_run(run, created(run))
            made.append(stored)
        running = await started(store, make_run(workspace="a"))

        listed = await store.list_runs()
        assert [r.id for r in listed] == [running.id, *(r.id for r in reversed(made))]
        assert [r.id for r in await store.list_runs(RunFilter(limit=2))] == [
            running.id,
            made[-1].id,
        ]
        assert {r.id for r in await store.list_runs(RunFilter(workspace="a"))} == {
            running.id,
            *(r.id for r in made[1::2]),
        }
        assert {r.id for r in await store.list_runs(RunFilter(started_by="bo", workspace="b"))} == {
            made[4].id
        }
        assert [r.id for r in await store.list_runs(RunFilter(status=[RunStatus.RUNNING]))] == [
            running.id
        ]
        assert await store.list_runs(RunFilter(status=[])) == []
        assert await store.list_runs(RunFilter(flow="other")) == []
        assert len(await store.list_runs(RunFilter(flow="review"))) == 7
        assert all(len(r.steps) == 3 for r in listed)
        page = await store.list_runs(RunFilter(limit=3, before=made[-1].id))  # cursor paging
        assert [r.id for r in page] == [made[4].id, made[3].id, made[2].id]

        pending = await store.runs_with_status([RunStatus.PENDING])
        assert [r.id for r in pending] == [r.id for r in made]  # oldest first
        assert await store.runs_with_status([]) == []
        with pytest.raises(UsageError, match="limit"):
            await store.list_runs(RunFilter(limit=0))


async def test_records(tmp_path: Path, store_kind: StoreKind) -> None:
    async with store_kind.store(tmp_path / "s.db") as store:
        record = RecordRow(id="plan_1", kind="plan", title="Plan", body="Do it", data={"n": 1})
        await store.put_record(record)
        assert await store.get_record("plan_1") == record
        changed = record.model_copy(update={"title": "Plan v2"})
        await store.put_record(changed)
        assert await store.get_record("plan_1") == changed
        assert await store.get_record("plan_2") is None


async def test_bad_input_names_the_problem(tmp_path: Path, store_kind: StoreKind) -> None:
    async with store_kind.store(tmp_path / "s.db") as store:
        run = await started(store)
        with pytest.raises(UsageError, match="expected_version"):
            await store.commit(run, [], expected_version=0)
        with pytest.raises(UsageError, match=r"events\[0\] is a dict"):
            await store.commit(run, [{"type": "run_status"}], expected_version=run.version)  # type: ignore[list-item]
        with pytest.raises(UsageError, match=r"entries\[1\] is a str"):
            await store.append_transcript(run.id, [*entries(1), "oops"])  # type: ignore[list-item]
        with pytest.raises(UsageError, match="after_seq"):
            await store.events(run.id, after_seq=-1)
        with pytest.raises(UsageError, match="limit"):
            await store.events(run.id, limit=0)
        with pytest.raises(UsageError, match="daily_cap"):
            await store.create_run(make_run(), [], daily_cap=-1)
        with pytest.raises(NotFound, match="run_nope"):
            await store.get_run("run_nope")
        with pytest.raises(NotFound, match="run_nope"):
            await store.events("run_nope")
        assert await store.events(run.id, after_seq=99) == []
        # a value that cannot be JSON fails its caller alone, before it reaches the writer
        weird = run.model_copy(update={"params": {"x": object()}})
        with pytest.raises(UsageError, match="cannot be stored as JSON"):
            await store.commit(weird, [], expected_version=run.version)
        assert (await store.get_run(run.id)).version == run.version


async def test_lifecycle_is_guarded(tmp_path: Path, store_kind: StoreKind) -> None:
    store = store_kind.store(tmp_path / "s.db")
    with pytest.raises(StoreClosed, match="new, not open"):
        await store.get_run("run_x")
    async with store:
        with pytest.raises(UsageError, match="entered once"):
            await store.__aenter__()
    with pytest.raises(StoreClosed, match="closed"):
        await store.append_transcript("run_x", entries(1))
    with pytest.raises(StoreClosed):
        store.subscribe("run_x")
    with pytest.raises(UsageError, match="file path"):
        SQLiteStore(":memory:")


async def test_queued_writes_finish_before_close(tmp_path: Path, store_kind: StoreKind) -> None:
    results: list[int] = []
    path = tmp_path / "s.db"
    async with anyio.create_task_group() as tg, store_kind.store(path) as store:
        run = await started(store)

        async def append() -> None:
            results.append(len(await store.append_transcript(run.id, entries(3))))

        for _ in range(20):
            tg.start_soon(append)
        await anyio.lowlevel.checkpoint()  # the appends queue up; leaving drains them
    assert results == [3] * 20
    async with store_kind.store(path) as reopened:
        assert (await reopened.get_run(run.id)).last_seq == 2 + 60


async def test_steps_are_written_whole_when_the_cache_is_cold(tmp_path: Path, store_kind: StoreKind) -> None:
    path = tmp_path / "s.db"
    async with store_kind.store(path) as store:
        run = await started(store)
    async with store_kind.store(path) as other:  # a fresh process: knows nothing of the run's steps
        new, events = machine.begin_step(run, 1)
        await other.commit(new, events, expected_version=run.version)
        loaded = await other.get_run(run.id)
        assert loaded.steps[1].status == StepStatus.RUNNING
        assert loaded.steps == new.steps
        status = [e.data for e in await other.events(run.id)]
        assert isinstance(status[1], RunStatusChanged) and isinstance(status[2], StepStatusChanged)


async def test_cancelled_reads_leave_the_pool_usable(tmp_path: Path, store_kind: StoreKind) -> None:
    async with store_kind.store(tmp_path / "s.db") as store:
        run = await started(store)
        for turns in range(40):
            with anyio.CancelScope() as scope:

                async def cancel_after(n: int, scope: anyio.CancelScope = scope) -> None:
                    for _ in range(n):
                        await anyio.lowlevel.checkpoint()
                    scope.cancel()

                async with anyio.create_task_group() as tg:
                    tg.start_soon(cancel_after, turns)
                    await store.list_runs()  # a snapshot read: BEGIN, two SELECTs, ROLLBACK
                    await store.get_run(run.id)
        assert await store.get_run(run.id) == run
        assert [r.id for r in await store.list_runs()] == [run.id]


async def test_every_commit_stores_its_changed_steps_redacted(tmp_path: Path, store_kind: StoreKind) -> None:
    """Steps stored (or read) before are not walked again for secrets (`StepMemo`); a step that
    changed is, whichever object the run came from."""
    secret = "sk-unit-test-9f8e7d6c5b4a"
    async with store_kind.store(tmp_path / "s.db", redactor=Redactor([secret])) as store:
        run = make_run()
        run, _ = await store.create_run(run, created(run))
        new, events = machine.start(run)
        run, _ = await store.commit(new, events, expected_version=run.version)
        for source in ("the commit", "a read"):
            if source == "a read":
                run = await store.get_run(run.id)
            index = 0 if source == "the commit" else 1
            new, events = machine.begin_step(run, index)
            run, _ = await store.commit(new, events, expected_version=run.version)
            result = StepResult(outcome=Outcome.SUCCESS, summary=f"used {secret} from {source}")
            new, events = machine.finish_step(run, index, result)
            run, _ = await store.commit(new, events, expected_version=run.version)
            assert secret not in run.steps[index].model_dump_json()
        stored = await store.get_run(run.id)
        assert [step.summary for step in stored.steps[:2]] == [
            "used [REDACTED] from the commit", "used [REDACTED] from a read"]
        assert secret not in stored.model_dump_json()
