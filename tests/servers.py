"""Run the emulator on a real socket in a background thread; readiness by probing, no sleeps."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx

from emulator import Emulator, Settings, create_app


@dataclass
class RunningServer:
    base_url: str
    emulator: Emulator


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_ready(url: str, deadline_seconds: float = 15.0) -> None:
    """Poll the health endpoint until it answers 200, or fail at the deadline."""
    deadline = time.monotonic() + deadline_seconds
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.TransportError as exc:
            last = exc
    raise RuntimeError(f"server at {url} not ready after {deadline_seconds}s: {last}")


@contextlib.contextmanager
def start_server(settings: Settings) -> Iterator[RunningServer]:
    port = settings.port or free_port()
    settings = settings.replace(port=port)
    emulator = Emulator.build(settings)
    app = create_app(emulator=emulator)
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def serve() -> None:
        if settings.server == "hypercorn":
            from hypercorn.asyncio import serve as hypercorn_serve
            from hypercorn.config import Config

            config = Config()
            config.bind = [f"127.0.0.1:{port}"]
            config.accesslog = None
            config.errorlog = None
            await hypercorn_serve(app, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]
        else:
            import uvicorn

            from emulator.serving import http_protocol

            # The protocol `serve` uses, so socket tests cover its one-write responses.
            config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", http=http_protocol())
            server = uvicorn.Server(config)
            task = asyncio.ensure_future(server.serve())
            await stop.wait()
            server.should_exit = True
            await task

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(f"{base_url}/_emulator/health")
        yield RunningServer(base_url, emulator)
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=10)
        loop.close()
