"""Where queued requests wait: in this process's lanes, or in a queue several processes share.

The scheduler runs requests the same way in both cases; what differs is where a request waits
before a runner picks it up, how its position is counted, and how a freed runner finds work.
One strategy is chosen at start, from the store.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from emulator.core.lanes import Lane
from emulator.core.models import RequestRecord, State

if TYPE_CHECKING:
    from emulator.core.scheduler import Scheduler
    from emulator.store.base import SharedQueue


class QueueStrategy(Protocol):
    """Where accepted requests wait, and how the scheduler hears that a runner came free."""

    def accept(self, lane: Lane, record: RequestRecord) -> None:
        """A request was accepted: let it wait for a runner."""
        ...

    def position(self, lane: Lane | None, record: RequestRecord, local: bool) -> int:
        """How many requests are ahead of this one (0 means next)."""
        ...

    def waiting(self, namespace: str, lane: Lane | None) -> int:
        """How many of a namespace's requests wait for a runner."""
        ...

    def freed(self) -> None:
        """A runner of this process came free, or the runners were resumed or added."""
        ...

    def requeue(self, lane: Lane, record: RequestRecord) -> None:
        """Put a request whose run failed (its record already back IN_QUEUE) at its place, to run again."""
        ...

    async def start(self, scheduler: Scheduler) -> None:
        """Pick up what the store kept from an earlier run."""
        ...

    async def stop(self) -> None: ...


class LocalQueue:
    """Each namespace waits in its own lane of this process: FIFO, low priority behind normal."""

    def accept(self, lane: Lane, record: RequestRecord) -> None:
        lane.enqueue(record)

    def position(self, lane: Lane | None, record: RequestRecord, local: bool) -> int:
        return 0 if lane is None else lane.position(record)

    def waiting(self, namespace: str, lane: Lane | None) -> int:
        return 0 if lane is None else lane.queued()

    def freed(self) -> None:
        """A lane dispatches its own waiting requests when a runner frees: nothing more to do."""

    def requeue(self, lane: Lane, record: RequestRecord) -> None:
        lane.enqueue(record)

    async def start(self, scheduler: Scheduler) -> None:
        scheduler.restore()

    async def stop(self) -> None:
        """Nothing outlives the process but the store, which the emulator closes."""


class SharedQueueStrategy:
    """Requests wait in a queue the store shares between processes; a free runner anywhere claims the next."""

    def __init__(self, shared: SharedQueue) -> None:
        self.shared = shared

    def accept(self, lane: Lane, record: RequestRecord) -> None:
        """The store queued it when it saw the record: every process orders it among theirs."""

    def position(self, lane: Lane | None, record: RequestRecord, local: bool) -> int:
        if record.state is State.IN_QUEUE and not local:
            return self.shared.position(record)
        return 0 if lane is None else lane.position(record)

    def waiting(self, namespace: str, lane: Lane | None) -> int:
        return self.shared.queued(namespace)

    def freed(self) -> None:
        self.shared.wake()

    def requeue(self, lane: Lane, record: RequestRecord) -> None:
        """Back in the shared queue, at its place: a free runner of any process claims it again."""
        self.shared.requeue(record)

    async def start(self, scheduler: Scheduler) -> None:
        # Leases in the shared store hand back what a dead process was running.
        await self.shared.start(scheduler)

    async def stop(self) -> None:
        await self.shared.stop()
