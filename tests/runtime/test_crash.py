"""SIGKILL mid-step: after a restart the run is interrupted, no committed event is lost, and a
retry completes it."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import anyio
import pytest
from anyio.streams.text import TextReceiveStream

from flowrun.flows.enums import RunStatus, StepStatus
from flowrun.runtime.access import Actor

from .harness import catalog, running_engine, scripts, submit

pytestmark = pytest.mark.anyio
CHILD = Path(__file__).with_name("crash_child.py")


async def test_sigkill_mid_step_then_restart_and_retry(tmp_path: Path) -> None:
    run_id, seen = "", []
    async with await anyio.open_process([sys.executable, str(CHILD), str(tmp_path)]) as proc:
        assert proc.stdout is not None
        lines = TextReceiveStream(proc.stdout)
        buffered = ""
        try:
            with anyio.fail_after(30):
                async for chunk in lines:
                    buffered += chunk
                    *complete, buffered = buffered.split("\n")
                    for line in complete:
                        kind, *rest = line.split()
                        if kind == "RUN":
                            run_id = rest[0]
                        elif kind == "SEQ":
                            seen.append(int(rest[0]))
                    if any(line.startswith("MIDSTEP") for line in complete):
                        break
        finally:
            os.kill(proc.pid, signal.SIGKILL)  # no cleanup of any kind in the child
            with anyio.fail_after(10):
                await proc.wait()
    assert proc.returncode == -signal.SIGKILL and run_id

    provider = scripts(plan=[submit("planned")], build=[submit("built")])
    steps = [{"name": "Plan", "skill": "plan"}, {"name": "Build", "skill": "build"}]
    async with running_engine(tmp_path, catalog(steps, defaults={"sandbox_profile": "local"}), provider) as engine:
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
