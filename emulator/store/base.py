"""The storage protocol every backend implements."""

from __future__ import annotations

from collections.abc import Awaitable, Iterator
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

    def durable(self) -> Awaitable[None] | None:
        """Something to await until every save so far is on disk; None when there is nothing to wait for."""
        ...

    def webhook_settled(self, namespace: str, request_id: str) -> None:
        """A request's webhook was delivered or given up on: a restart must not send it again."""
        ...

    def unsent_webhooks(self) -> list[RequestRecord]:
        """Completed requests with a webhook a previous run did not settle, oldest first."""
        ...

    def close(self) -> None:
        """Write what is pending and let go of files and connections."""
        ...
