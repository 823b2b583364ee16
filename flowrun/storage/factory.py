"""Which store a database URL names: a SQLite file (the default) or PostgreSQL."""

from __future__ import annotations

import os
from typing import Any

from ..flows.errors import UsageError
from .base import Store


def is_postgres_url(target: str) -> bool:
    return target.startswith(("postgresql://", "postgres://"))


def open_store(target: str | os.PathLike[str], **options: Any) -> Store:
    """A store for `target` (enter it with `async with`): `postgresql://...` opens PostgreSQL
    (needs `pip install 'flowrun[postgres]'`), anything else is a SQLite file path.

    Raises:
        UsageError: PostgreSQL was asked for but psycopg is not installed.
    """
    label = os.fspath(target)
    if is_postgres_url(label):
        try:
            from .postgres import PostgresStore
        except ImportError as exc:
            raise UsageError(
                f"FLOWRUN_DATABASE_URL names PostgreSQL but its driver is missing ({exc.name}): "
                "pip install 'flowrun[postgres]'"
            ) from None
        return PostgresStore(label, **options)
    from .sqlite import SQLiteStore

    return SQLiteStore(label, **options)
