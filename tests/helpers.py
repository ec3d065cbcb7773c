"""Small test helpers shared by modules."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

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
