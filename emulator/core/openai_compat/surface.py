"""The three calls fal answers under ``fal.run/openrouter/router/openai/v1``, over one emulator's core.

Each call is a request, started as the run surface starts its runs (``Emulator.start_run``): it
has a request id (``x-fal-request-id``), a record the dashboard, the control API and the journal
show, and its answer is the record's output, made by ``answers.OpenAIDialect``. What is this
surface's own is its shapes: fault rules with the ``openai`` action, failures in OpenAI's
``{"error": {...}}`` shape, and streams: ``chat.completion.chunk`` events, or response events.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

from emulator.core.faults import HTTP_KINDS, Fault, Rule
from emulator.core.models import JSON, RequestRecord, State
from emulator.core.openai_compat.answers import parse_embeddings, parse_responses, response_object
from emulator.core.openai_compat.requests import (
    CHAT,
    EMBEDDINGS,
    OPENAI_ACTION,
    RESPONSES,
    Problem,
    json_body,
    openai_error,
    parse_chat,
)
from emulator.core.scheduler import Scheduler, Submission
from emulator.core.service import Emulator, Reply
from emulator.core.streams import dropped_after

__all__ = ["OpenAISurface", "chunk_events", "response_events"]


class OpenAISurface:
    """The three calls fal answers under ``openrouter/router/openai/v1``, over one emulator's core."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator

    async def chat_completions(self, namespace: str, raw: bytes) -> Reply:
        """``POST /chat/completions``: a ``chat.completion``, or ``chat.completion.chunk`` events."""
        fault = await self._fault(namespace, CHAT)
        body = self._checked(CHAT, raw)
        request = parse_chat(body)  # refused at once, as fal's run surface refuses a bad body
        record = await self._start(namespace, CHAT, body)
        fault = fault or await self._fixture_fault(namespace, CHAT, record)
        if not request.stream:
            return await self._whole(record, fault)
        await self._started(record)
        events = chunk_events(self.emulator.scheduler, record, include_usage=request.include_usage)
        return _streamed(record, events, _output_id(record, "chatcmpl-"), fault)

    async def responses(self, namespace: str, raw: bytes) -> Reply:
        """``POST /responses``: the answer as a ``response`` with ``output_text``, or response events."""
        fault = await self._fault(namespace, RESPONSES)
        body = self._checked(RESPONSES, raw)
        request, _ = parse_responses(body)
        record = await self._start(namespace, RESPONSES, body)
        fault = fault or await self._fixture_fault(namespace, RESPONSES, record)
        if not request.stream:
            return await self._whole(record, fault)
        await self._started(record)
        events = response_events(self.emulator.scheduler, record)
        return _streamed(record, events, _output_id(record, "resp_"), fault)

    async def embeddings(self, namespace: str, raw: bytes) -> Reply:
        """``POST /embeddings``: one deterministic unit vector per input, as floats or base64."""
        fault = await self._fault(namespace, EMBEDDINGS)
        body = self._checked(EMBEDDINGS, raw)
        parse_embeddings(body)
        record = await self._start(namespace, EMBEDDINGS, body)
        return await self._whole(record, fault)

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

    async def _start(self, namespace: str, endpoint: str, body: JSON) -> RequestRecord:
        """The call as a request, as the run surface starts one; over the concurrency limit, OpenAI's 429."""
        try:
            return await self.emulator.start_run(
                namespace, Submission(endpoint=endpoint, input=body, action=OPENAI_ACTION)
            )
        except Problem as problem:
            if problem.status_code != 429:
                raise
            detail = problem.body.get("detail") if isinstance(problem.body, dict) else None
            raise openai_error(429, str(detail or "Too many requests"), problem.headers) from None

    async def _started(self, record: RequestRecord) -> None:
        """Wait for a streamed call's run to start; a run that fails before its first token answers as JSON."""
        scheduler = self.emulator.scheduler
        while record.state is State.IN_QUEUE:
            await scheduler.wait(record, record.version)
        plan = record.plan
        if plan is not None and plan.failure is not None and not plan.tokens:
            await scheduler.wait_done(record)  # nothing to stream: the failure answers, as JSON
        if record.failure is not None:
            raise _failed(record)

    async def _whole(self, record: RequestRecord, fault: Fault | None) -> Reply:
        """The answer once the request completes: its output, or its failure in OpenAI's shape."""
        await self.emulator.scheduler.wait_done(record)
        if record.failure is not None:
            raise _failed(record)
        output = record.output or {}
        headers = {"x-fal-request-id": record.id}
        ident = output.get("id")
        if isinstance(ident, str):
            headers["x-request-id"] = ident
        return Reply(200, output, headers, fault=fault)

    async def _fixture_fault(self, namespace: str, endpoint: str, record: RequestRecord) -> Fault | None:
        """The rules the answering fixture attached to this request, for this call."""
        if not record.rules:
            return None
        return await self._fault(namespace, endpoint, record.rules, record.id)

    async def _fault(
        self, namespace: str, endpoint: str, scoped: list[Rule] | None = None, request_id: str | None = None
    ) -> Fault | None:
        """The fault rule for this call: latency waits, an HTTP error is raised in OpenAI's shape,
        body and connection faults are returned for the reply to carry.

        ``scoped`` are the rules of the fixture that answered, bound to the request ``request_id``.
        """
        emulator = self.emulator
        fault = emulator.faults.match(
            OPENAI_ACTION,
            namespace,
            endpoint=endpoint,
            request_id=request_id,
            kinds=HTTP_KINDS,
            scoped=scoped,
            scoped_only=scoped is not None,
        )
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


def _streamed(record: RequestRecord, events: AsyncIterator[bytes], ident: str, fault: Fault | None) -> Reply:
    """A started call's answer as server-sent events (cut short by a ``drop_stream`` fault)."""
    if fault is not None and fault.kind == "drop_stream":
        events = dropped_after(events, fault.after_events)
    headers = {"cache-control": "no-cache", "x-request-id": ident, "x-fal-request-id": record.id}
    return Reply(200, None, headers, events=events, fault=fault)


def _failed(record: RequestRecord) -> Problem:
    """A request that did not succeed, in OpenAI's shape (the SDKs' typed errors)."""
    failure = record.failure
    assert failure is not None
    return openai_error(failure.status_code, failure.message, {"x-fal-request-id": record.id})


def _output_id(record: RequestRecord, prefix: str) -> str:
    """The id of the answer (``chatcmpl-…``, ``resp_…``); for a run planned to fail, from the request's."""
    output = record.plan.output if record.plan is not None else {}
    ident = output.get("id")
    return ident if isinstance(ident, str) else prefix + record.id


def _sse(body: Mapping[str, Any]) -> bytes:
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"


async def _tokens(scheduler: Scheduler, record: RequestRecord) -> AsyncIterator[str | None]:
    """A started run's tokens, each as the run writes it, until the request ends; None last if a reset
    forgot it meanwhile (nothing more will happen to it: the stream just ends)."""
    plan = record.plan
    assert plan is not None
    tokens = plan.tokens
    sent = 0
    while True:
        version = record.version
        ready = scheduler.tokens_ready(record)
        while sent < ready:
            yield tokens[sent]
            sent += 1
        if record.done:
            return
        await scheduler.wait(record, version, until=scheduler.token_due(record, sent) if sent < len(tokens) else None)
        if scheduler.forgotten(record):
            yield None
            return


async def chunk_events(scheduler: Scheduler, record: RequestRecord, *, include_usage: bool) -> AsyncIterator[bytes]:
    """A started chat completion as ``chat.completion.chunk`` events, each token as the run writes it;
    the finish (and ``usage``) once the request completes, then ``[DONE]``. A run that fails on
    the way ends with OpenAI's error event, which the SDKs raise."""
    plan = record.plan
    assert plan is not None
    whole = plan.output
    completion_id = _output_id(record, "chatcmpl-")
    created = whole.get("created", int(record.submitted_at))
    model = record.input.get("model")

    def chunk(delta: JSON, finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        return _sse(
            {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [choice],
            }
        )

    yield chunk({"role": "assistant", "content": ""})
    async for token in _tokens(scheduler, record):
        if token is None:
            return
        yield chunk({"content": token})
    if record.failure is not None:
        yield _sse(_failed(record).body)
        return
    choices = whole.get("choices") or [{}]
    message = choices[0].get("message") or {}
    tool_calls = message.get("tool_calls") or []
    if tool_calls:
        yield chunk({"tool_calls": [{**call, "index": index} for index, call in enumerate(tool_calls)]})
    yield chunk({}, choices[0].get("finish_reason") or "stop")
    if include_usage:
        yield _sse(
            {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [],
                "usage": whole.get("usage"),
            }
        )
    yield b"data: [DONE]\n\n"


async def response_events(scheduler: Scheduler, record: RequestRecord) -> AsyncIterator[bytes]:
    """A started ``/responses`` call as OpenAI's response events: ``response.created``, the message's
    item and text part, a ``response.output_text.delta`` per token as the run writes it, their
    ``done`` events, then ``response.completed`` with the whole response (the one the call answers
    unstreamed). A run that fails on the way ends with ``response.failed``."""
    plan = record.plan
    assert plan is not None
    # A run planned to fail has no output: its events name the request's own ids instead.
    whole = plan.output or response_object(
        record.id, int(record.submitted_at), record.input.get("model"), record.input.get("instructions"), ""
    )
    item: JSON = whole["output"][0]
    item_id = item["id"]
    part: JSON = item["content"][0]
    at = {"item_id": item_id, "output_index": 0, "content_index": 0}
    pending = {key: value for key, value in whole.items() if key != "output_text"}
    pending.update(status="in_progress", output=[], usage=None)
    numbers = itertools.count()

    def event(kind: str, **fields: Any) -> bytes:
        body = {"type": kind, "sequence_number": next(numbers), **fields}
        return f"event: {kind}\n".encode() + _sse(body)

    yield event("response.created", response=pending)
    yield event("response.in_progress", response=pending)
    yield event("response.output_item.added", output_index=0, item={**item, "status": "in_progress", "content": []})
    yield event("response.content_part.added", **at, part={**part, "text": ""})
    async for token in _tokens(scheduler, record):
        if token is None:
            return
        yield event("response.output_text.delta", **at, delta=token, logprobs=[])
    if record.failure is not None:
        error = {"code": "server_error", "message": record.failure.message}
        yield event("response.failed", response={**pending, "status": "failed", "error": error})
        return
    yield event("response.output_text.done", **at, text=part["text"], logprobs=[])
    yield event("response.content_part.done", **at, part=part)
    yield event("response.output_item.done", output_index=0, item=item)
    yield event("response.completed", response=whole)
