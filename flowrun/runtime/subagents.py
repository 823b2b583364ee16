"""Sub-agent fan-out: up to twenty per batch, one level deep, on the step's sandbox.

Each sub-agent is an agent conversation of its own, in its own working subdirectory unless told
otherwise, with the parent's tools (a sub-agent's own `spawn_subagents` is rejected as a tool
error). Every transcript entry it makes carries its id; its turns and cost roll into the step
through the parent's usage callback. One failing sub-agent does not stop the others; cancelling
the run cancels all of them (they are tasks of the tool call's task group, inside the step).
"""

from __future__ import annotations

import json
import posixpath
import shlex
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import anyio
from pydantic import BaseModel, Field, field_validator

from ..flows.enums import Outcome, TranscriptKind
from ..flows.errors import BlockedError, FlowrunError
from ..flows.events import TranscriptEntry
from ..flows.skills import Skill
from ..flows.template import MAX_SUBAGENTS_PER_BATCH
from .agent import AgentTask, run_agent
from .context import RunStopped
from .tools.base import ToolContext, ToolOutput

SPAWN = "spawn_subagents"

SUBAGENT_PROMPT = """

You are sub-agent {id}, started by the step's agent for one self-contained task. Your working
directory is {cwd!r} (relative to the workspace): relative file paths and shell commands start
there. Other sub-agents work beside you at the same time, so stay inside your directory unless
the task says otherwise. When done, call submit_result; you cannot start sub-agents yourself."""


class SubagentSpec(BaseModel):
    task: str = Field(min_length=1, description="What this sub-agent should do, self-contained.")
    id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
                           description="A short id (letters, digits, '_', '.', '-'); defaults to sub-N.")
    cwd: str | None = Field(default=None, description="Working directory relative to the workspace; "
                            "defaults to its own subagents/<id>.")

    @field_validator("cwd")
    @classmethod
    def _inside_workspace(cls, value: str | None) -> str | None:
        if value is None:
            return None
        normal = posixpath.normpath(value)
        if posixpath.isabs(normal) or normal == ".." or normal.startswith("../"):
            raise ValueError(f"cwd {value!r} must be a directory inside the workspace, given relative to it")
        return normal


class SpawnInput(BaseModel):
    tasks: list[SubagentSpec] = Field(min_length=1)


@dataclass(frozen=True, slots=True)
class _Planned:
    id: str
    task: str
    cwd: str


def _subagent_skill(parent: Skill) -> Skill:
    return parent.model_copy(update={"output_schema": {"type": "object"}, "max_validation_passes": 1})


class SpawnSubagents:
    name: ClassVar[str] = SPAWN
    description: ClassVar[str] = (
        f"Run up to {MAX_SUBAGENTS_PER_BATCH} sub-agents concurrently on this sandbox, each with a "
        "self-contained task and its own working directory (subagents/<id> unless you give a cwd); "
        "returns each one's outcome, summary and output. Sub-agents cannot spawn their own sub-agents."
    )
    input_model: ClassVar[type[BaseModel]] = SpawnInput

    def __init__(self, parent: AgentTask, limit: int) -> None:
        self.parent = parent
        self.limit = min(limit, MAX_SUBAGENTS_PER_BATCH)
        self._used: set[str] = set()  # ids taken in this step: a transcript id names one sub-agent
        self._count = 0

    async def preview(self, ctx: ToolContext, args: SpawnInput) -> dict[str, Any]:
        return {"tasks": [t.task for t in args.tasks]}

    def _plan(self, args: SpawnInput) -> list[_Planned] | str:
        """Ids and directories for a batch, or why it is refused."""
        if len(args.tasks) > self.limit:
            return (f"too many sub-agents: {len(args.tasks)} asked, at most {self.limit} per batch; "
                    "split the work into batches")
        chosen = [t.id for t in args.tasks if t.id is not None]
        twice = sorted({i for i in chosen if chosen.count(i) > 1})
        if twice:
            return f"sub-agent id {twice[0]!r} is given more than once; ids must be unique"
        taken = sorted(set(chosen) & self._used)
        if taken:
            return f"sub-agent id {taken[0]!r} was already used in this step; choose another id"
        reserved = self._used | set(chosen)
        planned = []
        for spec in args.tasks:
            sub_id = spec.id
            while sub_id is None or (spec.id is None and sub_id in reserved):
                self._count += 1
                sub_id = f"sub-{self._count}"
            reserved.add(sub_id)
            planned.append(_Planned(sub_id, spec.task, spec.cwd or f"subagents/{sub_id}"))
        self._used |= reserved
        return planned

    async def run(self, ctx: ToolContext, args: SpawnInput) -> ToolOutput:
        planned = self._plan(args)
        if isinstance(planned, str):
            return ToolOutput(planned, is_error=True)
        results: dict[str, dict[str, Any]] = {}

        async def one(sub: _Planned) -> None:
            results[sub.id] = await self._run_one(sub)

        try:
            async with anyio.create_task_group() as tg:
                for sub in planned:
                    tg.start_soon(one, sub, name=f"sub-agent {sub.id}")
        except* RunStopped:
            raise RunStopped from None  # as itself, for the step's driver to see
        ordered = [results[sub.id] for sub in planned]
        failed = sum(r["outcome"] == Outcome.ERROR.value for r in ordered)
        return ToolOutput(json.dumps(ordered, indent=1), is_error=failed == len(ordered),
                          data={"subagents": [{k: r[k] for k in ("id", "outcome", "summary", "turns")} for r in ordered]})

    async def _run_one(self, sub: _Planned) -> dict[str, Any]:
        parent = self.parent
        await parent.emit(TranscriptEntry(kind=TranscriptKind.INFO, step=parent.step, subagent=sub.id,
                                          text=f"Sub-agent {sub.id} started: {sub.task}",
                                          data={"task": sub.task, "cwd": sub.cwd}))
        task = replace(
            parent, subagent=sub.id, cwd=sub.cwd, instructions=sub.task, skill=_subagent_skill(parent.skill),
            system=parent.system + SUBAGENT_PROMPT.format(id=sub.id, cwd=sub.cwd),
            tools={**parent.tools, SPAWN: _NestedSpawnRejected()}, extras=dict(parent.extras),
            record=None, history=[], attach={},  # only the step's own conversation is persisted
        )
        turns = 0
        try:
            made = await parent.sandbox.exec(f"mkdir -p -- {shlex.quote(sub.cwd)}")
            if made.exit_code != 0:
                raise FlowrunError(f"could not create its working directory {sub.cwd!r}: "
                                   f"{(made.stderr or made.stdout).strip()}")
            outcome = await run_agent(task)
            result, turns = outcome.result, outcome.turns
            entry = {"outcome": result.outcome.value, "summary": result.summary, "output": result.output}
        except RunStopped:
            raise  # the run was stopped from elsewhere: not this sub-agent's failure
        except BlockedError as exc:
            entry = {"outcome": Outcome.ERROR.value, "summary": f"{exc.message} Fix: {exc.fix}", "output": {}}
        except FlowrunError as exc:
            entry = {"outcome": Outcome.ERROR.value, "summary": exc.message, "output": {}}
        except TimeoutError:  # the step's deadline, which bounds every turn of every sub-agent
            entry = {"outcome": Outcome.ERROR.value, "summary": "ran out of the step's time budget", "output": {}}
        except Exception as exc:  # one failing sub-agent does not stop the others
            entry = {"outcome": Outcome.ERROR.value, "summary": f"{type(exc).__name__}: {exc}", "output": {}}
        if entry["outcome"] == Outcome.ERROR.value:
            await parent.emit(TranscriptEntry(kind=TranscriptKind.ERROR, step=parent.step, subagent=sub.id,
                                              text=f"Sub-agent {sub.id} failed: {entry['summary']}", is_error=True))
        return {"id": sub.id, "task": sub.task, "cwd": sub.cwd, "turns": turns, **entry}


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
