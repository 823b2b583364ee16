"""Storage errors: what the store says when the database, not the caller, is the problem.

Misuse (an unknown run, a version that moved) uses the domain errors from `flowrun.flows.errors`;
these cover the file itself: unreadable rows, a schema from a newer flowrun, a closed store.
"""

from __future__ import annotations

from ..flows.errors import UsageError, WorldError


class StorageError(WorldError):
    """The database could not do what was asked (locked for too long, disk full, I/O error)."""

    code = "storage_error"


class StorageCorrupt(StorageError):
    """A stored row or the file itself cannot be read. Names the file, the table and the key."""

    code = "storage_corrupt"
    retryable = False


class SchemaTooNew(StorageError):
    """The database was migrated by a newer flowrun than this one."""

    code = "schema_too_new"
    retryable = False


class StoreClosed(UsageError):
    """The store is not open (not entered yet, or already closed)."""

    code = "store_closed"
