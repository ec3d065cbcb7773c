"""The in-memory store: bounded, completed records expire by age and by count."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Iterator

from emulator.core.models import RequestRecord
from emulator.store.base import SharedQueue


class MemoryStore:
    """Records in dictionaries; completed ones are forgotten oldest first past the limits."""

    def __init__(self, *, retention_seconds: float = 3600.0, retention_count: int = 100_000) -> None:
        self.retention_seconds = retention_seconds
        self.retention_count = retention_count
        self._records: dict[tuple[str, str], RequestRecord] = {}
        # Completed records in completion order: the eviction queue.
        self._completed: OrderedDict[tuple[str, str], float] = OrderedDict()

    def add(self, record: RequestRecord) -> None:
        self._records[(record.namespace, record.id)] = record

    def get(self, namespace: str, request_id: str) -> RequestRecord | None:
        return self._records.get((namespace, request_id))

    def save(self, record: RequestRecord, now: float) -> None:
        key = (record.namespace, record.id)
        if record.done and key not in self._completed and key in self._records:
            self._completed[key] = record.completed_at if record.completed_at is not None else now
        self._expire(now)

    def _expire(self, now: float) -> None:
        horizon = now - self.retention_seconds
        completed = self._completed
        while completed:
            key, finished = next(iter(completed.items()))
            if len(completed) <= self.retention_count and finished > horizon:
                break
            completed.popitem(last=False)
            self._forget(key)

    def _forget(self, key: tuple[str, str]) -> None:
        self._records.pop(key, None)

    def records(self, namespace: str | None = None) -> Iterator[RequestRecord]:
        for record in list(self._records.values()):
            if namespace is None or record.namespace == namespace:
                yield record

    def clear(self, namespace: str | None = None) -> None:
        if namespace is None:
            self._records.clear()
            self._completed.clear()
            return
        for key in [k for k in self._records if k[0] == namespace]:
            self._records.pop(key, None)
            self._completed.pop(key, None)

    def __len__(self) -> int:
        return len(self._records)

    def durable(self) -> Awaitable[None] | None:
        return None

    def webhook_settled(self, namespace: str, request_id: str) -> None:
        pass

    def unsent_webhooks(self) -> list[RequestRecord]:
        return []

    def close(self) -> None:
        pass

    def failure(self) -> str | None:
        return None

    def refresh(self, namespace: str, request_id: str) -> Awaitable[None] | None:
        return None

    def shared(self) -> SharedQueue | None:
        return None
