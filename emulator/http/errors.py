"""The app's answers to exceptions no route turned into a response: fal's JSON error shape."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from emulator.http.common import json_response


async def http_error(request: Request, exc: Exception) -> Response:
    # Paths no route can parse (a newline in an id, say) still get fal's JSON error shape.
    code = getattr(exc, "status_code", 404)
    return json_response({"detail": getattr(exc, "detail", "Not Found")}, code, getattr(exc, "headers", None))


async def server_error(request: Request, exc: Exception) -> Response:
    # Never expected; answers JSON rather than a bare 500 page so clients can report it.
    return json_response({"detail": f"Internal emulator error: {type(exc).__name__}: {exc}"}, 500)
