"""The emulator on a real socket in a background thread (see ``emulator.runtime.testing``)."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

from emulator import Settings
from emulator.runtime.testing import ServerThread, serve_in_thread

RunningServer = ServerThread


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def start_server(settings: Settings) -> Iterator[ServerThread]:
    """Serve on a free loopback port (TLS off) until the block ends."""
    with serve_in_thread(settings.replace(tls_port=0)) as server:
        yield server
