"""Putting a profile's repositories into a local workspace at acquire time.

Cloning runs as the server, not in the sandbox: it may need the GitHub credential, which the
sandbox must never see. The credential reaches git through `GIT_CONFIG_*` environment variables,
so it is neither on a command line (visible in `ps`) nor written into the clone's `.git/config`.
A repository already in the workspace (a reacquire, or a restart) is left as it is: the step's
work lives there. A repository is fetched next to its place and renamed into it when whole, so
"already present" always means complete.
"""

from __future__ import annotations

import base64
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import anyio

from ..flows.errors import BlockedError, SandboxError
from ..flows.profiles import RepositorySpec, SandboxProfile
from .base import SetupCallback
from .isolation import DEFAULT_PATH
from .paths import workspace_parts

logger = logging.getLogger("flowrun.sandboxes")

CLONE_TIMEOUT_S = 600.0
PARTIAL_PREFIX = ".flowrun-partial-"
_REMOTE = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://|^[\w.-]+@[\w.-]+:")
_AUTH_FAILURES = (
    "authentication failed",
    "could not read username",
    "terminal prompts disabled",
    "permission denied (publickey)",
    "repository not found",
)


async def clone_repositories(
    workspace: Path,
    profile: SandboxProfile,
    *,
    on_setup: SetupCallback | None,
    github_token: str | None,
    give_away: Callable[[Path], None],
) -> None:
    """Clone (or copy) each repository of the profile that is not in the workspace yet.

    `give_away(path)` hands a new tree to the sandbox user.

    Raises:
        BlockedError: `credential_needed` for a private repository without a GitHub credential,
            or one whose clone was refused for lack of one.
        SandboxError: `repository_not_found` for a missing local path, `clone_failed` otherwise.
    """
    for repo in profile.repositories:
        parts = workspace_parts(repo.path, str(workspace))
        if not parts:
            raise SandboxError(
                f"repository {repo.url!r} has path {repo.path!r}: it must name a directory "
                "inside the workspace",
                code="invalid_profile",
            )
        dest = workspace.joinpath(*parts)
        await anyio.to_thread.run_sync(_clear_partials, dest)
        if dest.exists() and any(dest.iterdir()):
            await _report(on_setup, f"repository {repo.path} already present", repo, reused=True)
            continue
        require_credential(repo, github_token)
        started = time.monotonic()
        dest.parent.mkdir(parents=True, exist_ok=True)
        # atomic: fetched next to its place and renamed into it only when whole, so a kill
        # mid-clone never leaves a half repository that a later acquire would take as present
        partial = dest.with_name(f"{PARTIAL_PREFIX}{dest.name}.{uuid.uuid4().hex[:8]}")
        try:
            how = await fetch_repository(repo, partial, profile.source_dir, github_token)
            await anyio.to_thread.run_sync(_move_into_place, partial, dest)
        finally:
            await anyio.to_thread.run_sync(_clear_partials, dest)
        await anyio.to_thread.run_sync(give_away, workspace)
        duration = round(time.monotonic() - started, 3)
        await _report(
            on_setup,
            f"{how} {repo.url}{'@' + repo.ref if repo.ref else ''} into {repo.path} "
            f"({duration:.2f}s)",
            repo,
            duration_s=duration,
        )


def _clear_partials(dest: Path) -> None:
    """Remove what an interrupted fetch of `dest` left behind."""
    if not dest.parent.is_dir():
        return
    for leftover in dest.parent.glob(f"{PARTIAL_PREFIX}{dest.name}.*"):
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover, ignore_errors=True)


def _move_into_place(partial: Path, dest: Path) -> None:
    if dest.is_dir() and not dest.is_symlink():
        dest.rmdir()  # an empty directory in its place (checked above): rename needs it gone
    os.rename(partial, dest)


def require_credential(repo: RepositorySpec, github_token: str | None) -> None:
    """Raises:
    BlockedError: `credential_needed` for a private repository without a credential."""
    if repo.private and not github_token:
        raise BlockedError(
            "credential_needed",
            f"repository {repo.url} is private and no GitHub credential is connected",
            fix="connect GitHub (`flowrun integrations connect github`, or give the server GITHUB_TOKEN), "
            "then resume the run",
            repository=repo.url,
        )


async def _report(
    on_setup: SetupCallback | None, text: str, repo: RepositorySpec, **data: object
) -> None:
    if on_setup is not None:
        await on_setup(
            text, {"action": "clone", "url": repo.url, "ref": repo.ref, "path": repo.path, **data}
        )


def _local_source(url: str, source_dir: str | None) -> Path | None:
    if _REMOTE.match(url):
        return None
    path = Path(url).expanduser()
    if not path.is_absolute():
        path = Path(source_dir or os.getcwd()) / path
    return path


async def fetch_repository(
    repo: RepositorySpec, dest: Path, source_dir: str | None, github_token: str | None
) -> str:
    """Clone (or copy, for a plain directory) `repo` into `dest` on this machine.

    Returns "cloned" or "copied". Raises like `clone_repositories`."""
    token = github_token if repo.private else None
    local = _local_source(repo.url, source_dir)
    if local is not None:
        if not local.is_dir():
            raise SandboxError(
                f"repository {repo.url!r} not found (looked at {local})",
                code="repository_not_found",
                repository=repo.url,
            )
        if not (
            (local / ".git").exists() or (local / "HEAD").is_file()
        ):  # a work tree or a bare repo
            if repo.ref:
                raise SandboxError(
                    f"repository {repo.url!r} is a plain directory: it has no ref {repo.ref!r}",
                    code="clone_failed",
                    repository=repo.url,
                )
            await anyio.to_thread.run_sync(_copy_tree, local, dest)
            return "copied"
    source = str(local) if local is not None else repo.url
    env = git_env(token)
    # `--no-local`: a local clone would hardlink the source's object files into the workspace,
    # which the sandbox then owns, so a command could rewrite the source repository in place
    local_flags = ["--no-local"] if local is not None else []
    await _git(["git", "clone", "--quiet", *local_flags, "--", source, str(dest)], env, repo)
    if repo.ref:
        await _git(["git", "-C", str(dest), "checkout", "--quiet", repo.ref, "--"], env, repo)
    return "cloned"


def _copy_tree(src: Path, dest: Path) -> None:
    shutil.copytree(src, dest, symlinks=True, dirs_exist_ok=True)


def git_env(token: str | None, github_url: str = "https://github.com") -> dict[str, str]:
    """A clean environment for git run by the server: no prompts, no system config, and the
    GitHub token (if any) as an HTTP header for `github_url` only, never on a command line."""
    config = {"safe.directory": "*"}
    if token:
        basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
        config[f"http.{github_url.rstrip('/')}/.extraheader"] = f"AUTHORIZATION: basic {basic}"
    env = {
        "PATH": DEFAULT_PATH,
        "HOME": "/nonexistent",
        "LANG": "C.UTF-8",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_SSH_COMMAND": "ssh -o BatchMode=yes",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_COUNT": str(len(config)),
    }
    for i, (key, value) in enumerate(config.items()):
        env[f"GIT_CONFIG_KEY_{i}"] = key
        env[f"GIT_CONFIG_VALUE_{i}"] = value
    return env


async def _git(argv: list[str], env: dict[str, str], repo: RepositorySpec) -> None:
    try:
        with anyio.fail_after(CLONE_TIMEOUT_S):
            done = await anyio.run_process(argv, env=env, check=False)
    except TimeoutError:
        raise SandboxError(
            f"cloning {repo.url} took longer than {CLONE_TIMEOUT_S:.0f}s",
            code="clone_failed",
            repository=repo.url,
        ) from None
    if done.returncode == 0:
        return
    detail = done.stderr.decode("utf-8", errors="replace").strip()
    logger.info("git failed for %s: %s", repo.url, detail)
    if (
        any(marker in detail.lower() for marker in _AUTH_FAILURES)
        and _local_source(repo.url, None) is None
    ):
        raise BlockedError(
            "credential_needed",
            f"cloning {repo.url} was refused: {detail.splitlines()[-1] if detail else 'no access'}",
            fix="connect GitHub with access to this repository (`flowrun integrations connect github`), "
                "then resume the run",
            repository=repo.url,
        )
    raise SandboxError(
        f"git {argv[1] if argv[1] != '-C' else argv[3]} of {repo.url} failed: {detail[-500:]}",
        code="clone_failed",
        repository=repo.url,
    )
