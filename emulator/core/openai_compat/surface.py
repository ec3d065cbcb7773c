"""The three calls fal answers under ``openrouter/router/openai/v1``, over one emulator's core."""

from __future__ import annotations

import base64
import hashlib
import json
import math
import random
import struct
from collections.abc import AsyncIterator
from typing import Any

from emulator.core.faults import HTTP_KINDS, Fault, Rule
from emulator.core.lifecycle import make_plan
from emulator.core.models import JSON
from emulator.core.openai_compat.requests import (
    CHAT,
    EMBEDDING_DIMENSIONS,
    EMBEDDINGS,
    MAX_EMBEDDING_DIMENSIONS,
    MAX_EMBEDDING_INPUTS,
    OPENAI_ACTION,
    RESPONSES,
    ChatRequest,
    Problem,
    function_of,
    invalid_item,
    json_body,
    model_of,
    openai_error,
    parse_chat,
    positive_int,
)
from emulator.core.openai_compat.schemas import instance_from_schema
from emulator.core.outputs import Answer, split_tokens
from emulator.core.service import Emulator, Reply
from emulator.core.streams import dropped_after
from emulator.core.usage import count_tokens, usage

__all__ = ["OpenAISurface", "embedding"]

# The request id a fixture's rules are bound to: a call here is answered at once, so its
# rules live only as long as the call.
_THIS_CALL = "openai-call"


class OpenAISurface:
    """The three calls fal answers under ``openrouter/router/openai/v1``, over one emulator's core."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator

    async def chat_completions(self, namespace: str, raw: bytes) -> Reply:
        """``POST /chat/completions``: a ``chat.completion``, or ``chat.completion.chunk`` events."""
        fault = await self._fault(namespace, CHAT)
        request = parse_chat(self._checked(CHAT, raw))
        answer = self._answer(namespace, CHAT, request)
        if fault is None and answer.faults:
            fault = await self._fault(namespace, CHAT, answer.faults)
        content, tool_calls = self._content(request, answer)
        emulator = self.emulator
        completion_id = "chatcmpl-" + emulator.scheduler.ids.new()
        created = int(emulator.clock.now())
        counted = usage(request.model, request.prompt_text, content or json.dumps(tool_calls))
        counts = {k: counted[k] for k in ("prompt_tokens", "completion_tokens", "total_tokens")}
        counts["cost"] = counted["cost"]
        finish = "tool_calls" if tool_calls else "stop"
        if request.stream:
            events = self._chunks(request, answer, completion_id, created, content, tool_calls, counts)
            if fault is not None and fault.kind == "drop_stream":
                events = dropped_after(events, fault.after_events)
            headers = {"cache-control": "no-cache", "x-request-id": completion_id}
            return Reply(200, None, headers, events=events, fault=fault)
        await self._pace(answer, request.model, len(split_tokens(content or "")))
        message: JSON = {"role": "assistant", "content": content, "refusal": None}
        if tool_calls:
            message["tool_calls"] = tool_calls
        body = {
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": request.model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
            "usage": counts,
        }
        return Reply(200, body, {"x-request-id": completion_id}, fault=fault)

    async def responses(self, namespace: str, raw: bytes) -> Reply:
        """``POST /responses``: the answer as a ``response`` with ``output_text``."""
        fault = await self._fault(namespace, RESPONSES)
        data = self._checked(RESPONSES, raw)
        errors: list[JSON] = []
        model = model_of(data, errors)
        given = data.get("input")
        messages: list[Any]
        if isinstance(given, str):
            messages = [{"role": "user", "content": given}]
        elif isinstance(given, list) and given:
            messages = given
        else:
            errors.append(
                invalid_item(["input"], "Field required: a string or a list of input items", "missing", given)
            )
            messages = []
        instructions = data.get("instructions")
        if instructions is not None and not isinstance(instructions, str):
            errors.append(invalid_item(["instructions"], "Input should be a valid string", "string_type", instructions))
        if data.get("stream"):
            errors.append(
                invalid_item(["stream"], "This emulator answers /responses without streaming", "value_error", True)
            )
        max_tokens = positive_int(data, "max_output_tokens", errors)
        if errors:
            raise Problem(422, {"detail": errors})
        chat: JSON = {"model": model, "messages": messages}
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
        answer = self._answer(namespace, RESPONSES, request)
        if fault is None and answer.faults:
            fault = await self._fault(namespace, RESPONSES, answer.faults)
        await self._pace(answer, model, len(split_tokens(answer.text)))
        emulator = self.emulator
        ident = emulator.scheduler.ids.new()
        counted = usage(model, request.prompt_text, answer.text)
        body = {
            "id": "resp_" + ident,
            "object": "response",
            "created_at": int(emulator.clock.now()),
            "status": "completed",
            "model": model,
            "instructions": instructions,
            "output": [
                {
                    "type": "message",
                    "id": "msg_" + ident,
                    "status": "completed",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": answer.text, "annotations": []}],
                }
            ],
            "output_text": answer.text,
            "usage": {
                "input_tokens": counted["prompt_tokens"],
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": counted["completion_tokens"],
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": counted["total_tokens"],
                "cost": counted["cost"],
            },
            "error": None,
            "incomplete_details": None,
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
            "metadata": {},
        }
        return Reply(200, body, {"x-request-id": "resp_" + ident}, fault=fault)

    async def embeddings(self, namespace: str, raw: bytes) -> Reply:
        """``POST /embeddings``: one deterministic unit vector per input, as floats or base64."""
        fault = await self._fault(namespace, EMBEDDINGS)
        data = self._checked(EMBEDDINGS, raw)
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
        body = {
            "object": "list",
            "data": items,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return Reply(200, body, {}, fault=fault)

    # -- shared ---------------------------------------------------------------------------------

    def _checked(self, endpoint: str, raw: bytes) -> JSON:
        """The body, checked against its operation in openapi.yaml (fal's 422 for what breaks it).

        A document without these operations leaves only the surface's own checks.
        """
        operation = self.emulator.spec.operation(OPENAI_ACTION, endpoint)
        if operation is None:
            return json_body(raw)
        body, errors = operation.validate_body(raw)
        if errors:
            raise Problem(422, {"detail": errors})
        return body

    def _answer(self, namespace: str, endpoint: str, request: ChatRequest) -> Answer:
        answer = self.emulator.outputs.answer(endpoint, request.inputs(), namespace)
        failure = answer.failure
        if failure is not None:
            raise openai_error(failure.status_code, failure.message)
        return answer

    def _content(self, request: ChatRequest, answer: Answer) -> tuple[str | None, list[JSON]]:
        """The message's content and tool calls, as the request's format and tools ask."""
        seed = json.dumps([self.emulator.settings.seed, request.model, request.system_prompt, request.prompt])
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

    async def _pace(self, answer: Answer, model: str, tokens: int) -> None:
        """Take as long as the profile (or the fixture's timing) says writing the answer takes."""
        plan = make_plan(answer, self.emulator.scheduler.profile, model)
        seconds = plan.first_token_after + plan.seconds_per_token * tokens
        if seconds > 0:
            await self.emulator.clock.sleep(seconds)

    async def _chunks(
        self,
        request: ChatRequest,
        answer: Answer,
        completion_id: str,
        created: int,
        content: str | None,
        tool_calls: list[JSON],
        counts: JSON,
    ) -> AsyncIterator[bytes]:
        def chunk(delta: JSON, finish: str | None = None) -> bytes:
            body = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": request.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
            }
            return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"

        plan = make_plan(answer, self.emulator.scheduler.profile, request.model)
        clock = self.emulator.clock
        yield chunk({"role": "assistant", "content": ""})
        if plan.first_token_after > 0:
            await clock.sleep(plan.first_token_after)
        if tool_calls:
            deltas = [{**call, "index": index} for index, call in enumerate(tool_calls)]
            yield chunk({"tool_calls": deltas})
        for token in split_tokens(content or ""):
            if plan.seconds_per_token > 0:
                await clock.sleep(plan.seconds_per_token)
            yield chunk({"content": token})
        yield chunk({}, "tool_calls" if tool_calls else "stop")
        if request.include_usage:
            body = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": request.model,
                "choices": [],
                "usage": counts,
            }
            yield b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"
        yield b"data: [DONE]\n\n"

    async def _fault(self, namespace: str, endpoint: str, attached: tuple[Rule, ...] = ()) -> Fault | None:
        """The fault rule for this call: latency waits, an HTTP error is raised in OpenAI's shape,
        body and connection faults are returned for the reply to carry.

        ``attached`` are the rules of the fixture that answered: copies for this one call.
        """
        emulator = self.emulator
        if attached:
            scoped = [rule.bound(namespace, _THIS_CALL) for rule in attached]
            fault = emulator.faults.match(
                OPENAI_ACTION,
                namespace,
                endpoint=endpoint,
                request_id=_THIS_CALL,
                kinds=HTTP_KINDS,
                scoped=scoped,
                scoped_only=True,
            )
        else:
            fault = emulator.faults.match(OPENAI_ACTION, namespace, endpoint=endpoint, kinds=HTTP_KINDS)
        if fault is None:
            return None
        if fault.kind == "latency":
            await emulator.clock.sleep(fault.seconds or 0.0)
            return None
        if fault.kind == "http_error":
            status = fault.status or 500
            headers = {}
            if fault.retry_after is not None:
                headers["retry-after"] = f"{fault.retry_after:g}"
            _, raw = fault.http_body()
            try:
                detail = json.loads(raw).get("detail")
            except ValueError:
                detail = None
            message = detail if isinstance(detail, str) else f"Upstream error {status}"
            raise openai_error(status, message, headers)
        return fault


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
