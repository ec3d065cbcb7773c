"""fal's OpenAI-compatible ids as requests: through the queue, and run-surface calls kept as records."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from emulator import Emulator, ManualClock, Settings, create_app
from emulator.core.openai_compat.requests import CHAT, EMBEDDINGS, RESPONSES
from tests.conftest import AUTH
from tests.helpers import DrivenTransport, drive
from tests.receivers import wait_until

pytestmark = pytest.mark.anyio

MESSAGES = [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "echo: through the queue"}]
CHAT_BODY = {"model": "openai/gpt-4o", "messages": MESSAGES}


class Hooks:
    """Webhook deliveries, received in-process by the emulator's injected HTTP client."""

    def __init__(self) -> None:
        self.bodies: list[Any] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.bodies.append(json.loads(request.content))
        return httpx.Response(200)


@pytest.fixture
def hooks() -> Hooks:
    return Hooks()


@pytest.fixture
def core(tmp_path: Path, clock: ManualClock, hooks: Hooks) -> Emulator:
    settings = Settings(profile="realistic", seed=9, data_dir=tmp_path)
    return Emulator.build(settings, clock=clock, http_client=httpx.AsyncClient(transport=httpx.MockTransport(hooks)))


@pytest.fixture
async def http(core: Emulator, clock: ManualClock) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan running (webhook senders up); each call moves the clock while it waits."""
    app = create_app(emulator=core)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=DrivenTransport(app, clock), base_url="http://emulator.test", headers=AUTH
        ) as client,
    ):
        yield client


def _path(url: str) -> str:
    return url.removeprefix("http://emulator.test")


async def _queued(http: httpx.AsyncClient, endpoint: str, body: Any, **params: str) -> dict[str, Any]:
    submitted = await http.post(f"/{endpoint}", json=body, params=params)
    assert submitted.status_code == 200, submitted.text
    envelope: dict[str, Any] = submitted.json()
    assert envelope["status"] == "IN_QUEUE"
    return envelope


async def _result(http: httpx.AsyncClient, clock: ManualClock, envelope: dict[str, Any]) -> httpx.Response:
    """The result once the request completes (the clock moved on while it runs)."""

    async def completed() -> None:
        while (await http.get(_path(envelope["status_url"]))).json()["status"] != "COMPLETED":
            pass

    await drive(clock, completed())
    return await http.get(_path(envelope["response_url"]))


async def test_a_queued_chat_completion_results_in_the_chat_completion(
    http: httpx.AsyncClient, clock: ManualClock
) -> None:
    """Submit on the queue, follow the app-id URLs fal hands back, and get the chat.completion as the result."""
    envelope = await _queued(http, CHAT, CHAT_BODY)
    request_id = envelope["request_id"]
    assert envelope["status_url"] == f"http://emulator.test/openrouter/router/requests/{request_id}/status"
    result = await _result(http, clock, envelope)
    assert result.status_code == 200
    assert result.headers["x-fal-request-id"] == request_id
    completion = result.json()
    assert completion["object"] == "chat.completion" and completion["id"].startswith("chatcmpl-")
    assert completion["choices"][0]["message"]["content"] == "echo: through the queue"
    assert completion["choices"][0]["finish_reason"] == "stop"
    assert completion["usage"]["total_tokens"] == sum(
        completion["usage"][k] for k in ("prompt_tokens", "completion_tokens")
    )
    by_full_id = await http.get(f"/{CHAT}/requests/{request_id}")
    assert by_full_id.json() == completion


async def test_the_queue_and_the_run_surface_answer_with_the_same_json(
    http: httpx.AsyncClient, clock: ManualClock
) -> None:
    """One body gives one answer on either surface: the same message, usage and format (only id and time differ)."""
    body = {**CHAT_BODY, "messages": [{"role": "user", "content": "Name three colours"}], "max_tokens": 12}
    queued = (await _result(http, clock, await _queued(http, CHAT, body))).json()
    ran = (await http.post(f"/run/{CHAT}", json=body)).json()
    for answer in (queued, ran):
        del answer["id"], answer["created"]
    assert queued == ran
    assert len(queued["choices"][0]["message"]["content"].split()) == 12


async def test_a_queued_body_that_breaks_the_rules_fails_from_the_result_with_fal_details(
    http: httpx.AsyncClient, clock: ManualClock
) -> None:
    """The queue accepts any JSON object; the 422 with fal's detail items comes from the result."""
    envelope = await _queued(http, CHAT, {"model": "a/b", "messages": [{"role": "robot", "content": "Hi"}]})
    result = await _result(http, clock, envelope)
    assert result.status_code == 422
    assert [item["loc"] for item in result.json()["detail"]] == [["body", "messages", 0, "role"]]


async def test_responses_and_embeddings_result_in_their_openai_objects(
    http: httpx.AsyncClient, clock: ManualClock
) -> None:
    """The responses id results in a response with output_text, the embeddings id in a list of vectors."""
    response = await _result(
        http, clock, await _queued(http, RESPONSES, {"model": "a/b", "input": "echo: respond", "instructions": "Hi"})
    )
    assert response.json()["object"] == "response" and response.json()["output_text"] == "echo: respond"
    vectors = await _result(
        http, clock, await _queued(http, EMBEDDINGS, {"model": "a/b", "input": ["one", "two"], "dimensions": 4})
    )
    listed = vectors.json()
    assert listed["object"] == "list" and [len(item["embedding"]) for item in listed["data"]] == [4, 4]
    ran = await http.post(f"/run/{EMBEDDINGS}", json={"model": "a/b", "input": ["one", "two"], "dimensions": 4})
    assert ran.json() == listed


async def test_a_queued_chat_completion_can_be_cancelled(
    http: httpx.AsyncClient, clock: ManualClock, core: Emulator
) -> None:
    """Cancel on the cancel_url fal hands back; the result is the cancellation."""
    core.scheduler.pause()
    envelope = await _queued(http, CHAT, CHAT_BODY)
    cancelled = await http.put(_path(envelope["cancel_url"]))
    assert cancelled.status_code == 202
    result = await http.get(_path(envelope["response_url"]))
    assert result.status_code == 499


async def test_a_fixture_answers_a_queued_chat_completion(http: httpx.AsyncClient, clock: ManualClock) -> None:
    """Fixtures match the last user message through the queue as on the run surface: here the built-in 422."""
    body = {"model": "a/b", "messages": [{"role": "user", "content": "[emulator:fail-422]"}]}
    result = await _result(http, clock, await _queued(http, CHAT, body))
    assert result.status_code == 422
    assert result.json()["detail"][0]["msg"] == "The prompt was rejected by the model provider"


async def test_the_webhook_of_a_queued_chat_completion_carries_the_chat_completion(
    http: httpx.AsyncClient, clock: ManualClock, core: Emulator, hooks: Hooks
) -> None:
    """fal_webhook on a queued chat completion posts status OK with the chat.completion as the payload."""
    envelope = await _queued(http, CHAT, CHAT_BODY, fal_webhook="http://hooks.test/done")
    result = (await _result(http, clock, envelope)).json()
    await wait_until(core.webhooks.dispatcher, lambda: bool(hooks.bodies))
    (delivered,) = hooks.bodies
    assert delivered["status"] == "OK" and delivered["request_id"] == envelope["request_id"]
    assert delivered["payload"] == result
    assert delivered["payload"]["object"] == "chat.completion"


async def test_a_run_surface_chat_call_is_a_completed_request_with_its_output(http: httpx.AsyncClient) -> None:
    """An openai-SDK-style call gets x-fal-request-id; the control API lists it completed with input and output,
    and the journal links the call to it."""
    answered = await http.post(f"/run/{CHAT}", json=CHAT_BODY)
    assert answered.status_code == 200
    request_id = answered.headers["x-fal-request-id"]
    assert answered.headers["x-request-id"] == answered.json()["id"]
    listed = (await http.get("/_emulator/requests")).json()["requests"]
    (record,) = [entry for entry in listed if entry["request_id"] == request_id]
    assert record["endpoint"] == CHAT and record["status"] == "COMPLETED"
    assert record["input"] == CHAT_BODY
    assert record["output"] == answered.json()
    journal = (await http.get("/_emulator/journal", params={"request_id": request_id})).json()["entries"]
    assert [(entry["method"], entry["path"]) for entry in journal] == [("POST", f"/run/{CHAT}")]


async def test_a_streamed_chat_call_completes_its_request_when_the_stream_ends(
    http: httpx.AsyncClient, core: Emulator
) -> None:
    """The chunks join to the record's output, which is complete once [DONE] has been sent."""
    streamed = await http.post(f"/run/{CHAT}", json={**CHAT_BODY, "stream": True})
    assert streamed.status_code == 200
    events = [line.removeprefix("data: ") for line in streamed.text.split("\n\n") if line]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    text = "".join(chunk["choices"][0]["delta"].get("content") or "" for chunk in chunks)
    record = core.find(streamed.headers["x-fal-request-id"])
    assert record is not None and record.done and record.output is not None
    assert record.output["choices"][0]["message"]["content"] == text == "echo: through the queue"
    assert {chunk["id"] for chunk in chunks} == {record.output["id"]}


async def test_a_failed_run_surface_call_is_kept_as_a_failed_request(http: httpx.AsyncClient, core: Emulator) -> None:
    """A fixture's error answers in OpenAI's shape and the request it was is kept with that error."""
    body = {"model": "a/b", "messages": [{"role": "user", "content": "[emulator:runner-disconnected]"}]}
    answered = await http.post(f"/run/{CHAT}", json=body)
    assert answered.status_code == 503
    assert answered.json()["error"]["message"] == "Runner disconnected"
    record = core.find(answered.headers["x-fal-request-id"])
    assert record is not None and record.failure is not None and record.failure.status_code == 503


def test_the_dialect_refuses_a_body_it_cannot_read_with_fal_details(core: Emulator) -> None:
    """A body no schema checked first (a request restored from a store, say) fails with a 422 and its items."""
    answer = core.outputs.answer(CHAT, {"model": "a/b", "messages": []})
    assert answer.failure is not None and answer.failure.status_code == 422
    assert [item["loc"] for item in answer.failure.detail] == [["body", "messages"]]
    assert answer.data is None


async def test_a_run_surface_call_over_the_concurrency_limit_answers_openais_429(
    http: httpx.AsyncClient, core: Emulator
) -> None:
    """At the key's concurrency limit the call is refused as the run surface refuses, in OpenAI's shape."""
    core.configure(concurrency_limit=1)
    core.scheduler.pause()
    assert (await http.post(f"/{CHAT}", json=CHAT_BODY)).status_code == 200  # one in flight
    refused = await http.post(f"/run/{CHAT}", json=CHAT_BODY)
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "1"
    assert refused.json()["error"]["type"] == "rate_limit_exceeded"
    assert "Concurrency limit" in refused.json()["error"]["message"]


async def test_the_dashboard_shows_a_run_surface_chat_calls_answer(
    http: httpx.AsyncClient, core: Emulator, clock: ManualClock
) -> None:
    """The request page of an openai-SDK-style call shows the message content as text, not only the JSON."""
    answered = await http.post(f"/run/{CHAT}", json=CHAT_BODY)
    transport = DrivenTransport(create_app(emulator=core), clock)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as local:
        page = await local.get(f"/_emulator/ui/requests/{answered.headers['x-fal-request-id']}")
    assert page.status_code == 200
    assert '<pre class="answer">echo: through the queue</pre>' in page.text
    assert "choices[0].message.content" in page.text


async def test_a_complete_with_error_fault_fails_a_run_surface_call_in_openai_shape(http: httpx.AsyncClient) -> None:
    """The request's own lifecycle fault (action openai) fails the call as OpenAI's error; a stream is cut by
    OpenAI's error event after the half of the answer written before the runner was lost."""
    rule = {
        "count": 2,
        "actions": ["openai"],
        "fault": {"kind": "complete_with_error", "error_type": "runner_disconnected"},
    }
    assert (await http.post("/_emulator/next", json=rule)).status_code == 201
    whole = await http.post(f"/run/{CHAT}", json=CHAT_BODY)
    assert whole.status_code == 503 and "error" in whole.json()
    streamed = await http.post(f"/run/{CHAT}", json={**CHAT_BODY, "stream": True})
    events = [json.loads(line.removeprefix("data: ")) for line in streamed.text.split("\n\n") if line]
    assert events[-1]["error"]["code"] == 503
    text = "".join(event["choices"][0]["delta"].get("content") or "" for event in events[:-1])
    assert text and "echo: through the queue".startswith(text) and text != "echo: through the queue"
