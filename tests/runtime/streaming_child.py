"""Run by test_restart_streaming.py in a subprocess: a step runs a long command on the (fake)
e2b sandbox; the process reports what it sees and waits to be killed with SIGKILL."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from flowrun.flows.profiles import SandboxProfile
from flowrun.llm.scripted import ScriptedProvider
from flowrun.runtime.access import Actor
from flowrun.runtime.catalog import Catalog
from flowrun.sandboxes.e2b import E2BBackend
from tests.runtime.harness import catalog, running_engine, scripts, submit

COMMAND = "echo before-restart; while [ ! -f go ]; do sleep 0.05; done; echo after-restart"


def flow() -> Catalog:
    profile = SandboxProfile(name="cloud", backend="e2b", template="base")
    return catalog([{"name": "Build", "skill": "build"}, {"name": "Ship", "skill": "ship"}],
                   defaults={"sandbox_profile": "cloud"}, profiles=[profile])


def provider() -> ScriptedProvider:
    return scripts(build=[{"text": "building", "tools": [{"name": "shell", "input": {"command": COMMAND}}]},
                          submit("built")],
                   ship=[submit("shipped")])


async def main(tmp: Path, options: dict[str, Any]) -> None:
    backend = E2BBackend(**options)
    async with running_engine(tmp, flow(), provider(), backends={"e2b": backend}) as engine:
        run = await engine.start_run(Actor("ana"), "test-flow")
        print("RUN", run.id, flush=True)
        async for event in engine.subscribe(Actor("ana"), run.id):
            print("SEQ", event.seq, flush=True)
            if event.data.type == "transcript" and "before-restart" in getattr(event.data, "text", ""):
                print("STREAMING", flush=True)


if __name__ == "__main__":
    anyio.run(main, Path(sys.argv[1]), json.loads(sys.argv[2]))
