"""Chat tests that run on both stores use the `store_kind` fixture (tests/storekinds.py)."""

from tests.storekinds import store_kind

__all__ = ["store_kind"]
