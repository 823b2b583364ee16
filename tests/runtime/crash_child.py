"""Run by test_crash.py in a subprocess: start a run whose step takes long, report every event it
sees committed, and wait to be killed with SIGKILL. Arguments: the test's tmp path, and the store
kind's name and token (the same database as the test's)."""

from __future__ import annotations

import sys
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from flowrun.runtime.access import Actor
from tests.runtime.harness import catalog, running_engine, scripts, submit
from tests.storekinds import StoreKind

STEPS = [{"name": "Plan", "skill": "plan"}, {"name": "Build", "skill": "build"}]


async def main(tmp: Path, kind: StoreKind) -> None:
    provider = scripts(
        plan=[{"text": "planning", **submit("planned")}],
        build=[{"text": "building slowly", "tools": [{"name": "todo_write", "input": {"todos": []}}]},
               {"delay_s": 600, **submit("built")}],
    )
    async with running_engine(tmp, catalog(STEPS, defaults={"sandbox_profile": "local"}), provider, kind=kind) as engine:
        run = await engine.start_run(Actor("ana"), "test-flow")
        print("RUN", run.id, flush=True)
        async for event in engine.subscribe(Actor("ana"), run.id):
            print("SEQ", event.seq, event.data.type, flush=True)
            if event.data.type == "transcript" and getattr(event.data, "tool", None) == "todo_write":
                print("MIDSTEP", flush=True)


if __name__ == "__main__":
    anyio.run(main, Path(sys.argv[1]), StoreKind(sys.argv[2], sys.argv[3]))
