"""Requests to the OpenAI-compatible surface, parsed and checked: fal's 422 for what breaks the rules."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from emulator.core.errors import Problem
from emulator.core.hosts import OPENAI_BASE_PATH
from emulator.core.models import JSON
from emulator.core.spec import JSONRejected, parse_json

__all__ = [
    "BASE_PATH",
    "CHAT",
    "EMBEDDINGS",
    "EMBEDDING_DIMENSIONS",
    "OPENAI_ACTION",
    "RESPONSES",
    "ChatRequest",
    "Problem",
    "function_of",
    "invalid_item",
    "json_body",
    "model_of",
    "openai_error",
    "parse_chat",
    "positive_int",
]

BASE_PATH = OPENAI_BASE_PATH
CHAT = f"{BASE_PATH}/chat/completions"
RESPONSES = f"{BASE_PATH}/responses"
EMBEDDINGS = f"{BASE_PATH}/embeddings"
# The fault-rule action of every call on this surface (rules may narrow it by endpoint).
OPENAI_ACTION = "openai"
# Embeddings are unit vectors of this many floats unless the request asks for ``dimensions``.
EMBEDDING_DIMENSIONS = 1536
# Bounds of one embeddings call: at most 256 inputs of 4096 floats, about 20 MB of JSON back.
MAX_EMBEDDING_DIMENSIONS = 4096
MAX_EMBEDDING_INPUTS = 256

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


def invalid_item(loc: list[str | int], msg: str, kind: str, value: Any) -> JSON:
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


def json_body(raw: bytes) -> JSON:
    try:
        data = parse_json(raw)
    except JSONRejected as exc:
        raise Problem(422, {"detail": [exc.detail]}) from None
    if not isinstance(data, dict):
        raise Problem(422, {"detail": [invalid_item([], "Input should be a valid dictionary", "dict_type", data)]})
    return data


def _text_of(content: Any, loc: list[str | int], errors: list[JSON], images: list[str]) -> str:
    """A message's text: a string, or the text parts of a list (image parts collected aside)."""
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        errors.append(
            invalid_item(loc, "Input should be a valid string or a list of content parts", "string_type", content)
        )
        return ""
    texts = []
    for index, part in enumerate(content):
        where = [*loc, index]
        if isinstance(part, str):
            texts.append(part)
            continue
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            errors.append(invalid_item(where, "A content part must be an object with a 'type'", "model_type", part))
            continue
        kind = part["type"]
        if kind in ("text", "input_text", "output_text"):
            text = part.get("text")
            if isinstance(text, str):
                texts.append(text)
        elif kind in ("image_url", "input_image"):
            # fal's own example passes the URL as a plain string; OpenAI's clients send {url}.
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            if isinstance(url, str) and url:
                images.append(url)
    return "\n".join(texts)


def number_in(data: JSON, name: str, low: float, high: float, errors: list[JSON]) -> float | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        errors.append(invalid_item([name], "Input should be a valid number", "float_type", value))
        return None
    if not low <= value <= high:
        errors.append(invalid_item([name], f"Input should be between {low:g} and {high:g}", "value_error", value))
        return None
    return float(value)


def positive_int(data: JSON, name: str, errors: list[JSON]) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # JSON's 2.0 is an integer to the schema, as to pydantic
    if isinstance(value, bool) or not isinstance(value, int):
        errors.append(invalid_item([name], "Input should be a valid integer", "int_type", value))
        return None
    if value < 1:
        errors.append(invalid_item([name], "Input should be greater than or equal to 1", "greater_than_equal", value))
        return None
    return value


def model_of(data: JSON, errors: list[JSON]) -> str:
    model = data.get("model")
    if not isinstance(model, str) or not model:
        errors.append(invalid_item(["model"], "Field required: a model name such as 'openai/gpt-4o'", "missing", model))
        return ""
    return model


def parse_chat(data: JSON) -> ChatRequest:
    """A chat completion body checked field by field; every problem is reported at once (422)."""
    errors: list[JSON] = []
    model = model_of(data, errors)
    messages = data.get("messages")
    system: list[str] = []
    prompt = ""
    every: list[str] = []
    images: list[str] = []
    if not isinstance(messages, list) or not messages:
        errors.append(invalid_item(["messages"], "Field required: a non-empty list of messages", "missing", messages))
        messages = []
    for index, message in enumerate(messages):
        loc: list[str | int] = ["messages", index]
        if not isinstance(message, dict):
            errors.append(invalid_item(loc, "Input should be a valid dictionary", "dict_type", message))
            continue
        role = message.get("role")
        if role not in _ROLES:
            errors.append(
                invalid_item([*loc, "role"], f"Role should be one of {', '.join(sorted(_ROLES))}", "enum", role)
            )
            continue
        user_images: list[str] = []
        text = _text_of(message.get("content"), [*loc, "content"], errors, user_images)
        every.append(text)
        if role in ("system", "developer"):
            system.append(text)
        elif role == "user":
            prompt = text
            images.extend(user_images)
    temperature = number_in(data, "temperature", 0, 2, errors)
    max_tokens = positive_int(data, "max_tokens", errors)
    if max_tokens is None:
        max_tokens = positive_int(data, "max_completion_tokens", errors)
    stream = data.get("stream", False)
    if stream is not None and not isinstance(stream, bool):
        errors.append(invalid_item(["stream"], "Input should be a valid boolean", "bool_type", stream))
    options = data.get("stream_options")
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    response_format = data.get("response_format")
    if response_format is not None:
        kind = response_format.get("type") if isinstance(response_format, dict) else None
        if kind not in ("text", "json_object", "json_schema"):
            errors.append(
                invalid_item(
                    ["response_format", "type"], "Should be 'text', 'json_object' or 'json_schema'", "enum", kind
                )
            )
        elif kind == "json_schema":
            described = response_format.get("json_schema")
            # Left out, the schema is {} (any JSON value): generated as a string.
            if described is not None and not isinstance(described, dict):
                errors.append(
                    invalid_item(["response_format", "json_schema"], "Should be an object", "dict_type", described)
                )
    tools = data.get("tools") or []
    if not isinstance(tools, list) or any(not isinstance(function_of(tool), dict) for tool in tools):
        errors.append(
            invalid_item(["tools"], "Should be a list of {type: function, function: {name}}", "list_type", tools)
        )
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


def function_of(tool: Any) -> Any:
    if not isinstance(tool, dict):
        return None
    function = tool.get("function")
    return function if isinstance(function, dict) and isinstance(function.get("name"), str) else None
