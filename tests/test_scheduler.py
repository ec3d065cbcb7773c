"""The queue without HTTP: lifecycle, positions, priority, cancellation, deadlines."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from emulator import Emulator, ManualClock, Settings, SystemClock
from emulator.core.models import Priority, RequestRecord, State
from emulator.core.scheduler import CancelResult, Scheduler, Submission

NS = "tenant"


def submission(prompt: str = "Tell me about queues", **kwargs: object) -> Submission:
    return Submission(endpoint="fal-ai/any-llm", input={"prompt": prompt}, **kwargs)  # type: ignore[arg-type]


def state_of(record: RequestRecord) -> State:
    """The record's state now (a call, so a type checker does not keep an earlier assert's narrowing)."""
    return record.state


def make(runners: int = 2, profile: str = "realistic", seed: int | None = 1) -> tuple[Scheduler, ManualClock]:
    clock = ManualClock()
    emulator = Emulator.build(Settings(profile=profile, runners=runners, seed=seed), clock=clock)
    return emulator.scheduler, clock


def test_lifecycle_follows_the_clock() -> None:
    """A request waits, starts after the queue wait, logs as it runs and completes with metrics."""
    scheduler, clock = make()
    record = scheduler.submit(NS, submission())
    assert state_of(record) is State.IN_QUEUE
    clock.advance(0.2)
    assert state_of(record) is State.IN_QUEUE
    clock.advance(0.05)
    assert state_of(record) is State.IN_PROGRESS
    assert [line.message for line in record.logs][:1] == ["Running default model through OpenRouter"]
    assert record.plan is not None
    clock.advance(record.plan.duration / 2)
    assert state_of(record) is State.IN_PROGRESS
    assert 0 < scheduler.tokens_ready(record) < len(record.plan.tokens)
    clock.advance(record.plan.duration)
    assert state_of(record) is State.COMPLETED
    assert record.failure is None
    assert record.output is not None and record.output["output"] == "".join(record.plan.tokens)
    assert record.inference_time == pytest.approx(record.plan.duration)
    assert record.logs[-1].message.startswith("Generated ")


def test_instant_profile_completes_on_the_next_tick() -> None:
    """With the instant profile, advance(0) takes a request from submitted to completed."""
    scheduler, clock = make(profile="instant")
    record = scheduler.submit(NS, submission())
    assert state_of(record) is State.IN_QUEUE
    clock.advance(0)
    assert state_of(record) is State.COMPLETED
    assert record.inference_time == 0


def test_a_run_that_takes_no_time_is_seen_starting_then_ending() -> None:
    """An instant run shows each listener IN_PROGRESS (its start's log lines written) and then COMPLETED,
    within one tick, and stops where it is if a listener holds it when it starts."""
    scheduler, clock = make(profile="instant")
    seen: list[tuple[str, State, int]] = []
    scheduler.on_change.append(lambda record: seen.append((record.id, record.state, len(record.logs))))
    plain = scheduler.submit(NS, submission("plain"))
    clock.advance(0)
    assert [(state, lines) for _, state, lines in seen] == [
        (State.IN_QUEUE, 0),
        (State.IN_PROGRESS, 3),
        (State.COMPLETED, 3),
    ]
    assert plain.started_at == plain.completed_at == plain.logs[-1].timestamp == clock.now()

    held_once: list[str] = []

    def hold_on_start(record: RequestRecord) -> None:
        if record.state is State.IN_PROGRESS and record.id != plain.id and not held_once:
            held_once.append(record.id)
            scheduler.hold(record)

    scheduler.on_change.append(hold_on_start)
    held = scheduler.submit(NS, submission("held"))
    clock.advance(0)
    assert state_of(held) is State.IN_PROGRESS and held.paused_at is not None
    clock.advance(60)
    assert state_of(held) is State.IN_PROGRESS
    scheduler.release(held)
    clock.advance(0)
    assert state_of(held) is State.COMPLETED and held.failure is None and held.output is not None


def test_queue_positions_are_true_under_contention() -> None:
    """With two runners, the first two are being picked up (0) and the rest count up from 0."""
    scheduler, clock = make(runners=2)
    records = [scheduler.submit(NS, submission(f"prompt {i}")) for i in range(5)]
    assert [scheduler.position(r) for r in records] == [0, 0, 0, 1, 2]
    clock.advance(0.25)
    assert [r.state for r in records[:2]] == [State.IN_PROGRESS] * 2
    first_done = min(records[:2], key=lambda r: r.plan.duration if r.plan else 0)
    assert first_done.plan is not None
    clock.advance(first_done.plan.duration)
    assert first_done.done
    assert scheduler.position(records[3]) == 0
    assert scheduler.position(records[4]) == 1
    assert scheduler.queue_length(NS) == 2


def test_every_position_counts_the_requests_ahead_whichever_arrived_last() -> None:
    """A request's position is how many wait ahead of it (every normal one before a low one), for the
    latest arrival of each priority as for the ones before it."""
    scheduler, _ = make(runners=1)
    records = [scheduler.submit(NS, submission("busy"))]
    for i, priority in enumerate([Priority.NORMAL, Priority.LOW, Priority.NORMAL, Priority.LOW, Priority.NORMAL]):
        records.append(scheduler.submit(NS, submission(f"p{i}", priority=priority)))
        waiting = records[1:]
        for record in waiting:
            ahead = [r for r in waiting if (r.priority, r.seq) < (record.priority, record.seq)]
            assert scheduler.position(record) == len(ahead)
    assert scheduler.position(records[0]) == 0


def test_low_priority_waits_behind_normal() -> None:
    """A low-priority request is served after every normal one, even those submitted later."""
    scheduler, clock = make(runners=1)
    busy = scheduler.submit(NS, submission("busy"))
    low = scheduler.submit(NS, submission("low", priority=Priority.LOW))
    normal = scheduler.submit(NS, submission("normal"))
    assert scheduler.position(normal) == 0
    assert scheduler.position(low) == 1
    clock.advance(0.25)
    assert busy.plan is not None
    clock.advance(busy.plan.duration + 0.25)
    assert normal.state is State.IN_PROGRESS
    assert low.state is State.IN_QUEUE


def test_cancel_a_queued_request_removes_it_and_it_never_runs() -> None:
    """A cancelled queued request completes with the cancellation error and never starts."""
    scheduler, clock = make(runners=1)
    running = scheduler.submit(NS, submission("first"))
    queued = scheduler.submit(NS, submission("second"))
    third = scheduler.submit(NS, submission("third"))
    assert scheduler.cancel(NS, queued.id) is CancelResult.REQUESTED
    assert queued.done and queued.started_at is None
    assert queued.failure is not None and queued.failure.status_code == 499
    assert scheduler.position(third) == 0
    clock.advance(60)
    assert running.done and third.done
    assert queued.started_at is None


def test_cancel_a_running_request_stops_it_and_frees_the_runner() -> None:
    """Cancelling mid-run stops the output and lets the next request start."""
    scheduler, clock = make(runners=1)
    running = scheduler.submit(NS, submission("first"))
    waiting = scheduler.submit(NS, submission("second"))
    clock.advance(0.5)
    assert running.state is State.IN_PROGRESS
    assert scheduler.cancel(NS, running.id) is CancelResult.REQUESTED
    assert running.done and running.output is None
    assert running.failure is not None and running.failure.error_type == "request_cancelled"
    clock.advance(0.25)
    assert waiting.state is State.IN_PROGRESS


def test_cancel_completed_and_unknown() -> None:
    """A completed request cannot be cancelled; an unknown id is not found."""
    scheduler, clock = make(profile="instant")
    record = scheduler.submit(NS, submission())
    clock.advance(0)
    assert scheduler.cancel(NS, record.id) is CancelResult.ALREADY_COMPLETED
    assert scheduler.cancel(NS, "no-such-id") is CancelResult.NOT_FOUND
    assert scheduler.cancel("other-namespace", record.id) is CancelResult.NOT_FOUND


def test_start_deadline_ends_a_waiting_request_with_request_timeout() -> None:
    """A request still queued at its x-fal-request-timeout ends with request_timeout (504)."""
    scheduler, clock = make(runners=1)
    blocker = scheduler.submit(NS, submission("a long answer"))
    late = scheduler.submit(NS, submission("late", timeout=0.3))
    clock.advance(0.3)
    assert late.done
    assert late.failure is not None
    assert (late.failure.status_code, late.failure.error_type) == (504, "request_timeout")
    assert late.started_at is None
    assert blocker.state is State.IN_PROGRESS


def test_deadline_does_not_touch_a_started_request() -> None:
    """Once started, a request is no longer subject to its start deadline."""
    scheduler, clock = make(runners=1)
    record = scheduler.submit(NS, submission("x", timeout=0.3))
    clock.advance(60)
    assert record.done and record.failure is None


def test_namespaces_have_separate_queues() -> None:
    """Another key's backlog does not change this key's queue position."""
    scheduler, _ = make(runners=1)
    for i in range(3):
        scheduler.submit("busy-key", submission(f"p{i}"))
    mine = scheduler.submit(NS, submission("mine"))
    assert scheduler.position(mine) == 0
    assert scheduler.get("busy-key", mine.id) is None


def test_seeded_ids_and_outputs_repeat() -> None:
    """The same seed gives the same ids; the same input gives the same output."""

    def run() -> tuple[list[str], list[str]]:
        scheduler, clock = make(profile="instant", seed=42)
        records = [scheduler.submit(NS, submission(f"question {i}")) for i in range(3)]
        clock.advance(0)
        return [r.id for r in records], [r.output["output"] for r in records if r.output]

    first, second = run(), run()
    assert first == second
    assert len(set(first[0])) == 3
    assert all(len(text) > 0 for text in first[1])


def test_pause_holds_the_queue_until_resume() -> None:
    """Paused runners start nothing; resume picks the queue up."""
    scheduler, clock = make(profile="instant")
    scheduler.pause()
    record = scheduler.submit(NS, submission())
    clock.advance(10)
    assert record.state is State.IN_QUEUE
    scheduler.resume()
    clock.advance(0)
    assert record.done


def test_completion_listeners_see_every_outcome() -> None:
    """on_complete hears of successes, failures and cancellations alike."""
    scheduler, clock = make(profile="instant", runners=1)
    seen: list[str] = []
    scheduler.on_complete.append(lambda record: seen.append(record.id))
    ok = scheduler.submit(NS, submission())
    failed = scheduler.submit(NS, submission("[emulator:runner-disconnected]"))
    cancelled = scheduler.submit(NS, submission("later"))
    scheduler.cancel(NS, cancelled.id)
    clock.advance(0)
    assert sorted(seen) == sorted([ok.id, failed.id, cancelled.id])
    assert failed.failure is not None and failed.failure.error_type == "runner_disconnected"


def test_memory_store_expires_completed_requests_by_count() -> None:
    """Completed records beyond the retention count are forgotten, oldest first."""
    clock = ManualClock()
    emulator = Emulator.build(Settings(profile="instant", retention_count=2), clock=clock)
    records = [emulator.scheduler.submit(NS, submission(f"p{i}")) for i in range(4)]
    clock.advance(0)
    kept = [r.id for r in records if emulator.scheduler.get(NS, r.id) is not None]
    assert kept == [r.id for r in records[2:]]


def test_requests_with_the_same_input_share_one_plan_and_keep_their_own_logs() -> None:
    """A repeated input runs on the same frozen plan, each record with its own log lines and times."""
    scheduler, clock = make()
    first = scheduler.submit(NS, submission("Share a plan"))
    clock.advance(0.1)
    second = scheduler.submit(NS, submission("Share a plan"))
    other = scheduler.submit(NS, submission("Another plan"))
    clock.advance(1000)
    assert all(state_of(r) is State.COMPLETED and r.failure is None for r in (first, second, other))
    assert first.plan is not None and first.plan is second.plan  # its finished form: no log lines
    assert first.plan.logs == ()
    assert other.plan is not None and other.plan.tokens != first.plan.tokens
    assert first.output == second.output
    assert [line.message for line in first.logs] == [line.message for line in second.logs]
    assert [line.timestamp for line in first.logs] != [line.timestamp for line in second.logs]
    assert first.logs is not second.logs


@pytest.mark.anyio
async def test_instant_runs_drain_a_queue_several_runners_deep_in_one_turn() -> None:
    """On the system clock, instant runs start and complete in the turn after their submit, runner after runner."""
    emulator = Emulator.build(Settings(profile="instant", runners=2, seed=1), clock=SystemClock())
    records = [emulator.scheduler.submit(NS, submission(f"Drain {n}")) for n in range(6)]
    assert all(state_of(r) is State.IN_QUEUE for r in records)
    await asyncio.sleep(0)  # one turn of the loop
    assert [state_of(r) for r in records] == [State.COMPLETED] * 6
    assert all(r.failure is None and r.output is not None for r in records)
    assert emulator.scheduler.queue_length(NS) == 0


def test_a_request_claimed_from_another_process_waits_its_fixtures_queue_wait(tmp_path: Path) -> None:
    """On a shared queue the claiming process makes the answer of a request another process took in, and a
    fixture's ``timing.queue_wait`` holds there too, not only the profile's."""
    (tmp_path / "slow.yaml").write_text(
        "fixtures:\n"
        "  - name: slow-queue\n"
        "    match: {prompt: {contains: slow queue}}\n"
        "    output: At last.\n"
        "    timing: {queue_wait: 5}\n"
    )
    clock = ManualClock()
    settings = Settings(profile="realistic", runners=2, seed=1, fixtures=(tmp_path,), data_dir=tmp_path / "data")
    submitting, claiming = (Emulator.build(settings, clock=clock) for _ in range(2))
    submitting.scheduler.pause()  # it keeps the request queued: the other process takes it
    record = submitting.scheduler.submit(NS, submission("a slow queue, please"))
    claiming.store.add(record)
    claiming.scheduler.run_claimed(record)
    clock.advance(1.0)  # past the profile's queue wait (0.25 s), not the fixture's
    assert state_of(record) is State.IN_QUEUE
    clock.advance(4.5)
    assert state_of(record) is not State.IN_QUEUE
    clock.advance(60)
    assert state_of(record) is State.COMPLETED and record.output is not None
    assert record.output["output"] == "At last."
