"""Flowrun's own files are for flowrun alone: its home 0700, the database and its `-wal`/`-shm`
0600. A sandboxed command (which, without bubblewrap, sees the host filesystem) or another user
of the machine must not read the database, which holds every run's parameters and transcript.

SQLite creates `-wal` and `-shm` with the permissions of the database file, so creating the
database 0600 before SQLite opens it is what keeps them private; files made by an older version
are tightened when the store opens.
"""

from __future__ import annotations

import os
import stat
from contextlib import suppress
from pathlib import Path

HOME_MODE = 0o700
FILE_MODE = 0o600
DB_SUFFIXES = ("", "-wal", "-shm", "-journal")


def private_dir(path: Path) -> None:
    """Create `path` (and its parents) if needed and make it 0700 when it is ours."""
    path.mkdir(mode=HOME_MODE, parents=True, exist_ok=True)
    _tighten(path, HOME_MODE)


def private_database(path: str) -> None:
    """Create the database file 0600 if it does not exist; tighten it and its companions."""
    with suppress(OSError):  # exists already, or cannot be made: SQLite reports that itself
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE))
    for suffix in DB_SUFFIXES:
        _tighten(Path(path + suffix), FILE_MODE)


def _tighten(path: Path, mode: int) -> None:
    """chmod to `mode` when the file exists, is not a symlink and belongs to this user."""
    try:
        info = path.lstat()
    except OSError:
        return
    if stat.S_ISLNK(info.st_mode) or info.st_uid != os.geteuid():
        return
    if stat.S_IMODE(info.st_mode) & ~mode:
        with suppress(PermissionError):
            os.chmod(path, stat.S_IMODE(info.st_mode) & mode)
