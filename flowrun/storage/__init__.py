"""Layer 1: storage. The `Store` protocol, its SQLite and PostgreSQL implementations (`open_store`
picks one from a database URL); the event log."""

from .base import (
    ChatStore,
    DecisionRow,
    LeaseRow,
    RecordChanges,
    RecordRow,
    RunFilter,
    Store,
    WorkerRow,
)
from .errors import SchemaTooNew, StorageCorrupt, StorageError, StoreClosed
from .factory import open_store
from .sqlite import SQLiteStore
from .subscription import Subscription

__all__ = [
    "ChatStore",
    "DecisionRow",
    "LeaseRow",
    "RecordChanges",
    "RecordRow",
    "RunFilter",
    "SQLiteStore",
    "SchemaTooNew",
    "StorageCorrupt",
    "StorageError",
    "Store",
    "StoreClosed",
    "Subscription",
    "WorkerRow",
    "open_store",
]
