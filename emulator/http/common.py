"""Helpers every surface shares: JSON responses, body limits, auth, validation."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from emulator.core.auth import AuthError, namespace_for
from emulator.core.faults import HTTP_KINDS, Fault
from emulator.core.models import JSON, Failure, RequestRecord
from emulator.core.service import Emulator
from emulator.core.spec import Operation
from emulator.core.wire import dumps_json, dumps_record


class HTTPProblem(Exception):
    """An answer other than success, raised anywhere in a route and rendered as JSON."""

    def __init__(
        self,
        status_code: int,
        body: Any,
        headers: dict[str, str] | None = None,
        *,
        raw: tuple[str, bytes] | None = None,
    ) -> None:
        super().__init__(status_code, body)
        self.status_code = status_code
        self.body = body
        self.headers = headers or {}
        self.raw = raw

    def response(self) -> Response:
        if self.raw is not None:
            media_type, content = self.raw
            return Response(content, self.status_code, self.headers, media_type=media_type)
        return json_response(self.body, self.status_code, self.headers)


def json_response(body: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps_json(body), status_code, headers, media_type="application/json")


def record_response(body: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    """``json_response`` for the bodies built from a request record (status, output): the hot path."""
    return Response(dumps_record(body), status_code, headers, media_type="application/json")


def emulator_of(request: Request) -> Emulator:
    emulator: Emulator = request.app.state.emulator
    return emulator


def authenticate(request: Request, emulator: Emulator) -> str:
    try:
        return namespace_for(request.headers.get("authorization"), required=emulator.settings.require_auth)
    except AuthError as exc:
        raise HTTPProblem(401, {"detail": str(exc)}) from exc


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refusing (413) one larger than ``limit`` before reading it all."""
    declared = request.headers.get("content-length")
    too_large = HTTPProblem(413, {"detail": f"Request body is larger than the limit of {limit} bytes"})
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def validation_problem(errors: list[dict[str, Any]]) -> HTTPProblem:
    return HTTPProblem(422, {"detail": errors}, {"x-fal-billable-units": "0"})


async def validated_input(request: Request, emulator: Emulator, operation: Operation) -> tuple[JSON, JSON]:
    """Parameters and body of a request, checked against the operation; 413 or 422 otherwise."""
    raw = await read_body(request, emulator.settings.max_body_bytes)
    params, errors = operation.validate_parameters(query_of(request), headers_of(request))
    body, body_errors = operation.validate_body(raw)
    if errors or body_errors:
        raise validation_problem(errors + body_errors)
    return params, body


def parameters_only(request: Request, operation: Operation | None) -> JSON:
    if operation is None:
        return {}
    params, errors = operation.validate_parameters(query_of(request), headers_of(request))
    if errors:
        raise validation_problem(errors)
    return params


_NO_QUERY: dict[str, str] = {}


def headers_of(request: Request) -> dict[str, str]:
    """The headers as a dict, first value winning as in ``request.headers``: one pass, then lookups."""
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in reversed(request.scope["headers"])}


def query_of(request: Request) -> Mapping[str, str]:
    # Most calls have no query string: skip parsing one (the hot status and result paths).
    return request.query_params if request.scope.get("query_string") else _NO_QUERY


def failure_response(record: RequestRecord, failure: Failure) -> Response:
    """A failed request's answer: the app's status code and body."""
    headers = {"x-fal-request-id": record.id}
    if failure.error_type is not None:
        headers["x-fal-error-type"] = failure.error_type
    if failure.error_type == "request_timeout":
        # Tells the clients this was the caller's own start deadline: do not retry.
        headers["x-fal-request-timeout-type"] = "user"
    return json_response(failure.body(), failure.status_code, headers)


def output_response(record: RequestRecord) -> Response:
    """A completed request's answer: its output, or its failure."""
    if record.failure is not None:
        return failure_response(record, record.failure)
    headers = {"x-fal-request-id": record.id, "x-fal-billable-units": str(record.billable_units)}
    return record_response(record.output, 200, headers)


def check_concurrency(emulator: Emulator, namespace: str) -> None:
    """fal's per-key concurrency limit: 429 while this key has that many requests in flight."""
    limit = emulator.settings.concurrency_limit
    if limit and emulator.scheduler.in_flight(namespace) >= limit:
        raise HTTPProblem(
            429,
            {"detail": f"Concurrency limit of {limit} requests in flight reached for this key"},
            {"retry-after": "1"},
        )


def not_found(what: str) -> HTTPProblem:
    return HTTPProblem(404, {"detail": what})


def method_not_allowed(allowed: str) -> HTTPProblem:
    return HTTPProblem(405, {"detail": "Method Not Allowed"}, {"allow": allowed})


class FaultTriggered(ConnectionResetError):
    """Raised inside a response on purpose, so the server drops the connection."""


def _not_a_triggered_fault(record: logging.LogRecord) -> bool:
    """Keep the servers' error logs for real errors, not for connections dropped on purpose."""
    return not (record.exc_info and isinstance(record.exc_info[1], FaultTriggered))


for _server_log in ("uvicorn.error", "hypercorn.error"):
    logging.getLogger(_server_log).addFilter(_not_a_triggered_fault)


class ResetResponse(Response):
    """Starts an answer, then drops the connection: the client sees a reset mid-response."""

    def __init__(self) -> None:
        super().__init__(b"", 200, media_type="application/json")
        self.headers["content-length"] = "4096"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": b'{"status": "IN_', "more_body": True})
        raise FaultTriggered("connection reset by a fault rule")


async def http_fault(
    request: Request,
    emulator: Emulator,
    action: str,
    namespace: str,
    *,
    endpoint: str | None = None,
    request_id: str | None = None,
    scoped_only: bool = False,
) -> Fault | None:
    """Apply the fault rule matching this call, if any.

    Latency waits (on the emulator's clock) and lets the call go on; an HTTP error is raised
    as its answer; body and connection faults are returned for ``with_fault`` to apply.
    """
    fault = emulator.faults.match(
        action, namespace, endpoint=endpoint, request_id=request_id, kinds=HTTP_KINDS, scoped_only=scoped_only
    )
    if fault is None:
        return None
    if fault.kind == "latency":
        await emulator.clock.sleep(fault.seconds)
        return None
    if fault.kind == "http_error":
        media_type, body = fault.http_body()
        headers = {}
        if fault.with_request_id:
            headers["x-fal-request-id"] = request_id or emulator.scheduler.ids.new()
        if fault.retry_after is not None:
            headers["retry-after"] = f"{fault.retry_after:g}"
        if fault.error_type is not None:
            headers["x-fal-error-type"] = fault.error_type
        raise HTTPProblem(fault.status or 500, None, headers, raw=(media_type, body))
    return fault


def with_fault(response: Response, fault: Fault | None) -> Response:
    """Spoil a finished answer as a body or connection fault asks."""
    if fault is None or fault.kind == "drop_stream":
        return response
    if fault.kind == "reset":
        return ResetResponse()
    body = bytes(response.body)
    if fault.kind == "truncated_body":
        spoiled = body[: max(1, len(body) // 2)]
    else:  # malformed_body: the same bytes, no longer JSON
        spoiled = b"{" + body.replace(b":", b"=", 1) if body else b"{"
    headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
    return Response(spoiled, response.status_code, headers)
