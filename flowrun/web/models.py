"""The JSON API's own shapes, beside the run and Flow views every face shares (`tools.models`).

Sessions are what the Sessions page lists (runs now; chats join later under another `kind`);
tasks are the background runs the Command Center shows. Requests are validated with these
models, and the OpenAPI document is generated from them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..flows.enums import CheckpointMode, DecisionKind, ExecutionMode, RunStatus, TaskState
from ..flows.run import Run
from ..tools.models import FlowView, RunView
from ..tools.views import run_url


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StartRequest(_Request):
    flow_id: str = Field(min_length=1, max_length=200, description="the Flow to start (see GET /api/flows)")
    params: dict[str, Any] = Field(default_factory=dict, description="the Flow's parameters by name")
    sandbox_profile: str | None = Field(default=None, max_length=200)
    execution_mode: ExecutionMode | None = None
    checkpoint_mode: CheckpointMode | None = None
    record_id: str | None = Field(default=None, max_length=200,
                                  description="launch from this plan or initiative: its context is in scope")


class DecideRequest(_Request):
    decision: DecisionKind
    comment: str = Field(default="", max_length=20_000)
    step: int | str | None = Field(default=None, description="the step the decision is meant for (index or name)")
    decision_id: str | None = Field(default=None, max_length=200, description="idempotency key")
    expected_version: int | None = Field(default=None, ge=0, description="the run version the person saw")


class RetryRequest(_Request):
    clone: bool = Field(default=False, description="start a fresh run linked to this one instead")


class FlowList(_Model):
    flows: list[FlowView]


class RunPage(_Model):
    runs: list[RunView] = Field(description="newest first")
    next_cursor: str | None = Field(default=None, description="pass as `cursor` for the next page")


class EventPage(_Model):
    events: list[dict[str, Any]] = Field(description="stored events ({run_id, seq, at, data}), oldest first")
    last_seq: int = Field(description="the highest seq in this page (after_seq if it is empty)")
    has_more: bool


class HealthEventView(_Model):
    id: str
    title: str = ""
    body: str = ""
    data: dict[str, Any] = Field(default_factory=dict)


class HealthEventList(_Model):
    health_events: list[HealthEventView]


class SessionView(_Model):
    kind: Literal["run", "chat"] = Field(default="run", description="a run, or a chat with the chat agent")
    id: str
    title: str
    status: RunStatus | None = Field(description="a run's status (none for a chat)")
    who: str
    created_at: datetime
    updated_at: datetime | None = Field(default=None, description="a chat: its newest message")
    finished_at: datetime | None = None
    turns: int = 0
    cost_usd: float = 0.0
    url: str
    version: int = Field(description="a run's version; a chat's last seq")
    background: bool = False
    runs: list[str] = Field(default_factory=list, description="a chat: the runs it started")


class SessionPage(_Model):
    sessions: list[SessionView] = Field(description="newest first")
    next_cursor: str | None = None


class TaskView(_Model):
    id: str = Field(description="the background task's id")
    run_id: str
    title: str
    state: TaskState = Field(description="running or review (waits for a person), done, stopped")
    status: RunStatus
    who: str
    created_at: datetime
    turns: int = 0
    cost_usd: float = 0.0
    url: str
    version: int


class TaskList(_Model):
    tasks: list[TaskView] = Field(description="newest first")


def session_view(run: Run, public_url: str) -> SessionView:
    return SessionView(
        id=run.id, title=run.flow.name, status=run.status, who=run.started_by, created_at=run.created_at,
        finished_at=run.finished_at, turns=run.usage.turns, cost_usd=run.usage.cost_usd,
        url=run_url(public_url, run.id), version=run.version,
        background=run.execution_mode == ExecutionMode.BACKGROUND,
    )


def task_view(run: Run, public_url: str) -> TaskView | None:
    if run.task is None:
        return None
    return TaskView(
        id=run.task.id, run_id=run.id, title=run.flow.name, state=run.task.state, status=run.status,
        who=run.started_by, created_at=run.created_at, turns=run.usage.turns, cost_usd=run.usage.cost_usd,
        url=run_url(public_url, run.id), version=run.version,
    )
