"""The run surface (``fal.run``): a synchronous run, and a run streamed as server-sent events."""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from emulator.core.models import RequestRecord, State
from emulator.core.scheduler import Submission
from emulator.core.service import Emulator
from emulator.core.wire import sse_event
from emulator.http.common import (
    HTTPProblem,
    authenticate,
    check_concurrency,
    emulator_of,
    failure_response,
    http_fault,
    method_not_allowed,
    not_found,
    output_response,
    validated_input,
    with_fault,
)
from emulator.http.routes.queue import dropped_after, priority_of, timeout_of


async def handle(request: Request) -> Response:
    emulator = emulator_of(request)
    try:
        path = request.path_params.get("path", "").strip("/")
        streaming = path.endswith("/stream") and path.removesuffix("/stream") in emulator.spec.endpoints
        endpoint = path.removesuffix("/stream") if streaming else path
        if endpoint not in emulator.spec.endpoints:
            raise not_found(f"Application '{path}' not found")
        if request.method != "POST":
            raise method_not_allowed("POST")
        namespace = authenticate(request, emulator)
        action = "run_stream" if streaming else "run"
        fault = await http_fault(request, emulator, action, namespace, endpoint=endpoint)
        record = await start(request, emulator, namespace, endpoint, action)
        if fault is None:
            # Rules a fixture attached to this very request exist only once it is accepted.
            fault = await http_fault(
                request, emulator, action, namespace, endpoint=endpoint, request_id=record.id, scoped_only=True
            )
        if streaming:
            drop_after = fault.after_events if fault is not None and fault.kind == "drop_stream" else None
            return with_fault(await stream(emulator, record, drop_after), fault)
        await emulator.scheduler.wait_done(record)
        return with_fault(output_response(record), fault)
    except HTTPProblem as problem:
        return problem.response()


async def start(request: Request, emulator: Emulator, namespace: str, endpoint: str, action: str) -> RequestRecord:
    operation = emulator.spec.operation(action, endpoint)
    assert operation is not None
    params, body = await validated_input(request, emulator, operation)
    check_concurrency(emulator, namespace)
    submission = Submission(
        endpoint=endpoint,
        app_id="/".join(endpoint.split("/")[:2]),
        input=body,
        priority=priority_of(params),
        timeout=timeout_of(params),
        action=action,
    )
    return emulator.scheduler.submit(namespace, submission)


async def stream(emulator: Emulator, record: RequestRecord, drop_after: int | None = None) -> Response:
    """Wait for the run to start, then stream; a run that fails before starting answers as JSON."""
    scheduler = emulator.scheduler
    while record.state is State.IN_QUEUE:
        await scheduler.wait(record, record.version)
    if record.plan is not None and not record.plan.tokens:
        # Nothing to stream (the run is planned to fail): answer once it ends, as JSON.
        await scheduler.wait_done(record)
    if record.failure is not None:
        return failure_response(record, record.failure)
    headers = {"x-fal-request-id": record.id, "cache-control": "no-cache"}
    events = output_events(emulator, record)
    if drop_after is not None:
        events = dropped_after(events, drop_after)
    return StreamingResponse(events, media_type="text/event-stream", headers=headers)


async def output_events(emulator: Emulator, record: RequestRecord) -> AsyncIterator[bytes]:
    """Cumulative output, ``partial: true`` per token, then the whole output with ``partial: false``."""
    scheduler = emulator.scheduler
    plan = record.plan
    assert plan is not None
    tokens = plan.tokens
    sent = 0
    text = ""
    while True:
        version = record.version
        # The last token goes out with the final event, unless the run stopped early.
        stopped_early = record.done and record.failure is not None
        ready = min(scheduler.tokens_ready(record), len(tokens) if stopped_early else len(tokens) - 1)
        while sent < ready:
            text += tokens[sent]
            sent += 1
            yield sse_event({"output": text, "partial": True, "error": None})
        if record.done:
            if record.failure is None:
                assert record.output is not None
                yield sse_event({**record.output, "partial": False})
            else:
                yield sse_event({"output": text, "partial": False, "error": record.failure.message})
            return
        # The next token to send is number ``sent``; the last one goes out with the final event.
        next_due = scheduler.token_due(record, sent) if sent < len(tokens) - 1 else None
        await scheduler.wait(record, version, until=next_due)
        if scheduler.forgotten(record):
            return  # reset while streaming: nothing more will happen to it
