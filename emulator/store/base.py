"""The storage protocol every backend implements."""

from __future__ import annotations

from collections.abc import Awaitable, Iterator
from typing import Protocol

from emulator.core.models import RequestRecord


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

    def failure(self) -> str | None:
        """Why this store can take no more writes (its writer stopped); None while it works."""
        ...

    def refresh(self, namespace: str, request_id: str) -> Awaitable[None] | None:
        """Read a record (and its queue position) afresh from a shared store; None when this copy is the truth."""
        ...

    def shared(self) -> SharedQueue | None:
        """The shared queue when several processes serve this store; None for a store of one process."""
        ...


class Runners(Protocol):
    """What a shared queue needs from the local scheduler: free slots, and hands to run claimed work."""

    def free_slots(self, namespace: str) -> int: ...

    def run_claimed(self, record: RequestRecord) -> None:
        """Run a request this process has just claimed from the shared queue."""
        ...

    def is_local(self, record: RequestRecord) -> bool:
        """Whether this process is running the request (its copy of the record is the truth)."""
        ...

    def remote_changed(self, record: RequestRecord) -> None:
        """Another process changed a record: wake whoever waits on it, stop a local run it ended."""
        ...


class SharedQueue(Protocol):
    """A queue several processes serve: global order, claims with leases, records seen by all."""

    async def start(self, runners: Runners) -> None: ...

    async def stop(self) -> None: ...

    def position(self, record: RequestRecord) -> int:
        """Requests ahead of a queued one in the shared queue, as last read."""
        ...

    def queued(self, namespace: str) -> int:
        """Requests waiting in a namespace's shared queue, as last read."""
        ...

    def wake(self) -> None:
        """A local slot came free or the runners resumed: claim work now rather than at the next tick."""
        ...
