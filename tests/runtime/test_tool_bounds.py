"""Every tool call is bounded by the step's deadline and ends with the step's cancellation."""

from __future__ import annotations

from typing import Any, ClassVar

import anyio
import pytest
from pydantic import BaseModel

from flowrun.flows.enums import Outcome, TranscriptKind
from flowrun.flows.events import TranscriptEntry
from flowrun.flows.run import Usage
from flowrun.flows.skills import Skill
from flowrun.llm.scripted import Script, ScriptedCall, ScriptedProvider, ScriptedTurn
from flowrun.runtime.agent import AgentTask, run_agent
from flowrun.runtime.tools.base import Tool, ToolContext, ToolOutput
from flowrun.sandboxes.noop import NoopSandbox

pytestmark = pytest.mark.anyio

SKILL = Skill(slug="stuck", instructions="Wait.", output_schema={"type": "object"})


class NoInput(BaseModel):
    pass


class Forever:
    """A tool that never returns on its own (as `read_file` on a FIFO once did)."""

    name: ClassVar[str] = "forever"
    description: ClassVar[str] = "Never returns."
    input_model: ClassVar[type[BaseModel]] = NoInput

    def __init__(self) -> None:
        self.started = anyio.Event()

    async def preview(self, ctx: ToolContext, args: NoInput) -> dict[str, Any]:
        return {}

    async def run(self, ctx: ToolContext, args: NoInput) -> ToolOutput:
        self.started.set()
        await anyio.sleep_forever()
        raise AssertionError("unreachable")


class Broken:
    name: ClassVar[str] = "broken"
    description: ClassVar[str] = "Fails with an OS error naming a host path."
    input_model: ClassVar[type[BaseModel]] = NoInput

    async def preview(self, ctx: ToolContext, args: NoInput) -> dict[str, Any]:
        return {}

    async def run(self, ctx: ToolContext, args: NoInput) -> ToolOutput:
        raise FileNotFoundError(2, "No such file or directory", "/root/.flowrun/secret/place")


SUBMIT = ScriptedTurn(tools=[ScriptedCall(name="submit_result", input={"outcome": "error", "summary": "failed"})])


def make_task(tool: Tool, entries: list[TranscriptEntry], deadline: float, *then: ScriptedTurn) -> AgentTask:
    # the call is expected to fail: the scripted model fails the step on any result it did not expect
    script = Script(skill="stuck", turns=[ScriptedTurn(tools=[ScriptedCall(name=tool.name, expect="error")]), *then])

    async def emit(entry: TranscriptEntry) -> None:
        entries.append(entry)

    async def on_usage(usage: Usage) -> None:
        pass

    return AgentTask(
        run_id="run_1", step=0, skill=SKILL, model="scripted", provider=ScriptedProvider({"stuck": script}),
        sandbox=NoopSandbox("run_1", {}, []), tools={tool.name: tool}, system="", instructions="Wait.",
        emit=emit, on_usage=on_usage, max_turns=5, deadline=deadline,
    )


async def test_a_tool_call_ends_at_the_steps_deadline() -> None:
    entries: list[TranscriptEntry] = []
    task = make_task(Forever(), entries, anyio.current_time() + 0.5)
    with anyio.fail_after(10):
        outcome = await run_agent(task)
    assert outcome.result.outcome is Outcome.PARTIAL
    assert "time budget" in outcome.result.summary
    end = next(e for e in entries if e.kind is TranscriptKind.TOOL_END)
    assert end.is_error and "time budget" in end.text


async def test_cancelling_the_step_ends_the_tool_call() -> None:
    tool = Forever()
    entries: list[TranscriptEntry] = []
    task = make_task(tool, entries, anyio.current_time() + 3600)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run_agent, task)
            await tool.started.wait()
            tg.cancel_scope.cancel()


async def test_an_unexpected_os_error_is_a_failed_call_that_names_no_host_path() -> None:
    entries: list[TranscriptEntry] = []
    task = make_task(Broken(), entries, anyio.current_time() + 60, SUBMIT)
    with anyio.fail_after(10):
        await run_agent(task)
    end = next(e for e in entries if e.kind is TranscriptKind.TOOL_END)
    assert end.is_error and "No such file or directory" in end.text
    assert ".flowrun" not in end.text
