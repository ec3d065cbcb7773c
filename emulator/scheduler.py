"""The queue: runners, FIFO order with priorities, deadlines, cancellation.

Everything here is driven by the injected clock's timers, so a run is a sequence of
synchronous transitions; nothing sleeps. Each namespace (API key) has its own queue and
its own runners, so parallel test workers with different keys never wait on each other.
"""

from __future__ import annotations

import asyncio
import bisect
import enum
import functools
from collections.abc import Callable
from dataclasses import dataclass, field

from emulator.clock import Clock, TimerHandle
from emulator.ids import IdFactory
from emulator.lifecycle import Profile, billable_units, make_plan
from emulator.models import CANCELLED, JSON, REQUEST_TIMEOUT, Failure, LogLine, Priority, RequestRecord, State
from emulator.outputs import Outputs
from emulator.store import Store


class CancelResult(enum.Enum):
    """What a cancel call found; the values are fal's wire names."""

    REQUESTED = "CANCELLATION_REQUESTED"
    ALREADY_COMPLETED = "ALREADY_COMPLETED"
    NOT_FOUND = "NOT_FOUND"


@dataclass(frozen=True, slots=True)
class Submission:
    """A validated request to run: where it goes and how it should be treated."""

    endpoint: str
    app_id: str
    input: JSON
    priority: Priority = Priority.NORMAL
    timeout: float | None = None
    webhook_url: str | None = None


def _seq(record: RequestRecord) -> int:
    return record.seq


@dataclass
class _Lane:
    """One namespace's queue and runners."""

    waiting: tuple[list[RequestRecord], list[RequestRecord]] = field(default_factory=lambda: ([], []))
    starting: dict[str, RequestRecord] = field(default_factory=dict)
    running: dict[str, RequestRecord] = field(default_factory=dict)
    timers: dict[str, list[TimerHandle]] = field(default_factory=dict)
    logs_applied: dict[str, int] = field(default_factory=dict)
    # Waiters on queued records: woken when the queue moves, since positions change then.
    movement: list[asyncio.Future[bool]] = field(default_factory=list)

    @property
    def busy(self) -> int:
        return len(self.starting) + len(self.running)

    def queued(self) -> int:
        return len(self.waiting[0]) + len(self.waiting[1])

    def enqueue(self, record: RequestRecord) -> None:
        # Sequence numbers only grow, so appending keeps each list sorted.
        self.waiting[record.priority].append(record)

    def pop_next(self) -> RequestRecord | None:
        for waiting in self.waiting:
            if waiting:
                self.moved()
                return waiting.pop(0)
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
                return ahead + bisect.bisect_left(waiting, record.seq, key=_seq)
            ahead += len(waiting)
        return ahead


class Scheduler:
    """Accepts submissions, runs them on a bounded set of runners, and records every change."""

    def __init__(
        self,
        *,
        clock: Clock,
        store: Store,
        outputs: Outputs,
        profile: Profile,
        runners: int = 2,
        ids: IdFactory | None = None,
    ) -> None:
        if runners < 1:
            raise ValueError("runners must be at least 1")
        self.clock = clock
        self.store = store
        self.outputs = outputs
        self.profile = profile
        self.runners = runners
        self.ids = ids or IdFactory(clock)
        self.paused = False
        self.on_complete: list[Callable[[RequestRecord], None]] = []
        self._lanes: dict[str, _Lane] = {}
        self._waiters: dict[tuple[str, str], list[asyncio.Future[bool]]] = {}
        self._seq = 0

    # -- queries ---------------------------------------------------------------------------

    def get(self, namespace: str, request_id: str) -> RequestRecord | None:
        return self.store.get(namespace, request_id)

    def position(self, record: RequestRecord) -> int:
        """How many requests are ahead of a queued one (0 means next)."""
        lane = self._lanes.get(record.namespace)
        return 0 if lane is None else lane.position(record)

    def queue_length(self, namespace: str) -> int:
        lane = self._lanes.get(namespace)
        return 0 if lane is None else lane.queued()

    def in_flight(self, namespace: str) -> int:
        """Requests accepted and not yet completed in a namespace."""
        lane = self._lanes.get(namespace)
        return 0 if lane is None else lane.queued() + lane.busy

    def tokens_ready(self, record: RequestRecord) -> int:
        """How many output tokens a run has produced by now."""
        plan = record.plan
        if plan is None or record.started_at is None:
            return 0
        if record.done and record.failure is None:
            return len(plan.tokens)
        # A run stopped mid-way (cancelled, failed) keeps what it had produced by then.
        until = record.completed_at if record.completed_at is not None else self.clock.now()
        return plan.tokens_ready(until - record.started_at)

    def token_due(self, record: RequestRecord, index: int) -> float | None:
        """When token ``index`` of a started run appears."""
        plan = record.plan
        if plan is None or record.started_at is None:
            return None
        return record.started_at + plan.first_token_after + plan.seconds_per_token * index

    # -- commands --------------------------------------------------------------------------

    def submit(self, namespace: str, submission: Submission) -> RequestRecord:
        now = self.clock.now()
        self._seq += 1
        record = RequestRecord(
            id=self.ids.new(),
            namespace=namespace,
            endpoint=submission.endpoint,
            app_id=submission.app_id,
            input=submission.input,
            submitted_at=now,
            seq=self._seq,
            priority=submission.priority,
            webhook_url=submission.webhook_url,
            billable_units=billable_units(submission.input.get("model")),
        )
        lane = self._lanes.setdefault(namespace, _Lane())
        self.store.add(record)
        lane.enqueue(record)
        self.store.save(record, now)
        # Dispatch first: a runner free now starts the request before its deadline can fire.
        self._dispatch(lane)
        if submission.timeout is not None:
            record.deadline = now + submission.timeout
            self._timer(lane, record, record.deadline, lambda: self._expire(record))
        return record

    def cancel(self, namespace: str, request_id: str) -> CancelResult:
        record = self.store.get(namespace, request_id)
        if record is None:
            return CancelResult.NOT_FOUND
        if record.done:
            return CancelResult.ALREADY_COMPLETED
        self._finish(record, CANCELLED)
        return CancelResult.REQUESTED

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False
        for lane in list(self._lanes.values()):
            self._dispatch(lane)

    def reset(self, namespace: str | None = None) -> None:
        """Forget every request (or one namespace's), stopping their timers."""
        names = list(self._lanes) if namespace is None else [namespace]
        for name in names:
            lane = self._lanes.pop(name, None)
            if lane is None:
                continue
            for handles in lane.timers.values():
                for handle in handles:
                    handle.cancel()
        self.store.clear(namespace)
        for key in [k for k in self._waiters if namespace is None or k[0] == namespace]:
            for future in self._waiters.pop(key):
                if not future.done():
                    future.set_result(True)

    def close(self) -> None:
        """Stop every timer; used when the app shuts down."""
        for lane in self._lanes.values():
            for handles in lane.timers.values():
                for handle in handles:
                    handle.cancel()

    async def wait(self, record: RequestRecord, version: int, until: float | None = None) -> bool:
        """Wait for a change to the record past ``version`` or, while it is queued, a move of
        its queue (True), or for the clock to reach ``until`` (False)."""
        if record.version != version:
            return True
        if until is not None and until <= self.clock.now():
            return False
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        key = (record.namespace, record.id)
        self._waiters.setdefault(key, []).append(future)
        lane = self._lanes.get(record.namespace) if record.state is State.IN_QUEUE else None
        if lane is not None:
            lane.movement.append(future)
        handle = None
        if until is not None:

            def expire() -> None:
                if not future.done():
                    future.set_result(False)

            handle = self.clock.call_at(until, expire)
        try:
            return await future
        finally:
            if handle is not None:
                handle.cancel()
            if lane is not None and future in lane.movement:
                lane.movement.remove(future)
            waiters = self._waiters.get(key)
            if waiters is not None and future in waiters:
                waiters.remove(future)
                if not waiters:
                    del self._waiters[key]

    async def wait_done(self, record: RequestRecord) -> None:
        while not record.done:
            await self.wait(record, record.version)

    # -- transitions -----------------------------------------------------------------------

    def _timer(self, lane: _Lane, record: RequestRecord, when: float, callback: Callable[[], None]) -> None:
        lane.timers.setdefault(record.id, []).append(self.clock.call_at(when, callback))

    def _touch(self, record: RequestRecord) -> None:
        record.version += 1
        self.store.save(record, self.clock.now())
        for future in self._waiters.pop((record.namespace, record.id), ()):
            if not future.done():
                future.set_result(True)

    def _dispatch(self, lane: _Lane) -> None:
        while not self.paused and lane.busy < self.runners:
            record = lane.pop_next()
            if record is None:
                return
            lane.starting[record.id] = record
            start_at = max(self.clock.now(), record.submitted_at + self.profile.queue_wait)
            self._timer(lane, record, start_at, functools.partial(self._start, record))

    def _start(self, record: RequestRecord) -> None:
        lane = self._lanes.get(record.namespace)
        if lane is None or lane.starting.pop(record.id, None) is None:
            return
        now = self.clock.now()
        answer = self.outputs.answer(record.endpoint, record.input)
        plan = make_plan(answer, self.profile, record.input.get("model"))
        record.state = State.IN_PROGRESS
        record.started_at = now
        record.plan = plan
        lane.running[record.id] = record
        lane.logs_applied[record.id] = 0
        self._apply_logs(record, 0.0)
        for offset in sorted({offset for offset, _, _ in plan.logs if 0 < offset < plan.duration}):
            self._timer(lane, record, now + offset, functools.partial(self._log_tick, record, offset))
        self._timer(lane, record, now + plan.duration, lambda: self._complete(record))
        self._touch(record)

    def _apply_logs(self, record: RequestRecord, upto: float) -> bool:
        lane = self._lanes[record.namespace]
        plan = record.plan
        assert plan is not None and record.started_at is not None
        applied = lane.logs_applied.get(record.id, 0)
        start = applied
        while applied < len(plan.logs) and plan.logs[applied][0] <= upto:
            offset, level, message = plan.logs[applied]
            record.logs.append(LogLine(message, level, record.started_at + offset))
            applied += 1
        lane.logs_applied[record.id] = applied
        return applied > start

    def _log_tick(self, record: RequestRecord, offset: float) -> None:
        if record.state is State.IN_PROGRESS and self._apply_logs(record, offset):
            self._touch(record)

    def _complete(self, record: RequestRecord) -> None:
        if record.state is not State.IN_PROGRESS or record.plan is None:
            return
        self._apply_logs(record, float("inf"))
        if record.plan.failure is not None:
            self._finish(record, record.plan.failure)
        else:
            self._finish(record, None, record.plan.output)

    def _expire(self, record: RequestRecord) -> None:
        """A start deadline passed: a request still waiting ends with request_timeout."""
        if record.state is State.IN_QUEUE:
            self._finish(record, REQUEST_TIMEOUT)

    def _finish(self, record: RequestRecord, failure: Failure | None, output: JSON | None = None) -> None:
        lane = self._lanes.get(record.namespace)
        if lane is not None:
            lane.remove_waiting(record)
            freed = lane.starting.pop(record.id, None) is not None
            freed = lane.running.pop(record.id, None) is not None or freed
            for handle in lane.timers.pop(record.id, ()):
                handle.cancel()
            lane.logs_applied.pop(record.id, None)
        record.state = State.COMPLETED
        record.completed_at = self.clock.now()
        record.failure = failure
        record.output = output
        self._touch(record)
        for listener in self.on_complete:
            listener(record)
        if lane is not None and freed:
            self._dispatch(lane)
