"""The run surface (fal.run) in-process, with a manual clock."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from emulator import Emulator, ManualClock
from tests.helpers import drive

pytestmark = pytest.mark.anyio


async def test_sync_run_waits_for_the_output(client: httpx.AsyncClient, clock: ManualClock) -> None:
    """POST /run/<endpoint> answers only once the run completes, with the output."""
    response = await drive(clock, client.post("/run/fal-ai/any-llm", json={"prompt": "What is the meaning of life?"}))
    assert response.status_code == 200
    assert response.json()["output"].startswith("The meaning of life")
    assert clock.now() > 1_735_689_600.5, "the answer took simulated time"


async def test_sync_run_start_timeout_is_504_user(client: httpx.AsyncClient, clock: ManualClock) -> None:
    """A run that cannot start before x-fal-request-timeout answers 504 with the user timeout type."""
    blockers = [asyncio.ensure_future(client.post("/fal-ai/any-llm", json={"prompt": f"b{i}"})) for i in range(2)]
    await asyncio.gather(*blockers)
    response = await drive(
        clock, client.post("/run/fal-ai/any-llm", json={"prompt": "late"}, headers={"x-fal-request-timeout": "0.1"})
    )
    assert response.status_code == 504
    assert response.headers["x-fal-request-timeout-type"] == "user"
    assert response.json()["error_type"] == "request_timeout"


async def test_run_stream_failure_before_start_is_a_json_error(client: httpx.AsyncClient, clock: ManualClock) -> None:
    """A stream whose run fails before any token answers with the app's status and JSON body."""
    response = await drive(
        clock, client.post("/run/fal-ai/any-llm/stream", json={"prompt": "[emulator:runner-disconnected]"})
    )
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"detail": "Runner disconnected", "error_type": "runner_disconnected"}


async def test_run_stream_cancelled_mid_way_ends_with_an_error_event(
    client: httpx.AsyncClient, clock: ManualClock, core: Emulator
) -> None:
    """Cancelling a streamed run mid-way ends the stream with partial false and the error."""

    async def cancel_when_streaming() -> None:
        while True:
            running = [r for r in core.store.records() if r.plan and core.scheduler.tokens_ready(r) > 3]
            if running:
                core.scheduler.cancel(running[0].namespace, running[0].id)
                return
            await asyncio.sleep(0)

    canceller = asyncio.ensure_future(cancel_when_streaming())
    response = await drive(clock, client.post("/run/fal-ai/any-llm/stream", json={"prompt": "Tell me a long story"}))
    await canceller
    events = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")]
    assert events[-1]["partial"] is False
    assert events[-1]["error"] == "Request cancelled by the client"
    assert all(e["partial"] for e in events[:-1])
    assert events[-1]["output"] == events[-2]["output"]


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "/run/fal-ai/unknown", {"prompt": "x"}, 404),
        ("POST", "/run/fal-ai/unknown/stream", {"prompt": "x"}, 404),
        ("GET", "/run/fal-ai/any-llm", None, 405),
        ("POST", "/run/fal-ai/any-llm", {"model": "x"}, 422),
        ("POST", "/run/fal-ai/any-llm/vision/stream", {"prompt": "x"}, 422),
    ],
)
async def test_run_errors(
    client: httpx.AsyncClient, method: str, path: str, body: dict[str, str] | None, status: int
) -> None:
    """Unknown apps, wrong methods and invalid input get their proper status."""
    response = await client.request(method, path, json=body)
    assert response.status_code == status
    assert "detail" in response.json()


@pytest.mark.parametrize("path", ["/run/fal-ai/any-llm", "/run/fal-ai/any-llm/stream"])
async def test_a_reset_answers_a_sync_run_still_waiting(
    client: httpx.AsyncClient, clock: ManualClock, core: Emulator, path: str
) -> None:
    """A sync run whose request a reset forgets answers 410 at once, not never."""
    blockers = [asyncio.ensure_future(client.post("/fal-ai/any-llm", json={"prompt": f"b{i}"})) for i in range(2)]
    await asyncio.gather(*blockers)  # both runners busy: the run waits in the queue
    call = asyncio.ensure_future(client.post(path, json={"prompt": "waiting"}))
    for _ in range(100):
        if any(r.input.get("prompt") == "waiting" for r in core.store.records()):
            break
        await asyncio.sleep(0)
    core.scheduler.reset()
    response = await asyncio.wait_for(call, timeout=10)
    assert response.status_code == 410
    assert response.json()["error_type"] == "request_removed"
