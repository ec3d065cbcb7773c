"""Run ``any-llm-emulator`` with a loop-lag probe and garbage-collection timings, for the bench.

``python bench/probe.py STATS_FILE serve ...`` serves exactly as the console script does, and
also measures, in the server's own process, how late a 5 ms timer fires (the event loop's lag:
every request waiting behind a long turn of the loop waits that long too) and how long each
garbage collection pauses. SIGUSR1 starts a new window; SIGUSR2 writes the window's figures as
one JSON line to STATS_FILE, so the bench reads them per target.
"""

from __future__ import annotations

import asyncio
import gc
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

TICK = 0.005
# Samples kept per window: at one per tick this is over 80 s, longer than any bench target.
MAX_SAMPLES = 16_384


class Window:
    def __init__(self) -> None:
        self.lags: list[float] = []
        self.pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}

    def summary(self) -> dict[str, Any]:
        lags = sorted(self.lags)

        def at(q: float) -> float:
            return round(lags[min(len(lags) - 1, int(len(lags) * q))] * 1000, 2) if lags else 0.0

        gcs = {
            f"gen{g}": {"n": len(p), "total_ms": round(sum(p) * 1000, 1), "max_ms": round(max(p, default=0) * 1000, 1)}
            for g, p in self.pauses.items()
        }
        return {"lag_p50_ms": at(0.5), "lag_p99_ms": at(0.99), "lag_max_ms": at(1.0), "samples": len(lags), **gcs}


def main(argv: list[str]) -> int:
    stats_path = Path(argv[0])
    window = Window()
    started = [0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        elif len(window.pauses[info["generation"]]) < MAX_SAMPLES:
            window.pauses[info["generation"]].append(time.perf_counter() - started[0])

    gc.callbacks.append(on_gc)

    def restart(*_: object) -> None:
        nonlocal window
        window = Window()

    def dump(*_: object) -> None:
        with stats_path.open("a") as out:
            out.write(json.dumps(window.summary()) + "\n")

    signal.signal(signal.SIGUSR1, restart)
    signal.signal(signal.SIGUSR2, dump)

    # The probe task starts with the server's loop: asyncio.Runner is what serve_forever runs it in.
    original = asyncio.Runner.run

    def run(self: asyncio.Runner, coro: Any, **kwargs: Any) -> Any:
        async def probed() -> Any:
            async def probe() -> None:
                loop = asyncio.get_running_loop()
                while True:
                    before = loop.time()
                    await asyncio.sleep(TICK)
                    if len(window.lags) < MAX_SAMPLES:
                        window.lags.append(max(0.0, loop.time() - before - TICK))

            task = asyncio.ensure_future(probe())
            try:
                return await coro
            finally:
                task.cancel()

        return original(self, probed(), **kwargs)

    asyncio.Runner.run = run  # type: ignore[method-assign]
    from emulator.runtime.cli import main as cli

    return cli(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
