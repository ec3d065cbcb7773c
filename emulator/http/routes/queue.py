"""The queue surface (``queue.fal.run``): submit, status, status stream, result, cancel."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from emulator.core.faults import Fault
from emulator.core.models import Priority, RequestRecord
from emulator.core.scheduler import CancelResult, Submission
from emulator.core.service import Emulator
from emulator.core.spec import Spec
from emulator.core.wire import sse_event, status_body
from emulator.http.common import (
    FaultTriggered,
    HTTPProblem,
    authenticate,
    check_concurrency,
    emulator_of,
    http_fault,
    json_response,
    method_not_allowed,
    not_found,
    output_response,
    parameters_only,
    record_response,
    validated_input,
    with_fault,
)
from emulator.http.routes.webhooks import mode_header, refuse_control_target
from emulator.store import StoreError

_REQUEST_ACTIONS = {
    (): ("result", "GET"),
    ("status",): ("status", "GET"),
    ("status", "stream"): ("status_stream", "GET"),
    ("cancel",): ("cancel", "PUT"),
}


@dataclass(frozen=True, slots=True)
class Target:
    """What a queue path addresses: an endpoint to submit to, or one request's action."""

    action: str
    method: str
    endpoint: str
    request_id: str | None = None


def parse_path(path: str, spec: Spec) -> Target:
    """Map a path to its target; 404 for anything the document does not declare."""
    segments = [s for s in path.strip("/").split("/") if s]
    if "requests" in segments[2:]:
        index = segments.index("requests", 2)
        prefix = "/".join(segments[:index])
        rest = tuple(segments[index + 2 :])
        if (
            index + 1 < len(segments)
            and rest in _REQUEST_ACTIONS
            and (prefix in spec.app_ids or prefix in spec.endpoints)
        ):
            action, method = _REQUEST_ACTIONS[rest]
            return Target(action, method, prefix, segments[index + 1])
    endpoint = "/".join(segments)
    if endpoint in spec.endpoints:
        return Target("submit", "POST", endpoint)
    raise not_found(f"Application '{endpoint}' not found")


def base_url(request: Request) -> str:
    """This server as the client reached it, so returned URLs lead back here."""
    scope = request.scope
    for key, value in scope["headers"]:
        if key == b"host":
            # What ``request.base_url`` gives with a Host header, without building URL objects.
            root = scope.get("app_root_path", scope.get("root_path", ""))
            return f"{scope.get('scheme', 'http')}://{value.decode('latin-1')}{root}".rstrip("/")
    return str(request.base_url).rstrip("/")


def priority_of(params: dict[str, object]) -> Priority:
    return Priority.LOW if params.get("x-fal-queue-priority") == "low" else Priority.NORMAL


def timeout_of(params: dict[str, object]) -> float | None:
    value = params.get("x-fal-request-timeout")
    return float(value) if isinstance(value, (int, float)) else None


async def handle(request: Request) -> Response:
    emulator = emulator_of(request)
    try:
        target = parse_path(request.path_params.get("path", ""), emulator.spec)
        if request.method != target.method:
            raise method_not_allowed(target.method)
        namespace = authenticate(request, emulator)
        fault = await http_fault(
            request, emulator, target.action, namespace, endpoint=target.endpoint, request_id=target.request_id
        )
        return with_fault(await answer(request, emulator, namespace, target, fault), fault)
    except HTTPProblem as problem:
        return problem.response()


async def answer(request: Request, emulator: Emulator, namespace: str, target: Target, fault: Fault | None) -> Response:
    if target.action == "submit":
        return await submit(request, emulator, namespace, target.endpoint)
    assert target.request_id is not None
    refreshing = emulator.store.refresh(namespace, target.request_id)
    if refreshing is not None:  # a shared store: read the truth, which another process may have changed
        await store_call(refreshing)
    record = find(emulator, namespace, target)
    if target.action == "cancel":
        return cancel(emulator, namespace, record)
    if record is None:
        raise not_found("Request not found")
    if target.action == "status":
        return status(request, emulator, record)
    if target.action == "status_stream":
        drop_after = fault.after_events if fault is not None and fault.kind == "drop_stream" else None
        return status_stream(request, emulator, record, drop_after)
    return result(record)


def find(emulator: Emulator, namespace: str, target: Target) -> RequestRecord | None:
    assert target.request_id is not None
    record = emulator.scheduler.get(namespace, target.request_id)
    if record is None or not (target.endpoint == record.app_id or target.endpoint == record.endpoint):
        return None
    return record


async def submit(request: Request, emulator: Emulator, namespace: str, endpoint: str) -> Response:
    operation = emulator.spec.operation("submit", endpoint)
    assert operation is not None
    params, body = await validated_input(request, emulator, operation)
    check_concurrency(emulator, namespace)
    max_length = params.get("fal_max_queue_length")
    scheduler = emulator.scheduler
    if isinstance(max_length, int) and scheduler.queue_length(namespace) >= max_length:
        raise HTTPProblem(
            429,
            {
                "detail": f"Queue is full: {scheduler.queue_length(namespace)} requests waiting, "
                f"fal_max_queue_length is {max_length}"
            },
        )
    webhook = params.get("fal_webhook")
    refuse_control_target(webhook if isinstance(webhook, str) else None)
    webhook_mode = mode_header(request)
    record = scheduler.submit(
        namespace,
        Submission(
            endpoint=endpoint,
            app_id="/".join(endpoint.split("/")[:2]),
            input=body,
            priority=priority_of(params),
            timeout=timeout_of(params),
            webhook_url=webhook if isinstance(webhook, str) else None,
        ),
    )
    if webhook_mode is not None:
        emulator.webhooks.set_mode(webhook_mode, record.id)
    # Accepted means kept: a durable or shared store has the request before the client hears so.
    writing = emulator.store.durable()
    if writing is not None:
        await store_call(writing)
    envelope = status_body(record, base_url(request), position=scheduler.position(record), logs=None)
    return record_response(envelope, 200, {"x-fal-request-id": record.id})


async def store_call(pending: Awaitable[None]) -> None:
    """Wait for the store; a store that is down answers 503."""
    try:
        await pending
    except StoreError as exc:
        raise HTTPProblem(503, {"detail": f"Store unavailable: {exc}"}) from exc


def wants_logs(params: dict[str, object]) -> bool:
    return params.get("logs") in ("1", "true")


def status(request: Request, emulator: Emulator, record: RequestRecord) -> Response:
    params = parameters_only(request, emulator.spec.operation("status"))
    body = status_body(
        record,
        base_url(request),
        position=emulator.scheduler.position(record),
        logs=list(record.logs) if wants_logs(params) else None,
    )
    return record_response(body, 200 if record.done else 202, {"x-fal-request-id": record.id})


def status_stream(request: Request, emulator: Emulator, record: RequestRecord, drop_after: int | None) -> Response:
    params = parameters_only(request, emulator.spec.operation("status_stream"))
    events = status_events(emulator, record, base_url(request), with_logs=wants_logs(params))
    if drop_after is not None:
        events = dropped_after(events, drop_after)
    headers = {"x-fal-request-id": record.id, "cache-control": "no-cache"}
    return StreamingResponse(events, media_type="text/event-stream", headers=headers)


async def status_events(
    emulator: Emulator, record: RequestRecord, base: str, *, with_logs: bool
) -> AsyncIterator[bytes]:
    """One event per change (state, new log lines, queue position); closes after COMPLETED."""
    scheduler = emulator.scheduler
    keepalive = emulator.settings.keepalive_seconds
    sent_logs = 0
    last: tuple[int, int] | None = None
    while True:
        position = scheduler.position(record)
        if (record.version, position) != last:
            last = (record.version, position)
            logs = list(record.logs[sent_logs:]) if with_logs else None
            sent_logs = len(record.logs)
            yield sse_event(status_body(record, base, position=position, logs=logs))
            if record.done:
                return
        changed = await scheduler.wait(record, record.version, until=emulator.clock.now() + keepalive)
        if scheduler.forgotten(record):
            return  # reset while streaming: nothing more will happen to it
        if not changed:
            yield b": ping\n\n"


async def dropped_after(events: AsyncIterator[bytes], count: int) -> AsyncIterator[bytes]:
    """Pass ``count`` events through, then drop the connection (a drop_stream fault)."""
    sent = 0
    async for event in events:
        if sent >= count:
            break
        yield event
        sent += event.startswith(b"data:")
    raise FaultTriggered("stream dropped by a fault rule")


def result(record: RequestRecord) -> Response:
    if not record.done:
        raise HTTPProblem(400, {"detail": "Request is still in progress"}, {"x-fal-request-id": record.id})
    return output_response(record)


def cancel(emulator: Emulator, namespace: str, record: RequestRecord | None) -> Response:
    outcome = CancelResult.NOT_FOUND if record is None else emulator.scheduler.cancel(namespace, record.id)
    code = {CancelResult.REQUESTED: 202, CancelResult.ALREADY_COMPLETED: 400, CancelResult.NOT_FOUND: 404}[outcome]
    headers = {} if record is None else {"x-fal-request-id": record.id}
    return json_response({"status": outcome.value, "detail": _CANCEL_DETAILS[outcome]}, code, headers)


_CANCEL_DETAILS = {
    CancelResult.REQUESTED: "Cancellation requested",
    CancelResult.ALREADY_COMPLETED: "Request already completed",
    CancelResult.NOT_FOUND: "Request not found",
}
