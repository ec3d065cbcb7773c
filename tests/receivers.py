"""Webhook receivers on loopback, each in its own thread: scripted, silent, or absent. No sleeps."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

from emulator.webhooks import Dispatcher


@dataclass(frozen=True)
class Call:
    """One POST a receiver got, exactly as it arrived."""

    path: str
    headers: dict[str, str]
    body: bytes


class Receiver:
    """An HTTP server that records every POST and answers scripted status codes, then 200."""

    def __init__(self, port: int = 0) -> None:
        self.calls: list[Call] = []
        self.script: deque[int] = deque()
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._answer(200)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                with receiver._changed:
                    receiver.calls.append(Call(self.path, dict(self.headers.items()), body))
                    code = receiver.script.popleft() if receiver.script else 200
                    receiver._changed.notify_all()
                self._answer(code)

            def _answer(self, code: int) -> None:
                self.send_response(code)
                if 300 <= code < 400:
                    self.send_header("Location", "/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:  # quiet test output
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        # A short poll interval only makes shutdown() quick; requests are served as they arrive.
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)

    def reset(self) -> None:
        """Forget calls and script, for the next test on the same server."""
        with self._changed:
            self.calls.clear()
            self.script.clear()

    def answer(self, *codes: int) -> None:
        """Answer the next POSTs with these codes, in order."""
        self.script.extend(codes)

    def wait_for_calls(self, count: int, timeout: float = 5.0) -> list[Call]:
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.calls) >= count, timeout):
                raise AssertionError(f"receiver got {len(self.calls)} calls, not {count}, within {timeout}s")
            return list(self.calls)

    def __enter__(self) -> Receiver:
        self._thread.start()
        probe_until_ready(self.url.replace("/hook", "/ready"))
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)


class Blackhole:
    """Accepts connections and reads requests, but never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook"
        self.connections: list[socket.socket] = []
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        with contextlib.suppress(OSError):  # the listening socket closed: done
            while True:
                conn, _ = self.sock.accept()
                with self._changed:
                    self.connections.append(conn)
                    self._changed.notify_all()

    def wait_for_connections(self, count: int, timeout: float = 5.0) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.connections) >= count, timeout):
                raise AssertionError(f"blackhole got {len(self.connections)} connections, not {count}")

    def __enter__(self) -> Blackhole:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        # shutdown() wakes the thread blocked in accept(); close() alone may not.
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self._thread.join(timeout=5)
        for conn in self.connections:
            conn.close()


def refused_url() -> str:
    """A loopback URL nothing listens on: connections are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


def probe_until_ready(url: str, deadline_seconds: float = 10.0) -> None:
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            continue
    raise RuntimeError(f"receiver at {url} not ready after {deadline_seconds}s")


async def wait_until(dispatcher: Dispatcher, predicate: Callable[[], bool], within: float = 5.0) -> None:
    """Wait on the dispatcher's change notifications until ``predicate`` holds, or fail at the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise AssertionError("condition not reached before the deadline")
        change = dispatcher.changed()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(change, remaining)
        change.cancel()
