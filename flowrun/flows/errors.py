"""The error tree.

One root, `FlowrunError`, split in two: `UsageError` is misuse by the caller (a bad template, an
unknown run, a transition the state machine forbids) and `WorldError` is a failure of the world
(a sandbox that vanished, a model that is overloaded). Every error carries a stable `code`, a
message a person can act on, whether retrying may help, and the ids involved. Faces (CLI, MCP,
HTTP) translate these in exactly one place each.
"""

from __future__ import annotations

from typing import Any


class FlowrunError(Exception):
    code: str = "error"
    retryable: bool = False

    def __init__(self, message: str, *, code: str | None = None, retryable: bool | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if retryable is not None:
            self.retryable = retryable
        self.details: dict[str, Any] = {k: v for k, v in details.items() if v is not None}

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "retryable": self.retryable, **self.details}


class UsageError(FlowrunError):
    """The caller asked for something that cannot be done as asked."""

    code = "usage_error"


class WorldError(FlowrunError):
    """Something outside the caller's request failed."""

    code = "world_error"
    retryable = True


class TemplateError(UsageError):
    """A Flow, skill, profile or script file is malformed. Names the file and the field."""

    code = "invalid_template"


class NotFound(UsageError):
    code = "not_found"


class InvalidTransition(UsageError):
    """The state machine forbids this command in this state."""

    code = "invalid_transition"

    def __init__(self, subject: str, state: str, command: str, *, hint: str = "", **details: Any) -> None:
        message = f"cannot {command} {subject}: it is {state}"
        if hint:
            message += f" ({hint})"
        super().__init__(message, state=state, command=command, **details)


class DecisionConflict(UsageError):
    """A checkpoint decision lost the compare-and-set (`already_decided`, `stale_checkpoint`)."""

    code = "decision_conflict"


class ParameterError(UsageError):
    """Start parameters are missing or of the wrong type."""

    code = "invalid_parameters"


class StartRefused(FlowrunError):
    """A run declined to start before any step executed.

    Codes: `missing_parameters`, `warming_up` (retryable, with `retry_after`), `preflight_failed`,
    `daily_cap_reached` (with `resets_at`).
    """

    code = "start_refused"


class PermissionDenied(UsageError):
    code = "permission_denied"


class ConcurrentUpdate(WorldError):
    """The run changed under us (another process wrote it); reload and try again."""

    code = "concurrent_update"


class LeaseLost(ConcurrentUpdate):
    """Another engine process took the run over (this one's lease expired while it was stalled):
    the write is refused and this process must stop driving the run, writing nothing more."""

    code = "lease_lost"


class SandboxError(WorldError):
    code = "sandbox_error"


class ModelError(WorldError):
    code = "model_error"


class BlockedError(WorldError):
    """A step cannot proceed until a person supplies something; parks the run as blocked."""

    code = "blocked"
    retryable = False

    def __init__(self, cause: str, message: str, *, fix: str, **details: Any) -> None:
        super().__init__(message, cause=cause, fix=fix, **details)
        self.cause = cause
        self.fix = fix
