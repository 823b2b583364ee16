"""A cancel committed by another process stops the run before its next tool call: the driver reads
the stored status before every call, not only when its watcher notices the cancel a moment later."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import anyio
import pytest
from pydantic import BaseModel

from flowrun.flows.enums import RunStatus, StepStatus
from flowrun.runtime.access import Actor
from flowrun.runtime.context import EngineConfig
from flowrun.runtime.tools.base import ToolContext, ToolOutput

from .harness import catalog, running_engine, scripts, submit

pytestmark = pytest.mark.anyio
ANA = Actor("ana")


class NoInput(BaseModel):
    pass


class Gate:
    """Holds its call until the test opens it."""

    name: ClassVar[str] = "gate"
    description: ClassVar[str] = "Waits."
    input_model: ClassVar[type[BaseModel]] = NoInput

    def __init__(self) -> None:
        self.entered = anyio.Event()
        self.open = anyio.Event()

    async def preview(self, ctx: ToolContext, args: NoInput) -> dict[str, Any]:
        return {}

    async def run(self, ctx: ToolContext, args: NoInput) -> ToolOutput:
        self.entered.set()
        await self.open.wait()
        return ToolOutput("opened")


class Mark:
    """Records that a call ran."""

    name: ClassVar[str] = "mark"
    description: ClassVar[str] = "Marks."
    input_model: ClassVar[type[BaseModel]] = NoInput

    def __init__(self) -> None:
        self.calls = 0

    async def preview(self, ctx: ToolContext, args: NoInput) -> dict[str, Any]:
        return {}

    async def run(self, ctx: ToolContext, args: NoInput) -> ToolOutput:
        self.calls += 1
        return ToolOutput("marked")


async def test_no_tool_call_starts_after_a_cancel_another_process_committed(tmp_path: Path) -> None:
    gate, mark = Gate(), Mark()
    provider = scripts(build=[{"tools": [{"name": "gate", "expect": "any"}]},
                              {"tools": [{"name": "mark"}, {"name": "mark"}]}, submit("built")])
    cat = catalog([{"name": "Build", "skill": "build"}], skills={"build": {"allowed_tools": ["gate", "mark"]}})
    async with running_engine(tmp_path, cat, provider, tools={"gate": gate, "mark": mark}) as driving:
        run = await driving.start_run(ANA, "test-flow")
        with anyio.fail_after(10):
            await gate.entered.wait()
        # another process: its own store on the same database, its own owner id
        async with running_engine(tmp_path, cat, provider, config=EngineConfig(owner="elsewhere:1")) as other:
            cancelled = await other.cancel(ANA, run.id)
        assert cancelled.status == RunStatus.CANCELLED  # acknowledged: from here no call may start
        gate.open.set()
        await driving.idle(10)
        run = await driving.get_run(ANA, run.id)
    assert mark.calls == 0
    assert run.status == RunStatus.CANCELLED and run.steps[0].status == StepStatus.CANCELLED
