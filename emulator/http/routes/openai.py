"""fal's OpenAI-compatible surface (``fal.run/openrouter/router/openai/v1``): thin routes over the core."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from emulator.core.errors import Problem, not_found
from emulator.core.openai_compat.surface import OpenAISurface
from emulator.core.service import Reply
from emulator.http.common import authenticate, emulator_of, method_not_allowed, problem_response, read_body, render
from emulator.http.front import ALL_METHODS
from emulator.http.hosts import OPENAI_PREFIX

PREFIX = OPENAI_PREFIX

_Handler = Callable[[OpenAISurface, str, bytes], Awaitable[Reply]]


def _serving(handler: _Handler) -> Callable[[Request], Awaitable[Response]]:
    async def serve(request: Request) -> Response:
        emulator = emulator_of(request)
        try:
            if request.method != "POST":
                raise method_not_allowed("POST")
            namespace = authenticate(request, emulator)
            body = await read_body(request, emulator.settings.max_body_bytes)
            return render(await handler(OpenAISurface(emulator), namespace, body))
        except Problem as problem:
            return problem_response(problem)

    return serve


async def _not_found(request: Request) -> Response:
    # fal serves no model list (GET /models) or anything else here: its gateway's plain 404.
    return problem_response(not_found("Not Found"))


routes = [
    Route("/chat/completions", _serving(OpenAISurface.chat_completions), methods=ALL_METHODS),
    Route("/responses", _serving(OpenAISurface.responses), methods=ALL_METHODS),
    Route("/embeddings", _serving(OpenAISurface.embeddings), methods=ALL_METHODS),
    Route("/{path:path}", _not_found, methods=ALL_METHODS),
]
