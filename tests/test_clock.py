"""The manual clock: time moves only when told, and timers fire in order."""

from __future__ import annotations

import asyncio

import pytest

from emulator.core.clock import ManualClock, SystemClock, TurnBatch

pytestmark = pytest.mark.anyio


def test_advance_fires_due_timers_in_time_order() -> None:
    """Timers fire inside advance, earliest first, with the clock set to each timer's time."""
    clock = ManualClock(start=100.0)
    seen: list[tuple[str, float]] = []
    clock.call_at(103.0, lambda: seen.append(("c", clock.now())))
    clock.call_at(101.0, lambda: seen.append(("a", clock.now())))
    clock.call_at(102.0, lambda: seen.append(("b", clock.now())))
    assert clock.advance(1.5) == 1
    assert seen == [("a", 101.0)]
    assert clock.advance(5) == 2
    assert seen == [("a", 101.0), ("b", 102.0), ("c", 103.0)]
    assert clock.now() == 106.5


def test_nothing_fires_without_advance_and_advance_zero_fires_due() -> None:
    """A timer already due waits for advance(0); a cancelled one never fires."""
    clock = ManualClock(start=0.0)
    fired: list[str] = []
    clock.call_at(0.0, lambda: fired.append("due"))
    clock.call_at(0.0, lambda: fired.append("cancelled")).cancel()
    assert fired == []
    assert clock.pending() == 1
    clock.advance(0)
    assert fired == ["due"]
    assert clock.pending() == 0


def test_timer_set_by_a_callback_fires_in_the_same_advance() -> None:
    """Chains of timers run to the end of the advanced span."""
    clock = ManualClock(start=0.0)
    fired: list[float] = []

    def first() -> None:
        fired.append(clock.now())
        clock.call_at(clock.now() + 1, lambda: fired.append(clock.now()))

    clock.call_at(1.0, first)
    clock.advance(10)
    assert fired == [1.0, 2.0]


def test_the_clock_cannot_go_backwards() -> None:
    """A negative advance is refused."""
    with pytest.raises(ValueError, match="backwards"):
        ManualClock().advance(-1)


async def test_sleep_returns_when_time_is_advanced() -> None:
    """sleep() on a manual clock completes only once the clock passes its deadline."""
    clock = ManualClock(start=0.0)
    task = asyncio.create_task(clock.sleep(5))
    await asyncio.sleep(0)
    clock.advance(4)
    await asyncio.sleep(0)
    assert not task.done()
    clock.advance(1)
    await asyncio.wait_for(task, timeout=5)
    assert clock.now() == 5


async def test_system_clock_runs_due_timers_on_the_loop() -> None:
    """The system clock fires a past-due timer on the running loop."""
    clock = SystemClock()
    fired = asyncio.Event()
    clock.call_at(clock.now() - 1, fired.set)
    await asyncio.wait_for(fired.wait(), timeout=5)


async def test_system_clock_advance_fires_what_falls_due() -> None:
    """Jumping the system clock forward fires a far-off timer at once, and only once."""
    clock = SystemClock()
    fired: list[float] = []
    before = clock.now()
    clock.call_at(before + 3600, lambda: fired.append(clock.now()))
    clock.call_at(before + 7200, lambda: fired.append(-1))
    assert clock.advance(3600) == 1
    assert fired[0] >= before + 3600
    assert clock.now() - before >= 3600
    assert clock.advance(0) == 0
    assert fired[1:] == []


async def test_system_clock_fires_a_chain_of_due_timers_in_one_turn() -> None:
    """A due timer that sets another due timer has it fired in the same turn of the loop, in order."""
    clock = SystemClock()
    seen: list[str] = []

    def start() -> None:
        seen.append("start")
        clock.call_at(clock.now(), lambda: seen.append("complete"))

    clock.call_at(clock.now() - 1, start)
    clock.call_at(clock.now() - 1, lambda: seen.append("second"))
    assert seen == []  # never inside call_at
    await asyncio.sleep(0)  # one turn of the loop
    assert seen == ["start", "second", "complete"]


async def test_system_clock_defers_an_endless_chain_of_due_timers_to_later_turns() -> None:
    """Timers that keep setting due timers cannot hold the loop: each turn fires a bounded number."""
    clock = SystemClock()
    fired: list[int] = []
    done = asyncio.Event()

    def again() -> None:
        fired.append(len(fired))
        if len(fired) < 1000:
            clock.call_at(clock.now(), again)
        else:
            done.set()

    clock.call_at(clock.now(), again)
    await asyncio.sleep(0)
    first_turn = len(fired)
    assert 1 < first_turn < 1000
    await asyncio.sleep(0)
    assert len(fired) > first_turn
    await asyncio.wait_for(done.wait(), timeout=5)
    assert fired == list(range(1000))


async def test_system_clock_skips_a_cancelled_due_timer_and_survives_a_failing_one() -> None:
    """A cancelled due timer never fires, and one that raises is reported without stopping the rest."""
    clock = SystemClock()
    seen: list[str] = []
    reported: list[BaseException] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _, context: reported.append(context["exception"]))
    try:

        def fail() -> None:
            raise RuntimeError("boom")

        clock.call_at(clock.now(), lambda: seen.append("a"))
        clock.call_at(clock.now(), fail)
        clock.call_at(clock.now(), lambda: seen.append("cancelled")).cancel()
        clock.call_at(clock.now(), lambda: seen.append("b"))
        await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(None)
    assert seen == ["a", "b"]
    assert [str(exc) for exc in reported] == ["boom"]


async def test_a_turn_batch_hands_over_what_one_turn_gathered_in_one_callback() -> None:
    """Items added in one turn reach the handler together on the next; what the handler adds waits a turn more."""
    handed: list[list[str]] = []

    def handle(batch: list[str]) -> None:
        handed.append(list(batch))
        if batch == ["a", "b"]:
            batches.add("c")  # added while handing over: the next turn's batch

    batches: TurnBatch[str] = TurnBatch(handle)
    loop = asyncio.get_running_loop()
    ready = len(loop._ready)  # type: ignore[attr-defined]  # asyncio's callbacks for the next turn
    batches.add("a")
    batches.add("b")
    assert len(loop._ready) == ready + 1  # type: ignore[attr-defined]
    assert handed == []
    await asyncio.sleep(0)
    assert handed == [["a", "b"]]
    await asyncio.sleep(0)
    assert handed == [["a", "b"], ["c"]]
    batches.add("d")
    taken = batches.take()
    assert taken == ["d"] and batches.take() is None
    taken.clear()  # the taker dealt with it: its own callback hands over nothing
    await asyncio.sleep(0)
    assert handed == [["a", "b"], ["c"], []]
