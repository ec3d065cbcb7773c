"""The queue: runners, FIFO order with priorities, deadlines, cancellation, holds.

Everything here is driven by the injected clock's timers, so a run is a sequence of
synchronous transitions; nothing sleeps. Each namespace (API key) has its own queue and
its own runners, so parallel test workers with different keys never wait on each other.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import functools
from collections.abc import Callable
from typing import NamedTuple

from emulator.core.clock import Clock
from emulator.core.faults import LIFECYCLE_KINDS, Fault, Faults
from emulator.core.ids import IdFactory
from emulator.core.lanes import Lane
from emulator.core.lifecycle import Profile, billable_units, finished, make_plan, queue_wait
from emulator.core.models import (
    CANCELLED,
    JSON,
    REMOVED,
    REQUEST_TIMEOUT,
    Failure,
    Priority,
    RequestRecord,
    State,
)
from emulator.core.outputs import Answer, Outputs
from emulator.core.queues import LocalQueue, QueueStrategy
from emulator.core.spec import app_id_of
from emulator.store.base import Store

# How far a run gets, as a share of it, before a complete_with_error fault loses its runner.
RUNNER_LOST_AFTER = 0.5


class CancelResult(enum.Enum):
    """What a cancel call found; the values are fal's wire names."""

    REQUESTED = "CANCELLATION_REQUESTED"
    ALREADY_COMPLETED = "ALREADY_COMPLETED"
    NOT_FOUND = "NOT_FOUND"


class TransitionError(ValueError):
    """A control action that does not apply to the request's current state."""


class Submission(NamedTuple):
    """A validated request to run: where it goes and how it should be treated (one per call: a tuple,
    the cheapest immutable record to build)."""

    endpoint: str
    input: JSON
    priority: Priority = Priority.NORMAL
    timeout: float | None = None
    webhook_url: str | None = None
    webhook_mode: str | None = None
    action: str = "submit"
    # Schema errors of a queued body: fal's queue accepts it, and the run fails with a 422.
    invalid: list[JSON] | None = None
    # How many times the queue may run it again after a runner failure (503, 504).
    retries: int = 0
    # The CDN base URL the caller reaches this emulator by: generated files are served under it.
    files_url: str | None = None


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
        faults: Faults | None = None,
        queue: QueueStrategy | None = None,
        validate: Callable[[str, JSON], list[JSON] | None] | None = None,
    ) -> None:
        if runners < 1:
            raise ValueError("runners must be at least 1")
        self.clock = clock
        self.store = store
        self.outputs = outputs
        self.profile = profile
        self.runners = runners
        self.ids = ids or IdFactory(clock)
        self.faults = faults or Faults()
        self.paused = False
        # fal's per-key concurrency limit: at most this many of a key's requests run at once (0: no limit).
        self.concurrency_limit = 0
        # Checks an input against the endpoint's schema when no answer was planned at submit (a
        # request restored after a restart, or claimed from a shared queue): its errors, or None.
        self.validate = validate
        self.on_complete: list[Callable[[RequestRecord], None]] = []
        # Called when the queue runs a request again after a runner failure, with that failure.
        self.on_retry: list[Callable[[RequestRecord, Failure], None]] = []
        self.on_change: list[Callable[[RequestRecord], None]] = []
        self._lanes: dict[str, Lane] = {}
        self._waiters: dict[tuple[str, str], list[asyncio.Future[bool]]] = {}
        self._seq = 0
        # Where accepted requests wait: this process's lanes, or a queue shared through the store.
        self.queue: QueueStrategy = queue or LocalQueue()

    # -- queries ---------------------------------------------------------------------------

    def get(self, namespace: str, request_id: str) -> RequestRecord | None:
        return self.store.get(namespace, request_id)

    def position(self, record: RequestRecord) -> int:
        """How many requests are ahead of a queued one (0 means next)."""
        return self.queue.position(self._lanes.get(record.namespace), record, self.is_local(record))

    def queue_length(self, namespace: str) -> int:
        return self.queue.waiting(namespace, self._lanes.get(namespace))

    def in_flight(self, namespace: str) -> int:
        """Requests accepted and not yet completed in a namespace."""
        lane = self._lanes.get(namespace)
        return self.queue.waiting(namespace, lane) + (0 if lane is None else lane.busy)

    def forgotten(self, record: RequestRecord) -> bool:
        """Whether a reset (or expiry) has dropped this record."""
        return self.store.get(record.namespace, record.id) is not record

    def is_held(self, record: RequestRecord) -> bool:
        lane = self._lanes.get(record.namespace)
        return lane is not None and (record.id in lane.held or record.paused_at is not None)

    def tokens_ready(self, record: RequestRecord) -> int:
        """How many output tokens a run has produced by now."""
        plan = record.plan
        if plan is None or record.started_at is None:
            return 0
        if record.done and record.failure is None:
            return len(plan.tokens)
        # A run stopped mid-way (cancelled, failed, held) keeps what it had produced by then.
        until = record.completed_at or record.paused_at or self.clock.now()
        return plan.tokens_ready(until - record.started_at)

    def token_due(self, record: RequestRecord, index: int) -> float | None:
        """When token ``index`` of a started run appears (None while held)."""
        plan = record.plan
        if plan is None or record.started_at is None or record.paused_at is not None:
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
            app_id=app_id_of(submission.endpoint),  # one shared string per app (it is cached)
            input=submission.input,
            submitted_at=now,
            seq=self._seq,
            priority=submission.priority,
            webhook_url=submission.webhook_url,
            webhook_mode=submission.webhook_mode,
            billable_units=0 if submission.invalid else billable_units(submission.input.get("model")),
            retries_left=submission.retries,
        )
        lane = self._lane(namespace)
        if submission.invalid:
            answer = _refused(submission.invalid)
        else:
            answer = self.outputs.answer(
                submission.endpoint, submission.input, namespace, files_url=submission.files_url
            )
            if answer.units is not None:
                record.billable_units = answer.units
        if answer.faults:
            # A fixture's rules belong to this request alone: they live on its record and go with it.
            record.rules = [rule.bound(namespace, record.id) for rule in answer.faults]
        if self.faults.rules or record.rules:
            fault = self.faults.match(
                submission.action,
                namespace,
                endpoint=submission.endpoint,
                request_id=record.id,
                kinds=LIFECYCLE_KINDS,
                scoped=record.rules,
            )
            answer = _apply_lifecycle_fault(answer, fault, lane, record)
        lane.answers[record.id] = answer
        if submission.files_url is not None:
            lane.files_urls[record.id] = submission.files_url
        if submission.timeout is not None:
            record.deadline = now + submission.timeout  # before the store sees it: a durable one keeps it
        self.store.add(record)
        self.queue.accept(lane, record)
        self.store.save(record, now)
        for listener in self.on_change:
            listener(record)
        # Dispatch first: a runner free now starts the request before its deadline can fire.
        self._dispatch(lane)
        if record.deadline is not None:
            # On a shared queue, this process keeps the deadline: the mirror shows whether a runner took it.
            self._timer(lane, record, record.deadline, functools.partial(self._expire, record))
        return record

    def restore(self) -> int:
        """Queue again, in arrival order, what the store kept unfinished from an earlier run; returns how many."""
        now = self.clock.now()
        records = list(self.store.records())
        latest = max((r.seq for r in records), default=0)
        # Carry on the numbering, so new requests queue behind restored ones and seeded ids do not repeat.
        if latest > self._seq:
            taken = [r.id for r in records] + [r.gateway_request_id for r in records if r.gateway_request_id]
            self.ids.skip(latest - self._seq, taken)
            self._seq = latest
        # Records a lane already holds are live in this process (an app restarted on the same core).
        live = {(name, r.id) for name, lane in self._lanes.items() for r in lane.all()}
        unfinished = sorted((r for r in records if not r.done and (r.namespace, r.id) not in live), key=lambda r: r.seq)
        for record in unfinished:
            if record.state is State.IN_PROGRESS:
                # The run was lost with the process: start it again from the queue's head.
                _requeued(record)
                self.store.save(record, now)
            self._lane(record.namespace).enqueue(record)
        for lane in list(self._lanes.values()):
            self._dispatch(lane)
        for record in unfinished:
            if record.deadline is not None and not record.done:
                lane = self._lanes[record.namespace]
                self._timer(lane, record, record.deadline, functools.partial(self._expire, record))
        return len(unfinished)

    # -- the shared queue's side (Runners) ------------------------------------------------

    @property
    def capacity(self) -> int:
        """How many of one key's requests run at once: the runners, or fewer under a concurrency limit."""
        limit = self.concurrency_limit
        return min(self.runners, limit) if limit else self.runners

    def set_concurrency_limit(self, limit: int) -> None:
        self.concurrency_limit = limit
        for lane in list(self._lanes.values()):
            self._dispatch(lane)
        self.queue.freed()

    def free_slots(self, namespace: str) -> int:
        if self.paused:
            return 0
        lane = self._lanes.get(namespace)
        return self.capacity - (0 if lane is None else lane.busy)

    def is_local(self, record: RequestRecord) -> bool:
        lane = self._lanes.get(record.namespace)
        return lane is not None and (record.id in lane.starting or record.id in lane.running)

    def run_claimed(self, record: RequestRecord) -> None:
        """Run a request claimed from the shared queue, after its queue wait (a fixture's, or the profile's)."""
        lane = self._lane(record.namespace)
        if record.state is State.IN_PROGRESS:
            _requeued(record)  # its runner died: start over
        lane.starting[record.id] = record
        answer = lane.answers.get(record.id)
        if answer is None:  # submitted by another process: its answer, and so its queue wait, is made here
            answer = lane.answers[record.id] = self._answer_now(lane, record)
        start_at = max(self.clock.now(), record.submitted_at + queue_wait(answer, self.profile))
        self._timer(lane, record, start_at, functools.partial(self._start, record))

    def remote_changed(self, record: RequestRecord) -> None:
        """Another process changed a record: stop a local run it ended, wake waiters."""
        lane = self._lanes.get(record.namespace)
        if lane is not None and record.state is not State.IN_QUEUE:
            # Another process took it: an answer planned here at submit is not for a later attempt.
            lane.answers.pop(record.id, None)
        if record.done and lane is not None and lane.drop(record):
            self.queue.freed()
        for future in self._waiters.pop((record.namespace, record.id), ()):
            if not future.done():
                future.set_result(True)

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
        self.queue.freed()
        for lane in list(self._lanes.values()):
            self._dispatch(lane)

    def set_runners(self, runners: int) -> None:
        if runners < 1:
            raise ValueError("runners must be at least 1")
        self.runners = runners
        for lane in list(self._lanes.values()):
            self._dispatch(lane)
        self.queue.freed()

    def hold(self, record: RequestRecord) -> None:
        """Keep a request where it is (queued, or mid-run) until ``release``."""
        lane = self._live_lane(record)
        if record.state is State.IN_QUEUE:
            lane.held.add(record.id)
            return
        if record.paused_at is None:
            lane.cancel_timers(record)
            record.paused_at = self.clock.now()
            self._touch(record)

    def release(self, record: RequestRecord) -> None:
        """Let a held request go on from where it stopped."""
        lane = self._live_lane(record)
        lane.hold_on_start.discard(record.id)
        if record.id in lane.held:
            lane.held.discard(record.id)
            self._dispatch(lane)
        if record.paused_at is not None and record.started_at is not None:
            record.started_at += self.clock.now() - record.paused_at
            record.paused_at = None
            self._schedule_run(lane, record)
            self._touch(record)

    def start(self, record: RequestRecord) -> None:
        """Start a queued request now, whatever the runners are doing."""
        lane = self._live_lane(record)
        if record.state is not State.IN_QUEUE:
            raise TransitionError(f"request {record.id} is {record.state.value}, not IN_QUEUE")
        lane.held.discard(record.id)
        if not lane.remove_waiting(record):
            lane.starting.pop(record.id, None)
        lane.starting[record.id] = record
        self._start(record)

    def complete(self, record: RequestRecord) -> None:
        """Finish a request now, successfully, with its whole planned output."""
        lane = self._live_lane(record)
        if record.state is State.IN_QUEUE:
            self.start(record)
        plan = record.plan
        assert plan is not None
        self._apply_logs(lane, record, float("inf"))
        # A plan that was going to fail has no output object: build one from its tokens.
        output = plan.output or {"output": "".join(plan.tokens), "partial": False, "error": None}
        self._finish(record, None, output)

    def fail(self, record: RequestRecord, failure: Failure) -> None:
        """Finish a request now with an error."""
        self._live_lane(record)
        self._finish(record, failure)

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
            # Whoever still waits on a forgotten request (a sync run, an OpenAI call, a stream) gets
            # an answer instead of waiting for a change that will never come.
            for record in lane.all():
                record.failure = REMOVED
                record.state = State.COMPLETED
                record.version += 1
            lane.moved()
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

    def _lane(self, namespace: str) -> Lane:
        """A namespace's lane, made on its first request (not built on every call just to be thrown away)."""
        lane = self._lanes.get(namespace)
        if lane is None:
            lane = self._lanes[namespace] = Lane()
        return lane

    def _live_lane(self, record: RequestRecord) -> Lane:
        lane = self._lanes.get(record.namespace)
        if lane is None or record.done:
            raise TransitionError(f"request {record.id} has already completed")
        return lane

    def _timer(self, lane: Lane, record: RequestRecord, when: float, callback: Callable[[], None]) -> None:
        lane.timers.setdefault(record.id, []).append(self.clock.call_at(when, callback))

    def _touch(self, record: RequestRecord) -> None:
        record.version += 1
        self.store.save(record, self.clock.now())
        for listener in self.on_change:
            listener(record)
        if self._waiters:  # most changes have nobody waiting on them
            for future in self._waiters.pop((record.namespace, record.id), ()):
                if not future.done():
                    future.set_result(True)

    def _dispatch(self, lane: Lane) -> None:
        capacity = self.capacity
        while not self.paused and lane.busy < capacity:
            record = lane.pop_next()
            if record is None:
                return
            lane.starting[record.id] = record
            answer = lane.answers.get(record.id)
            wait = queue_wait(answer, self.profile) if answer else self.profile.queue_wait
            start_at = max(self.clock.now(), record.submitted_at + wait)
            self._timer(lane, record, start_at, functools.partial(self._start, record))

    def _start(self, record: RequestRecord) -> None:
        lane = self._lanes.get(record.namespace)
        if lane is None or lane.starting.pop(record.id, None) is None:
            return
        if record.id in lane.held:
            # Held while a runner was picking it up: back to the queue, runner freed.
            lane.enqueue(record)
            self._dispatch(lane)
            return
        answer = lane.answers.pop(record.id, None) or self._answer_now(lane, record)
        record.plan = make_plan(answer, self.profile, record.input.get("model"))
        record.state = State.IN_PROGRESS
        record.started_at = self.clock.now()
        lane.running[record.id] = record
        lane.logs_applied[record.id] = 0
        self._apply_logs(lane, record, 0.0)
        if record.id in lane.hold_on_start:
            lane.hold_on_start.discard(record.id)
            record.paused_at = record.started_at
        elif record.plan.duration > 0:
            self._schedule_run(lane, record)
        else:
            # A run that takes no time ends now, as its completion timer would: due at once, after
            # the start is seen (listeners and waiters get IN_PROGRESS, then COMPLETED), unless a
            # listener held or ended it meanwhile. No timer, no second turn of the timers.
            self._touch(record)
            if record.paused_at is None:
                self._complete(record)
            return
        self._touch(record)

    def _schedule_run(self, lane: Lane, record: RequestRecord) -> None:
        """Timers for the rest of a run: its remaining log lines and its completion."""
        plan = record.plan
        assert plan is not None and record.started_at is not None
        elapsed = self.clock.now() - record.started_at
        duration = plan.duration
        for offset in sorted({offset for offset, _, _ in plan.logs if elapsed < offset < duration}):
            when = record.started_at + offset
            self._timer(lane, record, when, functools.partial(self._log_tick, record, offset))
        self._timer(lane, record, record.started_at + duration, functools.partial(self._complete, record))

    def _apply_logs(self, lane: Lane, record: RequestRecord, upto: float) -> bool:
        plan = record.plan
        assert plan is not None and record.started_at is not None
        logs = plan.logs
        applied = start = lane.logs_applied.get(record.id, 0)
        if applied == len(logs):
            return False
        started = record.started_at
        while applied < len(logs) and logs[applied][0] <= upto:
            offset, level, message = logs[applied]
            # A line due at the start shares the start's float: a completed record keeps its lines.
            record.logs.add(message, level, started + offset if offset else started)
            applied += 1
        lane.logs_applied[record.id] = applied
        return applied > start

    def _log_tick(self, record: RequestRecord, offset: float) -> None:
        lane = self._lanes.get(record.namespace)
        if lane is not None and record.state is State.IN_PROGRESS and self._apply_logs(lane, record, offset):
            self._touch(record)

    def _answer_now(self, lane: Lane, record: RequestRecord) -> Answer:
        """The answer of a request that had none planned: restored, claimed, or run again after a failure."""
        if self.validate is not None:
            errors = self.validate(record.endpoint, record.input)
            if errors:
                return _refused(errors)
        answer = self.outputs.answer(
            record.endpoint, record.input, record.namespace, files_url=lane.files_urls.get(record.id)
        )
        if answer.units is not None:
            record.billable_units = answer.units
        # A fault rule that fired on an earlier attempt (times: N) may fire on this one too.
        fault = self.faults.match(
            "submit",
            record.namespace,
            endpoint=record.endpoint,
            request_id=record.id,
            kinds=LIFECYCLE_KINDS,
            scoped=record.rules,
        )
        return _apply_lifecycle_fault(answer, fault, lane, record)

    def _complete(self, record: RequestRecord) -> None:
        lane = self._lanes.get(record.namespace)
        if lane is None or record.state is not State.IN_PROGRESS or record.plan is None:
            return
        self._apply_logs(lane, record, float("inf"))
        failure = record.plan.failure
        if failure is None:
            self._finish(record, None, record.plan.output)
        elif self._retryable(record, failure):
            self._retry(lane, record, failure)
        else:
            self._finish(record, failure)

    def _retryable(self, record: RequestRecord, failure: Failure) -> bool:
        """fal's queue runs a request again when its runner answered 503 or 504 (not the caller's own
        start deadline), while retries are left and the start deadline has not passed."""
        if record.retries_left <= 0 or failure.status_code not in (503, 504):
            return False
        if failure.error_type == REQUEST_TIMEOUT.error_type:
            return False
        return record.deadline is None or self.clock.now() < record.deadline

    def _retry(self, lane: Lane, record: RequestRecord, failure: Failure) -> None:
        """Back to its place in the queue (this process's or the shared one) for a new runner, with a new
        gateway request id; the logs so far stay."""
        lane.running.pop(record.id, None)
        lane.cancel_timers(record)
        lane.logs_applied.pop(record.id, None)
        now = self.clock.now()
        record.retries_left -= 1
        previous = record.gateway_request_id or record.id
        record.gateway_request_id = self.ids.new()
        record.logs.add(
            f"{failure.message}; the queue runs the request again on a new runner "
            f"(gateway request {record.gateway_request_id}, after {previous})",
            "WARN",
            now,
        )
        record.state = State.IN_QUEUE
        record.started_at = record.plan = record.paused_at = None
        for listener in self.on_retry:
            listener(record, failure)
        self._touch(record)
        self.queue.requeue(lane, record)
        self._dispatch(lane)

    def _expire(self, record: RequestRecord) -> None:
        """A start deadline passed: a request still waiting ends with request_timeout."""
        if record.state is State.IN_QUEUE:
            self._finish(record, REQUEST_TIMEOUT)

    def _finish(self, record: RequestRecord, failure: Failure | None, output: JSON | None = None) -> None:
        lane = self._lanes.get(record.namespace)
        freed = False
        if lane is not None:
            if record.state is State.IN_QUEUE:  # only a queued request can be waiting
                lane.remove_waiting(record)
            freed = lane.drop(record)
            lane.held.discard(record.id)
            lane.hold_on_start.discard(record.id)
        record.state = State.COMPLETED
        record.completed_at = self.clock.now()
        record.failure = failure
        record.output = output
        if record.plan is not None and record.plan.logs:
            # No log line is due after the end: what the run wrote is on the record, and a completed
            # record (the store keeps 100,000 of them) need not carry the plan's copy of the lines.
            record.plan = finished(record.plan)
        self._touch(record)
        for listener in self.on_complete:
            listener(record)
        if lane is not None and freed:
            if lane.queued():  # a runner came free for whatever waits
                self._dispatch(lane)
            self.queue.freed()


def _requeued(record: RequestRecord) -> None:
    """Put a record whose run was lost back to how it was before it started."""
    record.state = State.IN_QUEUE
    record.started_at = record.plan = record.paused_at = None
    record.logs.clear()
    record.version += 1


def _apply_lifecycle_fault(answer: Answer, fault: Fault | None, lane: Lane, record: RequestRecord) -> Answer:
    """Fold a complete_with_error or hold fault into the request's answer and holds."""
    if fault is None:
        return answer
    if fault.kind == "hold":
        if fault.stage == "queue":
            lane.held.add(record.id)
        else:
            lane.hold_on_start.add(record.id)
        return answer
    failure = fault.failure()
    if failure.status_code in (422, 400):
        # Input refused: fails before the first token.
        return dataclasses.replace(answer, text="", failure=failure)
    # Lost mid-run: half the run happens (half the answer streams, half the progress is logged), then the error.
    return dataclasses.replace(answer, failure=failure, lost_after=RUNNER_LOST_AFTER)


def _refused(errors: list[JSON]) -> Answer:
    """The answer of an input the app refuses: a 422 with FastAPI's details, before the first token."""
    return Answer("", failure=Failure(422, errors))
