"""Webhook delivery throughput to a loopback receiver, and the queue's pace with and without a dead receiver."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx

from emulator.runtime.testing import stop_process

HOST = "127.0.0.1"
AUTH = {"Authorization": "Key bench:secret"}
READY_SECONDS = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def serve_receiver(port: int) -> None:
    """The receiver child process: a bare ASGI app that answers 200 to everything."""
    import uvicorn

    async def app(scope: dict[str, object], receive: object, send: object) -> None:
        if scope["type"] != "http":
            return
        while (await receive())["more_body"]:  # type: ignore[operator]
            pass
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]})  # type: ignore[operator]
        await send({"type": "http.response.body", "body": b""})  # type: ignore[operator]

    uvicorn.run(app, host=HOST, port=port, access_log=False, log_level="warning")


@contextlib.contextmanager
def child(argv: Sequence[str], port: int, ready_path: str, env: dict[str, str] | None = None) -> Iterator[None]:
    """A server process, ready once it answers on ``ready_path``; stopped by its pid."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, env={**os.environ, **(env or {})})
    try:
        # Readiness is the first answer: retry until a monotonic deadline, no sleeps.
        deadline = time.monotonic() + READY_SECONDS
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"bench: error: pid {proc.pid} exited with {proc.returncode} before it was ready")
            if time.monotonic() > deadline:
                raise SystemExit(f"bench: error: pid {proc.pid} not ready on port {port}")
            try:
                httpx.get(f"http://{HOST}:{port}{ready_path}", timeout=1.0)
                break
            except httpx.TransportError:
                continue
        yield
    finally:
        stop_process(proc)


@contextlib.contextmanager
def blackhole() -> Iterator[str]:
    """A listening socket that accepts and never answers: the slowest possible receiver."""
    sock = socket.socket()
    sock.bind((HOST, 0))
    sock.listen(1024)
    held: list[socket.socket] = []

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                held.append(sock.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://{HOST}:{sock.getsockname()[1]}/hook"
    finally:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()
        thread.join(timeout=5)
        for conn in held:
            conn.close()


def refused() -> str:
    return f"http://{HOST}:{free_port()}/hook"


async def delivery_throughput(receiver_url: str, count: int, senders: int) -> tuple[float, list[float]]:
    """Deliver ``count`` webhooks through the dispatcher alone; return webhooks/s and each attempt's latency."""
    from emulator.core.clock import SystemClock
    from emulator.webhooks import Delivery, Dispatcher, KeyRing

    with tempfile.TemporaryDirectory(prefix="bench-keys-") as keys:
        dispatcher = Dispatcher(clock=SystemClock(), keys=KeyRing(Path(keys) / "k.json"), senders=senders)
        dispatcher.keys.active()  # create the key before the clock starts
        body = b'{"error": null, "gateway_request_id": "r", "payload": {"output": "' + b"x" * 400 + b'"}}'
        await dispatcher.start()
        try:
            started = time.perf_counter()
            for n in range(count):
                dispatcher.submit(Delivery(f"req-{n}", "bench", receiver_url, body))
            while len(dispatcher.attempts()) < count:
                await dispatcher.changed()
            elapsed = time.perf_counter() - started
        finally:
            await dispatcher.stop()
        attempts = dispatcher.attempts()
        failed = sum(a.outcome.value != "delivered" for a in attempts)
        if failed:
            raise SystemExit(f"bench: error: {failed} of {count} webhooks were not delivered")
        return count / elapsed, [a.latency for a in attempts]


async def lifecycle(base_url: str, count: int, concurrency: int, webhook: str | None) -> float:
    """Submit ``count`` requests and poll each to COMPLETED over HTTP; return requests/s."""
    params = {"fal_webhook": webhook} if webhook else {}
    todo = iter(range(count))

    async def worker() -> None:
        # A client per connection: one shared pool of many connections costs more than the server.
        async with httpx.AsyncClient(base_url=base_url, headers=AUTH, timeout=30) as http:
            for _ in todo:
                submitted = await http.post("/fal-ai/any-llm", params=params, json={"prompt": "Benchmark prompt"})
                status_url = submitted.json()["status_url"]
                while (await http.get(status_url)).json()["status"] != "COMPLETED":
                    pass

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return count / (time.perf_counter() - started)


def queue_pace(args: argparse.Namespace, data_dir: str) -> list[tuple[str, float, str]]:
    """The same lifecycle with no webhook, a refusing receiver and a silent one: median of interleaved runs."""
    rates: dict[str, list[float]] = {}
    notes: dict[str, str] = {}
    with blackhole() as silent:
        cases = [
            ("no webhook", None, 1.0),
            ("dead receiver (refused)", refused(), 1.0),
            ("dead receiver (refused), scale 0.001", refused(), 0.001),
            ("silent receiver (never answers)", silent, 1.0),
        ]
        # Interleaved repeats, so a drift in the machine's speed touches every case alike.
        for _ in range(args.repeats):
            for name, webhook, scale in cases:
                port = free_port()
                cli = str(Path(sys.executable).parent / "any-llm-emulator")  # the venv's console script
                argv = [cli, "serve", "--port", str(port), "--profile", "instant", "--webhook-time-scale", str(scale)]
                # The signing key goes to a throwaway data directory, never the user's.
                with child(argv, port, "/_emulator/health", {"ANY_LLM_EMULATOR_DATA_DIR": data_dir}):
                    rate = asyncio.run(lifecycle(f"http://{HOST}:{port}", args.requests, args.concurrency, webhook))
                    listing = httpx.get(f"http://{HOST}:{port}/_emulator/webhooks", params={"limit": 0}).json()
                rates.setdefault(name, []).append(rate)
                notes[name] = f"{listing['pending']} webhooks still pending at the end" if webhook else ""
    return [(name, statistics.median(rates[name]), notes[name]) for name, _, _ in cases]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--webhooks", type=int, default=2000, help="webhooks for the throughput run (default 2000)")
    parser.add_argument("--senders", type=int, default=16, help="concurrent senders (default 16)")
    parser.add_argument("--requests", type=int, default=1000, help="requests per queue run (default 1000)")
    parser.add_argument("--concurrency", type=int, default=32, help="client connections per queue run (default 32)")
    parser.add_argument("--repeats", type=int, default=3, help="queue runs per case, median reported (default 3)")
    parser.add_argument("--serve-receiver", type=int, metavar="PORT", help=argparse.SUPPRESS)  # child process mode
    args = parser.parse_args(argv)
    if args.serve_receiver is not None:
        serve_receiver(args.serve_receiver)
        return 0

    port = free_port()
    with child([sys.executable, __file__, "--serve-receiver", str(port)], port, "/"):
        rate, latencies = asyncio.run(delivery_throughput(f"http://{HOST}:{port}/hook", args.webhooks, args.senders))
    latencies.sort()
    p50, p99 = statistics.median(latencies) * 1000, latencies[int(len(latencies) * 0.99) - 1] * 1000
    print(f"\nwebhook delivery, {args.webhooks} signed POSTs to a loopback receiver, {args.senders} senders")
    print(f"  {rate:,.0f} webhooks/s   latency p50 {p50:.2f} ms  p99 {p99:.2f} ms")

    with tempfile.TemporaryDirectory(prefix="bench-data-") as data_dir:
        rows = queue_pace(args, data_dir)
    ceiling = rows[0][1]
    print(
        f"\nqueue lifecycle, {args.requests} requests (submit, poll to COMPLETED), {args.concurrency} connections, "
        f"median of {args.repeats}"
    )
    print(f"  {'case':<38} {'req/s':>9} {'ratio':>6}")
    for name, rate, note in rows:
        print(f"  {name:<38} {rate:>9.1f} {rate / ceiling:>6.2f}  {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
