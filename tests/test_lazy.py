"""Surfaces mounted through ``emulator.http.lazy``: imported on the first call, answering as a plain mount."""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from emulator.http.lazy import LazyRoutes

MODULE = "tests._lazily_mounted"


async def hello(request: Request) -> Response:
    return PlainTextResponse(f"hello {request.path_params.get('name', 'all')}")


@pytest.fixture
def module() -> Iterator[types.ModuleType]:
    made = types.ModuleType(MODULE)
    made.routes = [Route("/hello/{name}", hello, methods=["GET"])]  # type: ignore[attr-defined]
    made.more = lambda: [Route("/more", hello, methods=["GET"])]  # type: ignore[attr-defined]
    yield made
    sys.modules.pop(MODULE, None)


async def answers(routes: list[BaseRoute], *paths: str) -> list[tuple[int, str]]:
    transport = httpx.ASGITransport(app=Starlette(routes=routes))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return [((r := await client.get(path)).status_code, r.text) for path in paths]


@pytest.mark.anyio
async def test_the_module_is_imported_on_the_first_call_only(module: types.ModuleType) -> None:
    """Building the mount imports nothing; the first call imports the module and is answered by its routes."""
    lazy = LazyRoutes(f"{MODULE}:routes")
    routes: list[BaseRoute] = [Mount("/x", app=lazy)]
    assert MODULE not in sys.modules
    sys.modules[MODULE] = module  # importable from now on, as a module on the path would be
    assert await answers(routes, "/x/hello/you") == [(200, "hello you")]
    assert lazy.router is lazy.router


@pytest.mark.anyio
async def test_a_lazy_mount_answers_as_a_mount_of_the_same_routes(module: types.ModuleType) -> None:
    """Matches, misses, wrong methods and trailing slashes are answered the same as by ``Mount(routes=...)``."""
    sys.modules[MODULE] = module
    paths = ("/x/hello/you", "/x/hello/you/", "/x/nothing", "/x", "/x/more")
    plain = await answers([Mount("/x", routes=[*module.routes, *module.more()])], *paths)
    lazy = await answers([Mount("/x", app=LazyRoutes(f"{MODULE}:routes", f"{MODULE}:more"))], *paths)
    assert lazy == plain
    assert plain[0] == (200, "hello you") and plain[2][0] == 404
