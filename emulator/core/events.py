"""A hub of change notices for watchers such as the dashboard: which requests changed, never a backlog.

The scheduler publishes each record on every change of a record. Each
subscriber keeps the set of ids changed since it last looked, not a list of events: a
request that changes fifty times while a browser tab is slow is one entry. The set is
bounded; past the bound the subscriber is told to read everything afresh instead. The
number of subscribers is bounded too, so memory stays bounded however many tabs connect.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from emulator.core.models import RequestRecord

# Ids kept per subscriber before it is told to start over.
MAX_PENDING = 2000
# Watchers at once (dashboard tabs): one more is refused.
MAX_SUBSCRIBERS = 32


class TooManySubscribers(RuntimeError):
    """Every subscriber slot is taken; the message says how many there are."""


@dataclass(frozen=True, slots=True)
class Batch:
    """What changed since a subscriber last looked."""

    changed: tuple[tuple[str, str], ...] = ()  # (namespace, request id), first changed first
    # Too many changes to list, or a reset: read the whole state again.
    resync: bool = False


@dataclass(eq=False)
class Subscription:
    """One watcher's view: the requests changed since its last ``take``, for one namespace or all."""

    hub: Hub
    namespace: str | None
    max_pending: int = MAX_PENDING
    _pending: dict[tuple[str, str], None] = field(default_factory=dict)
    _resync: bool = False
    _waiter: asyncio.Future[None] | None = None

    def notice(self, namespace: str, request_id: str) -> None:
        if self.namespace is not None and namespace != self.namespace:
            return
        if not self._resync:
            self._pending[(namespace, request_id)] = None
            if len(self._pending) > self.max_pending:
                self.overflow()
                return
        self._wake()

    def overflow(self) -> None:
        """Drop the list of changes: the watcher must read everything again."""
        self._pending.clear()
        self._resync = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    @property
    def ready(self) -> bool:
        return self._resync or bool(self._pending)

    def take(self) -> Batch:
        """The changes so far, forgetting them."""
        batch = Batch(tuple(self._pending), self._resync)
        self._pending = {}
        self._resync = False
        return batch

    def waiter(self) -> asyncio.Future[None]:
        """A future done once something is ready (at once if it already is)."""
        if self._waiter is None or self._waiter.done():
            self._waiter = asyncio.get_running_loop().create_future()
        if self.ready:
            self._waiter.set_result(None)
        return self._waiter

    def close(self) -> None:
        self.hub.unsubscribe(self)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.cancel()


class Hub:
    """Fans change notices out to a bounded set of subscribers."""

    def __init__(self, *, max_subscribers: int = MAX_SUBSCRIBERS, max_pending: int = MAX_PENDING) -> None:
        self.max_subscribers = max_subscribers
        self.max_pending = max_pending
        self._subscribers: list[Subscription] = []
        # Counts changes, so a page rendered at generation N can tell whether it missed any.
        self.generation = 0

    def __len__(self) -> int:
        return len(self._subscribers)

    def subscribe(self, namespace: str | None = None) -> Subscription:
        """Watch one namespace's requests (or every namespace's); refuses past ``max_subscribers``."""
        if len(self._subscribers) >= self.max_subscribers:
            raise TooManySubscribers(f"{self.max_subscribers} watchers are connected already; close one")
        subscription = Subscription(self, namespace, self.max_pending)
        self._subscribers.append(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        if subscription in self._subscribers:
            self._subscribers.remove(subscription)

    def publish(self, record: RequestRecord) -> None:
        """A request changed: called inside the scheduler's transitions, so it only marks."""
        self.generation += 1
        for subscription in self._subscribers:
            subscription.notice(record.namespace, record.id)

    def reset(self, namespace: str | None = None) -> None:
        """Requests were forgotten: watchers of that namespace (or all) read everything again."""
        self.generation += 1
        for subscription in self._subscribers:
            if namespace is None or subscription.namespace in (None, namespace):
                subscription.overflow()
