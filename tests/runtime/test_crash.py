"""SIGKILL mid-step: after a restart the run is interrupted, no committed event is lost, and a
retry completes it. On SQLite and on PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowrun.flows.enums import RunStatus, StepStatus
from flowrun.runtime.access import Actor
from tests.storekinds import StoreKind

from .harness import catalog, run_child_until, running_engine, scripts, submit

pytestmark = pytest.mark.anyio
CHILD = Path(__file__).with_name("crash_child.py")


async def test_sigkill_mid_step_then_restart_and_retry(tmp_path: Path, store_kind: StoreKind) -> None:
    run_id, seen = await run_child_until([str(CHILD), str(tmp_path), store_kind.name, store_kind.token], "MIDSTEP")

    provider = scripts(plan=[submit("planned")], build=[submit("built")])
    steps = [{"name": "Plan", "skill": "plan"}, {"name": "Build", "skill": "build"}]
    async with running_engine(tmp_path, catalog(steps, defaults={"sandbox_profile": "local"}), provider,
                              kind=store_kind) as engine:
        ana = Actor("ana")
        run = await engine.get_run(ana, run_id)
        assert run.status == RunStatus.INTERRUPTED
        assert [s.status for s in run.steps] == [StepStatus.COMPLETED, StepStatus.CANCELLED]
        seqs = [e.seq for e in await engine.events(ana, run_id)]
        assert seqs == list(range(1, len(seqs) + 1))  # gapless
        assert set(seen) <= set(seqs)  # every event the child saw committed survived
        run = await engine.retry(ana, run_id)
        run = await engine.wait_until(ana, run_id, timeout_s=10)
        assert run.status == RunStatus.COMPLETED
        assert run.steps[0].attempt == 1 and run.steps[1].attempt == 2  # Plan was not repeated
        setups = [e.data.text for e in await engine.events(ana, run_id) if e.data.type == "transcript"
                  and e.data.kind == "setup"]
        assert any("Reconnecting" in text for text in setups)  # the kept sandbox, not a new one
