"""CPU per submit and per full lifecycle, in-process: the ASGI app driven directly, no sockets.

``python bench/submit_cpu.py [-n N] [--profile FILE]`` builds the app as ``serve`` does
(memory store, ``instant`` profile, 64 runners, a seed), freezes the start-up heap as ``serve``
does, then drives it with hand-written ``receive``/``send`` in one event loop:

- submit: N submits, the loop turned once after each so their runs start and complete as under
  load (the CPU of the runs is counted: it is what a submit costs the server);
- lifecycle: N times submit, then fetch the result (one turn of the loop before each fetch) until
  it answers 200: the runs' "still in progress" answers are counted, as in the bench's lifecycle.

Each row is ``time.process_time`` per call, the best of ``--repeat`` rounds (the machine is
shared; the best round is the least disturbed). ``--profile FILE`` writes a cProfile of one
submit round instead. Wire answers are checked (status codes), not timed against a target.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

# ``--emulator-path DIR`` measures the package in another checkout (an earlier commit, say).
_CHECKOUT = Path(__file__).resolve().parent.parent
if "--emulator-path" in sys.argv:
    _CHECKOUT = Path(sys.argv[sys.argv.index("--emulator-path") + 1]).resolve()
sys.path.insert(0, str(_CHECKOUT))

from cpu import http_scope  # noqa: E402  # bench/cpu.py, beside this script
from starlette.types import ASGIApp, Message  # noqa: E402

from emulator.config import Settings  # noqa: E402
from emulator.http.app import create_app  # noqa: E402

HOST = b"127.0.0.1:8000"
AUTH = b"Key bench:secret"
BODY = b'{"prompt": "Benchmark prompt"}'
ENDPOINT = "/fal-ai/any-llm"

ASGI = ASGIApp


def scope(method: str, path: str, body: bytes = b"") -> dict[str, Any]:
    """The scope of a call with the headers wrk sends."""
    headers = [(b"host", HOST), (b"user-agent", b"wrk"), (b"authorization", AUTH)]
    if body:
        headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    return http_scope(method, path, headers)


async def call(app: ASGI, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
    """One HTTP call through the ASGI app: its status and body."""
    sent = False
    status = 0
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope(method, path, body), receive, send)
    return status, b"".join(chunks)


def request_id(body: bytes) -> str:
    start = body.index(b'"request_id":"') + 14
    return body[start : body.index(b'"', start)].decode()


async def submits(app: ASGI, n: int) -> None:
    for _ in range(n):
        status, _ = await call(app, "POST", ENDPOINT, BODY)
        assert status == 200, status
        await asyncio.sleep(0)  # the run's start and completion timers fire (call_soon)


async def lifecycles(app: ASGI, n: int) -> None:
    for _ in range(n):
        status, body = await call(app, "POST", ENDPOINT, BODY)
        assert status == 200, status
        path = f"{ENDPOINT}/requests/{request_id(body)}"
        while True:
            await asyncio.sleep(0)  # one turn of the loop, as the answer and the next call travel
            status, _ = await call(app, "GET", path)
            if status == 200:
                break
            assert status == 400, status  # still in progress


async def lifespan(app: ASGI) -> Callable[[], Awaitable[None]]:
    """Run the app's start-up; return what runs its shutdown."""
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    done: asyncio.Queue[Message] = asyncio.Queue()
    await queue.put({"type": "lifespan.startup"})

    async def send(message: Message) -> None:
        await done.put(message)

    task = asyncio.ensure_future(app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, queue.get, send))
    message = await done.get()
    assert message["type"] == "lifespan.startup.complete", message

    async def stop() -> None:
        await queue.put({"type": "lifespan.shutdown"})
        await done.get()
        await task

    return stop


async def measure(args: argparse.Namespace) -> dict[str, float]:
    settings = Settings(profile="instant", runners=64, seed=1, data_dir=Path(args.data_dir))
    app: ASGI = create_app(settings)
    stop = await lifespan(app)
    # Warm up: first schema compile, first generated text, caches.
    await lifecycles(app, 200)
    gc.collect()
    gc.freeze()
    results: dict[str, float] = {}
    try:
        if args.profile:
            profiler = cProfile.Profile()
            profiler.enable()
            await submits(app, args.n)
            profiler.disable()
            profiler.dump_stats(args.profile)
            return results
        for name, run in (("submit", submits), ("lifecycle", lifecycles)):
            if name not in args.cases:
                continue
            best = float("inf")
            for _ in range(args.repeat):
                started = time.process_time()
                await run(app, args.n)
                best = min(best, time.process_time() - started)
            results[name] = best / args.n * 1e6
    finally:
        await stop()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20_000, help="calls per round (default 20,000)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; the best counts (default 3)")
    parser.add_argument("--cases", default="submit,lifecycle", help="which to measure (default both)")
    parser.add_argument("--profile", help="write a cProfile of one submit round to this file instead")
    parser.add_argument("--emulator-path", help="measure the package in this checkout instead (read at import)")
    parser.add_argument("--data-dir", default="/tmp/submit-cpu-data", help="the emulator's data directory")
    args = parser.parse_args(argv)
    results = asyncio.run(measure(args))
    for name, micros in results.items():
        print(f"{name}: {micros:.1f} us per call (CPU, best of {args.repeat} x {args.n})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
