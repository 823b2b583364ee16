"""Run by test_crash_points.py in a subprocess: drive a run to a named point, print the marker
and stop there (blocked) until the test kills it with SIGKILL. Every event it sees committed is
printed as `SEQ n`, like crash_child.py. Arguments: the test's tmp path, the point, and the store
kind's name and token (the same database as the test's).

Points:
  mid-step      the step edited the workspace (and left a stale lock) and waits for its model
  destroying    the run is done and its workspace is being destroyed
  cloning       a repository was fetched (half: its HEAD is missing) and is not in place yet
  approved      the checkpointed step was approved and runs (after a first step)
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from flowrun.flows.profiles import RepositorySpec, SandboxProfile
from flowrun.runtime.access import Actor
from flowrun.runtime.context import EngineConfig
from tests.runtime.harness import catalog, running_engine, scripts, submit
from tests.storekinds import StoreKind

ANA = Actor("ana")
# appends a line, checks it is the only one, and leaves a lock behind: twice in one workspace fails
EDIT = ("test ! -e work.lock && touch work.lock && echo line >> notes.txt && "
        'test "$(wc -l < notes.txt)" -eq 1 && git -C repo status --short')
STEPS: list[dict[str, Any]] = [
    {"name": "Plan", "skill": "plan"},
    {"name": "Build", "skill": "build", "checkpoint": {"message": "Sign off before building."}},
]


def repo_profile(tmp: Path) -> SandboxProfile:
    return SandboxProfile(name="repo", backend="local", repositories=[RepositorySpec(url=str(tmp / "origin"), path="repo")])


def provider(point: str) -> Any:
    waiting = {"delay_s": 600, **submit("built")}
    edit = {"tools": [{"name": "shell", "input": {"command": EDIT}}]}
    mark = {"tools": [{"name": "todo_write", "input": {"todos": []}}]}
    return scripts(plan=[submit("planned")], build=[edit if point == "mid-step" else mark, waiting])


def config(tmp: Path) -> EngineConfig:
    return EngineConfig(snapshot_dir=tmp / "snapshots")


def hold(marker: str) -> Any:
    async def blocked(*_args: Any, **_kwargs: Any) -> Any:
        print(marker, flush=True)
        await anyio.sleep_forever()
    return blocked


async def main(tmp: Path, point: str, kind: StoreKind) -> None:
    if point == "destroying":
        from flowrun.sandboxes.local import LocalBackend

        LocalBackend.destroy = hold("DESTROYING")  # type: ignore[method-assign]
    if point == "cloning":
        from flowrun.sandboxes import provision

        real = provision.fetch_repository

        async def half(repo: Any, dest: Path, *args: Any) -> str:
            await real(repo, dest, *args)
            (dest / ".git" / "HEAD").unlink()  # as if killed before the clone finished
            return await hold("CLONING")()  # type: ignore[no-any-return]

        provision.fetch_repository = half  # type: ignore[assignment]
    steps = STEPS if point == "approved" else [STEPS[0], {**STEPS[1], "checkpoint": None}]
    cat = catalog(steps, defaults={"sandbox_profile": "repo"}, profiles=[repo_profile(tmp)])
    script = scripts(plan=[submit("planned")]) if point in ("destroying", "cloning") else provider(point)
    if point in ("destroying", "cloning"):
        cat = catalog([STEPS[0]], defaults={"sandbox_profile": "repo"}, profiles=[repo_profile(tmp)])
    async with running_engine(tmp, cat, script, config=config(tmp), kind=kind) as engine:
        run = await engine.start_run(ANA, "test-flow")
        print("RUN", run.id, flush=True)
        async for event in engine.subscribe(ANA, run.id):
            print("SEQ", event.seq, event.data.type, flush=True)
            data = event.data
            if data.type == "run_status" and data.status == "paused" and point == "approved":
                await engine.decide(ANA, run.id, "approve", comment="go")
            if data.type == "transcript" and data.kind == "tool_end" and data.tool in ("shell", "todo_write"):
                print("MIDSTEP" if point == "mid-step" else "APPROVED", flush=True)


if __name__ == "__main__":
    anyio.run(main, Path(sys.argv[1]), sys.argv[2], StoreKind(sys.argv[3], sys.argv[4]))
