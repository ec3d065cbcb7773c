"""The server-sent event streams: a request's status as it changes, and a run's output as it is written."""

from __future__ import annotations

from collections.abc import AsyncIterator

from emulator.core.clock import Clock
from emulator.core.errors import FaultTriggered
from emulator.core.models import RequestRecord
from emulator.core.scheduler import Scheduler
from emulator.core.wire import sse_event, status_body


async def status_events(
    scheduler: Scheduler, clock: Clock, record: RequestRecord, base: str, *, with_logs: bool, keepalive: float
) -> AsyncIterator[bytes]:
    """One event per change (state, new log lines, queue position); closes after COMPLETED."""
    sent_logs = 0
    last: tuple[int, int] | None = None
    while True:
        position = scheduler.position(record)
        if (record.version, position) != last:
            last = (record.version, position)
            logs = list(record.logs[sent_logs:]) if with_logs else None
            sent_logs = len(record.logs)
            yield sse_event(status_body(record, base, position=position, logs=logs))
            if record.done:
                return
        changed = await scheduler.wait(record, record.version, until=clock.now() + keepalive)
        if scheduler.forgotten(record):
            return  # reset while streaming: nothing more will happen to it
        if not changed:
            yield b": ping\n\n"


async def output_events(scheduler: Scheduler, record: RequestRecord) -> AsyncIterator[bytes]:
    """Cumulative output, ``partial: true`` per token, then the whole output with ``partial: false``."""
    plan = record.plan
    assert plan is not None
    tokens = plan.tokens
    sent = 0
    text = ""
    while True:
        version = record.version
        # The last token goes out with the final event, unless the run stopped early.
        stopped_early = record.done and record.failure is not None
        ready = min(scheduler.tokens_ready(record), len(tokens) if stopped_early else len(tokens) - 1)
        while sent < ready:
            text += tokens[sent]
            sent += 1
            yield sse_event({"output": text, "partial": True, "error": None})
        if record.done:
            if record.failure is None:
                assert record.output is not None
                yield sse_event({**record.output, "partial": False})
            else:
                yield sse_event({"output": text, "partial": False, "error": record.failure.message})
            return
        # The next token to send is number ``sent``; the last one goes out with the final event.
        next_due = scheduler.token_due(record, sent) if sent < len(tokens) - 1 else None
        await scheduler.wait(record, version, until=next_due)
        if scheduler.forgotten(record):
            return  # reset while streaming: nothing more will happen to it


async def dropped_after(events: AsyncIterator[bytes], count: int) -> AsyncIterator[bytes]:
    """Pass ``count`` events through, then drop the connection (a drop_stream fault)."""
    sent = 0
    async for event in events:
        if sent >= count:
            break
        yield event
        sent += event.startswith((b"data:", b"event:"))  # an event, named or not; not a comment
    raise FaultTriggered("stream dropped by a fault rule")
