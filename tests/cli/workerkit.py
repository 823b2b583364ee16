"""`flowrun worker` processes against one database, for the reliability tests and the benchmark:
a catalog of small Flows whose steps take a scripted time in the local sandbox, the environment
that points every process at it, and a worker started, stopped (SIGTERM) or killed (SIGKILL)."""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
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
    `quiet` no-op one. Flow `ledger` (always local): `steps` steps that each append their name to
    `steps.log` in the workspace, failing unless the file then holds each earlier name once."""
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
    ledger = ""
    for i in range(steps):  # each step appends its name and checks the file holds each name once
        names = " ".join(f"l{j}" for j in range(i + 1))
        check = f"echo l{i} >> steps.log && test \"$(tr '\\n' ' ' < steps.log)\" = '{names} '"
        (root / "skills" / f"l{i}.yaml").write_text(json.dumps({
            "slug": f"l{i}", "name": f"l{i}", "instructions": "Append your name.", "allowed_tools": ["shell"],
            "output_schema": {"type": "object"}}))
        (scripts / f"l{i}.yaml").write_text(json.dumps({"skill": f"l{i}", "turns": [
            {"text": f"Writing l{i}.", "delay_s": delay_s / 2, "tools": [{"name": "shell", "input": {"command": check}}]},
            {"delay_s": delay_s / 2, "tools": [{"name": "submit_result", "input": {"outcome": "success",
                                                                                  "summary": f"l{i} written."}}]},
        ]}))
        ledger += f"  - {{name: L{i}, skill: l{i}}}\n"
    (root / "flows" / "ledger.yaml").write_text(
        f"id: ledger\nname: Ledger\ndefaults: {{sandbox_profile: local, execution_mode: background}}\nsteps:\n{ledger}")
    return {
        "FLOWRUN_HOME": str(tmp_path / "home"), "FLOWRUN_PATH": str(root), "FLOWRUN_SCRIPTS": str(scripts),
        "FLOWRUN_DATABASE_URL": database, "FLOWRUN_LEASE_S": str(lease_s),
        "PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/root"),
    }


@dataclass
class Worker:
    process: Process
    owner: str
    output: str = ""  # its stderr so far
    _more: anyio.Event = field(default_factory=anyio.Event)

    async def saw(self, text: str, *, timeout_s: float) -> None:
        """Wait until the worker has printed `text` on stderr (its log)."""
        with anyio.fail_after(timeout_s):
            while text not in self.output:
                await self._more.wait()

    def _got(self, chunk: str) -> None:
        self.output += chunk
        self._more.set()
        self._more = anyio.Event()

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

        started = Worker(process, owner, buffered)

        async def drain() -> None:  # keep reading its stderr so it never blocks on a full pipe
            async for chunk in stream:
                started._got(chunk)

        async with anyio.create_task_group() as tg:
            tg.start_soon(drain)
            yield started
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
