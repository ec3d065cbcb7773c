"""Kept replies: a completed request's status and result are built once, and never answered stale."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from emulator import Emulator, ManualClock, Settings, create_app
from emulator.core.faults import Rule
from emulator.core.models import Failure
from emulator.core.service import KEPT_LOG_LINES, Call, Kept, Reply
from emulator.core.spec import Operation, Parameter
from emulator.http.common import RENDERED_KEPT_BYTES
from tests.conftest import AUTH

pytestmark = pytest.mark.anyio

ENDPOINT = "fal-ai/any-llm"


@pytest.fixture
async def http(core: Emulator) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(emulator=core))
    async with httpx.AsyncClient(transport=transport, base_url="http://emulator.test", headers=AUTH) as client:
        yield client


async def completed(http: httpx.AsyncClient, clock: ManualClock, prompt: str = "Kept answers") -> str:
    submitted = await http.post(f"/{ENDPOINT}", json={"prompt": prompt})
    assert submitted.status_code == 200, submitted.text
    clock.advance(600)
    request_id: str = submitted.json()["request_id"]
    return request_id


def answer(response: httpx.Response) -> tuple[int, dict[str, str], bytes]:
    return response.status_code, dict(response.headers), response.content


async def polls(core: Emulator, clock: ManualClock) -> list[Any]:
    """Status (with and without logs, from two hosts) and result of a success and a failure, each asked twice."""
    transport = httpx.ASGITransport(app=create_app(emulator=core))
    seen: list[Any] = []
    async with httpx.AsyncClient(transport=transport, base_url="http://emulator.test", headers=AUTH) as http:
        done = await completed(http, clock)
        failing = (await http.post(f"/{ENDPOINT}", json={"prompt": "Fails"})).json()["request_id"]
        record = core.find(failing, "test-key")
        assert record is not None
        core.act(record, "fail", Failure(500, "Runner crashed", "runner_server_error"))
        for request_id in (done, failing):
            root = f"/{ENDPOINT}/requests/{request_id}"
            for _ in range(2):
                for call in (
                    http.get(f"{root}/status"),
                    http.get(f"{root}/status", params={"logs": "1"}),
                    http.get(f"{root}/status", params={"logs": "0"}),
                    http.get(f"{root}/status", headers={"host": "other.test:9000"}),
                    http.get(root),
                ):
                    seen.append(answer(await call))
    return seen


async def test_kept_answers_are_the_bytes_built_afresh(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every status and result of a completed request is the same answer with the table as without it."""

    def core(clock: ManualClock) -> Emulator:
        return Emulator.build(Settings(profile="realistic", seed=5), clock=clock)

    clock = ManualClock()
    kept_core = core(clock)
    kept = await polls(kept_core, clock)
    assert len(kept_core.kept) == 8  # four distinct answers of each request (logs=0 is no logs), kept once
    monkeypatch.setattr(Kept, "get", lambda self, key, record: None)
    clock = ManualClock()
    fresh = await polls(core(clock), clock)
    assert kept == fresh


async def test_a_second_poll_is_the_same_reply(core: Emulator, clock: ManualClock, http: httpx.AsyncClient) -> None:
    """The core hands the reply it kept out again, and the serialiser renders it once."""
    request_id = await completed(http, clock)
    call = Call("status", "test-key", ENDPOINT, request_id, base_url="http://emulator.test")
    first, second = await core.call(call), await core.call(call)
    assert isinstance(first, Reply) and first is second
    assert first.body["status"] == "COMPLETED" and first.status == 200


async def test_a_reset_is_not_answered_from_the_table(
    core: Emulator, clock: ManualClock, http: httpx.AsyncClient
) -> None:
    """After a reset the request is gone: 404, though its answers were kept."""
    request_id = await completed(http, clock)
    root = f"/{ENDPOINT}/requests/{request_id}"
    assert (await http.get(f"{root}/status")).status_code == 200
    assert (await http.get(root)).status_code == 200
    core.reset()
    assert (await http.get(f"{root}/status")).status_code == 404
    assert (await http.get(root)).status_code == 404


async def test_an_expired_request_is_not_answered_from_the_table(clock: ManualClock) -> None:
    """A request the store let go (past the retention count) answers 404, not its kept reply."""
    core = Emulator.build(Settings(profile="realistic", seed=5, retention_count=1), clock=clock)
    transport = httpx.ASGITransport(app=create_app(emulator=core))
    async with httpx.AsyncClient(transport=transport, base_url="http://emulator.test", headers=AUTH) as http:
        first = await completed(http, clock, "first")
        root = f"/{ENDPOINT}/requests/{first}"
        assert (await http.get(f"{root}/status")).status_code == 200
        await completed(http, clock, "second")
        assert core.store.get("test-key", first) is None
        assert (await http.get(f"{root}/status")).status_code == 404
        assert (await http.get(root)).status_code == 404


async def test_a_record_replaced_under_the_same_id_answers_as_itself(
    core: Emulator, clock: ManualClock, http: httpx.AsyncClient
) -> None:
    """Another record under the same id (at the same version) is answered from its own values."""
    request_id = await completed(http, clock)
    root = f"/{ENDPOINT}/requests/{request_id}"
    before = (await http.get(root)).json()
    old = core.store.get("test-key", request_id)
    assert old is not None
    replacement = dataclasses.replace(old, output={**before, "output": "replaced"})
    core.store.add(replacement)
    core.store.save(replacement, clock.now())
    assert core.store.get("test-key", request_id) is replacement
    assert (await http.get(root)).json()["output"] == "replaced"


async def test_a_change_to_the_record_is_answered(core: Emulator, clock: ManualClock, http: httpx.AsyncClient) -> None:
    """A change the scheduler makes (it bumps the version) is answered at once, not the reply kept before."""
    request_id = await completed(http, clock)
    root = f"/{ENDPOINT}/requests/{request_id}"
    assert (await http.get(f"{root}/status")).json()["gateway_request_id"] == request_id
    record = core.store.get("test-key", request_id)
    assert record is not None
    record.gateway_request_id = "gateway-2"
    record.version += 1
    assert (await http.get(f"{root}/status")).json()["gateway_request_id"] == "gateway-2"


async def test_each_host_and_logs_flag_has_its_own_answer(
    core: Emulator, clock: ManualClock, http: httpx.AsyncClient
) -> None:
    """URLs lead back to the host asked, and logs are there only when asked for, poll after poll."""
    request_id = await completed(http, clock)
    status = f"/{ENDPOINT}/requests/{request_id}/status"
    for _ in range(2):
        here = (await http.get(status)).json()
        there = (await http.get(status, headers={"host": "other.test:9000"})).json()
        with_logs = (await http.get(status, params={"logs": "1"})).json()
        assert here["status_url"] == f"http://emulator.test{status}" and here["logs"] is None
        assert there["status_url"] == f"http://other.test:9000{status}"
        assert with_logs["logs"] and with_logs["status_url"] == here["status_url"]


async def test_a_fault_rule_added_later_spoils_the_answer(
    core: Emulator, clock: ManualClock, http: httpx.AsyncClient
) -> None:
    """A rule added after an answer was kept applies to the next poll; once removed, the kept answer is back."""
    request_id = await completed(http, clock)
    status = f"/{ENDPOINT}/requests/{request_id}/status"
    clean = await http.get(status)
    core.faults.add(Rule.parse({"fault": {"kind": "malformed_body"}, "actions": ["status"], "times": 1}))
    spoiled = await http.get(status)
    assert spoiled.status_code == 200 and spoiled.content != clean.content
    core.faults.add(Rule.parse({"fault": {"kind": "http_error", "status": 503}, "actions": ["result"], "times": 1}))
    assert (await http.get(f"/{ENDPOINT}/requests/{request_id}")).status_code == 503
    assert answer(await http.get(status)) == answer(clean)


async def test_a_status_parameter_required_by_the_document_is_still_checked(
    core: Emulator, clock: ManualClock, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a query string, a status operation that needs a header still answers 422 when it is missing."""
    request_id = await completed(http, clock)
    status = f"/{ENDPOINT}/requests/{request_id}/status"
    assert (await http.get(status)).status_code == 200
    shared = core.spec.operation("status")
    assert shared is not None
    needs_trace = dataclasses.replace(
        shared, parameters=[*shared.parameters, Parameter("x-trace", "header", True, {"type": "string"})]
    )
    operation = core.spec.operation

    def with_trace(action: str, endpoint: str | None = None) -> Operation | None:
        return needs_trace if action == "status" else operation(action, endpoint)

    monkeypatch.setattr(core.spec, "operation", with_trace)
    missing = await http.get(status)
    assert missing.status_code == 422 and missing.json()["detail"][0]["loc"] == ["header", "x-trace"]
    assert (await http.get(status, headers={"x-trace": "t"})).status_code == 200


async def test_large_answers_are_answered_afresh(core: Emulator, clock: ManualClock, http: httpx.AsyncClient) -> None:
    """A status with many log lines is not kept, nor a large result's bytes: each poll answers it in full."""
    request_id = await completed(http, clock)
    record = core.store.get("test-key", request_id)
    assert record is not None
    for n in range(KEPT_LOG_LINES + 1):
        record.logs.add(f"line {n}", "INFO", clock.now())
    record.output = {**(record.output or {}), "output": "x" * RENDERED_KEPT_BYTES}
    record.version += 1
    root = f"/{ENDPOINT}/requests/{request_id}"
    for _ in range(2):
        logs = (await http.get(f"{root}/status", params={"logs": "1"})).json()["logs"]
        assert len(logs) == len(record.logs) and logs[-1]["message"] == f"line {KEPT_LOG_LINES}"
        assert (await http.get(root)).json()["output"] == "x" * RENDERED_KEPT_BYTES
    assert len(core.kept) == 1  # the result's reply, whose bytes are not kept with it
    result = await core.call(Call("result", "test-key", ENDPOINT, request_id))
    assert result.rendered is None and result.body is record.output


def test_the_table_is_bounded() -> None:
    """Past its size the table starts again: it never holds more than that."""
    table = Kept(size=3)
    record: Any = SimpleNamespace(version=0)
    for n in range(10):
        table.keep(("ns", f"id-{n}", "status", "", False), record, Reply(200))
        assert len(table) <= 3
