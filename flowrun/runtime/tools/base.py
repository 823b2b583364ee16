"""What a step's agent can call. A tool is a typed input model plus an async `run`.

The agent loop emits `tool_start` (with `preview`'s structured detail: a diff, a new file, a URL,
a checklist), then whatever `tool_delta` entries the tool streams through `ctx.emit`, then
`tool_end` with the output. Output sent back to the model is capped by the loop.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel

from ...flows.events import TranscriptEntry
from ...sandboxes.base import Sandbox

MAX_TOOL_OUTPUT_CHARS = 30_000


@dataclass(frozen=True, slots=True)
class ToolOutput:
    content: str
    is_error: bool = False
    data: dict[str, Any] = field(default_factory=dict)  # structured detail for the tool_end entry


@dataclass(slots=True)
class ToolContext:
    run_id: str
    step: int
    call_id: str
    sandbox: Sandbox
    emit: Callable[[TranscriptEntry], Awaitable[None]]
    subagent: str | None = None
    cwd: str | None = None  # working directory relative to the workspace (sub-agents get their own)
    extras: dict[str, Any] = field(default_factory=dict)  # loop-provided services (e.g. sub-agent spawner)
    attach_pid: int | None = None  # after a restart: the command this call started is still running


class Tool(Protocol):
    name: ClassVar[str]
    description: ClassVar[str]
    input_model: ClassVar[type[BaseModel]]

    async def preview(self, ctx: ToolContext, args: Any) -> dict[str, Any]:
        """Structured detail for the tool_start entry (may read the sandbox, must not change it)."""
        ...

    async def run(self, ctx: ToolContext, args: Any) -> ToolOutput:
        """Do it. Expected failures are `ToolOutput(is_error=True)`; the loop turns unexpected
        `FlowrunError`s into error outputs too, so the agent can react."""
        ...


def cap_output(text: str, limit: int = MAX_TOOL_OUTPUT_CHARS) -> str:
    """Cap what goes back to the model, keeping head and tail, and say that it was cut."""
    if len(text) <= limit:
        return text
    half = limit // 2
    cut = len(text) - limit
    return f"{text[:half]}\n\n[... {cut} characters truncated ...]\n\n{text[-half:]}"
