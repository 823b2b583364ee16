"""The `Sandbox` and `SandboxBackend` protocols.

A backend turns a profile into a live sandbox for a run. A sandbox runs commands and reads and
writes files inside its workspace and nowhere else. `release(keep=True)` parks it (e2b: pause;
local: the workspace stays on disk) and returns a `SandboxLink` that `acquire(..., link=...)`
turns back into the same sandbox, in the same or a later process.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

from ..flows.profiles import SandboxProfile
from ..flows.run import SandboxLink

CALL_ENV = "FLOWRUN_CALL_ID"
"""Set in the environment of every command a tool call starts, so a backend whose commands
outlive the engine process (e2b) can find the one a step was running before a restart."""

OutputCallback = Callable[[Literal["stdout", "stderr"], str], Awaitable[None]]
SetupCallback = Callable[[str, dict[str, object]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class ExecResult:
    exit_code: int
    stdout: str
    stderr: str
    timed_out: bool = False
    truncated: bool = False
    duration_s: float = 0.0


class Sandbox(Protocol):
    @property
    def link(self) -> SandboxLink: ...

    @property
    def workspace(self) -> str:
        """The workspace root, as a path inside the sandbox."""
        ...

    async def exec(
        self,
        command: str,
        *,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the protocol's own deadline
        on_output: OutputCallback | None = None,
    ) -> ExecResult:
        """Run a shell command; stream output through `on_output` as it arrives.

        On cancellation the whole process tree is killed before this re-raises.
        A timeout kills the tree and returns `timed_out=True` (exit code 124)."""
        ...

    async def read_file(self, path: str) -> bytes:
        """`path` is relative to the workspace (or absolute inside it). Raises SandboxError
        with code `path_escape` for paths leaving the workspace, `not_found` if missing."""
        ...

    async def write_file(self, path: str, data: bytes) -> None: ...

    async def list_files(self, path: str = ".", *, recursive: bool = False) -> list[str]: ...


@runtime_checkable
class SupportsSnapshots(Protocol):
    """A sandbox whose whole workspace can be saved to a file on this machine and put back.
    The engine takes one at every step boundary (see `flowrun.runtime.snapshots`)."""

    async def snapshot(self, dest: Path) -> int:
        """Save the workspace to `dest` (atomically); returns its size in bytes."""
        ...

    async def restore(self, src: Path) -> None:
        """Make the workspace exactly what `src` holds."""
        ...


class SandboxBackend(Protocol):
    name: str

    async def acquire(
        self,
        run_id: str,
        profile: SandboxProfile,
        *,
        link: SandboxLink | None = None,
        on_setup: SetupCallback | None = None,
    ) -> Sandbox:
        """A live sandbox for the run: new, or the one `link` names (reconnect/resume).

        `on_setup(text, data)` reports provisioning steps for the transcript's setup card.

        Raises:
            BlockedError: a credential is needed (`credential_needed`) or the sandbox named by
                `link` is gone (`environment_unhealthy`).
            SandboxError: anything else.
        """
        ...

    async def release(self, sandbox: Sandbox, *, keep: bool) -> SandboxLink:
        """Park (`keep=True`) or destroy the sandbox; returns the link with its new state."""
        ...

    async def destroy(self, link: SandboxLink) -> None:
        """Destroy a parked sandbox by its link (the run finished while it was released)."""
        ...
