"""The OpenAI-compatible surface, driven by the unmodified official ``openai`` client."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import openai
import pytest
from pydantic import BaseModel

from emulator import Emulator, ManualClock, Settings, create_app
from emulator.core.openai_compat import EMBEDDING_DIMENSIONS, instance_from_schema
from emulator.core.usage import count_tokens
from tests.conftest import AUTH
from tests.helpers import DrivenTransport
from tests.servers import start_server

pytestmark = pytest.mark.anyio

BASE = "/run/openrouter/router/openai/v1"
MEANING = "What is the meaning of life?"

FIXTURES = """
fixtures:
  - name: pirate-on-claude
    match: {model: anthropic/claude-sonnet-4.5, system_prompt: {contains: pirate}, prompt: Ahoy}
    output: "Arr, matey."
  - name: weather-tool
    match: {prompt: {contains: weather}}
    output: '{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Lisbon"}}]}'
  - name: overloaded
    match: {prompt: {contains: "[overloaded]"}}
    output: "never seen"
    faults:
      - {kind: http_error, status: 503, detail: Provider overloaded, actions: [openai]}
"""


@pytest.fixture
def core(tmp_path: Path, clock: ManualClock) -> Emulator:
    (tmp_path / "openai.yaml").write_text(FIXTURES)
    settings = Settings(profile="instant", seed=5, fixtures=(tmp_path,), data_dir=tmp_path / "data")
    return Emulator.build(settings, clock=clock)


@pytest.fixture
async def http(core: Emulator, clock: ManualClock) -> AsyncIterator[httpx.AsyncClient]:
    # Each call is a request the scheduler runs on the manual clock: the transport moves it on.
    transport = DrivenTransport(create_app(emulator=core), clock)
    async with httpx.AsyncClient(transport=transport, base_url="http://emulator.test") as client:
        yield client


def _sdk_http(http: httpx.AsyncClient) -> Any:
    # Recent openai releases type http_client as httpx2's client; any client with httpx's API
    # works, and this one reaches the app in-process.
    return cast("Any", http)


@pytest.fixture
def llm(http: httpx.AsyncClient) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        api_key="unused", base_url=f"http://emulator.test{BASE}", default_headers=AUTH, http_client=_sdk_http(http)
    )


async def test_a_chat_completion_answers_with_the_fixture_for_the_last_user_message(llm: openai.AsyncOpenAI) -> None:
    """The answer is the fixture matching the last user message; usage adds up."""
    completion = await llm.chat.completions.create(
        model="openai/gpt-4o",
        messages=[
            {"role": "user", "content": "Hello"},
            {"role": "assistant", "content": "Hi."},
            {"role": "user", "content": MEANING},
        ],
    )
    answer = completion.choices[0].message.content
    assert answer is not None and answer.startswith("The meaning of life is subjective")
    assert completion.choices[0].finish_reason == "stop"
    usage = completion.usage
    assert usage is not None
    assert usage.completion_tokens == count_tokens(answer)
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


async def test_fixtures_match_on_system_message_and_model(llm: openai.AsyncOpenAI) -> None:
    """A fixture keyed on the system message and the model answers only when both hold."""
    messages: list[openai.types.chat.ChatCompletionMessageParam] = [
        {"role": "system", "content": "Talk like a pirate."},
        {"role": "user", "content": "Ahoy"},
    ]
    matched = await llm.chat.completions.create(model="anthropic/claude-sonnet-4.5", messages=messages)
    other = await llm.chat.completions.create(model="openai/gpt-4o", messages=messages)
    assert matched.choices[0].message.content == "Arr, matey."
    assert other.choices[0].message.content != "Arr, matey."


async def test_content_parts_take_image_urls_as_objects_or_strings(llm: openai.AsyncOpenAI) -> None:
    """A list of parts answers from its text, whichever way the image URL is written."""
    # fal's own example writes the image URL as a plain string, which the SDK's types do not allow.
    parts: Any = [
        {"type": "text", "text": MEANING},
        {"type": "image_url", "image_url": {"url": "https://v3.fal.media/files/a/cat.png"}},
        {"type": "image_url", "image_url": "https://v3.fal.media/files/a/dog.png"},
    ]
    completion = await llm.chat.completions.create(
        model="google/gemini-2.5-flash", messages=[{"role": "user", "content": parts}]
    )
    assert (completion.choices[0].message.content or "").startswith("The meaning of life")


async def test_streamed_deltas_join_to_the_answer_and_usage_comes_last(llm: openai.AsyncOpenAI) -> None:
    """Content deltas concatenate to the fixture's answer; include_usage adds a final usage chunk."""
    whole = await llm.chat.completions.create(model="openai/gpt-4o", messages=[{"role": "user", "content": MEANING}])
    stream = await llm.chat.completions.create(
        model="openai/gpt-4o",
        messages=[{"role": "user", "content": MEANING}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 3
    assert chunks[-1].choices == [] and chunks[-1].usage == whole.usage


async def test_a_stream_without_include_usage_has_no_usage_chunk(llm: openai.AsyncOpenAI) -> None:
    """Without stream_options.include_usage every chunk has a choice and no usage."""
    stream = await llm.chat.completions.create(
        model="openai/gpt-4o", messages=[{"role": "user", "content": "Hi"}], stream=True
    )
    chunks = [chunk async for chunk in stream]
    assert all(chunk.choices and chunk.usage is None for chunk in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


class Recipe(BaseModel):
    title: str
    servings: int
    vegetarian: bool
    steps: list[str]


async def test_a_json_schema_response_format_is_parsed_by_the_client(llm: openai.AsyncOpenAI) -> None:
    """``parse`` with a pydantic model gets JSON that validates against it, the same each time."""
    first = await llm.chat.completions.parse(
        model="openai/gpt-4o", messages=[{"role": "user", "content": "A soup recipe"}], response_format=Recipe
    )
    again = await llm.chat.completions.parse(
        model="openai/gpt-4o", messages=[{"role": "user", "content": "A soup recipe"}], response_format=Recipe
    )
    recipe = first.choices[0].message.parsed
    assert isinstance(recipe, Recipe) and recipe.steps
    assert recipe == again.choices[0].message.parsed


async def test_json_object_format_answers_a_json_object(llm: openai.AsyncOpenAI) -> None:
    """``json_object`` wraps generated prose in an object, so the content always parses."""
    completion = await llm.chat.completions.create(
        model="openai/gpt-4o", messages=[{"role": "user", "content": "Hi"}], response_format={"type": "json_object"}
    )
    assert isinstance(json.loads(completion.choices[0].message.content or ""), dict)


async def test_a_fixture_answers_tools_with_a_tool_call(llm: openai.AsyncOpenAI) -> None:
    """A fixture's tool_calls become the message's tool calls, finish_reason tool_calls."""
    tool: openai.types.chat.ChatCompletionToolParam = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
    completion = await llm.chat.completions.create(
        model="openai/gpt-4o", messages=[{"role": "user", "content": "The weather?"}], tools=[tool]
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls or []
    assert [(c.function.name, json.loads(c.function.arguments)) for c in calls] == [  # type: ignore[union-attr]
        ("get_weather", {"city": "Lisbon"})
    ]


async def test_a_forced_tool_choice_gets_arguments_from_the_tools_schema(llm: openai.AsyncOpenAI) -> None:
    """tool_choice naming a function answers a call whose arguments fit its parameters."""
    tool: openai.types.chat.ChatCompletionToolParam = {
        "type": "function",
        "function": {
            "name": "add",
            "parameters": {
                "type": "object",
                "properties": {"a": {"type": "integer", "minimum": 1, "maximum": 9}, "b": {"type": "integer"}},
                "required": ["a", "b"],
            },
        },
    }
    completion = await llm.chat.completions.create(
        model="openai/gpt-4o",
        messages=[{"role": "user", "content": "Add two numbers"}],
        tools=[tool],
        tool_choice={"type": "function", "function": {"name": "add"}},
    )
    call = (completion.choices[0].message.tool_calls or [])[0]
    arguments = json.loads(call.function.arguments)  # type: ignore[union-attr]
    assert set(arguments) == {"a", "b"} and 1 <= arguments["a"] <= 9


async def test_embeddings_are_deterministic_unit_vectors(llm: openai.AsyncOpenAI) -> None:
    """Each input gets a unit vector of the documented size; the same text, the same vector."""
    result = await llm.embeddings.create(model="openai/text-embedding-3-small", input=["a cat", "a dog", "a cat"])
    vectors = [item.embedding for item in result.data]
    assert [len(v) for v in vectors] == [EMBEDDING_DIMENSIONS] * 3
    assert all(math.isclose(math.fsum(x * x for x in v), 1.0, rel_tol=1e-4) for v in vectors)
    assert vectors[0] == vectors[2] and vectors[0] != vectors[1]


async def test_embeddings_take_a_single_string_and_dimensions(llm: openai.AsyncOpenAI) -> None:
    """A string input gives one vector, of the size ``dimensions`` asks for."""
    result = await llm.embeddings.create(model="m/e", input="hello", dimensions=8)
    assert len(result.data) == 1 and len(result.data[0].embedding) == 8


async def test_the_responses_api_answers_with_output_text(llm: openai.AsyncOpenAI) -> None:
    """``responses.create`` gets the fixture's answer as output_text and as an output item."""
    response = await llm.responses.create(model="openai/gpt-4o", input=MEANING, instructions="Be kind.")
    assert response.output_text.startswith("The meaning of life")
    assert response.usage is not None and response.usage.total_tokens > 0


async def test_a_streamed_response_is_the_whole_response_event_by_event(llm: openai.AsyncOpenAI) -> None:
    """``responses.create(stream=True)``: created first, a text delta per token that join to the whole
    answer's text, numbered in order, and ``response.completed`` carrying the response unstreamed."""
    whole = await llm.responses.create(model="openai/gpt-4o", input=MEANING)
    stream = await llm.responses.create(model="openai/gpt-4o", input=MEANING, stream=True)
    events = [event async for event in stream]
    kinds = [event.type for event in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    deltas = [event.delta for event in events if event.type == "response.output_text.delta"]
    assert len(deltas) > 3 and "".join(deltas) == whole.output_text
    assert [event.sequence_number for event in events] == list(range(len(events)))
    created, completed = events[0], events[-1]
    assert created.type == "response.created" and created.response.status == "in_progress"
    assert completed.type == "response.completed" and completed.response.status == "completed"
    assert completed.response.output_text == whole.output_text
    assert completed.response.id == created.response.id != whole.id  # a call of its own


async def test_the_stream_helper_builds_the_final_response(llm: openai.AsyncOpenAI) -> None:
    """``responses.stream()`` accumulates the events into the response the call answers unstreamed."""
    whole = await llm.responses.create(model="openai/gpt-4o", input=MEANING, instructions="Be kind.")
    async with llm.responses.stream(model="openai/gpt-4o", input=MEANING, instructions="Be kind.") as stream:
        texts = [event.delta async for event in stream if event.type == "response.output_text.delta"]
        final = await stream.get_final_response()
    assert "".join(texts) == final.output_text == whole.output_text
    assert final.usage is not None and whole.usage is not None
    assert final.usage.total_tokens == whole.usage.total_tokens


async def test_a_streamed_response_that_fails_before_its_text_answers_openai_error(llm: openai.AsyncOpenAI) -> None:
    """A fixture's fault fails the streamed call before any event, in OpenAI's shape, as unstreamed."""
    failing = llm.with_options(max_retries=0)
    with pytest.raises(openai.InternalServerError) as caught:
        await failing.responses.create(model="a/b", input="[overloaded]", stream=True)
    assert caught.value.status_code == 503


async def test_a_runner_lost_mid_response_ends_the_stream_with_response_failed(clock: ManualClock) -> None:
    """A lost runner streams part of the text, then ``response.failed`` with the failure's message; no completion."""
    core = Emulator.build(Settings(profile="realistic", seed=5), clock=clock)  # a run that takes time
    transport = DrivenTransport(create_app(emulator=core), clock)
    async with httpx.AsyncClient(transport=transport, base_url="http://emulator.test") as http:
        llm = openai.AsyncOpenAI(
            api_key="unused",
            base_url=f"http://emulator.test{BASE}",
            default_headers=AUTH,
            http_client=_sdk_http(http),
            max_retries=0,
        )
        whole = await llm.responses.create(model="openai/gpt-4o", input=MEANING)
        fault = {"kind": "complete_with_error", "error_type": "runner_disconnected"}
        assert (await http.post("/_emulator/next", json={"actions": ["openai"], "fault": fault})).status_code == 201
        stream = await llm.responses.create(model="openai/gpt-4o", input=MEANING, stream=True)
        events = [event async for event in stream]
    deltas = "".join(event.delta for event in events if event.type == "response.output_text.delta")
    assert 0 < len(deltas) < len(whole.output_text) and whole.output_text.startswith(deltas)
    last = events[-1]
    assert last.type == "response.failed" and last.response.status == "failed"
    assert last.response.error is not None and last.response.error.message == "Runner disconnected"
    assert not any(event.type == "response.completed" for event in events)


async def test_an_injected_429_is_retried_by_the_client(http: httpx.AsyncClient, llm: openai.AsyncOpenAI) -> None:
    """One 429 with Retry-After 0 is retried by the SDK, which then gets its answer."""
    rule = {"count": 1, "actions": ["openai"], "fault": {"kind": "http_error", "status": 429, "retry_after": 0}}
    assert (await http.post("/_emulator/next", json=rule)).status_code == 201
    raw = await llm.chat.completions.with_raw_response.create(
        model="openai/gpt-4o", messages=[{"role": "user", "content": "Hi"}]
    )
    assert raw.retries_taken == 1
    assert raw.parse().choices[0].message.content


async def test_an_injected_500_reaches_the_caller_in_openai_shape(http: httpx.AsyncClient) -> None:
    """An upstream-style failure answers ``{"error": {message, type, code}}``."""
    rule = {"count": 1, "actions": ["openai"], "fault": {"kind": "http_error", "status": 500}}
    assert (await http.post("/_emulator/next", json=rule)).status_code == 201
    body = {"model": "a/b", "messages": [{"role": "user", "content": "Hi"}]}
    answer = await http.post(f"{BASE}/chat/completions", json=body, headers=AUTH)
    assert answer.status_code == 500
    assert answer.json()["error"]["type"] == "server_error"


async def test_a_fixtures_fault_rule_applies_to_its_chat_call(llm: openai.AsyncOpenAI) -> None:
    """A fault rule attached to the matching fixture fails the call, in OpenAI's shape."""
    failing = llm.with_options(max_retries=0)
    with pytest.raises(openai.InternalServerError) as caught:
        await failing.chat.completions.create(model="a/b", messages=[{"role": "user", "content": "[overloaded]"}])
    assert caught.value.status_code == 503
    assert caught.value.message.endswith("Provider overloaded")  # the SDK read error.message


async def test_a_call_without_a_key_is_refused(http: httpx.AsyncClient) -> None:
    """No credentials: the SDK raises AuthenticationError on the 401."""
    keyless = openai.AsyncOpenAI(
        api_key="unused", base_url=f"http://emulator.test{BASE}", http_client=_sdk_http(http), max_retries=0
    )
    with pytest.raises(openai.AuthenticationError):
        await keyless.chat.completions.create(
            model="a/b",
            messages=[{"role": "user", "content": "Hi"}],
            extra_headers={"Authorization": openai.omit},  # send no Authorization header at all
        )


async def test_a_bearer_key_is_accepted(http: httpx.AsyncClient) -> None:
    """``Authorization: Bearer`` (the SDK's default) is accepted as well as ``Key``."""
    bearer = openai.AsyncOpenAI(api_key="k:s", base_url=f"http://emulator.test{BASE}", http_client=_sdk_http(http))
    completion = await bearer.chat.completions.create(model="a/b", messages=[{"role": "user", "content": "Hi"}])
    assert completion.choices[0].message.content


async def test_a_bad_body_answers_fal_validation_details(http: httpx.AsyncClient) -> None:
    """Validation failures use fal's ``{"detail": [...]}`` with a location per problem."""
    body = {"messages": [{"role": "robot", "content": "Hi"}], "temperature": 3}
    answer = await http.post(f"{BASE}/chat/completions", json=body, headers=AUTH)
    assert answer.status_code == 422
    locations = [item["loc"] for item in answer.json()["detail"]]
    assert sorted(locations, key=str) == [["body", "messages", 0, "role"], ["body", "model"], ["body", "temperature"]]


async def test_the_model_list_is_not_served(http: httpx.AsyncClient) -> None:
    """``GET /models`` answers 404, as fal's gateway does."""
    assert (await http.get(f"{BASE}/models", headers=AUTH)).status_code == 404


def test_schema_instances_fill_refs_enums_and_bounds() -> None:
    """The generator follows $ref, picks from enums and respects numeric and length bounds."""
    schema = {
        "type": "object",
        "properties": {
            "kind": {"enum": ["a", "b"]},
            "n": {"type": "integer", "minimum": 3, "maximum": 4},
            "code": {"type": "string", "maxLength": 2},
            "item": {"$ref": "#/$defs/Item"},
            "maybe": {"anyOf": [{"type": "null"}, {"type": "boolean"}]},
        },
        "$defs": {"Item": {"type": "object", "properties": {"ok": {"type": "boolean"}}}},
    }
    value = instance_from_schema(schema, "seed")
    assert value["kind"] in ("a", "b") and 3 <= value["n"] <= 4 and len(value["code"]) <= 2
    assert isinstance(value["item"]["ok"], bool) and isinstance(value["maybe"], bool)
    assert value == instance_from_schema(schema, "seed")


def test_schema_instances_stay_bounded_whatever_the_schema_asks() -> None:
    """Huge minItems, minLength and nesting give a bounded value instead of exhausting memory."""
    nested: dict[str, Any] = {"type": "string", "minLength": 10**9}
    for _ in range(6):
        nested = {"type": "array", "items": nested, "minItems": 10**9}
    value = instance_from_schema(nested, "seed")
    assert len(json.dumps(value)) < 10_000_000


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("openai-socket")
    with start_server(Settings(profile="instant", seed=5, port=0, data_dir=data)) as server:
        yield server.base_url


@pytest.mark.socket
def test_the_sync_client_streams_over_a_socket(served: str) -> None:
    """The synchronous client, over a real socket, streams the same answer it gets whole."""
    llm = openai.OpenAI(api_key="unused", base_url=f"{served}{BASE}", default_headers=AUTH)
    messages: list[openai.types.chat.ChatCompletionMessageParam] = [{"role": "user", "content": MEANING}]
    whole = llm.chat.completions.create(model="openai/gpt-4o", messages=messages)
    stream = llm.chat.completions.create(model="openai/gpt-4o", messages=messages, stream=True)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == whole.choices[0].message.content


@pytest.mark.socket
def test_the_sync_client_streams_a_response_over_a_socket(served: str) -> None:
    """Over a real socket, ``responses.stream()`` gets the text as deltas and the same final response."""
    llm = openai.OpenAI(api_key="unused", base_url=f"{served}{BASE}", default_headers=AUTH)
    whole = llm.responses.create(model="openai/gpt-4o", input=MEANING)
    with llm.responses.stream(model="openai/gpt-4o", input=MEANING) as stream:
        text = "".join(event.delta for event in stream if event.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert text == final.output_text == whole.output_text


def _dropping_after(served: str, events: int) -> openai.OpenAI:
    """A sync client, with the next OpenAI-compatible call's stream set to drop after ``events`` events."""
    fault = {"kind": "drop_stream", "after_events": events}
    control = httpx.post(f"{served}/_emulator/next", json={"count": 1, "actions": ["openai"], "fault": fault})
    assert control.status_code == 201
    return openai.OpenAI(api_key="unused", base_url=f"{served}{BASE}", default_headers=AUTH, max_retries=0)


@pytest.mark.socket
def test_a_dropped_response_stream_reaches_the_sync_client_as_an_error(served: str) -> None:
    """drop_stream counts named events too: a /responses stream is cut after ``after_events`` of them."""
    llm = _dropping_after(served, 3)
    stream = llm.responses.create(model="openai/gpt-4o", input=MEANING, stream=True)
    received: list[Any] = []
    with pytest.raises((httpx.HTTPError, openai.APIError)):
        received.extend(stream)
    assert [event.type for event in received] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
    ]


@pytest.mark.socket
def test_a_dropped_stream_reaches_the_sync_client_as_an_error(served: str) -> None:
    """A drop_stream fault cuts the SSE stream mid-way; the client sees the connection fail."""
    llm = _dropping_after(served, 2)
    stream = llm.chat.completions.create(
        model="openai/gpt-4o", messages=[{"role": "user", "content": MEANING}], stream=True
    )
    received: list[Any] = []
    with pytest.raises((httpx.HTTPError, openai.APIError)):
        received.extend(stream)
    assert len(received) == 2
