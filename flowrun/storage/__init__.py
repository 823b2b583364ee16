"""Layer 1: storage. The `Store` protocol and its SQLite implementation; the event log."""

from .base import ChatStore, DecisionRow, RecordRow, RunFilter, Store
from .errors import SchemaTooNew, StorageCorrupt, StorageError, StoreClosed
from .sqlite import SQLiteStore
from .subscription import Subscription

__all__ = [
    "ChatStore",
    "DecisionRow",
    "RecordRow",
    "RunFilter",
    "SQLiteStore",
    "SchemaTooNew",
    "StorageCorrupt",
    "StorageError",
    "Store",
    "StoreClosed",
    "Subscription",
]
