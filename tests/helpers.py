"""Small test helpers shared by modules."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

import httpx
from starlette.types import ASGIApp

from emulator import ManualClock

T = TypeVar("T")


async def drive(clock: ManualClock, call: Awaitable[T], step: float = 0.05, limit: int = 2000) -> T:
    """Run ``call`` while moving the manual clock on in steps, until it finishes (bounded)."""
    task = asyncio.ensure_future(call)
    for _ in range(limit):
        if task.done():
            return task.result()
        clock.advance(step)
        # Yield to the loop so the call can react to what the step changed.
        await asyncio.sleep(0)
    task.cancel()
    raise AssertionError(f"call did not finish within {limit * step} simulated seconds")


class DrivenTransport(httpx.AsyncBaseTransport):
    """An in-process transport that moves the manual clock on while each call is answered (``drive``),
    for clients (the ``openai`` SDK) whose calls a test cannot wrap one by one."""

    def __init__(self, app: ASGIApp, clock: ManualClock) -> None:
        self.inner = httpx.ASGITransport(app=app)
        self.clock = clock

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await drive(self.clock, self.inner.handle_async_request(request))
