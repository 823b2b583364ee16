"""A restart while a step streams a command on e2b: the new process re-attaches to the same
command, keeps streaming its output and the run goes on, never interrupted."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from flowrun.flows.enums import RunStatus, TranscriptKind
from flowrun.flows.events import RunStatusChanged, TranscriptEntry
from flowrun.runtime.access import Actor
from flowrun.sandboxes.e2b import E2BBackend
from flowrun.sandboxes.testing import serve_fake_e2b

from .harness import run_child_until, running_engine
from .streaming_child import flow, provider

pytestmark = pytest.mark.anyio
CHILD = Path(__file__).with_name("streaming_child.py")
ANA = Actor("ana")


async def run_child_until_streaming(tmp_path: Path, options: dict[str, object]) -> tuple[str, list[int]]:
    return await run_child_until([str(CHILD), str(tmp_path), json.dumps(options)], "STREAMING")


async def test_a_streaming_step_reattaches_after_a_restart_and_the_run_goes_on(tmp_path: Path) -> None:
    async with serve_fake_e2b(tmp_path / "cloud") as cloud:
        options = cloud.backend_options()
        run_id, seen = await run_child_until_streaming(tmp_path, options)
        assert run_id and seen
        [sandbox] = cloud.sandboxes.values()
        assert sandbox.state == "running"  # the command outlived the engine process

        async with running_engine(tmp_path, flow(), provider(), backends={"e2b": E2BBackend(**options)}) as engine:
            with anyio.fail_after(30):
                async for event in engine.subscribe(ANA, run_id, after_seq=max(seen)):
                    data = event.data
                    if isinstance(data, TranscriptEntry) and data.text.startswith("Reattached"):
                        break
            (sandbox.host_path("/home/user/workspace") / "go").touch()  # let the command finish
            run = await engine.wait_until(ANA, run_id, statuses=[s for s in RunStatus if s.finished], timeout_s=30)
            assert run.status == RunStatus.COMPLETED
            assert [s.attempt for s in run.steps] == [1, 1]  # the step was continued, not re-run

            events = await engine.events(ANA, run_id)
            statuses = [e.data.status for e in events if isinstance(e.data, RunStatusChanged)]
            assert RunStatus.INTERRUPTED not in statuses
            output = "".join(e.data.text for e in events
                             if isinstance(e.data, TranscriptEntry) and e.data.kind == TranscriptKind.TOOL_DELTA)
            assert "before-restart" in output and "after-restart" in output
            assert [c for c in cloud.commands if "before-restart" in c] == [cloud.commands[0]]  # started once
            seqs = [e.seq for e in events]
            assert seqs == list(range(1, len(seqs) + 1)) and set(seen) <= set(seqs)


async def test_a_command_that_ended_while_nobody_listened_parks_the_run_interrupted(tmp_path: Path) -> None:
    async with serve_fake_e2b(tmp_path / "cloud") as cloud:
        options = cloud.backend_options()
        run_id, _ = await run_child_until_streaming(tmp_path, options)
        [sandbox] = cloud.sandboxes.values()
        (sandbox.host_path("/home/user/workspace") / "go").touch()
        with anyio.fail_after(10):
            for process in sandbox.processes.values():
                await process.finished.wait()
        async with running_engine(tmp_path, flow(), provider(), backends={"e2b": E2BBackend(**options)}) as engine:
            run = await engine.get_run(ANA, run_id)
            assert run.status == RunStatus.INTERRUPTED  # its result is unknown: a person retries
            assert run.links.sandbox is not None and run.links.sandbox.state == "active"  # kept
            run = await engine.wait_until(ANA, (await engine.retry(ANA, run_id)).id, timeout_s=30)
            assert run.status == RunStatus.COMPLETED and run.steps[0].attempt == 2
