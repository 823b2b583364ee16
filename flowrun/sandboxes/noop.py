"""A backend whose sandboxes do nothing: commands succeed at once, files live in memory.

It exists so the engine can be benchmarked and tested without paying for processes, and so a
test can see which commands a step ran (`NoopSandbox.commands`). Files survive release and
reacquire within one backend instance, like a real workspace would; path rules are the same as
everywhere (`..` and absolute paths outside the workspace are refused).
"""

from __future__ import annotations

from collections.abc import Mapping

from ..flows.errors import BlockedError, SandboxError
from ..flows.profiles import SandboxProfile
from ..flows.run import SandboxLink
from .base import ExecResult, OutputCallback, SetupCallback
from .paths import not_found, relative, workspace_parts
from .state import SandboxState, require_active

WORKSPACE = "/workspace"


class NoopSandbox:
    def __init__(self, run_id: str, files: dict[str, bytes], commands: list[str]) -> None:
        self.run_id = run_id
        self.state = SandboxState.ACTIVE
        self.files = files  # shared with the backend: survives release and reacquire
        self.commands = commands

    @property
    def link(self) -> SandboxLink:
        return SandboxLink(backend="noop", id=self.run_id, state=self.state.value)

    @property
    def workspace(self) -> str:
        return WORKSPACE

    async def exec(
        self,
        command: str,
        *,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the protocol's own deadline
        on_output: OutputCallback | None = None,
    ) -> ExecResult:
        require_active(self.state, self.run_id, "run a command")
        self.commands.append(command)
        return ExecResult(exit_code=0, stdout="", stderr="")

    def _key(self, path: str) -> str:
        return relative(workspace_parts(path, WORKSPACE))

    async def read_file(self, path: str) -> bytes:
        require_active(self.state, self.run_id, "read a file")
        key = self._key(path)
        if key not in self.files:
            raise not_found(path)
        return self.files[key]

    async def write_file(self, path: str, data: bytes) -> None:
        require_active(self.state, self.run_id, "write a file")
        key = self._key(path)
        if key == ".":
            raise SandboxError(f"{path!r} is a directory", code="is_a_directory", path=path)
        self.files[key] = bytes(data)

    async def list_files(self, path: str = ".", *, recursive: bool = False) -> list[str]:
        require_active(self.state, self.run_id, "list files")
        key = self._key(path)
        prefix = "" if key == "." else key + "/"
        found: set[str] = set()
        for name in self.files:
            if not name.startswith(prefix):
                continue
            rest = name[len(prefix) :].split("/")
            if recursive:
                found.update(prefix + "/".join(rest[:i]) + "/" for i in range(1, len(rest)))
                found.add(name)
            else:
                found.add(prefix + rest[0] + ("/" if len(rest) > 1 else ""))
        if not found and key != ".":
            if key in self.files:
                raise SandboxError(
                    f"{path!r} is not a directory", code="not_a_directory", path=path
                )
            raise not_found(path)
        return sorted(found)


class NoopBackend:
    """Every run gets a sandbox at once; `sandboxes` maps run ids to their last sandbox."""

    name = "noop"

    def __init__(self, *, env: Mapping[str, str] | None = None) -> None:
        del env  # accepted like every backend's settings; nothing to configure
        self._files: dict[str, dict[str, bytes]] = {}
        self._commands: dict[str, list[str]] = {}
        self.sandboxes: dict[str, NoopSandbox] = {}

    async def acquire(
        self,
        run_id: str,
        profile: SandboxProfile,
        *,
        link: SandboxLink | None = None,
        on_setup: SetupCallback | None = None,
    ) -> NoopSandbox:
        key = link.id if link is not None else run_id
        if link is not None and (link.state == "destroyed" or key not in self._files):
            raise BlockedError(
                "environment_unhealthy",
                f"noop sandbox {key} is gone",
                fix="resume the run: it continues in a new sandbox (the old workspace is lost)",
                sandbox=key,
            )
        files = self._files.setdefault(key, {})
        commands = self._commands.setdefault(key, [])
        if on_setup is not None:
            await on_setup("noop sandbox", {"action": "workspace", "backend": self.name})
        sandbox = NoopSandbox(key, files, commands)
        self.sandboxes[key] = sandbox
        return sandbox

    async def release(self, sandbox: object, *, keep: bool) -> SandboxLink:
        if not isinstance(sandbox, NoopSandbox):
            raise SandboxError(
                f"the noop backend cannot release a {type(sandbox).__name__}",
                code="wrong_backend",
            )
        if keep:
            sandbox.state = SandboxState.RELEASED
        else:
            await self.destroy(sandbox.link)
            sandbox.state = SandboxState.DESTROYED
        return sandbox.link

    async def destroy(self, link: SandboxLink) -> None:
        self._files.pop(link.id, None)
        self._commands.pop(link.id, None)
