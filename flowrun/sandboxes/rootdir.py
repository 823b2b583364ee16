"""Where local workspaces live when the sandbox uid could not reach them under flowrun's home.

A server running as root drops every command to an unprivileged uid. Under bubblewrap that is
no problem: bwrap binds the workspace while it still has root's rights. Without bubblewrap the
command is simply started as that uid, and every tool that stats its own working directory
(git: "failed to stat", unittest: "Start directory is not importable") fails with "Permission
denied" when a directory on the way is closed to it: root's home and flowrun's home are 0700.
So the workspaces move to a root-owned directory the uid may pass through (0711: it can enter
its own workspace, not list the others), one per configured root so several homes never mix.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import stat
from pathlib import Path

from ..flows.errors import SandboxError

logger = logging.getLogger("flowrun.sandboxes")

SHARED_PARENT = Path("/var/lib/flowrun/sandboxes")


def unsearchable_ancestor(path: str, uid: int, gid: int) -> str | None:
    """The first existing directory on the way to `path` that `uid`/`gid` may not enter."""
    current = "/"
    for part in [p for p in path.split("/") if p]:
        try:
            mode = os.stat(current)
        except FileNotFoundError:
            return None  # from here on flowrun creates the directories itself (0711)
        if mode.st_uid == uid:
            ok = mode.st_mode & stat.S_IXUSR
        elif mode.st_gid == gid:
            ok = mode.st_mode & stat.S_IXGRP
        else:
            ok = mode.st_mode & stat.S_IXOTH
        if not ok:
            return current
        current = os.path.join(current, part)
    return None


def moved_root(root: Path, parent: Path = SHARED_PARENT) -> Path:
    """Where `root`'s workspaces live when the sandbox uid cannot reach `root` itself."""
    return parent / hashlib.sha256(str(root).encode()).hexdigest()[:16]


def reachable_root(root: Path, uid: int, gid: int, *, parent: Path = SHARED_PARENT) -> Path:
    """`root` if `uid` can reach it, else its own directory under `parent` (created 0711).

    Blocking: call it off the event loop.

    Raises:
        SandboxError: `sandbox_root_unreachable` when no reachable directory can be made.
    """
    blocked = unsearchable_ancestor(str(root), uid, gid)
    if blocked is None:
        return root
    moved = moved_root(root, parent)
    try:
        _make_private_dirs(moved)
        still = unsearchable_ancestor(str(moved), uid, gid)
    except OSError as exc:
        still = f"{moved} ({exc.strerror})"
    if still is not None:
        raise SandboxError(
            f"the sandbox uid {uid} cannot enter {blocked} (on the way to {root}) nor {still}: "
            "install bubblewrap (apt-get install bubblewrap), or set FLOWRUN_SANDBOX_ROOT to a "
            "directory every user may pass through",
            code="sandbox_root_unreachable",
        )
    logger.info("uid %d cannot enter %s: local workspaces live in %s instead", uid, blocked, moved)
    return moved


def _make_private_dirs(path: Path) -> None:
    """Create `path` and its missing parents, 0711. Refuses a symlink on the way or a directory
    someone else could swap under us (not ours or root's, or open to others without the
    sticky bit), so nobody can prepare a trap there."""
    missing = []
    current = path
    while not current.exists() and current != current.parent:
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            directory.mkdir(mode=0o711)
    for directory in [path, *path.parents]:
        info = os.lstat(directory)
        if stat.S_ISLNK(info.st_mode) or info.st_uid not in (0, os.geteuid()) or (
            info.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not info.st_mode & stat.S_ISVTX
        ):
            raise OSError(0, f"{directory} is not a directory only we control", str(directory))
    for directory in missing:
        os.chmod(directory, 0o711)
