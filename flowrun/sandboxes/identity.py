"""Each local sandbox runs as a uid of its own (when the server is root).

With one shared sandbox uid, `RLIMIT_NPROC` (counted per uid) is shared too: one sandbox's fork
bomb leaves every other run unable to fork, and one sandbox may read another's workspace. So a
new workspace gets the first free uid of a reserved range, starting from a hash of its id, and
is created owned by it (0700) while a lock is held: the workspace's owner *is* the assignment,
so it survives restarts, needs no table, and is freed when the workspace is destroyed. The gid
is the same number. A range the kernel cannot switch to (a user namespace that maps only a few
ids) falls back to the shared uid, with a warning.
"""

from __future__ import annotations

import fcntl
import logging
import os
import subprocess
import zlib
from functools import cache
from pathlib import Path

logger = logging.getLogger("flowrun.sandboxes")

UID_BASE = 1_600_000_000  # far above login and system users, below the 32-bit "nobody" values
UID_SLOTS = 1_000_000
_LOCK_NAME = ".identities.lock"


@cache
def range_usable(base: int = UID_BASE) -> bool:
    """Whether this machine can run a process as a uid of the range (probed once)."""
    try:
        done = subprocess.run(
            ["/bin/true"], user=base, group=base, extra_groups=[], check=False, capture_output=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError) as exc:
        logger.warning("sandbox uids from %d are unusable here (%s): sandboxes share one uid", base, exc)
        return False
    return done.returncode == 0


def sandbox_identity(root: Path, workspace: Path, shared: tuple[int, int]) -> tuple[int, int]:
    """The uid and gid the workspace's commands run as; makes the workspace (0700, owned by
    them) when it does not exist yet. An existing workspace keeps its owner. Blocking."""
    if not range_usable():
        return shared
    root.mkdir(mode=0o711, parents=True, exist_ok=True)
    fd = os.open(root / _LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            info = workspace.stat()
        except FileNotFoundError:
            pass
        else:
            return (info.st_uid, info.st_gid) if info.st_uid != os.geteuid() else shared
        used = set()
        with os.scandir(root) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    used.add(entry.stat(follow_symlinks=False).st_uid)
        start = zlib.crc32(workspace.name.encode())
        uid = next(
            (UID_BASE + (start + i) % UID_SLOTS for i in range(UID_SLOTS) if UID_BASE + (start + i) % UID_SLOTS not in used),
            shared[0],
        )
        gid = uid if uid != shared[0] else shared[1]
        workspace.mkdir(mode=0o700)
        os.chown(workspace, uid, gid)
        return uid, gid
    finally:
        os.close(fd)
