"""The lifecycle every sandbox object goes through, with a guard that names misuse."""

from __future__ import annotations

from enum import StrEnum

from ..flows.errors import SandboxError


class SandboxState(StrEnum):
    """active -> released (parked, reacquirable) or destroyed. Released objects stay dead:
    `acquire(link=...)` returns a new object for the same sandbox."""

    ACTIVE = "active"
    RELEASED = "released"
    DESTROYED = "destroyed"


def require_active(state: SandboxState, sandbox_id: str, action: str) -> None:
    """Raises:
    SandboxError: `sandbox_not_active`, naming the state and what was asked."""
    if state is not SandboxState.ACTIVE:
        raise SandboxError(
            f"cannot {action} in sandbox {sandbox_id}: it is {state.value}",
            code="sandbox_not_active",
            state=state.value,
            sandbox=sandbox_id,
        )
