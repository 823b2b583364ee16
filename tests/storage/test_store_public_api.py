"""The storage package's public names: changing them is a deliberate act."""

from __future__ import annotations

import flowrun.storage
from flowrun.storage import ChatStore, SQLiteStore, Store


def test_public_names() -> None:
    assert sorted(flowrun.storage.__all__) == [
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
    for name in flowrun.storage.__all__:
        assert getattr(flowrun.storage, name) is not None


def test_sqlite_store_implements_the_protocol() -> None:
    store: Store = SQLiteStore("unused.db")  # mypy checks the structural match
    chats: ChatStore = SQLiteStore("unused.db")
    assert isinstance(store, SQLiteStore) and isinstance(chats, SQLiteStore)


def test_postgres_store_implements_the_protocol() -> None:
    from flowrun.storage.postgres import PostgresStore

    store: Store = PostgresStore("postgresql://nobody@127.0.0.1:1/none")  # not opened
    chats: ChatStore = PostgresStore("postgresql://nobody@127.0.0.1:1/none")
    assert isinstance(store, PostgresStore) and isinstance(chats, PostgresStore)
    assert isinstance(flowrun.storage.open_store("postgresql://x@127.0.0.1:1/y"), PostgresStore)
    assert isinstance(flowrun.storage.open_store("some.db"), SQLiteStore)
