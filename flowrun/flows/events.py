"""Events: the spine. Every change to a run is one of these, with a per-run gapless `seq`.

`EventData` is a discriminated union on `type`; the store writes `data` as JSON beside `seq`, so
storage per event is constant and nothing re-serializes the whole run.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from .chat import ChatAgentMessages, ChatDelta, ChatMessage, ChatRunLinked, ChatToolUsed
from .enums import RunStatus, StepStatus, TaskState, TranscriptKind
from .run import Blocked, Checkpoint, Decision, SandboxLink, StepResult, Usage, now


class _Data(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class TranscriptEntry(_Data):
    """One typed transcript entry.

    `stream` groups deltas of one streamed block (text or thinking arriving in pieces, or a
    shell's output): a renderer concatenates entries with the same `stream`. `call_id` ties
    tool_start, tool_delta and tool_end of one tool call together. `data` carries the structured
    detail of common tools: `diff` for edits, `content` for writes, `url`/`preview` for fetches,
    `todos` for the checklist, `input` for any call.
    """

    type: Literal["transcript"] = "transcript"
    kind: TranscriptKind
    step: int | None = None
    text: str = ""
    tool: str | None = None
    call_id: str | None = None
    stream: str | None = None
    subagent: str | None = None
    is_error: bool = False
    data: dict[str, Any] = Field(default_factory=dict)


class AgentMessages(_Data):
    """The step agent's conversation, appended as it grows (the assistant's turn as soon as it
    ends, the tool results once they are in), so that after a restart the step can continue from
    its last turn instead of starting over. `messages` are the model layer's provider-neutral
    messages as plain JSON (the domain does not import that layer). Log-only: never rendered."""

    type: Literal["agent_messages"] = "agent_messages"
    step: int
    attempt: int
    messages: list[dict[str, Any]]


class RunCreated(_Data):
    type: Literal["run_created"] = "run_created"
    flow: str
    params: dict[str, Any]
    started_by: str
    execution_mode: str
    checkpoint_mode: str
    sandbox_profile: str
    retry_of: str | None = None


class RunStatusChanged(_Data):
    type: Literal["run_status"] = "run_status"
    status: RunStatus
    previous: RunStatus | None = None
    reason: str = ""
    blocked: Blocked | None = None


class StepStatusChanged(_Data):
    type: Literal["step_status"] = "step_status"
    step: int
    status: StepStatus
    previous: StepStatus | None = None
    reason: str = ""
    result: StepResult | None = None


class CheckpointReached(_Data):
    type: Literal["checkpoint"] = "checkpoint"
    checkpoint: Checkpoint


class DecisionRecorded(_Data):
    type: Literal["decision"] = "decision"
    step: int
    decision: Decision


class UsageChanged(_Data):
    type: Literal["usage"] = "usage"
    step: int | None
    step_usage: Usage
    run_usage: Usage


class TaskChanged(_Data):
    type: Literal["task"] = "task"
    task_id: str
    state: TaskState
    turns: int
    cost_usd: float


class SandboxChanged(_Data):
    type: Literal["sandbox"] = "sandbox"
    sandbox: SandboxLink


class RetryLinked(_Data):
    type: Literal["retry"] = "retry"
    retry_of: str | None = None
    retried_as: str | None = None


EventData = Annotated[
    TranscriptEntry
    | AgentMessages
    | RunCreated
    | RunStatusChanged
    | StepStatusChanged
    | CheckpointReached
    | DecisionRecorded
    | UsageChanged
    | TaskChanged
    | SandboxChanged
    | RetryLinked
    | ChatMessage
    | ChatDelta
    | ChatToolUsed
    | ChatRunLinked
    | ChatAgentMessages,
    Field(discriminator="type"),
]

event_data_adapter: TypeAdapter[EventData] = TypeAdapter(EventData)

LogOnly = TranscriptEntry | AgentMessages
"""Events that add to the log without changing the run row (appended, group-committed)."""

ChatEventData = ChatMessage | ChatDelta | ChatToolUsed | ChatRunLinked | ChatAgentMessages
"""Events of a chat's log (stored under the chat id; see `flows.chat`)."""


class Event(BaseModel):
    model_config = ConfigDict(frozen=True)

    run_id: str
    seq: int
    at: datetime = Field(default_factory=now)
    data: EventData
