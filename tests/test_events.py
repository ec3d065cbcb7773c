"""The change hub: coalesced, bounded notices of which requests changed."""

from __future__ import annotations

import asyncio

import pytest

from emulator import Emulator, ManualClock, Settings
from emulator.core.events import Hub, TooManySubscribers
from emulator.core.models import RequestRecord
from emulator.core.scheduler import Submission


def record(request_id: str, namespace: str = "k") -> RequestRecord:
    return RequestRecord(request_id, namespace, "fal-ai/any-llm", "fal-ai/any-llm", {}, 0.0, 1)


def test_many_changes_to_one_request_are_one_notice() -> None:
    """A request that changes repeatedly before the watcher looks is listed once."""
    hub = Hub()
    watcher = hub.subscribe()
    for _ in range(50):
        hub.publish(record("a"))
    hub.publish(record("b"))
    batch = watcher.take()
    assert batch.changed == (("k", "a"), ("k", "b"))
    assert not batch.resync
    assert watcher.take().changed == ()


def test_a_watcher_sees_only_its_namespace() -> None:
    """A subscription for one namespace is not told about another's requests."""
    hub = Hub()
    watcher = hub.subscribe("k")
    hub.publish(record("a", "other"))
    assert not watcher.ready
    hub.publish(record("b", "k"))
    assert watcher.take().changed == (("k", "b"),)


def test_a_slow_watcher_is_told_to_start_over_instead_of_growing() -> None:
    """Past the bound, the pending list is dropped for one resync flag: memory stays bounded."""
    hub = Hub(max_pending=10)
    watcher = hub.subscribe()
    for n in range(1000):
        hub.publish(record(f"r{n}"))
    batch = watcher.take()
    assert batch.resync and batch.changed == ()
    assert len(watcher._pending) == 0


def test_subscribers_are_bounded_and_a_closed_one_frees_its_slot() -> None:
    """One subscriber past the limit is refused with a clear message; closing one makes room."""
    hub = Hub(max_subscribers=2)
    first = hub.subscribe()
    hub.subscribe()
    with pytest.raises(TooManySubscribers, match="2 watchers"):
        hub.subscribe()
    first.close()
    hub.subscribe()
    assert len(hub) == 2


def test_a_reset_asks_the_namespaces_watchers_to_start_over() -> None:
    """Resetting a namespace flags its watchers and those of every namespace, not others'."""
    hub = Hub()
    mine, everything, other = hub.subscribe("k"), hub.subscribe(), hub.subscribe("x")
    hub.reset("k")
    assert mine.take().resync and everything.take().resync
    assert not other.ready


@pytest.mark.anyio
async def test_a_waiting_watcher_wakes_on_a_change() -> None:
    """The waiter future completes when a change arrives, and at once when one is pending."""
    hub = Hub()
    watcher = hub.subscribe()
    waiter = watcher.waiter()
    assert not waiter.done()
    hub.publish(record("a"))
    await asyncio.wait_for(waiter, 1)
    assert watcher.waiter().done()


def test_the_scheduler_publishes_submits_and_transitions() -> None:
    """Submitting, starting and completing a request each reach the emulator's hub."""
    clock = ManualClock()
    emulator = Emulator.build(Settings(profile="realistic", seed=1), clock=clock)
    watcher = emulator.events.subscribe("k")
    submitted = emulator.scheduler.submit("k", Submission("fal-ai/any-llm", {"prompt": "hi"}))
    assert watcher.take().changed == (("k", submitted.id),)
    clock.advance(60)
    assert watcher.take().changed == (("k", submitted.id),)
    assert submitted.done
    emulator.reset("k")
    assert watcher.take().resync
