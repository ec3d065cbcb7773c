"""The storage protocol every backend implements."""

from __future__ import annotations

from collections.abc import Awaitable, Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

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


@runtime_checkable
class Durable(Protocol):
    """A store that writes records out (a file, a server): submit waits for the write."""

    def durable(self) -> Awaitable[None] | None:
        """Something to await until every save so far is written; None when nothing is pending."""
        ...

    def close(self) -> None:
        """Write what is pending and let go of files and connections."""
        ...

    def failure(self) -> str | None:
        """Why this store can take no more writes (its writer stopped); None while it works."""
        ...


@runtime_checkable
class WebhookOutbox(Protocol):
    """Remembers which completed requests' webhooks are settled, so a restart sends the rest again."""

    def webhook_settled(self, namespace: str, request_id: str) -> None:
        """A request's webhook was delivered or given up on: a restart must not send it again."""
        ...

    def unsent_webhooks(self) -> list[RequestRecord]:
        """Completed requests with a webhook a previous run did not settle, oldest first."""
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


@runtime_checkable
class SharedQueue(Protocol):
    """A queue several processes serve: global order, claims with leases, records seen by all."""

    def refresh(self, namespace: str, request_id: str) -> Awaitable[None] | None:
        """Read a record (and its queue position) afresh; None when this process's copy is the truth."""
        ...

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

    def requeue(self, record: RequestRecord) -> None:
        """Put a request this process ran back in the queue, at its place, for any process to claim again.

        The record, already back IN_QUEUE, was saved first; this releases its lease and queues it.
        """
        ...


@dataclass(frozen=True)
class Backend:
    """A store and what it can do beyond keeping records, each None where it cannot."""

    records: Store
    durable: Durable | None = None
    outbox: WebhookOutbox | None = None
    shared: SharedQueue | None = None

    @classmethod
    def of(cls, store: Store) -> Backend:
        """The capabilities a store object has, found once when the emulator is wired."""
        return cls(
            records=store,
            durable=store if isinstance(store, Durable) else None,
            outbox=store if isinstance(store, WebhookOutbox) else None,
            shared=store if isinstance(store, SharedQueue) else None,
        )
