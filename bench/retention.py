"""What one completed request costs the memory store: Python bytes and GC-tracked objects retained.

Submits ``--count`` requests straight to the core (``Emulator.call``, memory store, ``instant``
profile, a manual clock moved past their end), and prints one JSON line: the bytes tracemalloc
sees retained per completed record, the garbage collector's tracked objects per record (what
every full collection walks), and the projection at the store's default cap.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import tracemalloc

BODY = b'{"prompt": "Benchmark prompt"}'
HEADERS = {"content-type": "application/json"}
WARM_UP = 200


async def measure(count: int) -> dict[str, float]:
    from emulator.config import Settings
    from emulator.core.clock import ManualClock
    from emulator.core.service import Call, Emulator

    clock = ManualClock()
    settings = Settings(profile="instant", seed=1, runners=64, retention_count=count + WARM_UP)
    emulator = Emulator.build(settings, clock=clock)

    async def submit() -> None:
        await emulator.call(Call("submit", "bench", "fal-ai/any-llm", body=BODY, headers=HEADERS))

    # Warm-up: caches, the first generated text and lazily imported modules are not per record.
    for _ in range(WARM_UP):
        await submit()
    clock.advance(3600)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    tracked = len(gc.get_objects())
    for _ in range(count):
        await submit()
    clock.advance(3600)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracked = len(gc.get_objects()) - tracked
    tracemalloc.stop()
    done = sum(1 for record in emulator.scheduler.store.records() if record.done)
    per_record = (after - before) / count
    return {
        "records": count,
        "completed": done,
        "bytes_per_record": round(per_record),
        "tracked_per_record": round(tracked / count, 1),
        "at_default_cap_mb": round(per_record * 100_000 / 1e6, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=5000, help="completed requests to measure (default 5000)")
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(measure(args.count))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
