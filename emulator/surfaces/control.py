"""The control surface under ``/_emulator``: the emulator's own API, not fal's."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from emulator.surfaces.common import emulator_of, json_response


async def health(request: Request) -> Response:
    emulator = emulator_of(request)
    return json_response({"status": "ok", "profile": emulator.settings.profile, "requests": len(emulator.store)})


routes = [Route("/health", health, methods=["GET"])]
