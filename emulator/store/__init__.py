"""Where request records live; ``open_store`` picks a backend from a URL."""

from __future__ import annotations

from emulator.store.base import Store, StoreError
from emulator.store.memory import MemoryStore

__all__ = ["MemoryStore", "Store", "StoreError", "open_store"]


def open_store(url: str, *, retention_seconds: float, retention_count: int) -> Store:
    """The store a ``--store`` URL names; raise StoreError with a clear message otherwise."""
    if url in ("memory", "memory://"):
        return MemoryStore(retention_seconds=retention_seconds, retention_count=retention_count)
    raise StoreError(f"unsupported store {url!r}: this build knows 'memory'")
