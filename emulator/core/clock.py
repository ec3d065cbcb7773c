"""Clocks: the only source of time for the core.

The core never reads the wall clock directly. It asks a ``Clock`` for the time and
for timers, so tests can run a long scenario in milliseconds with a ``ManualClock``.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import time
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

# One advance moves time on by at most ten years, and never past the year 3000: beyond that,
# timestamps no longer fit the formats the API writes (ISO dates end at the year 9999).
MAX_ADVANCE_SECONDS = 10 * 365.25 * 86400
MAX_CLOCK_TIME = 32_503_680_000.0  # 3000-01-01T00:00:00Z


def check_advance(now: float, seconds: float) -> None:
    """Raise ValueError, saying why, unless moving a clock at ``now`` on by ``seconds`` is sensible."""
    if seconds < 0:
        raise ValueError("the clock cannot go backwards")
    if not math.isfinite(seconds):
        raise ValueError(f"seconds must be a finite number, not {seconds!r}")
    if seconds > MAX_ADVANCE_SECONDS:
        raise ValueError(f"seconds must be at most {MAX_ADVANCE_SECONDS:.0f} (ten years), not {seconds!r}")
    if now + seconds > MAX_CLOCK_TIME:
        raise ValueError(f"the clock cannot go past the year 3000 (unix time {MAX_CLOCK_TIME:.0f})")


class TimerHandle(Protocol):
    """Something that can cancel a scheduled callback."""

    def cancel(self) -> None: ...


class Clock(Protocol):
    """Time and timers, in unix seconds; ``advance`` moves time on, firing what falls due."""

    def now(self) -> float: ...

    def call_at(self, when: float, callback: Callable[[], None]) -> TimerHandle: ...

    async def sleep(self, seconds: float) -> None: ...

    def advance(self, seconds: float) -> int: ...


async def sleep_on(clock: Clock, seconds: float) -> None:
    """Sleep until ``clock`` has moved ``seconds`` on: a timer on that clock, awaited."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not future.done():
            future.set_result(None)

    timer = clock.call_at(clock.now() + max(0.0, seconds), wake)
    try:
        await future
    finally:
        timer.cancel()


class _SystemTimer:
    __slots__ = ("callback", "cancelled", "handle", "when")

    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False
        self.handle: asyncio.Handle | None = None

    def cancel(self) -> None:
        self.cancelled = True
        if self.handle is not None:
            self.handle.cancel()

    def fire(self) -> None:
        if not self.cancelled:
            self.cancelled = True
            self.callback()


T = TypeVar("T")


class TurnBatch(Generic[T]):
    """What is gathered during one turn of the running loop, handed over by one callback on its next turn.

    Under load many calls in one turn each want something done on the next (a timer already
    due, a response head to flush): one callback for all of them costs the loop less than one
    each. ``take`` hands over the batch gathered so far at once (its own callback then gets it
    again, emptied by whoever took it, or not, as the taker chooses).
    """

    __slots__ = ("_batch", "_handle", "_loop")

    def __init__(self, handle: Callable[[list[T]], None]) -> None:
        self._handle = handle
        self._batch: list[T] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def add(self, item: T) -> None:
        loop = asyncio.get_running_loop()
        batch = self._batch
        if batch is None or self._loop is not loop:
            batch = self._batch = []
            self._loop = loop
            loop.call_soon(self._next_turn, batch)
        batch.append(item)

    def take(self) -> list[T] | None:
        """The batch gathered since the last hand-over (None if nothing was); what is added next starts a new one."""
        batch, self._batch = self._batch, None
        return batch

    def _next_turn(self, batch: list[T]) -> None:
        if self._batch is batch:
            self._batch = None  # what the handler adds starts a new batch
        self._handle(batch)


class SystemClock:
    """Wall-clock time, which ``advance`` can also jump forward (firing what falls due)."""

    def __init__(self) -> None:
        self._offset = 0.0
        # Timers are only tracked once the clock has been advanced: a jump must fire the
        # ones that fall due, and the loop would otherwise fire them at the old wall time.
        self._timers: list[tuple[float, int, _SystemTimer]] = []
        self._seq = itertools.count()
        # Timers already due when set, fired in order by one callback on the loop's next turn:
        # under load every request sets some (an instant run's start).
        self._due: TurnBatch[_SystemTimer] = TurnBatch(self._fire_due)

    def now(self) -> float:
        return time.time() + self._offset

    def call_at(self, when: float, callback: Callable[[], None]) -> TimerHandle:
        loop = asyncio.get_running_loop()
        timer = _SystemTimer(when, callback)
        delay = when - self.now()
        if delay <= 0:
            self._due.add(timer)
            return timer
        timer.handle = loop.call_later(delay, timer.fire)
        heapq.heappush(self._timers, (when, next(self._seq), timer))
        if len(self._timers) > 1024 and self._timers[0][2].cancelled:
            self._timers = [entry for entry in self._timers if not entry[2].cancelled]
            heapq.heapify(self._timers)
        return timer

    def _fire_due(self, due: list[_SystemTimer]) -> None:
        """Fire due timers in the order they were set, and those they set due at once, in this one turn.

        A run the instant profile starts and completes at once then does both before the loop
        next reads its sockets, instead of one turn each: a client polling for the result right
        after its submit finds it, rather than "still in progress". The rounds are bounded, so a
        chain of timers that keep setting more cannot hold the loop: the rest go to the next turn.
        """
        for _ in range(_DUE_ROUNDS):
            for timer in due:
                try:
                    timer.fire()
                except Exception as exc:  # as the loop treats a failing callback: report it, run the rest
                    asyncio.get_running_loop().call_exception_handler(
                        {"message": "Exception in a timer callback", "exception": exc}
                    )
            due.clear()  # a batch taken over below is fired here; its own callback finds it empty
            later = self._due.take()
            if later is None:
                return
            due = later

    async def sleep(self, seconds: float) -> None:
        await sleep_on(self, seconds)

    def advance(self, seconds: float) -> int:
        """Jump forward by ``seconds``; fire, in time order, every timer that falls due."""
        check_advance(self.now(), seconds)
        self._offset += seconds
        now = self.now()
        fired = 0
        while self._timers and self._timers[0][0] <= now:
            _, _, timer = heapq.heappop(self._timers)
            if timer.cancelled:
                continue
            timer.cancel()
            timer.callback()
            fired += 1
        return fired


# Rounds of due timers one turn of the loop fires (each round those the round before set).
_DUE_ROUNDS = 8


class _ManualTimer:
    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class ManualClock:
    """A clock that only moves when told to; ``advance`` fires due timers in order.

    Nothing fires by itself: timers fire, in time order, inside ``advance``, and
    ``advance(0)`` fires the ones already due. A test therefore decides exactly when each
    transition happens.
    """

    def __init__(self, start: float = 1_735_689_600.0) -> None:  # 2025-01-01T00:00:00Z
        self._now = start
        self._heap: list[tuple[float, int, _ManualTimer]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._now

    def call_at(self, when: float, callback: Callable[[], None]) -> TimerHandle:
        timer = _ManualTimer(when, callback)
        heapq.heappush(self._heap, (when, next(self._seq), timer))
        return timer

    async def sleep(self, seconds: float) -> None:
        await sleep_on(self, seconds)

    def advance(self, seconds: float) -> int:
        """Move time on by ``seconds``, firing every timer that falls due; return how many fired."""
        check_advance(self._now, seconds)
        target = self._now + seconds
        fired = 0
        while self._heap and self._heap[0][0] <= target:
            when, _, timer = heapq.heappop(self._heap)
            if timer.cancelled:
                continue
            self._now = max(self._now, when)
            timer.cancelled = True
            timer.callback()
            fired += 1
        self._now = target
        return fired

    def pending(self) -> int:
        """Timers not yet fired nor cancelled."""
        return sum(1 for _, _, t in self._heap if not t.cancelled)

    def next_due(self) -> float | None:
        """When the earliest live timer falls due, if any."""
        for when, _, timer in sorted(self._heap):
            if not timer.cancelled:
                return when
        return None
