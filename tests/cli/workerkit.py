"""`flowrun worker` processes against one database, for the reliability tests and the benchmark:
a catalog of small Flows whose steps take a scripted time in the local sandbox, the environment
that points every process at it, and a worker started, stopped (SIGTERM) or killed (SIGKILL)."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
from anyio.abc import Process
from anyio.streams.text import TextReceiveStream

FLOWRUN = Path(sys.executable).with_name("flowrun")
_SKILL = "slug: {slug}\nname: {slug}\ninstructions: Do it.\nallowed_tools: [todo_write]\noutput_schema: {{type: object}}\n"
_SCRIPT = ("skill: {slug}\nturns:\n  - text: Working on {slug}.\n    delay_s: {delay}\n    tools:\n"
           "      - {{name: todo_write, input: {{todos: [{{content: {slug}, status: in_progress}}]}}}}\n"
           "  - tools:\n      - {{name: submit_result, input: {{outcome: success, summary: {slug} done.}}}}\n")


def environment(tmp_path: Path, database: str, *, steps: int = 3, delay_s: float = 0.5,
                lease_s: float = 1.0, profile: str = "local") -> dict[str, str]:
    """FLOWRUN_* for processes sharing `database`: Flow `relay` of `steps` steps (`s0`, `s1`, ...)
    that each take `delay_s`, and Flow `gate` (a step, a checkpoint, `steps` more), in the
    `local` sandbox (its workspaces are on this host's disk: any worker here reconnects) or the
    `quiet` no-op one."""
    root, scripts = tmp_path / "catalog", tmp_path / "scripts"
    for folder in (root / "flows", root / "skills", root / "profiles", scripts):
        folder.mkdir(parents=True, exist_ok=True)
    (root / "profiles" / "quiet.yaml").write_text("name: quiet\nbackend: noop\n")
    (root / "profiles" / "local.yaml").write_text("name: local\nbackend: local\n")
    slugs = [f"s{i}" for i in range(steps)]
    for slug in [*slugs, "first"]:
        (root / "skills" / f"{slug}.yaml").write_text(_SKILL.format(slug=slug))
        (scripts / f"{slug}.yaml").write_text(_SCRIPT.format(slug=slug, delay=delay_s if slug != "first" else 0))
    body = "".join(f"  - {{name: S{i}, skill: s{i}}}\n" for i in range(steps))
    (root / "flows" / "relay.yaml").write_text(
        f"id: relay\nname: Relay\ndefaults: {{sandbox_profile: {profile}, execution_mode: background}}\nsteps:\n{body}")
    gate = body.replace("  - {name: S0, skill: s0}", "  - {name: S0, skill: s0, checkpoint: {message: Go on}}", 1)
    (root / "flows" / "gate.yaml").write_text(
        f"id: gate\nname: Gate\ndefaults: {{sandbox_profile: {profile}}}\nsteps:\n"
        f"  - {{name: First, skill: first}}\n{gate}")
    return {
        "FLOWRUN_HOME": str(tmp_path / "home"), "FLOWRUN_PATH": str(root), "FLOWRUN_SCRIPTS": str(scripts),
        "FLOWRUN_DATABASE_URL": database, "FLOWRUN_LEASE_S": str(lease_s),
        "PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/root"),
    }


@dataclass
class Worker:
    process: Process
    owner: str

    def kill(self) -> None:
        """SIGKILL: no cleanup of any kind (a crash, an OOM kill, a pulled plug)."""
        os.kill(self.process.pid, signal.SIGKILL)

    def terminate(self) -> None:
        """SIGTERM: a deploy; the worker hands its runs over."""
        os.kill(self.process.pid, signal.SIGTERM)


@asynccontextmanager
async def worker(env: Mapping[str, str], *, grace_s: float = 10.0) -> AsyncIterator[Worker]:
    """A `flowrun worker` process, ready (its leases owner id known); stopped with SIGTERM at the
    end unless the test killed or stopped it."""
    process = await anyio.open_process([str(FLOWRUN), "worker", "--grace", str(grace_s)], env=dict(env),
                                       stdout=None, stderr=-1)
    assert process.stderr is not None
    owner = ""
    buffered = ""
    stream = TextReceiveStream(process.stderr)
    try:
        with anyio.fail_after(60):
            async for chunk in stream:
                buffered += chunk
                if "driving runs from" in buffered:
                    owner = buffered.split("flowrun worker ", 1)[1].split()[0]
                    break
        assert owner, f"the worker did not start: {buffered}"

        async def drain() -> None:  # keep reading its stderr so it never blocks on a full pipe
            async for _ in stream:
                pass

        async with anyio.create_task_group() as tg:
            tg.start_soon(drain)
            yield Worker(process, owner)
            if process.returncode is None:
                os.kill(process.pid, signal.SIGTERM)
            with anyio.fail_after(60):
                await process.wait()
            tg.cancel_scope.cancel()
    finally:
        if process.returncode is None:
            process.kill()
            with anyio.CancelScope(shield=True), anyio.move_on_after(10):
                await process.wait()
        await process.aclose()
