"""Who asks is not who drives: leases, faces that only write commands, workers that drive,
graceful hand-over. Each test runs on SQLite and on PostgreSQL (two engines on one database,
as two processes would be)."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
import pytest

from flowrun.flows.enums import RunStatus, StepStatus
from flowrun.flows.errors import DecisionConflict, InvalidTransition
from flowrun.flows.run import Run
from flowrun.llm.base import ModelRequest, StreamEvent
from flowrun.runtime.access import Actor
from flowrun.runtime.context import EngineConfig
from flowrun.runtime.engine import Engine
from flowrun.runtime.leases import owner_gone
from flowrun.sandboxes import get_backend
from flowrun.sandboxes.base import SandboxBackend
from tests.storekinds import StoreKind

from .harness import catalog, running_engine, scripts, submit

pytestmark = pytest.mark.anyio
ANA = Actor("ana")
PARKED = [s for s in RunStatus if s.finished]
STEPS: list[dict[str, Any]] = [{"name": "Plan", "skill": "plan"}, {"name": "Build", "skill": "build"},
                               {"name": "Ship", "skill": "ship", "checkpoint": {"message": "Sign off."}}]
LEASE_S = 1.0


def provider(build_delay: float = 0.0):  # type: ignore[no-untyped-def]
    return scripts(plan=[submit("planned")], build=[{"delay_s": build_delay, **submit("built")}],
                   ship=[submit("shipped")])


_SHARED: dict[Path, dict[str, SandboxBackend]] = {}


def shared(tmp_path: Path) -> dict[str, SandboxBackend]:
    """One no-op sandbox backend for every engine of a test: the "host" they all run on (a noop
    sandbox lives in its backend's memory; local workspaces would be on the shared disk)."""
    return _SHARED.setdefault(tmp_path, {"noop": get_backend("noop", root=tmp_path / "sandboxes")})


def config(drive: str, kind: str = "worker") -> EngineConfig:
    return EngineConfig(drive=drive, kind=kind, lease_s=LEASE_S)


async def parked(engine: Engine, run: Run | str, timeout_s: float = 20) -> Run:
    run_id = run if isinstance(run, str) else run.id
    return await engine.wait_until(ANA, run_id, statuses=PARKED, timeout_s=timeout_s)


def step_starts(events: list[Any]) -> Counter[int]:
    return Counter(e.data.step for e in events if e.data.type == "step_status" and e.data.status == StepStatus.RUNNING)


async def test_a_face_writes_and_a_worker_drives(tmp_path: Path, store_kind: StoreKind) -> None:
    cat = catalog(STEPS)
    async with (
        running_engine(tmp_path, cat, provider(), kind=store_kind, backends=shared(tmp_path), config=config("always")) as worker,
        running_engine(tmp_path, cat, provider(), kind=store_kind, backends=shared(tmp_path), config=config("auto", "cli")) as face,
    ):
        run = await face.start_run(ANA, "test-flow")
        run = await parked(face, run)
        assert run.status == RunStatus.PAUSED and run.checkpoint is not None  # driven by the worker
        assert face.leases.held == set() and not face._active
        run = await face.decide(ANA, run.id, "approve")
        run = await parked(face, run)
        assert run.status == RunStatus.COMPLETED
        assert step_starts(await face.events(ANA, run.id)) == Counter({0: 1, 1: 1, 2: 1})
        await worker.idle()  # its task ends just after the run parks
        assert worker.leases.held == set()  # released once the run parked
        assert [lease.owner for lease in await face.deps.store.leases()] == []


async def test_with_no_worker_a_cli_drives_its_own_run(tmp_path: Path, store_kind: StoreKind) -> None:
    async with running_engine(tmp_path, catalog(STEPS[:2]), provider(), kind=store_kind, backends=shared(tmp_path),
                              config=config("auto", "cli")) as cli:
        run = await parked(cli, await cli.start_run(ANA, "test-flow"))
        assert run.status == RunStatus.COMPLETED


async def test_a_face_that_never_drives_leaves_runs_pending(tmp_path: Path, store_kind: StoreKind) -> None:
    async with running_engine(tmp_path, catalog(STEPS[:2]), provider(), kind=store_kind, backends=shared(tmp_path),
                              config=config("never", "serve")) as face:
        run = await face.start_run(ANA, "test-flow")
        assert (await face.get_run(ANA, run.id)).status == RunStatus.PENDING
        async with running_engine(tmp_path, catalog(STEPS[:2]), provider(), kind=store_kind, backends=shared(tmp_path),
                                  config=config("always")):
            assert (await parked(face, run)).status == RunStatus.COMPLETED  # a worker came and took it


async def test_two_workers_share_runs_and_drive_each_once(tmp_path: Path, store_kind: StoreKind) -> None:
    cat = catalog(STEPS[:2])
    async with AsyncExitStack() as stack:
        workers = [await stack.enter_async_context(running_engine(
            tmp_path, cat, provider(), kind=store_kind, backends=shared(tmp_path), config=config("always"))) for _ in range(2)]
        face = await stack.enter_async_context(running_engine(
            tmp_path, cat, provider(), kind=store_kind, backends=shared(tmp_path), config=config("never", "serve")))
        runs = [await face.start_run(ANA, "test-flow") for _ in range(24)]
        for run in runs:
            assert (await parked(face, run, timeout_s=60)).status == RunStatus.COMPLETED
            events = await face.events(ANA, run.id)
            assert [e.seq for e in events] == list(range(1, len(events) + 1))
            assert step_starts(events) == Counter({0: 1, 1: 1})  # no step ran twice
        with anyio.fail_after(20):  # each run's task ends just after the run parked
            while True:
                if all(not w._active for w in workers):
                    break
                await anyio.sleep(0.01)


async def test_200_decisions_through_two_workers_faces_apply_one(tmp_path: Path, store_kind: StoreKind) -> None:
    cat = catalog(STEPS)
    async with (
        running_engine(tmp_path, cat, provider(), kind=store_kind, backends=shared(tmp_path), config=config("always")) as one,
        running_engine(tmp_path, cat, provider(), kind=store_kind, backends=shared(tmp_path), config=config("always")) as two,
    ):
        run = await parked(one, await one.start_run(ANA, "test-flow"))
        assert run.status == RunStatus.PAUSED
        applied: list[str] = []
        refused: Counter[str] = Counter()

        async def decide(engine: Engine, i: int) -> None:
            kind = ("approve", "reject", "skip")[i % 3]
            try:
                await engine.decide(Actor(f"p{i}"), run.id, kind, step=2, decision_id=f"d{i}")
                applied.append(kind)
            except DecisionConflict as exc:
                refused[exc.code] += 1
            except InvalidTransition:
                refused["not_paused"] += 1

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for i in range(200):
                    tg.start_soon(decide, one if i % 2 else two, i)
        assert len(applied) == 1 and sum(refused.values()) == 199
        final = await parked(one, run)
        decisions = [e for e in await one.events(ANA, run.id) if e.data.type == "decision"]
        assert len(decisions) == 1
        assert final.status in (RunStatus.COMPLETED, RunStatus.REJECTED), final.model_dump_json(include={"blocked", "error", "steps"})[:3000]


async def test_sigterm_like_drain_hands_runs_over_at_a_step_boundary(tmp_path: Path, store_kind: StoreKind) -> None:
    cat = catalog(STEPS[:2])
    async with running_engine(tmp_path, cat, provider(build_delay=0.6), kind=store_kind, backends=shared(tmp_path),
                              config=config("always")) as second:
        async with running_engine(tmp_path, cat, provider(build_delay=0.6), kind=store_kind, backends=shared(tmp_path),
                                  config=config("always")) as first:
            second.recovery.draining = True  # hold the second back until the first has the run
            run = await first.start_run(ANA, "test-flow")
            with anyio.fail_after(10):
                async for event in first.subscribe(ANA, run.id):
                    if event.data.type == "step_status" and event.data.step == 1 and event.data.status == StepStatus.RUNNING:
                        break
            second.recovery.draining = False
            await first.drain(grace_s=10)  # Build finishes; nothing after it starts here
            assert not first._active
            stopped = await first.get_run(ANA, run.id)
            assert stopped.steps[1].status == StepStatus.COMPLETED
        done = await parked(second, run)
        assert done.status == RunStatus.COMPLETED
        events = await second.events(ANA, run.id)
        assert step_starts(events) == Counter({0: 1, 1: 1})
        assert [e.seq for e in events] == list(range(1, len(events) + 1))


async def test_a_lease_of_a_dead_process_is_free_at_once() -> None:
    assert owner_gone("nowhere-else:1:abc") is False  # another host: wait for the lease
    assert owner_gone(f"{__import__('socket').gethostname()}:999999999:abc") is True


async def test_a_lone_cli_leaves_pending_runs_pending_for_a_worker(tmp_path: Path, store_kind: StoreKind) -> None:
    """Runs a face-only server created wait for a worker: a CLI starting with no worker alive
    parks runs left `running` by a dead driver, but never marks a run that never ran interrupted."""
    cat = catalog(STEPS[:2])
    async with running_engine(tmp_path, cat, provider(), kind=store_kind, backends=shared(tmp_path),
                              config=config("never", "serve")) as face:
        waiting = [await face.start_run(ANA, "test-flow") for _ in range(3)]
    async with running_engine(tmp_path, cat, provider(), kind=store_kind, backends=shared(tmp_path),
                              config=config("auto", "cli")) as cli:
        assert await cli.recover() == []
        for run in waiting:
            assert (await cli.get_run(ANA, run.id)).status == RunStatus.PENDING
        assert not cli._active and cli.leases.held == set()
        assert {lease.owner for lease in await cli.deps.store.leases()} == {None}
        async with running_engine(tmp_path, cat, provider(), kind=store_kind, backends=shared(tmp_path),
                                  config=config("always")):
            for run in waiting:
                done = await parked(cli, run, timeout_s=60)
                assert done.status == RunStatus.COMPLETED
                assert step_starts(await cli.events(ANA, run.id)) == Counter({0: 1, 1: 1})


class _Stalled:
    """The scripted provider, but the first turn of step `step` waits for `go` (a process that
    stalled mid-step: a long GC pause, SIGSTOP, a VM frozen for a while)."""

    name = "scripted"

    def __init__(self, inner: Any, step: int, go: anyio.Event) -> None:
        self.inner, self.step, self.go, self.waited = inner, step, go, anyio.Event()

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        if request.step == self.step and not self.waited.is_set():
            self.waited.set()
            await self.go.wait()
        async for event in self.inner.stream(request):
            yield event


async def test_a_driver_that_stalled_past_its_lease_writes_nothing_once_taken_over(
    tmp_path: Path, store_kind: StoreKind,
) -> None:
    """Engine A stalls mid-step (its model turn and its lease renewals wait) until engine B has
    taken the run over and parked it as interrupted; then A wakes up with a tool call to make:
    every write of A's is fenced by its lease, so A runs no tool and writes no event."""
    cat = catalog(STEPS[:2])
    go = anyio.Event()
    tools = [{"name": "todo_write", "input": {"todos": []}}]
    stalled = _Stalled(scripts(plan=[submit("planned")], build=[{"tools": tools}, submit("built")]), 1, go)
    async with running_engine(tmp_path, cat, stalled, kind=store_kind, backends=shared(tmp_path),
                              config=config("always")) as a:
        renew = a.deps.store.renew_leases

        async def stuck(*args: Any, **kwargs: Any) -> list[str]:
            await go.wait()
            return await renew(*args, **kwargs)

        a.deps.store.renew_leases = stuck  # type: ignore[method-assign]
        run = await a.start_run(ANA, "test-flow")
        with anyio.fail_after(30):
            await stalled.waited.wait()
        async with running_engine(tmp_path, cat, provider(), kind=store_kind, backends=shared(tmp_path),
                                  config=config("always")) as b:
            taken = await parked(b, run, timeout_s=60)
            assert taken.status == RunStatus.INTERRUPTED
            before = [e.model_dump_json() for e in await b.events(ANA, run.id)]
            go.set()
            await a.idle()
            after = await b.events(ANA, run.id)
            assert [e.model_dump_json() for e in after] == before
            assert not [e for e in after if e.data.type == "transcript" and getattr(e.data, "tool", None) == "todo_write"]
            assert a.leases.held == set() and run.id not in a.deps.sandboxes
            assert (await b.get_run(ANA, run.id)).status == RunStatus.INTERRUPTED


@pytest.mark.parametrize("drive", ["always", "auto"])
async def test_a_decision_while_the_driver_lets_go_of_the_lease_is_driven_on(
    tmp_path: Path, store_kind: StoreKind, drive: str,
) -> None:
    """A run parks at a checkpoint; its driver's task lets go of the lease after the pause is
    committed. A decision taken in that moment (by the same process, a server whose page or MCP
    client answers at once) must be driven on: not left without a driver, and not driven by a
    task whose lease the ending task then releases (its next write refused, the run parked as
    interrupted). A slow store makes the moment wide."""
    slow_ship = scripts(plan=[submit("planned")], build=[submit("built")], ship=[{"delay_s": 0.6, **submit("shipped")}])
    async with running_engine(tmp_path, catalog(STEPS), slow_ship, kind=store_kind, backends=shared(tmp_path),
                              config=config(drive, "serve")) as engine:
        release = engine.deps.store.release_leases

        async def slow_release(*args: Any, **kwargs: Any) -> None:
            await anyio.sleep(0.3)
            await release(*args, **kwargs)

        engine.deps.store.release_leases = slow_release  # type: ignore[method-assign]
        run = await engine.start_run(ANA, "test-flow")
        with anyio.fail_after(20):
            async for event in engine.subscribe(ANA, run.id):
                if event.data.type == "run_status" and event.data.status == RunStatus.PAUSED:
                    break
        await engine.decide(ANA, run.id, "approve")  # the ending task is still letting go
        run = await parked(engine, run)
        assert run.status == RunStatus.COMPLETED, run.error
        assert step_starts(await engine.events(ANA, run.id)) == Counter({0: 1, 1: 1, 2: 1})
        await engine.idle()
        assert engine.leases.held == set()
