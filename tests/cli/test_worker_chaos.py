"""Two `flowrun worker` processes on one database (SQLite and PostgreSQL), SIGKILLed at random
moments: a few seeded trials here (scripts/chaos_workers.py runs many), see chaoskit. And a worker
paused (SIGSTOP) past its lease, then continued: it must notice it lost its runs and write
nothing more for them."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import anyio
import pytest

from flowrun.flows.enums import RunStatus, StepStatus
from flowrun.runtime.engine import Engine
from tests.storekinds import StoreKind

from .chaoskit import (
    ANA,
    PARKED,
    check_log,
    face,
    fleet,
    no_running_run_without_a_live_lease,
    trial,
)
from .workerkit import environment, worker

pytestmark = pytest.mark.anyio
LEASE_S = 1.0
TRIALS = 3


async def test_random_sigkills_of_two_workers_lose_and_repeat_nothing(tmp_path: Path, store_kind: StoreKind) -> None:
    env = environment(tmp_path, store_kind.url(tmp_path / "flowrun.db"), steps=3, delay_s=0.3, lease_s=LEASE_S)
    seed = int(os.environ.get("FLOWRUN_CHAOS_SEED", "12"))
    with anyio.fail_after(TRIALS * 150):
        async with face(env) as engine, fleet(env) as workers:
            for n in range(TRIALS):
                result = await trial(engine, workers, seed + n, run_s=2.0, takeover_limit_s=LEASE_S * 10)
                assert result.failures == [], result


async def test_a_paused_worker_that_lost_its_lease_writes_nothing_more(tmp_path: Path, store_kind: StoreKind) -> None:
    """SIGSTOP mid-step until the other worker took the run over (parked it as interrupted: the
    step cannot re-attach in the local sandbox), then SIGCONT: the paused worker must find its
    lease gone and stop, writing no event and running no tool call for that run; a retry then
    completes the run with each step's side effect once (the ledger checks it)."""
    env = environment(tmp_path, store_kind.url(tmp_path / "flowrun.db"), steps=3, delay_s=1.0, lease_s=LEASE_S)
    with anyio.fail_after(240):
        async with face(env) as engine, worker(env) as survivor:
            async with worker(env) as paused:
                survivor.process.send_signal(signal.SIGSTOP)  # so the run is the other one's
                try:
                    run = await engine.start_run(ANA, "ledger")
                    await _step_running(engine, run.id, 1)
                finally:
                    survivor.process.send_signal(signal.SIGCONT)
                assert {lease.owner for lease in await engine.deps.store.leases()} == {paused.owner}
                paused.process.send_signal(signal.SIGSTOP)  # its turn's delay and its renewals wait
                try:
                    parked = await engine.wait_until(ANA, run.id, statuses=PARKED, timeout_s=60)
                    assert parked.status == RunStatus.INTERRUPTED, parked.status
                    before = await engine.events(ANA, run.id)
                finally:
                    paused.process.send_signal(signal.SIGCONT)
                await paused.saw(f"lost the lease of run {run.id}", timeout_s=60)
                paused.terminate()  # once it has exited, it can write nothing more
                with anyio.fail_after(60):
                    await paused.process.wait()
                after = await engine.events(ANA, run.id)
                assert [e.model_dump_json() for e in after] == [e.model_dump_json() for e in before]
            retried = await engine.retry(ANA, run.id)
            done = await engine.wait_until(ANA, retried.id, statuses=PARKED, timeout_s=60)
            assert done.status == RunStatus.COMPLETED, done.error  # each ledger line once
            events = await engine.events(ANA, run.id)
            assert check_log(run.id, events, {}) == []
            assert [s.attempt for s in done.steps] == [1, 2, 1]
            assert await no_running_run_without_a_live_lease(engine) == []


async def _step_running(engine: Engine, run_id: str, index: int) -> None:
    with anyio.fail_after(60):
        async for event in engine.subscribe(ANA, run_id):
            data = event.data
            if data.type == "step_status" and data.step == index and data.status == StepStatus.RUNNING:
                return
