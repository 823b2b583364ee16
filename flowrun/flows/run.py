"""A run: one execution of a Flow, its steps and its decisions. Persisted shapes: versioned."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from ulid import ULID

from .enums import (
    BlockedCause,
    CheckpointMode,
    DecisionKind,
    ExecutionMode,
    LaunchKind,
    Outcome,
    RunStatus,
    StepStatus,
    TaskState,
)
from .template import FlowTemplate

# 1: the first shape. 2: `retried_as` is the list of every clone (v1 stored at most one id).
RUN_SCHEMA_VERSION = 2


def now() -> datetime:
    return datetime.now(UTC)


def new_id(prefix: str) -> str:
    return f"{prefix}_{ULID()}"


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Usage(_Model):
    """Tokens and dollars; adds up across turns, steps and runs."""

    turns: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_write_tokens: int = 0
    cache_read_tokens: int = 0
    cost_usd: float = 0.0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            turns=self.turns + other.turns,
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cache_write_tokens=self.cache_write_tokens + other.cache_write_tokens,
            cache_read_tokens=self.cache_read_tokens + other.cache_read_tokens,
            cost_usd=round(self.cost_usd + other.cost_usd, 6),
        )


class Artifact(_Model):
    kind: Literal["file", "pull_request", "plan", "initiative", "url"]
    ref: str
    label: str = ""


class Decision(_Model):
    kind: DecisionKind
    comment: str = ""
    actor: str
    at: datetime = Field(default_factory=now)
    auto: bool = False
    decision_id: str | None = None


class ResolvedCall(_Model):
    """A tool call or decision resolved without a person (shown in Inspect Output)."""

    tool: str
    detail: str
    at: datetime = Field(default_factory=now)


class StepResult(_Model):
    outcome: Outcome
    summary: str = ""
    artifacts: list[Artifact] = Field(default_factory=list)
    output: dict[str, Any] = Field(default_factory=dict)


class StepRun(_Model):
    """Frozen: a change is a copy (the store reuses the JSON of a step object it has seen)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    index: int
    name: str
    skill: str
    status: StepStatus = StepStatus.PENDING
    outcome: Outcome | None = None
    summary: str = ""
    artifacts: list[Artifact] = Field(default_factory=list)
    output: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None
    auto_resolved: list[ResolvedCall] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    decision: Decision | None = None
    attempt: int = 0

    @property
    def elapsed_s(self) -> float | None:
        if self.started_at is None:
            return None
        end = self.finished_at or now()
        return (end - self.started_at).total_seconds()


class Launch(_Model):
    kind: LaunchKind = LaunchKind.EDITOR
    ref: str | None = None  # record id, chat id, trigger id
    # parameters that came from outside (a pull request's title and body): the agent is told to
    # treat them as data, never as instructions
    untrusted: list[str] = Field(default_factory=list)


class SandboxLink(_Model):
    backend: str
    id: str
    state: Literal["active", "released", "destroyed"] = "active"


class Links(_Model):
    initiative: str | None = None
    plan: str | None = None
    sandbox: SandboxLink | None = None
    pull_request: str | None = None


class Blocked(_Model):
    cause: BlockedCause
    message: str
    fix: str
    step: int | None = None
    details: dict[str, Any] = Field(default_factory=dict)


class Checkpoint(_Model):
    """The checkpoint a paused run waits at."""

    step: int
    message: str
    previous_summary: str = ""
    reached_at: datetime = Field(default_factory=now)


class BackgroundTask(_Model):
    id: str
    state: TaskState = TaskState.RUNNING


class Run(_Model):
    schema_version: int = RUN_SCHEMA_VERSION
    id: str = Field(default_factory=lambda: new_id("run"))
    workspace: str = "default"
    flow: FlowTemplate
    params: dict[str, Any] = Field(default_factory=dict)
    started_by: str
    launch: Launch = Field(default_factory=Launch)
    sandbox_profile: str
    execution_mode: ExecutionMode
    checkpoint_mode: CheckpointMode
    status: RunStatus = RunStatus.PENDING
    steps: list[StepRun] = Field(default_factory=list)
    links: Links = Field(default_factory=Links)
    retry_of: str | None = None
    retried_as: list[str] = Field(default_factory=list)  # every clone, oldest first (the retry chain)
    usage: Usage = Field(default_factory=Usage)
    checkpoint: Checkpoint | None = None
    blocked: Blocked | None = None
    error: str | None = None
    task: BackgroundTask | None = None
    created_at: datetime = Field(default_factory=now)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    owner: str | None = None  # the engine process driving it (host:pid), for restart recovery
    version: int = 0
    last_seq: int = 0

    @field_validator("retried_as", mode="before")
    @classmethod
    def _retried_as_v1(cls, value: Any) -> Any:
        """Schema v1 stored one clone id (or none); it is the first link of the chain."""
        if value is None:
            return []
        if isinstance(value, str):
            return [value]
        return value

    @property
    def flow_id(self) -> str:
        return self.flow.id

    @property
    def current_step(self) -> StepRun | None:
        for step in self.steps:
            if step.status in (StepStatus.RUNNING, StepStatus.PENDING, StepStatus.BLOCKED):
                return step
        return None

    @property
    def duration_s(self) -> float | None:
        """How long the run has been going: from its start to its end, or to now while it is not
        over (a paused or blocked run is still going). None before it started."""
        if self.started_at is None:
            return None
        return max((self.finished_at or now()) - self.started_at, timedelta(0)).total_seconds()

    def step(self, index: int) -> StepRun:
        return self.steps[index]

    def rolled_up_usage(self) -> Usage:
        total = Usage()
        for step in self.steps:
            total = total + step.usage
        return total
