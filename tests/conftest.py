"""Shared fixtures: an emulator on a manual clock, reached in-process or over a socket."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from emulator import Emulator, ManualClock, Settings, create_app
from tests.servers import RunningServer, start_server

AUTH = {"Authorization": "Key test-key:test-secret"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def settings() -> Settings:
    return Settings(profile="realistic", seed=7)


@pytest.fixture
def core(settings: Settings, clock: ManualClock) -> Emulator:
    return Emulator.build(settings, clock=clock)


@pytest.fixture
async def client(core: Emulator) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(emulator=core)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://emulator.test", headers=AUTH) as http:
        yield http


@pytest.fixture(params=["uvicorn", "hypercorn"])
def live_server(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    """The emulator over a real loopback socket, on each supported ASGI server."""
    settings = Settings(profile="realistic", seed=3, port=0, server=request.param)
    with start_server(settings) as server:
        yield server
