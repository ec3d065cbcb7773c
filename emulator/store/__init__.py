"""Where request records live; ``open_store`` picks a backend from a URL."""

from __future__ import annotations

from pathlib import Path

from emulator.store.base import Backend, Store, StoreError
from emulator.store.memory import MemoryStore

__all__ = ["Backend", "MemoryStore", "Store", "StoreError", "open_store"]

KNOWN = "'memory', 'sqlite:///path/to/file.db' or 'redis://host:port/db'"


def open_store(url: str, *, retention_seconds: float, retention_count: int) -> Backend:
    """The store a ``--store`` URL names; raise StoreError with a clear message otherwise."""
    if url in ("memory", "memory://"):
        return Backend.of(MemoryStore(retention_seconds=retention_seconds, retention_count=retention_count))
    if url.startswith("sqlite://"):
        from emulator.store.sqlite import SqliteStore

        path = url.removeprefix("sqlite://")
        if not path:
            raise StoreError(f"store {url!r} names no file: use sqlite:///absolute/path.db or sqlite://relative.db")
        return Backend.of(SqliteStore(Path(path), retention_seconds=retention_seconds, retention_count=retention_count))
    if url.startswith(("redis://", "rediss://")):
        from emulator.store.redis_store import RedisStore

        return Backend.of(RedisStore(url, retention_seconds=retention_seconds, retention_count=retention_count))
    raise StoreError(f"unsupported store {url!r}: use {KNOWN}")
