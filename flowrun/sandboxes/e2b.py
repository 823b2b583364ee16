"""The e2b backend: a cloud micro-VM per run, through the e2b SDK's `AsyncSandbox`.

Importing this module imports the SDK (about a second): `flowrun.sandboxes.get_backend` imports
it only when a profile asks for e2b.

What this adds to the SDK:
- Our own deadline per command. The SDK's `timeout` (60 s by default) bounds the whole output
  stream; we pass `timeout=0` and enforce the profile's limit ourselves, killing the command.
- Releasing at a checkpoint pauses the sandbox (memory and filesystem kept); reacquiring
  connects to it, which resumes it. A marker file written at creation is checked on resume, so
  a sandbox silently replaced by a blank one is reported instead of continuing in an empty
  workspace.
- Repositories are fetched by the server (with the GitHub credential, which never enters the
  sandbox) and uploaded as a tarball, so they work with the sandbox's network off.
- Every SDK error is translated in `e2b_errors`.
"""

from __future__ import annotations

import logging
import os
import posixpath
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio
from e2b import AsyncCommandHandle, AsyncSandbox, CommandExitException

from ..flows.errors import SandboxError
from ..flows.profiles import SandboxProfile
from ..flows.run import SandboxLink
from .base import CALL_ENV, ExecResult, OutputCallback, SetupCallback
from .e2b_errors import call, credential_needed, sandbox_gone
from .e2b_files import E2BFiles
from .e2b_provision import report, upload_repositories
from .output import OutputCollector
from .paths import workspace_parts
from .process import TIMEOUT_EXIT_CODE
from .provision import require_credential
from .state import SandboxState, require_active

logger = logging.getLogger("flowrun.sandboxes")

DEFAULT_WORKSPACE = "/home/user/workspace"
_KILL_TIMEOUT_S = 10.0


class E2BSandbox:
    def __init__(self, sandbox: AsyncSandbox, profile: SandboxProfile, backend: E2BBackend) -> None:
        self.sdk = sandbox
        self.profile = profile
        self.state = SandboxState.ACTIVE
        self._backend = backend
        self.files = E2BFiles(sandbox, backend.workspace, backend.call)

    @property
    def id(self) -> str:
        return str(self.sdk.sandbox_id)

    @property
    def link(self) -> SandboxLink:
        return SandboxLink(backend="e2b", id=self.id, state=self.state.value)

    @property
    def workspace(self) -> str:
        return self._backend.workspace

    async def exec(
        self,
        command: str,
        *,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the protocol's own deadline
        on_output: OutputCallback | None = None,
    ) -> ExecResult:
        workdir = posixpath.join(self.workspace, *workspace_parts(cwd or ".", self.workspace))
        return await self._stream(
            "run a command",
            "start a command",
            timeout,
            on_output,
            lambda on_stdout, on_stderr: self.sdk.commands.run(
                command,
                background=True,
                envs=dict(env or {}),
                cwd=workdir,
                on_stdout=on_stdout,
                on_stderr=on_stderr,
                timeout=0,  # the SDK's timeout covers the whole stream: ours is in _follow
            ),
        )

    async def running_commands(self) -> list[int]:
        """Pids of commands still running, e.g. one a previous process started before a restart."""
        return [int(p.pid) for p in await self._processes()]

    async def running_calls(self) -> dict[str, int]:
        """Running commands started for a tool call (tagged `FLOWRUN_CALL_ID` in their env), by call
        id: what a step that was in flight before a restart can re-attach to."""
        return {
            p.envs[CALL_ENV]: int(p.pid)
            for p in await self._processes()
            if p.envs and CALL_ENV in p.envs
        }

    async def _processes(self) -> list[Any]:
        return list(
            await self._backend.call("list commands", self.sdk.commands.list, sandbox_id=self.id)
        )

    async def attach(
        self,
        pid: int,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the protocol's own deadline
        on_output: OutputCallback | None = None,
    ) -> ExecResult:
        """Re-attach to a running command and stream the rest of its output to its end, as
        `exec` would have (same deadline, kill and cancellation rules)."""
        return await self._stream(
            "attach to a command",
            "attach to a command",
            timeout,
            on_output,
            lambda on_stdout, on_stderr: self.sdk.commands.connect(
                pid, timeout=0, on_stdout=on_stdout, on_stderr=on_stderr
            ),
        )

    async def _stream(
        self,
        doing: str,
        call: str,
        timeout: float | None,  # noqa: ASYNC109 - the protocol's own deadline
        on_output: OutputCallback | None,
        start: Callable[
            [Callable[[str], Awaitable[None]], Callable[[str], Awaitable[None]]],
            Awaitable[AsyncCommandHandle],
        ],
    ) -> ExecResult:
        """Start (or re-attach to) a command and follow it to its end with our own deadline."""
        require_active(self.state, self.id, doing)
        limit = timeout if timeout is not None else self.profile.limits.command_timeout_s
        output = OutputCollector(self.profile.limits.max_output_bytes, on_output)
        started = time.monotonic()

        async def on_stdout(text: str) -> None:
            await output.feed("stdout", text)

        async def on_stderr(text: str) -> None:
            await output.feed("stderr", text)

        handle: AsyncCommandHandle = await self._backend.call(
            call, lambda: start(on_stdout, on_stderr), sandbox_id=self.id
        )
        return await self._follow(handle, limit, output, started)

    async def _follow(
        self, handle: AsyncCommandHandle, limit: float, output: OutputCollector, started: float
    ) -> ExecResult:
        try:
            with anyio.move_on_after(limit) as deadline:
                exit_code = await self._wait(handle)
            if deadline.cancelled_caught:
                await self._kill(handle)
                exit_code = TIMEOUT_EXIT_CODE
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._kill(handle)
            raise
        await output.close()
        return ExecResult(
            exit_code=exit_code,
            stdout=output.text("stdout"),
            stderr=output.text("stderr"),
            timed_out=deadline.cancelled_caught,
            truncated=output.truncated,
            duration_s=time.monotonic() - started,
        )

    async def _wait(self, handle: AsyncCommandHandle) -> int:
        async def wait() -> int:
            try:
                result = await handle.wait()
            except CommandExitException as exc:
                return int(exc.exit_code)
            return int(result.exit_code)

        code: int = await self._backend.call("run a command", wait, sandbox_id=self.id, attempts=1)
        return code

    async def _kill(self, handle: AsyncCommandHandle) -> None:
        """Kill the command (bounded); a failure here is logged, not raised over the cause."""
        with anyio.move_on_after(_KILL_TIMEOUT_S):
            try:
                await handle.kill()
            except Exception as exc:  # the sandbox may be gone already
                logger.info("could not kill command %s in %s: %s", handle.pid, self.id, exc)
            try:
                await handle.disconnect()
            except Exception as exc:
                logger.debug("disconnect from command %s failed: %s", handle.pid, exc)

    async def read_file(self, path: str) -> bytes:
        require_active(self.state, self.id, "read a file")
        return await self.files.read(path)

    async def write_file(self, path: str, data: bytes) -> None:
        require_active(self.state, self.id, "write a file")
        await self.files.write(path, data)

    async def list_files(self, path: str = ".", *, recursive: bool = False) -> list[str]:
        require_active(self.state, self.id, "list files")
        return await self.files.list(path, recursive)


class E2BBackend:
    """Sandboxes as e2b micro-VMs.

    Args:
        api_key: the e2b key; default `E2B_API_KEY` from `env`, then from the process.
        api_url / domain / sandbox_url: where the e2b API and sandboxes are (defaults: e2b's
            cloud; `E2B_API_URL`, `E2B_DOMAIN`, `E2B_SANDBOX_URL` from `env` are honoured).
        workspace: the workspace directory inside the sandbox.
        github_token: the GitHub integration's credential for private repositories (default
            `GITHUB_TOKEN` from `env`); used by the server only.
        http_version: "1.1" or "2" (the SDK's default) for the API and the sandbox.
        retry_attempts / retry_backoff_s: the bounded retry of rate-limited calls.
        env: the server's settings environment; read for defaults, never sent to a sandbox.
    """

    name = "e2b"

    def __init__(
        self,
        *,
        api_key: str | None = None,
        api_url: str | None = None,
        domain: str | None = None,
        sandbox_url: str | None = None,
        workspace: str = DEFAULT_WORKSPACE,
        github_token: str | None = None,
        http_version: str | None = None,
        request_timeout: float | None = None,
        retry_attempts: int = 4,
        retry_backoff_s: float = 0.5,
        env: Mapping[str, str] | None = None,
    ) -> None:
        settings = {**os.environ, **(env or {})}
        self._api_key = api_key or settings.get("E2B_API_KEY") or None
        self._params: dict[str, Any] = {
            "api_url": api_url or settings.get("E2B_API_URL") or None,
            "domain": domain or settings.get("E2B_DOMAIN") or None,
            "sandbox_url": sandbox_url or settings.get("E2B_SANDBOX_URL") or None,
            "http_version": http_version or settings.get("E2B_HTTP_VERSION") or None,
            "request_timeout": request_timeout,
            "retries": 0,  # rate limits are retried by `call`, once, boundedly
        }
        self.workspace = workspace.rstrip("/") or "/"
        self._github_token = github_token or settings.get("GITHUB_TOKEN") or None
        self._attempts = retry_attempts
        self._backoff = retry_backoff_s

    def _api(self) -> dict[str, Any]:
        if not self._api_key:
            raise credential_needed("no API key is configured")
        return {
            "api_key": self._api_key,
            **{k: v for k, v in self._params.items() if v is not None},
        }

    async def call(
        self,
        action: str,
        operation: Callable[[], Awaitable[Any]],
        *,
        sandbox_id: str | None = None,
        attempts: int | None = None,
    ) -> Any:
        return await call(
            action,
            operation,
            sandbox_id=sandbox_id,
            attempts=attempts or self._attempts,
            backoff_s=self._backoff,
        )

    @property
    def _marker(self) -> str:
        return self.workspace + ".flowrun"

    async def acquire(
        self,
        run_id: str,
        profile: SandboxProfile,
        *,
        link: SandboxLink | None = None,
        on_setup: SetupCallback | None = None,
    ) -> E2BSandbox:
        started = time.monotonic()
        api = self._api()
        if link is not None:
            return await self._resume(run_id, profile, link, api, on_setup, started)
        for repo in profile.repositories:
            require_credential(repo, self._github_token)
        sdk: AsyncSandbox = await self.call(
            "create a sandbox",
            lambda: AsyncSandbox.create(
                template=profile.template,
                timeout=profile.lifetime_s,
                metadata={"flowrun_run_id": run_id, "flowrun_profile": profile.name},
                envs=dict(profile.env),
                allow_internet_access=profile.network,
                **api,
            ),
        )
        sandbox = E2BSandbox(sdk, profile, self)
        try:
            await self.call(
                "prepare the workspace",
                lambda: sdk.files.write(self._marker, run_id.encode(), use_octet_stream=True),
                sandbox_id=sandbox.id,
            )
            await self.call(
                "prepare the workspace",
                lambda: sdk.files.make_dir(self.workspace),
                sandbox_id=sandbox.id,
            )
            await report(
                on_setup,
                f"e2b sandbox {sandbox.id} created from template {profile.template or 'base'} "
                f"({time.monotonic() - started:.2f}s)",
                action="workspace",
                backend=self.name,
                template=profile.template,
                sandbox_id=sandbox.id,
                workspace=self.workspace,
                reused=False,
                duration_s=round(time.monotonic() - started, 3),
            )
            await upload_repositories(
                sandbox, profile, github_token=self._github_token, on_setup=on_setup
            )
        except BaseException:
            with anyio.CancelScope(shield=True), anyio.move_on_after(_KILL_TIMEOUT_S):
                await self.destroy(sandbox.link)
            raise
        await _ready(on_setup, started)
        return sandbox

    async def _resume(
        self,
        run_id: str,
        profile: SandboxProfile,
        link: SandboxLink,
        api: dict[str, Any],
        on_setup: SetupCallback | None,
        started: float,
    ) -> E2BSandbox:
        if link.state == "destroyed":
            raise sandbox_gone(link.id, "it was destroyed when the run released it")
        sdk: AsyncSandbox = await self.call(
            "resume the sandbox",
            lambda: AsyncSandbox.connect(link.id, timeout=profile.lifetime_s, **api),
            sandbox_id=link.id,
        )
        sandbox = E2BSandbox(sdk, profile, self)
        try:
            marker = await sandbox.files.read_absolute(self._marker)
        except SandboxError:
            marker = b""
        if marker.decode(errors="replace") != run_id:
            raise sandbox_gone(link.id, "it came back without this run's workspace")
        await report(
            on_setup,
            f"e2b sandbox {sandbox.id} resumed ({time.monotonic() - started:.2f}s)",
            action="workspace",
            backend=self.name,
            template=profile.template,
            sandbox_id=sandbox.id,
            workspace=self.workspace,
            reused=True,
            duration_s=round(time.monotonic() - started, 3),
        )
        await _ready(on_setup, started)
        return sandbox

    async def release(self, sandbox: object, *, keep: bool) -> SandboxLink:
        if not isinstance(sandbox, E2BSandbox):
            raise SandboxError(
                f"the e2b backend cannot release a {type(sandbox).__name__}", code="wrong_backend"
            )
        if sandbox.state is not SandboxState.ACTIVE:
            return sandbox.link
        if keep:
            await self.call("pause the sandbox", sandbox.sdk.pause, sandbox_id=sandbox.id)
            sandbox.state = SandboxState.RELEASED
        else:
            await self.destroy(sandbox.link)
            sandbox.state = SandboxState.DESTROYED
        logger.info("e2b sandbox %s %s", sandbox.id, sandbox.state.value)
        return sandbox.link

    async def destroy(self, link: SandboxLink) -> None:
        """Kill the sandbox; one that is already gone counts as destroyed."""
        api = self._api()
        await self.call("kill the sandbox", lambda: AsyncSandbox.kill(link.id, **api))


async def _ready(on_setup: SetupCallback | None, started: float) -> None:
    duration = round(time.monotonic() - started, 3)
    await report(on_setup, f"sandbox ready in {duration:.2f}s", action="ready", duration_s=duration)
