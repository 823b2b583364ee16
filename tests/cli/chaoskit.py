"""Random SIGKILLs of `flowrun worker` processes mid-step, for tests/cli/test_worker_chaos.py
(a few seeded trials) and scripts/chaos_workers.py (many).

The Flow `ledger` (see `workerkit.environment`) has steps that each append their name to
`steps.log` in the run's workspace and check that the file holds exactly the names of the steps
so far, once each: a committed step whose side effect ran again fails the run. A trial starts a
few runs, follows their logs as a client would, SIGKILLs a worker at a random moment (one that
holds a lease of those runs when there is one), starts a replacement, retries the runs the
survivor parked as interrupted, and checks what the issue asks:
- the victim's runs are taken over (lease moved or run parked) within `takeover_limit_s`;
- every run completes (the ledger's checks passed: no side effect repeated), and no step
  started again after it completed;
- the seq is gapless and every event the client saw is in the log with the same seq and content;
- no run is `running` without a live lease.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
from anyio.abc import TaskGroup, TaskStatus

from flowrun.config import Settings, open_engine
from flowrun.flows.enums import RunStatus, StepStatus
from flowrun.flows.events import Event
from flowrun.runtime.access import Actor
from flowrun.runtime.engine import Engine

from .workerkit import Worker, worker

ANA = Actor("ana")
PARKED = [s for s in RunStatus if s.finished]


@asynccontextmanager
async def face(env: Mapping[str, str]) -> AsyncIterator[Engine]:
    """An engine that only writes commands and follows the log (as `serve --no-drive`)."""
    settings = dataclasses.replace(Settings.from_env(env), drive="never", engine_kind="test")
    async with open_engine(settings) as engine:
        yield engine


class Fleet:
    """Workers on one database, each hosted by a task of the fleet's (so any task may add one);
    a killed one is replaced by a fresh process with `add`."""

    def __init__(self, env: Mapping[str, str], tg: TaskGroup) -> None:
        self.env = env
        self._tg = tg
        self.workers: list[Worker] = []
        self.ever: list[Worker] = []  # killed ones too: their logs explain a failure

    async def add(self) -> Worker:
        started: Worker = await self._tg.start(self._host)
        self.workers.append(started)
        self.ever.append(started)
        return started

    def warnings(self) -> list[str]:
        return [f"{w.owner}: {line}" for w in self.ever for line in w.output.splitlines()
                if line.startswith(("WARNING", "ERROR"))]

    async def _host(self, *, task_status: TaskStatus[Worker]) -> None:
        async with worker(self.env) as running:
            task_status.started(running)
            await running.process.wait()

    def kill(self, victim: Worker) -> None:
        victim.kill()
        self.workers.remove(victim)

    def stop(self) -> None:
        for running in self.workers:
            running.terminate()
        self.workers.clear()


@asynccontextmanager
async def fleet(env: Mapping[str, str], size: int = 2) -> AsyncIterator[Fleet]:
    async with anyio.create_task_group() as tg:
        workers = Fleet(env, tg)
        try:
            for _ in range(size):
                await workers.add()
            yield workers
        finally:
            workers.stop()


@dataclass
class Trial:
    seed: int
    kill_after_s: float = 0.0
    victim_runs: list[str] = field(default_factory=list)
    takeover_s: list[float] = field(default_factory=list)
    interrupted: int = 0
    failures: list[str] = field(default_factory=list)


async def _follow(engine: Engine, run_id: str, seen: dict[int, str]) -> None:
    """A client following the run: what it printed, by seq."""
    async for event in engine.subscribe(ANA, run_id):
        seen[event.seq] = event.data.model_dump_json()


async def _leases(engine: Engine) -> dict[str, str | None]:
    return {lease.run_id: lease.owner for lease in await engine.deps.store.leases()}


async def _taken_over(engine: Engine, run_ids: list[str], victim: str, timeout_s: float) -> list[float]:
    """Seconds until each of `run_ids` is no longer held by `victim` (moved, or parked)."""
    start = time.monotonic()
    took: dict[str, float] = {}
    with anyio.move_on_after(timeout_s):
        while len(took) < len(run_ids):
            owners = await _leases(engine)
            for run_id in run_ids:
                if run_id not in took and owners.get(run_id) != victim:
                    took[run_id] = time.monotonic() - start
            await anyio.sleep(0.02)
    return [took.get(run_id, float("inf")) for run_id in run_ids]


def check_log(run_id: str, events: list[Event], seen: Mapping[int, str]) -> list[str]:
    problems: list[str] = []
    seqs = [e.seq for e in events]
    if seqs != list(range(1, len(seqs) + 1)):
        problems.append(f"{run_id}: seq not gapless: {seqs}")
    stored = {e.seq: e.data.model_dump_json() for e in events}
    lost = sorted(seq for seq, data in seen.items() if stored.get(seq) != data)
    if lost:
        problems.append(f"{run_id}: events a client saw are gone or changed: seqs {lost}")
    completed: set[int] = set()
    for event in events:
        data = event.data
        if data.type != "step_status":
            continue
        if data.status == StepStatus.COMPLETED:
            completed.add(data.step)
        elif data.status == StepStatus.RUNNING and data.step in completed:
            problems.append(f"{run_id}: step {data.step} started again after it completed (seq {event.seq})")
    return problems


async def no_running_run_without_a_live_lease(engine: Engine) -> list[str]:
    now = await engine.deps.store.store_time()
    return [f"{lease.run_id} is running without a live lease ({lease.owner}, {lease.expires})"
            for lease in await engine.deps.store.leases()
            if lease.status == RunStatus.RUNNING and (lease.owner is None or (lease.expires or 0) <= now)]


async def trial(engine: Engine, workers: Fleet, seed: int, *, runs: int = 2, run_s: float = 2.0,
                takeover_limit_s: float = 10.0, timeout_s: float = 120.0) -> Trial:
    """One trial (see the module's docstring). `run_s`: about how long a run takes, the range the
    kill moment is drawn from; `takeover_limit_s`: what counts as taken over in time."""
    rng = random.Random(seed)
    result = Trial(seed=seed, kill_after_s=rng.uniform(0.0, run_s))
    started = [await engine.start_run(ANA, "ledger") for _ in range(runs)]
    ids = [run.id for run in started]
    seen: dict[str, dict[int, str]] = {run_id: {} for run_id in ids}
    async with anyio.create_task_group() as followers:
        for run_id in ids:
            followers.start_soon(_follow, engine, run_id, seen[run_id])
        await anyio.sleep(result.kill_after_s)
        owners = await _leases(engine)
        holding = [w for w in workers.workers if w.owner in {owners.get(r) for r in ids}]
        victim = rng.choice(holding or workers.workers)
        result.victim_runs = [r for r in ids if owners.get(r) == victim.owner]
        workers.kill(victim)
        async with anyio.create_task_group() as tg:
            tg.start_soon(workers.add)  # two workers again, as a restart would make it
            result.takeover_s = await _taken_over(engine, result.victim_runs, victim.owner, takeover_limit_s * 3)
        for run_id, took in zip(result.victim_runs, result.takeover_s, strict=True):
            if took > takeover_limit_s:
                result.failures.append(f"{run_id}: not taken over within {takeover_limit_s:g}s (took {took:.2f}s)")
        result.failures += await no_running_run_without_a_live_lease(engine)
        for run_id in ids:
            result.failures += await _settle(engine, run_id, result, timeout_s)
        followers.cancel_scope.cancel()
    for run_id in ids:
        result.failures += check_log(run_id, await engine.events(ANA, run_id), seen[run_id])
    result.failures += await no_running_run_without_a_live_lease(engine)
    return result


async def _settle(engine: Engine, run_id: str, result: Trial, timeout_s: float) -> list[str]:
    """Wait for the run to park; retry it while interrupted (as its client would)."""
    for _ in range(5):
        run = await engine.wait_until(ANA, run_id, statuses=PARKED, timeout_s=timeout_s)
        if run.status == RunStatus.COMPLETED:
            return []
        if run.status != RunStatus.INTERRUPTED:
            return [f"{run_id} ended {run.status.value}: {run.error}"]
        result.interrupted += 1
        await engine.retry(ANA, run_id)
    return [f"{run_id} was still interrupted after 5 retries"]



# -- many runs: started from several processes while several workers drive them ---------------

STARTER = """
import anyio, dataclasses, json, sys
from flowrun.config import Settings, open_engine
from flowrun.runtime.access import Actor

async def main(count: int) -> None:
    settings = dataclasses.replace(Settings.from_env(), drive="never", engine_kind="starter")
    async with open_engine(settings) as engine:
        ids = [(await engine.start_run(Actor("ana"), "relay")).id for _ in range(count)]
    print(json.dumps(ids))

anyio.run(main, int(sys.argv[1]))
"""


@dataclass
class ManyRuns:
    runs: int
    seconds: float
    problems: list[str]


async def many_runs(env: Mapping[str, str], engine: Engine, *, runs: int, starters: int, workers: int,
                    timeout_s: float = 900.0) -> ManyRuns:
    """`starters` processes start `runs` runs of `relay` between them while `workers` workers
    drive them: every run must complete exactly once (one `completed` status, each step started
    once, a gapless seq) and no run may be left `running` without a live lease."""
    import json
    import sys

    async with fleet(env, workers) as hosts:
        t0 = time.monotonic()
        ids: list[str] = []

        async def start() -> None:
            done = await anyio.run_process([sys.executable, "-c", STARTER, str(runs // starters)], env=dict(env))
            ids.extend(json.loads(done.stdout))

        async with anyio.create_task_group() as tg:
            for _ in range(starters):
                tg.start_soon(start)
        problems: list[str] = []
        if len(set(ids)) != runs:
            problems.append(f"{len(set(ids))} distinct runs started, not {runs}")
        with anyio.fail_after(timeout_s):
            for run_id in ids:
                run = await engine.wait_until(ANA, run_id, statuses=PARKED, timeout_s=timeout_s)
                events = await engine.events(ANA, run_id)
                ended = [e for e in events if e.data.type == "run_status" and e.data.status == RunStatus.COMPLETED]
                starts = Counter(e.data.step for e in events
                                 if e.data.type == "step_status" and e.data.status == StepStatus.RUNNING)
                if run.status != RunStatus.COMPLETED or len(ended) != 1:
                    problems.append(f"{run_id}: {run.status.value}, completed {len(ended)} time(s): {run.error}")
                if set(starts.values()) != {1} or len(starts) != len(run.steps):
                    problems.append(f"{run_id}: steps started {dict(starts)}")
                if [e.seq for e in events] != list(range(1, len(events) + 1)):
                    problems.append(f"{run_id}: seq not gapless")
        seconds = time.monotonic() - t0
        problems += await no_running_run_without_a_live_lease(engine)
        if problems:
            problems += hosts.warnings()
    return ManyRuns(runs=len(ids), seconds=seconds, problems=problems)
