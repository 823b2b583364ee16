"""CLI tests that run on both stores use the `store_kind` fixture (tests/storekinds.py)."""

from tests.storekinds import postgres_kind, store_kind

__all__ = ["postgres_kind", "store_kind"]
