"""fal's OpenAI-compatible surface of openrouter/router: chat completions, responses, embeddings.

No HTTP here: a route hands over the caller's namespace and the raw body, and gets a
``Reply`` (or a ``Problem``) back. The text comes from the same ``Outputs`` as the native
endpoints (fixtures match on the last user message as ``prompt``, the system messages as
``system_prompt``, and ``model``); timing follows the emulator's profile; fault rules with
the ``openai`` action apply. Upstream-style failures answer in OpenAI's
``{"error": {...}}`` shape, a body that breaks the request's rules in fal's 422 shape.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import random
import struct
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from emulator.core.errors import Problem
from emulator.core.faults import HTTP_KINDS, Fault
from emulator.core.lifecycle import make_plan
from emulator.core.models import JSON
from emulator.core.outputs import Answer, split_tokens
from emulator.core.service import Emulator, Reply
from emulator.core.spec import JSONRejected, parse_json
from emulator.core.streams import dropped_after
from emulator.core.usage import count_tokens, usage

__all__ = [
    "BASE_PATH",
    "EMBEDDING_DIMENSIONS",
    "OPENAI_ACTION",
    "OpenAISurface",
    "instance_from_schema",
]

# Where fal serves it on its run host: https://fal.run/openrouter/router/openai/v1
BASE_PATH = "openrouter/router/openai/v1"
CHAT = f"{BASE_PATH}/chat/completions"
RESPONSES = f"{BASE_PATH}/responses"
EMBEDDINGS = f"{BASE_PATH}/embeddings"
# The fault-rule action of every call on this surface (rules may narrow it by endpoint).
OPENAI_ACTION = "openai"
# Embeddings are unit vectors of this many floats unless the request asks for ``dimensions``.
EMBEDDING_DIMENSIONS = 1536
MAX_EMBEDDING_DIMENSIONS = 8192
# More inputs than this in one embeddings call is refused (the vectors would be megabytes).
MAX_EMBEDDING_INPUTS = 2048

_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    422: "invalid_request_error",
    429: "rate_limit_exceeded",
}


def openai_error(status: int, message: str, headers: Mapping[str, str] | None = None) -> Problem:
    """An upstream-style failure in OpenAI's shape, which the SDKs turn into their typed errors."""
    kind = _ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    body = {"error": {"message": message, "type": kind, "code": status, "param": None}}
    return Problem(status, body, dict(headers or {}))


def _invalid(loc: list[str | int], msg: str, kind: str, value: Any) -> JSON:
    return {"loc": ["body", *loc], "msg": msg, "type": kind, "input": value}


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """A chat completion request, parsed: what the text generator and the answer need."""

    model: str
    prompt: str
    system_prompt: str | None
    image_urls: tuple[str, ...]
    temperature: float | None
    max_tokens: int | None
    stream: bool
    include_usage: bool
    response_format: JSON | None
    tools: tuple[JSON, ...]
    tool_choice: Any
    prompt_text: str  # every message's text, for the prompt's token count

    def inputs(self) -> JSON:
        """The input the text generator and the fixtures see, as on the native endpoint."""
        data: JSON = {"model": self.model, "prompt": self.prompt}
        if self.system_prompt is not None:
            data["system_prompt"] = self.system_prompt
        if self.max_tokens is not None:
            data["max_tokens"] = self.max_tokens
        if self.temperature is not None:
            data["temperature"] = self.temperature
        return data


def _body(raw: bytes) -> JSON:
    try:
        data = parse_json(raw)
    except JSONRejected as exc:
        raise Problem(422, {"detail": [exc.detail]}) from None
    if not isinstance(data, dict):
        raise Problem(422, {"detail": [_invalid([], "Input should be a valid dictionary", "dict_type", data)]})
    return data


def _text_of(content: Any, loc: list[str | int], errors: list[JSON], images: list[str]) -> str:
    """A message's text: a string, or the text parts of a list (image parts collected aside)."""
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        errors.append(
            _invalid(loc, "Input should be a valid string or a list of content parts", "string_type", content)
        )
        return ""
    texts = []
    for index, part in enumerate(content):
        where = [*loc, index]
        if isinstance(part, str):
            texts.append(part)
            continue
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            errors.append(_invalid(where, "A content part must be an object with a 'type'", "model_type", part))
            continue
        kind = part["type"]
        if kind in ("text", "input_text", "output_text"):
            text = part.get("text")
            if not isinstance(text, str):
                errors.append(_invalid([*where, "text"], "Input should be a valid string", "string_type", text))
            else:
                texts.append(text)
        elif kind in ("image_url", "input_image"):
            # fal's own example passes the URL as a plain string; OpenAI's clients send {url}.
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            if not isinstance(url, str) or not url:
                errors.append(_invalid([*where, "image_url"], "An image part needs a URL", "missing", image))
            else:
                images.append(url)
    return "\n".join(texts)


def _number(data: JSON, name: str, low: float, high: float, errors: list[JSON]) -> float | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        errors.append(_invalid([name], "Input should be a valid number", "float_type", value))
        return None
    if not low <= value <= high:
        errors.append(_invalid([name], f"Input should be between {low:g} and {high:g}", "value_error", value))
        return None
    return float(value)


def _positive_int(data: JSON, name: str, errors: list[JSON]) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        errors.append(_invalid([name], "Input should be a valid integer", "int_type", value))
        return None
    if value < 1:
        errors.append(_invalid([name], "Input should be greater than or equal to 1", "greater_than_equal", value))
        return None
    return value


def _model(data: JSON, errors: list[JSON]) -> str:
    model = data.get("model")
    if not isinstance(model, str) or not model.strip():
        errors.append(_invalid(["model"], "Field required: a model name such as 'openai/gpt-4o'", "missing", model))
        return ""
    return model


def parse_chat(data: JSON) -> ChatRequest:
    """A chat completion body checked field by field; every problem is reported at once (422)."""
    errors: list[JSON] = []
    model = _model(data, errors)
    messages = data.get("messages")
    system: list[str] = []
    prompt = ""
    every: list[str] = []
    images: list[str] = []
    if not isinstance(messages, list) or not messages:
        errors.append(_invalid(["messages"], "Field required: a non-empty list of messages", "missing", messages))
        messages = []
    for index, message in enumerate(messages):
        loc: list[str | int] = ["messages", index]
        if not isinstance(message, dict):
            errors.append(_invalid(loc, "Input should be a valid dictionary", "dict_type", message))
            continue
        role = message.get("role")
        if role not in _ROLES:
            errors.append(_invalid([*loc, "role"], f"Role should be one of {', '.join(sorted(_ROLES))}", "enum", role))
            continue
        user_images: list[str] = []
        text = _text_of(message.get("content"), [*loc, "content"], errors, user_images)
        every.append(text)
        if role in ("system", "developer"):
            system.append(text)
        elif role == "user":
            prompt = text
            images.extend(user_images)
    temperature = _number(data, "temperature", 0, 2, errors)
    max_tokens = _positive_int(data, "max_tokens", errors)
    if max_tokens is None:
        max_tokens = _positive_int(data, "max_completion_tokens", errors)
    stream = data.get("stream", False)
    if stream is not None and not isinstance(stream, bool):
        errors.append(_invalid(["stream"], "Input should be a valid boolean", "bool_type", stream))
    options = data.get("stream_options")
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    response_format = data.get("response_format")
    if response_format is not None:
        kind = response_format.get("type") if isinstance(response_format, dict) else None
        if kind not in ("text", "json_object", "json_schema"):
            errors.append(
                _invalid(["response_format", "type"], "Should be 'text', 'json_object' or 'json_schema'", "enum", kind)
            )
        elif kind == "json_schema":
            described = response_format.get("json_schema")
            if not isinstance(described, dict) or not isinstance(described.get("schema", {}), dict):
                errors.append(
                    _invalid(
                        ["response_format", "json_schema"],
                        "Should be an object with a 'schema'",
                        "dict_type",
                        described,
                    )
                )
    tools = data.get("tools") or []
    if not isinstance(tools, list) or any(not isinstance(_function_of(tool), dict) for tool in tools):
        errors.append(_invalid(["tools"], "Should be a list of {type: function, function: {name}}", "list_type", tools))
        tools = []
    if errors:
        raise Problem(422, {"detail": errors})
    return ChatRequest(
        model=model,
        prompt=prompt,
        system_prompt="\n".join(system) if system else None,
        image_urls=tuple(images),
        temperature=temperature,
        max_tokens=max_tokens,
        stream=bool(stream),
        include_usage=include_usage,
        response_format=response_format if isinstance(response_format, dict) else None,
        tools=tuple(tools),
        tool_choice=data.get("tool_choice"),
        prompt_text="\n".join(every),
    )


def _function_of(tool: Any) -> Any:
    if not isinstance(tool, dict):
        return None
    function = tool.get("function")
    return function if isinstance(function, dict) and isinstance(function.get("name"), str) else None


# -- JSON from a schema ---------------------------------------------------------------------

_WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet")
_MAX_SCHEMA_DEPTH = 12


def instance_from_schema(schema: Any, seed: str) -> Any:
    """A value valid against a JSON schema (the subset structured outputs use), the same for one seed.

    Every property is filled (strict structured outputs require them all); ``$ref`` into
    ``$defs``/``definitions`` is followed; ``anyOf``/``oneOf`` take their first branch.
    """
    rng = random.Random(hashlib.sha256(seed.encode()).digest())
    root = schema if isinstance(schema, dict) else {}
    return _instance(root, root, rng, 0)


def _resolve(schema: JSON, root: JSON) -> JSON:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part) if isinstance(target, dict) else None
        if isinstance(target, dict):
            return target
    return schema


def _instance(schema: Any, root: JSON, rng: random.Random, depth: int) -> Any:
    if not isinstance(schema, dict) or depth > _MAX_SCHEMA_DEPTH:
        return None
    schema = _resolve(schema, root)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][rng.randrange(len(schema["enum"]))]
    for combinator in ("anyOf", "oneOf", "allOf"):
        branches = schema.get(combinator)
        if isinstance(branches, list) and branches:
            non_null = [b for b in branches if not (isinstance(b, dict) and b.get("type") == "null")]
            return _instance((non_null or branches)[0], root, rng, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "string"
    if kind == "object":
        properties = schema.get("properties")
        if not isinstance(properties, dict):
            return {}
        return {name: _instance(sub, root, rng, depth + 1) for name, sub in properties.items()}
    if kind == "array":
        low = schema.get("minItems", 1)
        count = max(low if isinstance(low, int) else 1, 1)
        high = schema.get("maxItems")
        if isinstance(high, int):
            count = min(count, high)
        return [_instance(schema.get("items", {}), root, rng, depth + 1) for _ in range(count)]
    if kind in ("integer", "number"):
        low = schema.get("minimum", schema.get("exclusiveMinimum", 0))
        high = schema.get(
            "maximum", schema.get("exclusiveMaximum", (low if isinstance(low, (int, float)) else 0) + 100)
        )
        low = low if isinstance(low, (int, float)) else 0
        high = high if isinstance(high, (int, float)) and high >= low else low + 100
        if kind == "integer":
            start, end = math.ceil(low), math.floor(high)
            if "exclusiveMinimum" in schema and start == low:
                start += 1
            if "exclusiveMaximum" in schema and end == high:
                end -= 1
            return rng.randint(start, max(start, end))
        return round(low + (high - low) * (0.25 + rng.random() / 2), 3)
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "null":
        return None
    return _string(schema, rng)


def _string(schema: JSON, rng: random.Random) -> str:
    fmt = schema.get("format")
    if fmt == "date-time":
        return "2025-01-01T00:00:00Z"
    if fmt == "date":
        return "2025-01-01"
    if fmt == "email":
        return "someone@example.com"
    if fmt in ("uri", "url"):
        return "https://example.com/"
    if fmt == "uuid":
        return "00000000-0000-4000-8000-000000000000"
    text = " ".join(rng.choice(_WORDS) for _ in range(3))
    low = schema.get("minLength")
    if isinstance(low, int) and len(text) < low:
        text = (text + " ") * (low // len(text) + 1)
    high = schema.get("maxLength")
    if isinstance(high, int):
        text = text[:high]
    return text


# -- the surface ------------------------------------------------------------------------------


class OpenAISurface:
    """The three calls fal answers under ``openrouter/router/openai/v1``, over one emulator's core."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator

    async def chat_completions(self, namespace: str, raw: bytes) -> Reply:
        """``POST /chat/completions``: a ``chat.completion``, or ``chat.completion.chunk`` events."""
        fault = await self._fault(namespace, CHAT)
        request = parse_chat(_body(raw))
        answer = self._answer(namespace, CHAT, request)
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
        data = _body(raw)
        errors: list[JSON] = []
        model = _model(data, errors)
        given = data.get("input")
        messages: list[Any]
        if isinstance(given, str):
            messages = [{"role": "user", "content": given}]
        elif isinstance(given, list) and given:
            messages = given
        else:
            errors.append(_invalid(["input"], "Field required: a string or a list of input items", "missing", given))
            messages = []
        instructions = data.get("instructions")
        if instructions is not None and not isinstance(instructions, str):
            errors.append(_invalid(["instructions"], "Input should be a valid string", "string_type", instructions))
        if data.get("stream"):
            errors.append(
                _invalid(["stream"], "This emulator answers /responses without streaming", "value_error", True)
            )
        max_tokens = _positive_int(data, "max_output_tokens", errors)
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
        data = _body(raw)
        errors: list[JSON] = []
        model = _model(data, errors)
        given = data.get("input")
        inputs: list[Any] = given if isinstance(given, list) and given and not _is_token_list(given) else [given]
        if not all((isinstance(item, str) and item) or _is_token_list(item) for item in inputs):
            errors.append(
                _invalid(["input"], "Should be a non-empty string, a list of them, or token ids", "missing", given)
            )
        elif len(inputs) > MAX_EMBEDDING_INPUTS:
            errors.append(
                _invalid(["input"], f"At most {MAX_EMBEDDING_INPUTS} inputs per call", "too_long", len(inputs))
            )
        dimensions = _positive_int(data, "dimensions", errors) or EMBEDDING_DIMENSIONS
        if dimensions > MAX_EMBEDDING_DIMENSIONS:
            errors.append(
                _invalid(["dimensions"], f"At most {MAX_EMBEDDING_DIMENSIONS}", "less_than_equal", dimensions)
            )
        encoding = data.get("encoding_format", "float")
        if encoding not in ("float", "base64"):
            errors.append(_invalid(["encoding_format"], "Should be 'float' or 'base64'", "enum", encoding))
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

    async def _fault(self, namespace: str, endpoint: str) -> Fault | None:
        """The fault rule for this call: latency waits, an HTTP error is raised in OpenAI's shape,
        body and connection faults are returned for the reply to carry."""
        emulator = self.emulator
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
    functions = {f["name"]: f for f in map(_function_of, request.tools) if f is not None}
    wanted: list[tuple[str, Any]] = []
    listed = fixture_json.get("tool_calls") if fixture_json is not None else None
    if isinstance(listed, list):
        for entry in listed:
            if isinstance(entry, dict) and isinstance(entry.get("name"), str):
                wanted.append((entry["name"], entry.get("arguments")))
    else:
        choice = request.tool_choice
        named = _function_of(choice) if isinstance(choice, dict) else None
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
