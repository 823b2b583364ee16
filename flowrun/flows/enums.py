"""Closed sets, named exactly as the product document names them."""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    BLOCKED = "blocked"
    INTERRUPTED = "interrupted"

    @property
    def finished(self) -> bool:
        """No task drives the run; only a person (resume, retry) can move it on."""
        return self not in (RunStatus.PENDING, RunStatus.RUNNING)


class StepStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    BLOCKED = "blocked"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


class Outcome(StrEnum):
    SUCCESS = "success"
    PARTIAL = "partial"
    BLOCKED = "blocked"
    ERROR = "error"


class CheckpointMode(StrEnum):
    TEMPLATE = "template"  # honour the Flow's own per-step checkpoints
    EVERY = "every"  # pause before every step
    NONE = "none"  # run straight through


class ExecutionMode(StrEnum):
    INTERACTIVE = "interactive"
    BACKGROUND = "background"


class DecisionKind(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"
    SKIP = "skip"


class LaunchKind(StrEnum):
    EDITOR = "editor"
    RECORD = "record"
    CHAT = "chat"
    TRIGGER = "trigger"


class TranscriptKind(StrEnum):
    TEXT = "text"
    THINKING = "thinking"
    TOOL_START = "tool_start"
    TOOL_END = "tool_end"
    TOOL_DELTA = "tool_delta"
    ERROR = "error"
    SETUP = "setup"
    INFO = "info"


class BlockedCause(StrEnum):
    CREDENTIAL_NEEDED = "credential_needed"
    ENVIRONMENT_UNHEALTHY = "environment_unhealthy"
    INTEGRATION_UNAVAILABLE = "integration_unavailable"
    STEP_REPORTED_BLOCKED = "step_reported_blocked"


class TaskState(StrEnum):
    """The background task a background run also is (Command Center card)."""

    RUNNING = "running"
    REVIEW = "review"
    DONE = "done"
    STOPPED = "stopped"


class Scope(StrEnum):
    READ = "flows.read"
    RUN = "flows.run"
    CANCEL_ANY = "flows.cancel.any"
    INTEGRATIONS = "integrations.manage"  # connect or disconnect an integration (an admin's scope)


class Plan(StrEnum):
    """Workspace plans and their daily Flow run allowance."""

    FREE = "free"
    TEAM = "team"
    BUSINESS = "business"

    @property
    def daily_runs(self) -> int | None:
        return {Plan.FREE: 5, Plan.TEAM: 20, Plan.BUSINESS: None}[self]
