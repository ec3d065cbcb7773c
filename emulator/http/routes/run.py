"""The run surface (``fal.run``): a synchronous run, and a run streamed as server-sent events."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from emulator.core.errors import Problem, not_found
from emulator.core.service import Call
from emulator.http.common import (
    authenticate,
    emulator_of,
    headers_of,
    method_not_allowed,
    problem_response,
    query_of,
    read_body,
    render,
)
from emulator.http.hosts import urls_of


async def handle(request: Request) -> Response:
    emulator = emulator_of(request)
    try:
        path = request.path_params.get("path", "").strip("/")
        endpoints = emulator.spec.endpoints
        streaming = path.endswith("/stream") and path.removesuffix("/stream") in endpoints
        endpoint = path.removesuffix("/stream") if streaming else path
        if endpoint not in endpoints:
            raise not_found(f"Application '{path}' not found")
        if request.method != "POST":
            raise method_not_allowed("POST")
        call = Call(
            action="run_stream" if streaming else "run",
            namespace=authenticate(request, emulator),
            endpoint=endpoint,
            query=query_of(request),
            headers=headers_of(request),
            body=await read_body(request, emulator.settings.max_body_bytes),
            files_url=urls_of(request).cdn,
        )
        return render(await emulator.call(call))
    except Problem as problem:
        return problem_response(problem)
