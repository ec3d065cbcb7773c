"""Helpers every surface shares: JSON responses, body limits, auth, validation."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from emulator.auth import AuthError, namespace_for
from emulator.models import JSON, Failure, RequestRecord
from emulator.service import Emulator
from emulator.spec import Operation


class HTTPProblem(Exception):
    """An answer other than success, raised anywhere in a route and rendered as JSON."""

    def __init__(self, status_code: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(status_code, body)
        self.status_code = status_code
        self.body = body
        self.headers = headers or {}

    def response(self) -> Response:
        return json_response(self.body, self.status_code, self.headers)


def json_response(body: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    content = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    return Response(content, status_code, headers, media_type="application/json")


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
    params, errors = operation.validate_parameters(request.query_params, request.headers)
    body, body_errors = operation.validate_body(raw)
    if errors or body_errors:
        raise validation_problem(errors + body_errors)
    return params, body


def parameters_only(request: Request, operation: Operation | None) -> JSON:
    if operation is None:
        return {}
    params, errors = operation.validate_parameters(request.query_params, request.headers)
    if errors:
        raise validation_problem(errors)
    return params


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
    return json_response(record.output, 200, headers)


def not_found(what: str) -> HTTPProblem:
    return HTTPProblem(404, {"detail": what})


def method_not_allowed(allowed: str) -> HTTPProblem:
    return HTTPProblem(405, {"detail": "Method Not Allowed"}, {"allow": allowed})
