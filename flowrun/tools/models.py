"""What the MCP tools return: typed, self-describing results (structured output).

These are views for an assistant, not the persisted run: they carry what a model needs to decide
its next call (the checkpoint it waits at, the tools that make sense now, a one-line hint) and
leave out internals (owner, sandbox paths, raw step output). Field descriptions end up in each
tool's output schema, so they are written for the assistant reading it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..flows.enums import (
    CheckpointMode,
    DecisionKind,
    ExecutionMode,
    LaunchKind,
    Outcome,
    RunStatus,
    StepStatus,
    TranscriptKind,
)

NextTool = Literal["wait_for_run", "decide_checkpoint", "cancel_run", "resume_run", "retry_run", "get_run"]
WaitUntil = Literal["paused", "finished", "any_change"]
DecisionLiteral = Literal["approve", "reject", "skip"]  # inline enum: elicitation schemas allow no $ref


class _View(BaseModel):
    model_config = ConfigDict(frozen=True)


class DecisionView(_View):
    kind: DecisionKind
    actor: str = Field(description="who decided ('auto' decisions were made by the background policy)")
    comment: str = ""
    auto: bool = False
    at: datetime


class ArtifactView(_View):
    kind: str = Field(description="file, pull_request, plan, initiative or url")
    ref: str
    label: str = ""


class StepView(_View):
    index: int = Field(description="0-based position; decide_checkpoint's `step` accepts it or the name")
    name: str
    skill: str
    status: StepStatus
    outcome: Outcome | None = None
    summary: str = ""
    error: str | None = None
    checkpoint_message: str | None = Field(
        default=None, description="the Flow's sign-off message before this step, if it has one"
    )
    decision: DecisionView | None = None
    artifacts: list[ArtifactView] = Field(default_factory=list)
    turns: int = 0
    cost_usd: float = 0.0
    elapsed_s: float | None = None


class CheckpointView(_View):
    step_index: int
    step: str = Field(description="the name of the step that runs once approved")
    message: str = Field(description="what the person is asked to sign off")
    previous_summary: str = Field(default="", description="what the step before it reported")
    reached_at: datetime


class BlockedView(_View):
    cause: str
    message: str
    fix: str = Field(description="what a person must do before resume_run can succeed")


class TranscriptLine(_View):
    seq: int = Field(description="event sequence number; streamed pieces are joined under the first")
    kind: TranscriptKind
    step: int | None = None
    text: str
    tool: str | None = None
    subagent: str | None = None
    is_error: bool = False


class RunView(_View):
    id: str
    flow: str = Field(description="the Flow id")
    flow_name: str
    status: RunStatus
    url: str | None = Field(description=(
        "the run's page in the flowrun web UI (served by `flowrun serve`); null from the stdio server "
        "unless FLOWRUN_PUBLIC_URL says where `flowrun serve` runs, so no link is handed out that does not work"))
    hint: str = Field(description="one line on where the run is and what to do next")
    next_actions: list[NextTool] = Field(description="the tools that make sense for this run now")
    started_by: str
    params: dict[str, Any]
    execution_mode: ExecutionMode
    checkpoint_mode: CheckpointMode
    sandbox_profile: str
    steps: list[StepView]
    checkpoint: CheckpointView | None = Field(default=None, description="set while the run is paused")
    blocked: BlockedView | None = None
    error: str | None = None
    pull_request: str | None = None
    launch: LaunchKind = Field(default=LaunchKind.EDITOR, description="how the run was started")
    launch_ref: str | None = Field(default=None, description="the record, chat or trigger it was started from")
    plan: str | None = None
    initiative: str | None = None
    record_url: str | None = Field(default=None, description=(
        "the web page of the plan or initiative the run was launched from (when `url` is set)"))
    retry_of: str | None = None
    retried_as: list[str] = Field(default_factory=list, description="every clone retrying this run, oldest first")
    turns: int = 0
    cost_usd: float = 0.0
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_s: float | None = Field(
        default=None, description="how long the run has been going (start to end, or to now); null before it starts"
    )
    version: int = Field(description="bumped on every change; pass it as decide_checkpoint's expected_version")
    last_seq: int = Field(description="the last event seen; pass it as wait_for_run's after_seq")
    transcript: list[TranscriptLine] | None = Field(
        default=None, description="the newest transcript lines, oldest first, when transcript_tail was asked for"
    )


class RunList(_View):
    runs: list[RunView] = Field(description="newest first")
    count: int


class ParameterView(_View):
    name: str
    type: str
    required: bool
    default: Any = None
    description: str = ""
    choices: list[Any] | None = None


class FlowStepView(_View):
    name: str
    skill: str
    checkpoint_message: str | None = None


class FlowView(_View):
    id: str = Field(description="pass it as start_flow's `flow`")
    name: str
    description: str
    parameters: list[ParameterView]
    steps: list[FlowStepView]
    default_sandbox_profile: str
    default_execution_mode: ExecutionMode
    default_checkpoint_mode: CheckpointMode


class FlowList(_View):
    flows: list[FlowView]


class WaitResult(_View):
    reached: bool = Field(description="true if the run got where you asked before the timeout")
    timed_out: bool
    waited_s: float
    run: RunView


class DecisionForm(BaseModel):
    """What elicitation asks the person at a checkpoint (flat, primitive fields only)."""

    decision: DecisionLiteral = Field(description="approve continues, reject stops the run, skip skips this step")
    comment: str = Field(default="", description="optional; recorded with the decision")
