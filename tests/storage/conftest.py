"""The storage tests run on both stores (see tests/storekinds.py)."""

from tests.storekinds import postgres_kind, store_kind

__all__ = ["postgres_kind", "store_kind"]
