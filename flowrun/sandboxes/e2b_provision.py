"""Putting a profile's repositories into an e2b sandbox.

The server fetches each repository (with the GitHub credential, which never enters the sandbox)
and uploads it as a tarball that the sandbox unpacks, so repositories work with the sandbox's
network off and local paths work at all.
"""

from __future__ import annotations

import io
import posixpath
import tarfile
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from ..flows.errors import SandboxError
from ..flows.profiles import SandboxProfile
from .base import SetupCallback
from .paths import workspace_parts
from .provision import fetch_repository

if TYPE_CHECKING:
    from .e2b import E2BSandbox


async def upload_repositories(
    sandbox: E2BSandbox,
    profile: SandboxProfile,
    *,
    github_token: str | None,
    on_setup: SetupCallback | None,
) -> None:
    """Raises:
    BlockedError: `credential_needed` (see `provision.fetch_repository`).
    SandboxError: `repository_not_found`, `clone_failed`, `invalid_profile`."""
    workspace = sandbox.workspace
    for repo in profile.repositories:
        started = time.monotonic()
        parts = workspace_parts(repo.path, workspace)
        if not parts:
            raise SandboxError(
                f"repository {repo.url!r} has path {repo.path!r}: it must name a directory "
                "inside the workspace",
                code="invalid_profile",
            )
        with tempfile.TemporaryDirectory(prefix="flowrun-repo-") as tmp:
            how = await fetch_repository(repo, Path(tmp) / "repo", profile.source_dir, github_token)
            archive = await anyio.to_thread.run_sync(_tarball, Path(tmp) / "repo")
        # Relative to the workspace (the command's cwd): no absolute path in the command.
        target = "/".join(parts)
        upload = f".flowrun-upload-{parts[-1]}.tgz"
        await sandbox.files.write_absolute(posixpath.join(workspace, upload), archive)
        result = await sandbox.exec(
            f"mkdir -p '{target}' && tar -xzf '{upload}' -C '{target}'"
            f" ; status=$? ; rm -f '{upload}' ; exit $status",
            timeout=600,
        )
        if result.exit_code != 0:
            raise SandboxError(
                f"unpacking {repo.url} in sandbox {sandbox.id} failed: {result.stderr[-500:]}",
                code="clone_failed",
                repository=repo.url,
            )
        duration = round(time.monotonic() - started, 3)
        await report(
            on_setup,
            f"{how} {repo.url}{'@' + repo.ref if repo.ref else ''} into {repo.path} "
            f"({duration:.2f}s)",
            action="clone",
            url=repo.url,
            ref=repo.ref,
            path=repo.path,
            duration_s=duration,
        )


async def report(on_setup: SetupCallback | None, text: str, **data: object) -> None:
    if on_setup is not None:
        await on_setup(text, dict(data))


def _tarball(source: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for child in sorted(source.iterdir()):
            archive.add(child, arcname=child.name)
    return buffer.getvalue()
