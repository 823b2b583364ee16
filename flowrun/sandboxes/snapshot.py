"""Workspace snapshots on this machine: a tar of the whole workspace, and putting it back.

The engine keeps one per step boundary (see `flowrun.runtime.snapshots`), so a retried step starts
from the workspace as it was when the step first started, and a clone from its source's. A tar
(GNU tar, part of every Debian) keeps modes, owners, symlinks and empty directories, and is
independent of git: an agent may have half-made commits, branches or a stale `*.lock` in the
repository, and all of that is put back exactly as it was. Snapshots are written to a temporary
name and renamed, so a kill leaves either the old one or the new one, never half of one. Nothing
is shared with the workspace (no hardlinks): the sandbox cannot touch a snapshot.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

from ..flows.errors import SandboxError

_TAR = "tar"
_TIMEOUT_S = 600


def write_snapshot(workspace: Path, dest: Path) -> int:
    """Write the workspace to `dest` (atomically); returns its size in bytes. Blocking."""
    dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    partial = dest.with_name(f".{dest.name}.partial-{os.getpid()}")
    _tar(["-C", str(workspace), "-cf", str(partial), "."], "snapshot")
    with open(partial, "rb") as f:
        os.fsync(f.fileno())
    os.replace(partial, dest)
    return dest.stat().st_size


def restore_snapshot(workspace: Path, src: Path, owner: tuple[int, int] | None = None) -> None:
    """Make the workspace exactly what `src` holds: everything in it now is removed first.
    The workspace directory itself stays (a sandbox may be bound to it). Everything restored
    belongs to `owner` (the sandbox's uid and gid, when the server is root): a snapshot may come
    from another sandbox (a clone starts from its source's), which ran as another uid. Blocking."""
    if not src.is_file():
        raise SandboxError(f"no workspace snapshot at {src}", code="snapshot_missing")
    workspace.mkdir(parents=True, exist_ok=True)
    empty_directory(workspace)
    _tar(["-C", str(workspace), "-xpf", str(src), "--no-same-owner"], "restore")
    if owner is not None:
        for dirpath, dirnames, filenames in os.walk(workspace):
            for name in (*dirnames, *filenames):
                os.chown(os.path.join(dirpath, name), *owner, follow_symlinks=False)
        os.chown(workspace, *owner)


def empty_directory(path: Path) -> None:
    """Remove everything inside `path`, also below read-only directories the sandbox made."""
    for dirpath, _dirnames, _filenames in os.walk(path):
        mode = os.stat(dirpath, follow_symlinks=False).st_mode
        if not mode & stat.S_IWUSR or not mode & stat.S_IXUSR:
            os.chmod(dirpath, mode | stat.S_IWUSR | stat.S_IXUSR | stat.S_IRUSR)
    with os.scandir(path) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)


def _tar(args: list[str], what: str) -> None:
    try:
        done = subprocess.run([_TAR, *args], capture_output=True, timeout=_TIMEOUT_S, check=False,
                              env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"})
    except (OSError, subprocess.SubprocessError) as exc:
        raise SandboxError(f"workspace {what} failed: {exc}", code="snapshot_failed") from None
    # exit 1 means "some files changed while being read": not possible between steps
    if done.returncode not in (0, 1) or (done.returncode == 1 and what != "snapshot"):
        detail = done.stderr.decode("utf-8", errors="replace").strip()[-500:]
        raise SandboxError(f"workspace {what} failed: {detail}", code="snapshot_failed")
