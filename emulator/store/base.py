"""The storage protocol every backend implements."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from emulator.models import RequestRecord


class StoreError(RuntimeError):
    """A store that cannot be opened or used; the message says why."""


class Store(Protocol):
    """Keeps request records by namespace and id.

    The scheduler calls ``save`` after every transition, with the clock's time, so a
    backend can persist, replicate or expire records as it sees fit.
    """

    def add(self, record: RequestRecord) -> None: ...

    def get(self, namespace: str, request_id: str) -> RequestRecord | None: ...

    def save(self, record: RequestRecord, now: float) -> None: ...

    def records(self, namespace: str | None = None) -> Iterator[RequestRecord]: ...

    def clear(self, namespace: str | None = None) -> None: ...

    def __len__(self) -> int: ...
