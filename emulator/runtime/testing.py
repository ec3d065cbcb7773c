"""The emulator in a background thread, for test suites: real sockets, readiness by probing."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from emulator.config import Settings
from emulator.core.service import Emulator
from emulator.http.app import create_app
from emulator.runtime.serving import Listeners, Runner
from emulator.runtime.tls import CertificatePaths, ensure_certificates, server_names


@dataclass
class ServerThread:
    """A running emulator: where it listens, its core, and its CA bundle when TLS is on."""

    base_url: str
    emulator: Emulator
    https_url: str | None = None
    ca_bundle: Path | None = None


def bind_loopback(host: str = "127.0.0.1") -> socket.socket:
    """A listening-ready socket on a free port, bound now so nobody else can take the port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    return sock


def wait_ready(
    url: str,
    *,
    verify: ssl.SSLContext | bool = True,
    deadline_seconds: float = 30.0,
    process: subprocess.Popen[bytes] | None = None,
) -> None:
    """Poll the health endpoint until it answers 200; fail at the deadline, or if ``process`` exits first."""
    deadline = time.monotonic() + deadline_seconds
    last: Exception | None = None
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"emulator pid {process.pid} exited with {process.returncode} before it was ready")
        try:
            if httpx.get(url, timeout=1.0, verify=verify).status_code == 200:
                return
        except httpx.TransportError as exc:
            last = exc
    raise RuntimeError(f"emulator at {url} not ready after {deadline_seconds}s: {last}")


def stop_process(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Stop a process this suite started, by its pid: politely first, forcibly if it hangs."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.contextmanager
def serve_in_thread(
    settings: Settings,
    *,
    plain: socket.socket | None = None,
    tls: socket.socket | None = None,
    certificates: CertificatePaths | None = None,
) -> Iterator[ServerThread]:
    """Serve the emulator on loopback from a thread (uvicorn or hypercorn); stop it on exit.

    Pass already-bound sockets to serve on ports chosen earlier; TLS is served only when a
    ``tls`` socket is given (the certificates default to the data directory's).
    """
    owned = plain is None
    plain = plain or bind_loopback(settings.host)
    port = plain.getsockname()[1]
    tls_port = tls.getsockname()[1] if tls else 0
    settings = settings.replace(port=port, tls_port=tls_port)
    if tls is not None and certificates is None:
        certificates = ensure_certificates(settings.data_dir, server_names(settings.host))
    emulator = Emulator.build(settings)
    runner = Runner(create_app(emulator=emulator), settings, Listeners(plain, tls), certificates, log_level="error")
    loop = asyncio.new_event_loop()

    thread = threading.Thread(
        target=loop.run_until_complete, args=(runner.serve(),), daemon=True, name="any-llm-emulator"
    )
    thread.start()
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "") else settings.host
    running = ServerThread(f"http://{host}:{port}", emulator)
    if tls is not None and certificates is not None:
        running.https_url = f"https://{host}:{tls_port}"
        running.ca_bundle = certificates.bundle
    try:
        wait_ready(f"{running.base_url}/_emulator/health")
        yield running
    finally:
        # Tests leave streams and held requests open: end them at once rather than waiting.
        loop.call_soon_threadsafe(lambda: runner.stop(now=True))
        thread.join(timeout=15)
        if not thread.is_alive():  # a daemon thread still serving is left to end with the process
            loop.close()
        if owned:
            plain.close()
