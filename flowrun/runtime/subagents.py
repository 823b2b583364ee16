"""Sub-agent fan-out: up to twenty per batch, one level deep, on the step's sandbox.

Each sub-agent is an agent conversation of its own, in its own working subdirectory unless told
otherwise, with the parent's tools (a sub-agent's own `spawn_subagents` is rejected as a tool
error). Every transcript entry it makes carries its id; its turns and cost roll into the step.
One failing sub-agent does not stop the others; cancelling the run cancels all of them.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import replace
from typing import Any, ClassVar

import anyio
from pydantic import BaseModel, Field

from ..flows.enums import Outcome, TranscriptKind
from ..flows.errors import FlowrunError
from ..flows.events import TranscriptEntry
from ..flows.skills import Skill
from ..flows.template import MAX_SUBAGENTS_PER_BATCH
from .agent import AgentOutcome, AgentTask, run_agent
from .tools.base import ToolContext, ToolOutput

SPAWN = "spawn_subagents"


class SubagentSpec(BaseModel):
    task: str = Field(description="What this sub-agent should do, self-contained.")
    id: str | None = Field(default=None, description="A short id; defaults to sub-N.")
    cwd: str | None = Field(default=None, description="Working directory relative to the workspace; "
                            "defaults to its own subagents/<id>.")


class SpawnInput(BaseModel):
    tasks: list[SubagentSpec] = Field(min_length=1)


def _subagent_skill(parent: Skill) -> Skill:
    return parent.model_copy(update={"output_schema": {"type": "object"}, "max_validation_passes": 1})


class SpawnSubagents:
    name: ClassVar[str] = SPAWN
    description: ClassVar[str] = (
        f"Run up to {MAX_SUBAGENTS_PER_BATCH} sub-agents concurrently on this sandbox, each with a "
        "self-contained task; returns each one's outcome, summary and output. Sub-agents cannot spawn "
        "their own sub-agents."
    )
    input_model: ClassVar[type[BaseModel]] = SpawnInput

    def __init__(self, parent: AgentTask, limit: int) -> None:
        self.parent = parent
        self.limit = min(limit, MAX_SUBAGENTS_PER_BATCH)
        self._count = 0

    async def preview(self, ctx: ToolContext, args: SpawnInput) -> dict[str, Any]:
        return {"tasks": [t.task for t in args.tasks]}

    async def run(self, ctx: ToolContext, args: SpawnInput) -> ToolOutput:
        if len(args.tasks) > self.limit:
            return ToolOutput(f"too many sub-agents: {len(args.tasks)} asked, at most {self.limit} per batch; "
                              "split the work into batches", is_error=True)
        specs = []
        for spec in args.tasks:
            self._count += 1
            sub_id = spec.id or f"sub-{self._count}"
            specs.append((sub_id, spec.task, spec.cwd or f"subagents/{sub_id}"))
        results: dict[str, dict[str, Any]] = {}

        async def one(sub_id: str, text: str, cwd: str) -> None:
            results[sub_id] = await self._run_one(sub_id, text, cwd)

        async with anyio.create_task_group() as tg:
            for sub_id, text, cwd in specs:
                tg.start_soon(one, sub_id, text, cwd)
        ordered = [results[sub_id] for sub_id, _, _ in specs]
        failed = sum(r["outcome"] == Outcome.ERROR.value for r in ordered)
        return ToolOutput(json.dumps(ordered, indent=1), is_error=failed == len(ordered),
                          data={"subagents": [{k: r[k] for k in ("id", "outcome", "summary", "turns")} for r in ordered]})

    async def _run_one(self, sub_id: str, text: str, cwd: str) -> dict[str, Any]:
        parent = self.parent
        await parent.emit(TranscriptEntry(kind=TranscriptKind.INFO, step=parent.step, subagent=sub_id,
                                          text=f"Sub-agent {sub_id} started: {text}", data={"task": text, "cwd": cwd}))
        tools = {**parent.tools, SPAWN: _NestedSpawnRejected()}
        task = replace(parent, subagent=sub_id, cwd=cwd, instructions=text, tools=tools,
                       skill=_subagent_skill(parent.skill), extras={})
        turns = 0
        try:
            await parent.sandbox.exec(f"mkdir -p {shlex.quote(cwd)}")
            outcome: AgentOutcome = await run_agent(task)
            result, turns = outcome.result, outcome.turns
            entry = {"outcome": result.outcome.value, "summary": result.summary, "output": result.output}
        except FlowrunError as exc:
            entry = {"outcome": Outcome.ERROR.value, "summary": exc.message, "output": {}}
        except Exception as exc:  # one failing sub-agent does not stop the others
            entry = {"outcome": Outcome.ERROR.value, "summary": f"{type(exc).__name__}: {exc}", "output": {}}
        if entry["outcome"] == Outcome.ERROR.value:
            await parent.emit(TranscriptEntry(kind=TranscriptKind.ERROR, step=parent.step, subagent=sub_id,
                                              text=f"Sub-agent {sub_id} failed: {entry['summary']}", is_error=True))
        return {"id": sub_id, "task": text, "turns": turns, **entry}


class _NestedSpawnInput(BaseModel):
    model_config = {"extra": "allow"}


class _NestedSpawnRejected:
    name: ClassVar[str] = SPAWN
    description: ClassVar[str] = "Not available to sub-agents: fan-out is one level deep."
    input_model: ClassVar[type[BaseModel]] = _NestedSpawnInput

    async def preview(self, ctx: ToolContext, args: BaseModel) -> dict[str, Any]:
        return {}

    async def run(self, ctx: ToolContext, args: BaseModel) -> ToolOutput:
        return ToolOutput("sub-agents cannot spawn sub-agents: fan-out is one level deep. Do the work yourself "
                          "and submit your result.", is_error=True)


def enable_subagents(task: AgentTask, *, limit: int) -> None:
    """Offer `spawn_subagents` to a step's agent (the step's `subagents:` sets the batch limit)."""
    task.tools = {**task.tools, SPAWN: SpawnSubagents(task, limit)}
