"""The local backend: a workspace directory per run, commands confined on this machine.

The workspace is `root/<run id>/` and is the sandbox's whole state, so releasing a sandbox costs
nothing and a later process (after a restart) reacquires the same workspace from the link alone.
Isolation is decided once per backend (see `isolation`): bubblewrap where it works, otherwise a
process group with rlimits and a single warning that isolation is reduced.
"""

from __future__ import annotations

import logging
import os
import posixpath
import re
import shutil
import stat
import time
from collections.abc import Mapping
from pathlib import Path

import anyio

from ..flows.errors import BlockedError, SandboxError
from ..flows.profiles import SandboxProfile
from ..flows.run import SandboxLink
from .base import ExecResult, OutputCallback, SetupCallback
from .identity import sandbox_identity
from .isolation import (
    SANDBOX_GID,
    SANDBOX_UID,
    Confinement,
    Isolation,
    IsolationChoice,
    clean_env,
    decide,
    warn_reduced_once,
)
from .localfiles import WorkspaceFiles
from .process import run_process
from .provision import clone_repositories
from .rootdir import reachable_root
from .snapshot import restore_snapshot, write_snapshot
from .state import SandboxState, require_active

logger = logging.getLogger("flowrun.sandboxes")

_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class LocalSandbox:
    """A run's workspace plus the confinement its commands run under."""

    def __init__(
        self,
        run_id: str,
        root: Path,
        profile: SandboxProfile,
        confinement: Confinement,
    ) -> None:
        self.run_id = run_id
        self.profile = profile
        self.confinement = confinement
        self.state = SandboxState.ACTIVE
        self._root = root
        self._files = WorkspaceFiles(root, owner=_owner(confinement), shown_as=self.workspace)

    @property
    def link(self) -> SandboxLink:
        return SandboxLink(backend="local", id=self.run_id, state=self.state.value)

    @property
    def workspace(self) -> str:
        return self.confinement.sandbox_workspace or str(self._root)

    @property
    def host_path(self) -> Path:
        """Where the workspace is on this machine."""
        return self._root

    def _check_active(self, action: str) -> None:
        require_active(self.state, self.run_id, action)

    async def exec(
        self,
        command: str,
        *,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the protocol's own deadline
        on_output: OutputCallback | None = None,
    ) -> ExecResult:
        self._check_active("run a command")
        limits = self.profile.limits
        parts = await self._cwd_parts(cwd)
        workdir = posixpath.join(self.workspace, *parts)
        full_env = clean_env(workspace=self.workspace, profile_env=self.profile.env, extra=env)
        argv = self.confinement.argv(
            command,
            workspace=str(self._root),
            cwd=workdir,
            limits=limits,
            network=self.profile.network,
        )
        try:
            return await run_process(
                argv,
                cwd=str(self._root.joinpath(*parts)),
                env=full_env,
                time_limit=timeout if timeout is not None else limits.command_timeout_s,
                max_output_bytes=limits.max_output_bytes,
                on_output=on_output,
                supervised=self.confinement.supervised,
            )
        except OSError as exc:  # e.g. the working directory vanished as the command started
            raise SandboxError(
                f"could not start the command in {cwd or '.'!r}: {exc.strerror or exc}",
                code="exec_failed",
                path=cwd or ".",
            ) from None

    async def _cwd_parts(self, cwd: str | None) -> list[str]:
        """The working directory, resolved inside the workspace: a missing, non-directory or
        escaping `cwd` is a SandboxError naming the caller's path, never the host's."""
        return await anyio.to_thread.run_sync(
            self._files.directory, cwd or ".", abandon_on_cancel=True
        )

    async def read_file(self, path: str) -> bytes:
        self._check_active("read a file")
        return await anyio.to_thread.run_sync(self._files.read, path, abandon_on_cancel=True)

    async def write_file(self, path: str, data: bytes) -> None:
        self._check_active("write a file")
        await anyio.to_thread.run_sync(self._files.write, path, data, abandon_on_cancel=True)

    async def list_files(self, path: str = ".", *, recursive: bool = False) -> list[str]:
        self._check_active("list files")
        return await anyio.to_thread.run_sync(
            self._files.list, path, recursive, abandon_on_cancel=True
        )

    async def snapshot(self, dest: Path) -> int:
        self._check_active("snapshot the workspace")
        return await anyio.to_thread.run_sync(write_snapshot, self._root, dest)

    async def restore(self, src: Path) -> None:
        self._check_active("restore the workspace")
        await anyio.to_thread.run_sync(restore_snapshot, self._root, src, _owner(self.confinement))


class LocalBackend:
    """Sandboxes as directories under `root`, confined by bubblewrap where it works.

    Args:
        root: where workspaces live, one directory per run.
        isolation: "auto" uses bubblewrap when it works; "bubblewrap" requires it;
            "process-group" never uses it. Default: `FLOWRUN_SANDBOX_ISOLATION` from `env`
            (the process environment when `env` is None), else "auto".
        sandbox_uid/sandbox_gid: who commands run as when the server is root and
            `uid_per_sandbox` is off (or the machine cannot switch to the reserved range).
        uid_per_sandbox: when root, each workspace runs as a uid of its own (see `identity`),
            so process limits and file permissions apply per sandbox.
        github_token: the GitHub integration's credential, for private repositories
            (default: `GITHUB_TOKEN` from `env`).
        env: the server's settings environment; read for defaults, never passed to commands.
    """

    name = "local"

    def __init__(
        self,
        root: Path,
        *,
        isolation: IsolationChoice | None = None,
        sandbox_uid: int = SANDBOX_UID,
        sandbox_gid: int = SANDBOX_GID,
        uid_per_sandbox: bool = True,
        github_token: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.root = Path(root).resolve()
        settings = env or {}
        github_token = github_token or settings.get("GITHUB_TOKEN") or None
        # without `env`, the process environment chooses (so CI can run every test without it)
        chosen = (env if env is not None else os.environ).get("FLOWRUN_SANDBOX_ISOLATION")
        self._choice = isolation or _isolation_choice(chosen)
        self._uid = sandbox_uid
        self._gid = sandbox_gid
        self._uid_per_sandbox = uid_per_sandbox
        self._github_token = github_token
        self._confinement: Confinement | None = None
        self._lock = anyio.Lock()

    @property
    def isolation(self) -> Isolation:
        """The isolation in force ("bubblewrap" | "process-group"); probes on first use."""
        if self._confinement is None:
            self._confinement = self._decide()
        return self._confinement.isolation

    def _decide(self) -> Confinement:
        try:
            confinement = decide(self._choice, uid=self._uid, gid=self._gid)
        except RuntimeError as exc:
            raise SandboxError(str(exc), code="isolation_unavailable") from None
        warn_reduced_once(confinement)
        if confinement.isolation == "process-group" and confinement.uid is not None:
            # started as the dropped uid, a command must be able to stat its own workspace
            self.root = reachable_root(self.root, self._uid, self._gid)
        return confinement

    async def confinement(self) -> Confinement:
        async with self._lock:
            if self._confinement is None:
                self._confinement = await anyio.to_thread.run_sync(self._decide)
            return self._confinement

    def workspace_path(self, run_id: str) -> Path:
        """Where a run's workspace is (the root moves when the sandbox uid cannot reach it, so
        this settles the isolation first)."""
        if self._confinement is None:
            self._confinement = self._decide()
        if not _SAFE_ID.match(run_id):
            raise SandboxError(f"invalid sandbox id {run_id!r}", code="invalid_sandbox_id")
        return self.root / run_id

    async def acquire(
        self,
        run_id: str,
        profile: SandboxProfile,
        *,
        link: SandboxLink | None = None,
        on_setup: SetupCallback | None = None,
    ) -> LocalSandbox:
        started = time.monotonic()
        confinement = await self.confinement()
        key = link.id if link is not None else run_id
        workspace = self.workspace_path(key)
        existed = await anyio.to_thread.run_sync(workspace.is_dir)
        if link is not None and (link.state == "destroyed" or not existed):
            raise BlockedError(
                "environment_unhealthy",
                f"the local workspace of sandbox {key} is gone ({workspace})",
                fix="resume the run: it continues in a new sandbox (the old workspace cannot be recovered)",
                sandbox=key,
            )
        if confinement.uid is not None and confinement.gid is not None and self._uid_per_sandbox:
            uid, gid = await anyio.to_thread.run_sync(
                sandbox_identity, self.root, workspace, (confinement.uid, confinement.gid)
            )
            confinement = confinement.for_uid(uid, gid)
        owner = _owner(confinement)
        await anyio.to_thread.run_sync(_make_workspace, self.root, workspace, owner)
        if on_setup is not None:
            await on_setup(
                f"local sandbox ({confinement.isolation}) {'reused' if existed else 'created'} "
                f"at {workspace}",
                {
                    "action": "workspace",
                    "backend": self.name,
                    "isolation": confinement.isolation,
                    "workspace": str(workspace),
                    "reused": existed,
                },
            )
        await clone_repositories(
            workspace,
            profile,
            on_setup=on_setup,
            github_token=self._github_token,
            give_away=lambda path: _chown_tree(path, owner),
        )
        duration = round(time.monotonic() - started, 3)
        if on_setup is not None:
            await on_setup(
                f"sandbox ready in {duration:.2f}s", {"action": "ready", "duration_s": duration}
            )
        return LocalSandbox(key, workspace, profile, confinement)

    async def release(self, sandbox: object, *, keep: bool) -> SandboxLink:
        if not isinstance(sandbox, LocalSandbox):
            raise SandboxError(
                f"the local backend cannot release a {type(sandbox).__name__}",
                code="wrong_backend",
            )
        if keep:
            if sandbox.state is SandboxState.ACTIVE:
                sandbox.state = SandboxState.RELEASED
            return sandbox.link
        await self.destroy(sandbox.link)
        sandbox.state = SandboxState.DESTROYED
        return sandbox.link

    async def destroy(self, link: SandboxLink) -> None:
        await self.confinement()
        workspace = self.workspace_path(link.id)
        await anyio.to_thread.run_sync(_remove_tree, workspace)
        logger.info("destroyed local sandbox %s", link.id)


def _isolation_choice(value: str | None) -> IsolationChoice:
    if value in (None, "", "auto"):
        return "auto"
    if value == "bubblewrap":
        return "bubblewrap"
    if value == "process-group":
        return "process-group"
    raise SandboxError(
        f"FLOWRUN_SANDBOX_ISOLATION={value!r}: expected auto, bubblewrap or process-group",
        code="invalid_setting",
    )


def _owner(confinement: Confinement) -> tuple[int, int] | None:
    if confinement.uid is None or confinement.gid is None:
        return None
    return confinement.uid, confinement.gid


def _make_workspace(root: Path, workspace: Path, owner: tuple[int, int] | None) -> None:
    # Search-only for others: a dropped uid can reach its workspace but not list its siblings.
    root.mkdir(mode=0o711, parents=True, exist_ok=True)
    try:
        workspace.mkdir(mode=0o755)
    except FileExistsError:
        return
    if owner is not None:
        os.chown(workspace, *owner)


def _chown_tree(path: Path, owner: tuple[int, int] | None) -> None:
    """Hand a new tree to the sandbox user, one directory fd at a time (a directory swapped for a
    symlink mid-walk is not followed). A file with other hard links is copied first: its inode
    may be shared with a file outside the workspace, which must never change hands."""
    if owner is None:
        return
    for _top, dirnames, filenames, dir_fd in os.fwalk(path):
        for name in filenames:
            _unshare(name, dir_fd)
        for name in (*dirnames, *filenames):
            os.chown(name, *owner, dir_fd=dir_fd, follow_symlinks=False)
    os.chown(path, *owner, follow_symlinks=False)


def _unshare(name: str, dir_fd: int) -> None:
    """Replace a hardlinked regular file by a private copy (same content and mode)."""
    info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink <= 1:
        return
    copy = f"{name}.flowrun-unshare"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    src = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    with os.fdopen(src, "rb") as reader:
        dst = os.open(copy, flags, stat.S_IMODE(info.st_mode), dir_fd=dir_fd)
        with os.fdopen(dst, "wb") as writer:
            shutil.copyfileobj(reader, writer)
    os.replace(copy, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)


def _remove_tree(path: Path) -> None:
    if not path.exists():
        return
    # The sandbox may have left read-only directories, which stop a non-root server's rmtree.
    for dirpath, _dirnames, _filenames in os.walk(path):
        mode = os.stat(dirpath, follow_symlinks=False).st_mode
        if not mode & stat.S_IWUSR or not mode & stat.S_IXUSR:
            os.chmod(dirpath, mode | stat.S_IWUSR | stat.S_IXUSR | stat.S_IRUSR)
    shutil.rmtree(path)
