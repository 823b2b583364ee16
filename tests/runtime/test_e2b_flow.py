"""A whole Flow on the e2b backend (the real SDK against the fake e2b on loopback): a background
checkpoint pauses the sandbox, approving connects to the same one, and the step continues in
the same workspace."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flowrun.flows.enums import RunStatus, TranscriptKind
from flowrun.flows.events import TranscriptEntry
from flowrun.flows.profiles import SandboxProfile
from flowrun.runtime.access import Actor
from flowrun.sandboxes.e2b import E2BBackend
from flowrun.sandboxes.testing import serve_fake_e2b

from .harness import catalog, running_engine, scripts, submit

pytestmark = pytest.mark.anyio
ANA = Actor("ana")
PARKED = [s for s in RunStatus if s.finished]


def shell(command: str) -> dict[str, object]:
    return {"tools": [{"name": "shell", "input": {"command": command}}]}


async def test_background_checkpoint_pauses_and_resumes_the_same_e2b_sandbox(tmp_path: Path) -> None:
    steps: list[dict[str, Any]] = [{"name": "Write", "skill": "write"},
             {"name": "Read", "skill": "read", "checkpoint": {"message": "Read it back?"}}]
    profile = SandboxProfile(name="cloud", backend="e2b", template="base")
    cat = catalog(steps, defaults={"sandbox_profile": "cloud"}, profiles=[profile])
    provider = scripts(write=[shell("echo kept-across-pause > note.txt"), submit("wrote")],
                       read=[shell("cat note.txt"), submit("read")])
    async with serve_fake_e2b(tmp_path / "cloud") as cloud:
        backend = E2BBackend(**cloud.backend_options())
        async with running_engine(tmp_path, cat, provider, backends={"e2b": backend}) as engine:
            run = await engine.start_run(ANA, "test-flow", execution_mode="background")
            run = await engine.wait_until(ANA, run.id, statuses=PARKED, timeout_s=60)
            assert run.status == RunStatus.PAUSED
            assert run.links.sandbox is not None and run.links.sandbox.state == "released"
            sandbox_id = run.links.sandbox.id
            assert cloud.sandboxes[sandbox_id].state == "paused"

            run = await engine.decide(ANA, run.id, "approve")
            run = await engine.wait_until(ANA, run.id, statuses=PARKED, timeout_s=60)
            assert run.status == RunStatus.COMPLETED
            await engine.idle()  # the end is recorded first, then the sandbox is destroyed
            run = await engine.get_run(ANA, run.id)
            assert run.links.sandbox is not None and run.links.sandbox.id == sandbox_id
            assert run.links.sandbox.state == "destroyed"
            assert cloud.sandboxes[sandbox_id].state == "killed"
            assert sum(call.startswith("POST /v2/sandboxes ") or call == "POST /v2/sandboxes"
                       for call in cloud.calls) == 1  # one sandbox for the whole run
            assert any("/pause" in call for call in cloud.calls)
            assert any("/connect" in call for call in cloud.calls)

            entries = [e.data for e in await engine.events(ANA, run.id) if isinstance(e.data, TranscriptEntry)]
            output = "".join(e.text for e in entries if e.kind == TranscriptKind.TOOL_DELTA and e.step == 1)
            assert "kept-across-pause" in output
