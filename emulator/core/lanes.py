"""One namespace's queue and runners: waiting lists by priority, holds, timers, positions."""

from __future__ import annotations

import asyncio
import bisect
from dataclasses import dataclass, field
from operator import attrgetter

from emulator.core.clock import TimerHandle
from emulator.core.models import RequestRecord
from emulator.core.outputs import Answer

# A record's arrival number: the key each waiting list is sorted by (read in C while bisecting).
_seq = attrgetter("seq")


@dataclass
class Lane:
    """One namespace's queue and runners."""

    waiting: tuple[list[RequestRecord], list[RequestRecord]] = field(default_factory=lambda: ([], []))
    starting: dict[str, RequestRecord] = field(default_factory=dict)
    running: dict[str, RequestRecord] = field(default_factory=dict)
    timers: dict[str, list[TimerHandle]] = field(default_factory=dict)
    logs_applied: dict[str, int] = field(default_factory=dict)
    answers: dict[str, Answer] = field(default_factory=dict)
    # The CDN base URL each request's caller reached, for files made when it runs again (a retry).
    files_urls: dict[str, str] = field(default_factory=dict)
    # Held in the queue (never picked up) or held mid-run (paused), until released.
    held: set[str] = field(default_factory=set)
    hold_on_start: set[str] = field(default_factory=set)
    # Waiters on queued records: woken when the queue moves, since positions change then.
    movement: list[asyncio.Future[bool]] = field(default_factory=list)

    @property
    def busy(self) -> int:
        return len(self.starting) + len(self.running)

    def queued(self) -> int:
        return len(self.waiting[0]) + len(self.waiting[1])

    def all(self) -> list[RequestRecord]:
        return [*self.waiting[0], *self.waiting[1], *self.starting.values(), *self.running.values()]

    def enqueue(self, record: RequestRecord) -> None:
        waiting = self.waiting[record.priority]
        if not waiting or waiting[-1].seq < record.seq:
            waiting.append(record)
        else:  # put back after a hold: keep the list sorted by arrival
            waiting.insert(bisect.bisect_left(waiting, record.seq, key=_seq), record)

    def pop_next(self) -> RequestRecord | None:
        for waiting in self.waiting:
            for index, record in enumerate(waiting):
                if record.id not in self.held:
                    del waiting[index]
                    self.moved()
                    return record
        return None

    def remove_waiting(self, record: RequestRecord) -> bool:
        waiting = self.waiting[record.priority]
        index = bisect.bisect_left(waiting, record.seq, key=_seq)
        if index < len(waiting) and waiting[index] is record:
            del waiting[index]
            self.moved()
            return True
        return False

    def moved(self) -> None:
        if not self.movement:  # nobody waits on a queued request's position
            return
        movement, self.movement = self.movement, []
        for future in movement:
            if not future.done():
                future.set_result(True)

    def position(self, record: RequestRecord) -> int:
        if record.id in self.starting:
            return 0
        ahead = 0
        for priority, waiting in enumerate(self.waiting):
            if priority == record.priority:
                if waiting and waiting[-1] is record:  # the latest arrival (a submit's own answer)
                    return ahead + len(waiting) - 1
                return ahead + bisect.bisect_left(waiting, record.seq, key=_seq)
            ahead += len(waiting)
        return ahead

    def drop(self, record: RequestRecord) -> bool:
        """Forget an ended request's runner, timers and planned answer; whether a runner came free."""
        freed = self.starting.pop(record.id, None) is not None
        freed = self.running.pop(record.id, None) is not None or freed
        self.cancel_timers(record)
        self.logs_applied.pop(record.id, None)
        self.answers.pop(record.id, None)
        self.files_urls.pop(record.id, None)
        return freed

    def cancel_timers(self, record: RequestRecord) -> None:
        for handle in self.timers.pop(record.id, ()):
            handle.cancel()
