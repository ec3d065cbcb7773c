"""The outputs of fal's OpenAI-compatible ids, written over the generated text: one source for both surfaces.

``OpenAIDialect`` is the ``Dialect`` of ``chat/completions``, ``responses`` and ``embeddings``:
whether a call comes through the run surface (the ``openai`` SDKs) or through the queue (fal's
clients), its request record's answer is made here, from its OpenAI body, so the result of a
queued request is the very JSON the run surface answers with.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import math
import random
import struct
from collections.abc import Callable, Mapping
from typing import Any

from emulator.core.clock import Clock
from emulator.core.ids import IdFactory
from emulator.core.models import JSON, Failure, Plan
from emulator.core.openai_compat.requests import (
    CHAT,
    EMBEDDING_DIMENSIONS,
    EMBEDDINGS,
    MAX_EMBEDDING_DIMENSIONS,
    MAX_EMBEDDING_INPUTS,
    RESPONSES,
    ChatRequest,
    Problem,
    function_of,
    invalid_item,
    model_of,
    parse_chat,
    positive_int,
)
from emulator.core.openai_compat.schemas import instance_from_schema
from emulator.core.outputs import Answer
from emulator.core.usage import count_tokens, usage

__all__ = ["ENDPOINTS", "OpenAIDialect", "embedding", "parse_embeddings", "parse_responses"]

# The endpoint ids this dialect answers, on the queue and on the run surface alike.
ENDPOINTS = frozenset({CHAT, RESPONSES, EMBEDDINGS})

Text = Callable[[Mapping[str, Any]], Answer]


class OpenAIDialect:
    """Reads an OpenAI body as the text generator's inputs and writes its answer as OpenAI's JSON."""

    def __init__(self, *, seed: int | None, ids: IdFactory, clock: Clock) -> None:
        self.seed = seed
        self.ids = ids
        self.clock = clock

    def dialect_for(self, endpoint: str) -> OpenAIDialect | None:
        return self if endpoint in ENDPOINTS else None

    def answer(self, endpoint: str, inputs: Mapping[str, Any], text: Text) -> Answer:
        """The ``chat.completion``, ``response`` or embeddings ``list`` for a body; a body that breaks
        the surface's rules fails with fal's 422 (its ``detail`` items), before the first token."""
        data = dict(inputs)
        try:
            if endpoint == CHAT:
                return self._chat(parse_chat(data), text)
            if endpoint == RESPONSES:
                request, instructions = parse_responses(data)
                return self._response(request, instructions, text)
            return _embeddings(data)
        except Problem as problem:
            detail = problem.body.get("detail") if isinstance(problem.body, dict) else None
            return Answer("", failure=Failure(problem.status_code, detail))

    def content(self, request: ChatRequest, answer: Answer) -> tuple[str | None, list[JSON]]:
        """The message's content and tool calls, as the request's format and tools ask."""
        seed = json.dumps([self.seed, request.model, request.system_prompt, request.prompt])
        fixture_json = _json_object(answer.text)
        if request.tools:
            calls = _tool_calls(request, fixture_json, seed)
            if calls:
                return None, calls
        form = request.response_format or {}
        if form.get("type") == "json_schema":
            if fixture_json is not None:
                return answer.text, []
            described = form.get("json_schema") or {}
            return json.dumps(instance_from_schema(described.get("schema", {}), seed)), []
        if form.get("type") == "json_object":
            return (answer.text if fixture_json is not None else json.dumps({"answer": answer.text})), []
        return answer.text, []

    def _chat(self, request: ChatRequest, text: Text) -> Answer:
        found = text(request.inputs())
        if found.failure is not None:
            return found
        content, tool_calls = self.content(request, found)
        counted = usage(request.model, request.prompt_text, content or json.dumps(tool_calls))
        counts = {k: counted[k] for k in ("prompt_tokens", "completion_tokens", "total_tokens")}
        counts["cost"] = counted["cost"]
        message: JSON = {"role": "assistant", "content": content, "refusal": None}
        if tool_calls:
            message["tool_calls"] = tool_calls
        body = {
            "id": "chatcmpl-" + self.ids.new(),
            "object": "chat.completion",
            "created": int(self.clock.now()),
            "model": request.model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": "tool_calls" if tool_calls else "stop",
                    "logprobs": None,
                }
            ],
            "usage": counts,
        }
        # What streams (and paces the run) is the content; the output is the whole completion.
        return dataclasses.replace(found, text=content or "", reasoning=None, data=body, usage=None)

    def _response(self, request: ChatRequest, instructions: str | None, text: Text) -> Answer:
        found = text(request.inputs())
        if found.failure is not None:
            return found
        ident = self.ids.new()
        counted = usage(request.model, request.prompt_text, found.text)
        body = response_object(ident, int(self.clock.now()), request.model, instructions, found.text)
        body["usage"] = {
            "input_tokens": counted["prompt_tokens"],
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": counted["completion_tokens"],
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": counted["total_tokens"],
            "cost": counted["cost"],
        }
        return dataclasses.replace(found, reasoning=None, data=body, usage=None)


def response_object(ident: str, created_at: int, model: Any, instructions: Any, text: str) -> JSON:
    """A completed ``response`` as ``/responses`` answers it, with ``text`` as its one message (its
    ``usage`` is for the caller to fill in)."""
    content = [{"type": "output_text", "text": text, "annotations": []}]
    return {
        "id": "resp_" + ident,
        "object": "response",
        "created_at": created_at,
        "status": "completed",
        "model": model,
        "instructions": instructions,
        "output": [
            {"type": "message", "id": "msg_" + ident, "status": "completed", "role": "assistant", "content": content}
        ],
        "output_text": text,
        "usage": None,
        "error": None,
        "incomplete_details": None,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "metadata": {},
    }


def parse_responses(data: JSON) -> tuple[ChatRequest, str | None]:
    """A ``/responses`` body as the chat request it amounts to, and its instructions (422 for what breaks)."""
    errors: list[JSON] = []
    model = model_of(data, errors)
    given = data.get("input")
    messages: list[Any]
    if isinstance(given, str):
        messages = [{"role": "user", "content": given}]
    elif isinstance(given, list) and given:
        messages = given
    else:
        errors.append(invalid_item(["input"], "Field required: a string or a list of input items", "missing", given))
        messages = []
    instructions = data.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        errors.append(invalid_item(["instructions"], "Input should be a valid string", "string_type", instructions))
    max_tokens = positive_int(data, "max_output_tokens", errors)
    if errors:
        raise Problem(422, {"detail": errors})
    chat: JSON = {"model": model, "messages": messages}
    if "stream" in data:  # checked as chat's is
        chat["stream"] = data["stream"]
    if isinstance(instructions, str):
        chat["messages"] = [{"role": "system", "content": instructions}, *messages]
    if max_tokens is not None:
        chat["max_tokens"] = max_tokens
    try:
        request = parse_chat(chat)
    except Problem as problem:  # the items' errors, located under input
        details = problem.body["detail"] if isinstance(problem.body, dict) else []
        for item in details:
            loc = item["loc"]
            if loc[1:2] == ["messages"]:
                item["loc"] = ["body", "input", *loc[2:]]
        raise
    return request, instructions if isinstance(instructions, str) else None


def parse_embeddings(data: JSON) -> tuple[str, list[Any], int, str]:
    """An ``/embeddings`` body: model, inputs, dimensions and encoding (422 for what breaks)."""
    errors: list[JSON] = []
    model = model_of(data, errors)
    given = data.get("input")
    inputs: list[Any] = given if isinstance(given, list) and given and not _is_token_list(given) else [given]
    if not all((isinstance(item, str) and item) or _is_token_list(item) for item in inputs):
        errors.append(
            invalid_item(["input"], "Should be a non-empty string, a list of them, or token ids", "missing", given)
        )
    elif len(inputs) > MAX_EMBEDDING_INPUTS:
        errors.append(
            invalid_item(["input"], f"At most {MAX_EMBEDDING_INPUTS} inputs per call", "too_long", len(inputs))
        )
    dimensions = positive_int(data, "dimensions", errors) or EMBEDDING_DIMENSIONS
    if dimensions > MAX_EMBEDDING_DIMENSIONS:
        errors.append(
            invalid_item(["dimensions"], f"At most {MAX_EMBEDDING_DIMENSIONS}", "less_than_equal", dimensions)
        )
    encoding = data.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        errors.append(invalid_item(["encoding_format"], "Should be 'float' or 'base64'", "enum", encoding))
    if errors:
        raise Problem(422, {"detail": errors})
    return model, inputs, dimensions, encoding


def _embeddings(data: JSON) -> Answer:
    model, inputs, dimensions, encoding = parse_embeddings(data)
    items = []
    tokens = 0
    for index, item in enumerate(inputs):
        text = item if isinstance(item, str) else " ".join(map(str, item))
        tokens += count_tokens(text) if isinstance(item, str) else len(item)
        vector = embedding(model, text, dimensions)
        value: Any = vector
        if encoding == "base64":
            value = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
        items.append({"object": "embedding", "index": index, "embedding": value})
    body = {"object": "list", "data": items, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
    return Answer("", data=body, planner=_at_once)


def _at_once(answer: Answer, profile: str) -> Plan:
    """Embeddings write no tokens: the run ends as soon as it starts, whatever the profile."""
    return Plan(tokens=(), first_token_after=0.0, seconds_per_token=0.0, output=answer.output(), failure=answer.failure)


def _json_object(text: str) -> JSON | None:
    stripped = text.strip()
    if not stripped.startswith("{"):
        return None
    try:
        value = json.loads(stripped)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _tool_calls(request: ChatRequest, fixture_json: JSON | None, seed: str) -> list[JSON]:
    """The tool calls to answer with: the fixture's ``{"tool_calls": [...]}``, or the one the
    request forces with ``tool_choice`` (a named function, or ``required``: the first tool)."""
    functions = {f["name"]: f for f in map(function_of, request.tools) if f is not None}
    wanted: list[tuple[str, Any]] = []
    listed = fixture_json.get("tool_calls") if fixture_json is not None else None
    if isinstance(listed, list):
        for entry in listed:
            if isinstance(entry, dict) and isinstance(entry.get("name"), str):
                wanted.append((entry["name"], entry.get("arguments")))
    else:
        choice = request.tool_choice
        named = function_of(choice) if isinstance(choice, dict) else None
        if named is not None:
            wanted.append((named["name"], None))
        elif choice == "required" and functions:
            wanted.append((next(iter(functions)), None))
    calls = []
    for index, (name, arguments) in enumerate(wanted):
        if arguments is None:
            parameters = functions.get(name, {}).get("parameters", {"type": "object", "properties": {}})
            arguments = instance_from_schema(parameters, f"{seed}:{name}")
        call_id = "call_" + hashlib.sha256(f"{seed}:{index}:{name}".encode()).hexdigest()[:24]
        text = arguments if isinstance(arguments, str) else json.dumps(arguments)
        calls.append({"id": call_id, "type": "function", "function": {"name": name, "arguments": text}})
    return calls


def _is_token_list(value: Any) -> bool:
    return (
        isinstance(value, list) and bool(value) and all(isinstance(i, int) and not isinstance(i, bool) for i in value)
    )


def embedding(model: str, text: str, dimensions: int) -> list[float]:
    """A unit vector that depends only on the model, the text and the size."""
    rng = random.Random(hashlib.sha256(json.dumps([model, text, dimensions]).encode()).digest())
    vector = [rng.gauss(0.0, 1.0) for _ in range(dimensions)]
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]
