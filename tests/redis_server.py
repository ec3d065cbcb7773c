"""A real redis-server (the Debian package) on a free loopback port, in its own directory; stopped by its pid."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import redis

from emulator.runtime.testing import stop_process
from tests.servers import free_port

READY_SECONDS = 15.0


@dataclass
class RedisServer:
    """A running redis-server: its port, directory and process."""

    port: int
    directory: Path
    process: subprocess.Popen[bytes]

    def url(self, **options: str) -> str:
        query = "&".join(f"{name}={value}" for name, value in options.items())
        return f"redis://127.0.0.1:{self.port}/0" + (f"?{query}" if query else "")

    def start(self) -> None:
        """Start (or start again, on the same port) and wait until it answers PING."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: run `make test`, which installs it")
        # No persistence and loopback only: a scratch server for one test.
        argv = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory)]
        argv += ["--save", "", "--appendonly", "no", "--protected-mode", "no"]
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + READY_SECONDS
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        try:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"redis-server exited with {self.process.returncode} before it was ready")
                with contextlib.suppress(redis.RedisError):
                    if client.ping():
                        return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server on port {self.port} not ready after {READY_SECONDS}s")
        finally:
            client.close()

    def stop(self) -> None:
        """Stop this server by its pid and wait for it to exit."""
        stop_process(self.process)


@contextlib.contextmanager
def redis_server(directory: Path) -> Iterator[RedisServer]:
    """A fresh redis-server for the duration of the block."""
    directory.mkdir(parents=True, exist_ok=True)
    server = RedisServer(free_port(), directory, subprocess.Popen(["true"]))
    server.process.wait()
    server.start()
    try:
        yield server
    finally:
        server.stop()
