"""The memory store: records by namespace and id, completed ones expired by age and count, kept compact."""

from __future__ import annotations

import copy
import json

import pytest

from emulator import Emulator, ManualClock, Settings
from emulator.core.models import Failure, Plan, RequestRecord, State
from emulator.core.outputs import SplitText, split_tokens
from emulator.core.service import Call
from emulator.core.streams import output_events
from emulator.core.wire import sse_event
from emulator.store.compact import Compactor
from emulator.store.memory import MemoryStore

BODY = json.dumps({"prompt": "Hello there"}).encode()


def record(request_id: str, namespace: str = "ns", **changes: object) -> RequestRecord:
    return RequestRecord(request_id, namespace, "fal-ai/any-llm", "fal-ai/any-llm", {}, 0.0, 1, **changes)  # type: ignore[arg-type]


def complete(store: MemoryStore, held: RequestRecord, at: float) -> None:
    held.state = State.COMPLETED
    held.completed_at = at
    store.save(held, at)


def test_the_same_id_in_two_namespaces_is_two_records() -> None:
    """A record is found by its namespace and id together, whether running or completed."""
    store = MemoryStore()
    first, second = record("a", "one"), record("a", "two")
    store.add(first)
    store.add(second)
    complete(store, first, 1.0)
    assert store.get("one", "a") is first and store.get("two", "a") is second
    assert store.get("three", "a") is None and store.get("one", "b") is None
    assert len(store) == 2
    assert {r.namespace for r in store.records()} == {"one", "two"}
    assert list(store.records("two")) == [second]


def test_completed_records_expire_oldest_first_by_count_and_by_age() -> None:
    """Past the count the oldest completion goes; past the age every older one goes; running ones stay."""
    store = MemoryStore(retention_seconds=100.0, retention_count=2)
    held = [record(str(i)) for i in range(4)]
    running = record("running")
    for item in [*held, running]:
        store.add(item)
    for at, item in zip((1.0, 3.0, 2.0), held[:3], strict=True):
        complete(store, item, at)
    # Completion order (the order of saves) decides, not the ids: "0" went first.
    assert store.get("ns", "0") is None
    assert [store.get("ns", str(i)) is not None for i in (1, 2, 3)] == [True, True, True]
    complete(store, held[3], 150.0)  # now 150: "1" and "2" (finished at 3 and 2) are past the 100 s age
    assert [r.id for r in store.records()] == ["running", "3"]
    assert len(store) == 2


def test_a_completed_record_saved_again_keeps_one_place_in_the_queue() -> None:
    """Saving a completed record again (a later touch) does not count it twice against the cap."""
    store = MemoryStore(retention_count=2)
    first, second = record("1"), record("2")
    store.add(first)
    store.add(second)
    complete(store, first, 1.0)
    for _ in range(3):
        store.save(first, 2.0)
    complete(store, second, 3.0)
    assert store.get("ns", "1") is first and store.get("ns", "2") is second


def test_clearing_a_namespace_forgets_its_records_and_their_places() -> None:
    """After clear(namespace), the other namespace's records fill the cap on their own."""
    store = MemoryStore(retention_count=2)
    mine, theirs, later = record("1", "mine"), record("2", "theirs"), record("3", "theirs")
    for item in (mine, theirs, later):
        store.add(item)
    complete(store, mine, 1.0)
    complete(store, theirs, 2.0)
    store.clear("mine")
    complete(store, later, 3.0)
    assert store.get("mine", "1") is None
    assert store.get("theirs", "2") is theirs and store.get("theirs", "3") is later
    store.clear()
    assert len(store) == 0 and list(store.records()) == []


def test_an_id_added_again_replaces_the_completed_record() -> None:
    """A new record under a completed one's id is the one found, and the old one's place is gone."""
    store = MemoryStore(retention_count=1)
    old = record("1")
    store.add(old)
    complete(store, old, 1.0)
    new = record("1")
    store.add(new)
    assert store.get("ns", "1") is new
    other = record("2")
    store.add(other)
    complete(store, other, 2.0)
    assert store.get("ns", "1") is new and store.get("ns", "2") is other


@pytest.mark.anyio
async def test_completed_records_with_equal_outputs_share_them_and_answer_the_same() -> None:
    """Two completed requests with the same answer share one output and plan; each result is unchanged."""
    clock = ManualClock()
    emulator = Emulator.build(Settings(profile="instant", seed=1), clock=clock)
    ids = []
    for _ in range(2):
        accepted = await emulator.call(Call("submit", "ns", "fal-ai/any-llm", body=BODY))
        ids.append(accepted.body["request_id"])
    clock.advance(60)
    first, second = (emulator.store.get("ns", request_id) for request_id in ids)
    assert first is not None and second is not None
    assert first.output is second.output and first.plan is second.plan
    assert first.plan is not None and first.plan.output is first.output
    results = [await emulator.call(Call("result", "ns", "fal-ai/any-llm", request_id)) for request_id in ids]
    assert results[0].body == results[1].body == first.output
    assert results[0].body["output"] and results[0].body["partial"] is False


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ({"n": 1}, {"n": True}),
        ({"n": 1}, {"n": 1.0}),
        ({"n": 0.0}, {"n": -0.0}),
        ({"a": 1, "b": 2}, {"b": 2, "a": 1}),
        ({"v": [1, 2]}, {"v": [[1, 2]]}),
        ({"v": "1"}, {"v": 1}),
        ({"v": None}, {"v": "None"}),
    ],
)
def test_outputs_that_differ_in_type_value_or_order_are_not_shared(
    one: dict[str, object], other: dict[str, object]
) -> None:
    """Only an output equal in every value, type and key order is shared: the JSON written stays the same."""
    compactor = Compactor()
    kept = [record(str(i), output=copy.deepcopy(output)) for i, output in enumerate((one, other, one))]
    for item in kept:
        item.state = State.COMPLETED
        compactor.compact(item)
    assert kept[0].output is kept[2].output
    assert kept[1].output is not kept[0].output
    assert json.dumps(kept[1].output) == json.dumps(other)


def test_the_sharing_table_is_bounded() -> None:
    """Past its size the table of outputs starts again: distinct outputs are not all kept alive."""
    compactor = Compactor(kept=4)
    for i in range(10):
        item = record(str(i), output={"output": f"text {i}"}, plan=Plan((), 0.0, 0.0, {"output": f"text {i}"}))
        compactor.compact(item)
    assert len(compactor._outputs) <= 4 and len(compactor._plans) <= 4


def test_one_output_object_is_shared_as_before_and_a_new_one_by_its_value() -> None:
    """An output object seen before is shared as it was; a new object, even one at a freed object's
    address, is shared only with an output equal to it."""
    compactor = Compactor(kept=4)
    answer = {"output": "same"}
    first, again = record("a", output=answer), record("b", output=answer)
    compactor.compact(first)
    compactor.compact(again)
    assert first.output is again.output is answer
    equal = record("c", output={"output": "same"})
    compactor.compact(equal)
    assert equal.output is answer
    for i in range(50):  # short-lived outputs: their addresses are reused by the next ones
        item = record(str(i), output={"output": f"text {i % 7}"})
        compactor.compact(item)
        assert item.output == {"output": f"text {i % 7}"}
    assert len(compactor._seen) <= 4


def test_one_plan_object_is_shared_as_before_and_another_by_what_it_holds() -> None:
    """Records completed with one finished plan object share one compact plan, holding their output;
    a plan with the same tokens but another ending gets its own."""
    compactor = Compactor(kept=4)
    output = {"output": "one two three", "partial": False, "error": None}
    plan = Plan(split_tokens("one two three"), 0.0, 0.0, output)
    kept = [record(str(i), output=output, plan=plan) for i in range(3)]
    failed = Plan(split_tokens("one two three"), 0.0, 0.0, output, failure=Failure(503, "lost"))
    kept.append(record("f", output=output, plan=failed))
    for item in kept:
        compactor.compact(item)
    first = kept[0].plan
    assert first is not None and first.output is output and list(first.tokens) == list(plan.tokens)
    assert kept[1].plan is first and kept[2].plan is first
    assert kept[3].plan is not first and kept[3].plan is not None and kept[3].plan.failure == Failure(503, "lost")
    assert len(compactor._seen_plans) <= 4


@pytest.mark.anyio
async def test_a_completed_run_keeps_its_tokens_as_its_text_and_streams_the_same() -> None:
    """A completed record's plan holds its output text, split when read: the same tokens, count and stream."""
    clock = ManualClock()
    emulator = Emulator.build(Settings(profile="instant", seed=1), clock=clock)
    accepted = await emulator.call(Call("submit", "ns", "fal-ai/any-llm", body=BODY))
    request_id = accepted.body["request_id"]
    clock.advance(60)
    done = emulator.store.get("ns", request_id)
    assert done is not None and done.plan is not None and done.output is not None
    tokens = split_tokens(done.output["output"])
    kept = done.plan.tokens
    assert isinstance(kept, SplitText) and kept.text is done.output["output"]
    assert kept == tokens and tokens == kept and hash(kept) == hash(tokens)
    assert list(kept) == list(tokens) and len(kept) == len(tokens) and kept[1:3] == tokens[1:3]
    assert emulator.scheduler.tokens_ready(done) == len(tokens)
    events = [event async for event in output_events(emulator.scheduler, done)]
    assert events[-1] == sse_event({**done.output, "partial": False})
    assert len(events) == len(tokens)  # one per token, the last with the whole output
