"""The in-memory store: bounded, completed records expire by age and by count."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

from emulator.core.models import RequestRecord
from emulator.store.compact import Compactor


class MemoryStore:
    """Records by namespace and id; completed ones are forgotten oldest first past the limits.

    Completed records are what the store keeps most of (100,000 by default), so each costs little
    beyond itself: a slot in its namespace's dictionary under the record's own id string, a slot
    in the eviction queue (the record itself: no key tuples, no ordered dictionary), and its
    values in their compact form (``emulator.store.compact``).
    """

    def __init__(self, *, retention_seconds: float = 3600.0, retention_count: int = 100_000) -> None:
        self.retention_seconds = retention_seconds
        self.retention_count = retention_count
        # Records not completed yet; a record moves to ``_done`` when it is first saved completed.
        self._live: dict[str, dict[str, RequestRecord]] = {}
        self._done: dict[str, dict[str, RequestRecord]] = {}
        # The completed records in completion order: the eviction queue, exactly the records in ``_done``.
        self._completed: deque[RequestRecord] = deque()
        # The time a record saved completed without a completion time was saved (only a hand-made one).
        self._saved_at: dict[int, float] = {}
        self._compactor = Compactor()

    def add(self, record: RequestRecord) -> None:
        namespace, request_id = record.namespace, record.id
        done = self._done.get(namespace)
        if done is not None and request_id in done:  # the id again: the new record replaces the old
            self._drop_done(done.pop(request_id))
        self._live.setdefault(namespace, {})[request_id] = record

    def get(self, namespace: str, request_id: str) -> RequestRecord | None:
        done = self._done.get(namespace)
        if done is not None:
            found = done.get(request_id)
            if found is not None:
                return found
        live = self._live.get(namespace)
        return None if live is None else live.get(request_id)

    def save(self, record: RequestRecord, now: float) -> None:
        if record.done:
            self._settle(record, now)
        self._expire(now)

    def _settle(self, record: RequestRecord, now: float) -> None:
        """A held record first seen completed: into the completed set, compacted, last in the eviction queue."""
        live = self._live.get(record.namespace)
        if live is None or live.get(record.id) is not record:
            return  # not held, or already settled
        del live[record.id]
        if not live:
            del self._live[record.namespace]
        self._done.setdefault(record.namespace, {})[record.id] = record
        self._completed.append(record)
        if record.completed_at is None:
            self._saved_at[id(record)] = now
        self._compactor.compact(record)

    def _expire(self, now: float) -> None:
        horizon = now - self.retention_seconds
        completed = self._completed
        while completed:
            oldest = completed[0]
            finished = oldest.completed_at
            if finished is None:
                finished = self._saved_at.get(id(oldest), now)
            if len(completed) <= self.retention_count and finished > horizon:
                break
            completed.popleft()
            self._saved_at.pop(id(oldest), None)
            done = self._done[oldest.namespace]
            del done[oldest.id]
            if not done:
                del self._done[oldest.namespace]
            self._forget((oldest.namespace, oldest.id))

    def _forget(self, key: tuple[str, str]) -> None:
        """An expired record has just been dropped: a backend that writes records out deletes it too."""

    def _drop_done(self, record: RequestRecord) -> None:
        """Take a completed record out of the eviction queue (rare: its id was added again)."""
        if not self._done[record.namespace]:
            del self._done[record.namespace]
        self._saved_at.pop(id(record), None)
        self._completed = deque(r for r in self._completed if r is not record)

    def records(self, namespace: str | None = None) -> Iterator[RequestRecord]:
        if namespace is None:
            found = [r for group in (self._live, self._done) for held in group.values() for r in held.values()]
        else:
            found = [*self._live.get(namespace, {}).values(), *self._done.get(namespace, {}).values()]
        yield from found

    def clear(self, namespace: str | None = None) -> None:
        if namespace is None:
            self._live.clear()
            self._done.clear()
            self._completed.clear()
            self._saved_at.clear()
            return
        self._live.pop(namespace, None)
        if self._done.pop(namespace, None) is not None:
            for record in self._completed:
                if record.namespace == namespace:
                    self._saved_at.pop(id(record), None)
            self._completed = deque(r for r in self._completed if r.namespace != namespace)

    def __len__(self) -> int:
        return sum(len(held) for group in (self._live, self._done) for held in group.values())
