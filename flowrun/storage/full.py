"""Telling a full disk apart from other storage failures.

SQLite says "database or disk is full" (SQLITE_FULL) when a write cannot grow the file, but in WAL
mode a full disk often surfaces as "disk I/O error" (SQLITE_IOERR) instead: writing the WAL or
its shared-memory file failed with ENOSPC, which SQLite does not pass on. So an I/O error is read
as "disk full" when the filesystem holding the database has (almost) no space left.
"""

from __future__ import annotations

import os
import sqlite3

from .errors import StorageError

NEARLY_FULL_BYTES = 1 << 20  # below this much free space an I/O error is taken as a full disk


class StoreFull(StorageError):
    """The disk holding the database is full: nothing more can be recorded until space is freed.
    Runs that were moving stop where they are (recorded as interrupted once a write succeeds
    again); reading what is stored keeps working."""

    code = "disk_full"
    retryable = True


def is_disk_full(exc: BaseException, path: str) -> bool:
    if not isinstance(exc, sqlite3.Error):
        return False
    name = getattr(exc, "sqlite_errorname", "") or ""
    code = getattr(exc, "sqlite_errorcode", None)
    if name == "SQLITE_FULL" or code == sqlite3.SQLITE_FULL or "database or disk is full" in str(exc):
        return True
    if name.startswith("SQLITE_IOERR") or "disk I/O error" in str(exc):
        return free_bytes(path) < NEARLY_FULL_BYTES
    return False


def free_bytes(path: str) -> int:
    try:
        stats = os.statvfs(os.path.dirname(os.path.abspath(path)) or ".")
    except OSError:
        return NEARLY_FULL_BYTES  # cannot tell: not "full"
    return stats.f_bavail * stats.f_frsize


def full_error(path: str, exc: BaseException, doing: str) -> StoreFull:
    error = StoreFull(
        f"disk full: cannot {doing} {path}: the disk has no space left ({exc}). Free some space; "
        "runs that were moving stop where they are and `flowrun retry RUN` continues them.",
        path=path,
    )
    error.__cause__ = exc
    return error
