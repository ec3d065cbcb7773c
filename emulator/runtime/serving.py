"""Serve one app on plain http (``--port``) and, unless ``--tls-port 0``, on https beside it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import uvicorn
from starlette.types import ASGIApp

from emulator.config import Settings, SettingsError
from emulator.runtime.tls import CertificatePaths, ensure_certificates, server_names


@dataclass
class Listeners:
    """The bound sockets: plain http, and https unless TLS is off."""

    plain: socket.socket
    tls: socket.socket | None


def listen(settings: Settings) -> tuple[Listeners, Settings]:
    """Bind both ports before serving, so a busy port is a clear error; returns the ports as bound."""
    plain = _bind(settings.host, settings.port, "--port")
    try:
        tls = _bind(settings.host, settings.tls_port, "--tls-port") if settings.tls_port else None
    except SettingsError:
        plain.close()
        raise
    ports = {"port": plain.getsockname()[1], "tls_port": tls.getsockname()[1] if tls else 0}
    return Listeners(plain, tls), settings.replace(**ports)


def _bind(host: str, port: int, option: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise SettingsError(f"cannot listen on {host}:{port} ({option}): {exc.strerror or exc}") from exc
    sock.set_inheritable(True)
    return sock


def certificates_for(settings: Settings) -> CertificatePaths | None:
    """The server certificate and CA bundle in the data directory, created on first use; None without TLS."""
    if settings.tls_port == 0:
        return None
    data_dir = settings.resolved_data_dir(os.environ)
    try:
        return ensure_certificates(data_dir, server_names(settings.host))
    except OSError as exc:
        raise SettingsError(f"cannot keep the TLS certificates in {data_dir}/tls: {exc} (see --data-dir)") from exc


def run_servers(
    app: ASGIApp, settings: Settings, certs: CertificatePaths | None, listeners: Listeners, *, access_log: bool
) -> None:
    """Serve on the bound sockets until SIGINT or SIGTERM, with the ASGI server the settings name."""
    if settings.server == "hypercorn":
        asyncio.run(_hypercorn(app, certs, listeners, access_log=access_log))
    else:
        _uvicorn(app, settings, certs, listeners, access_log=access_log)


async def _hypercorn(app: ASGIApp, certs: CertificatePaths | None, listeners: Listeners, *, access_log: bool) -> None:
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    config = Config()
    config.accesslog = "-" if access_log else None
    plain = f"fd://{listeners.plain.fileno()}"
    if certs is None or listeners.tls is None:
        config.bind = [plain]
    else:
        # Hypercorn's own split: `bind` gets TLS when a certificate is set, `insecure_bind` stays plain.
        config.bind = [f"fd://{listeners.tls.fileno()}"]
        config.insecure_bind = [plain]
        config.certfile = str(certs.cert)
        config.keyfile = str(certs.key)
    await serve(app, config)  # type: ignore[arg-type]


class _Server(uvicorn.Server):
    """A server that leaves signals to the caller, so two can share one loop and stop together."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _uvicorn(
    app: ASGIApp, settings: Settings, certs: CertificatePaths | None, listeners: Listeners, *, access_log: bool
) -> None:
    def config(port: int, *, lifespan: Literal["on", "off"], tls: bool) -> uvicorn.Config:
        return uvicorn.Config(
            app,
            host=settings.host,
            port=port,
            access_log=access_log,
            log_level="warning",
            lifespan=lifespan,
            ssl_certfile=str(certs.cert) if tls and certs else None,
            ssl_keyfile=str(certs.key) if tls and certs else None,
            http=http_protocol(),
            # Open event streams (a dashboard tab) never end by themselves: stop waiting for them.
            timeout_graceful_shutdown=2,
        )

    # One lifespan for the one app: the plain server runs it, the TLS server shares its state.
    configs = [config(settings.port, lifespan="on", tls=False)]
    sockets = [listeners.plain]
    if certs is not None and listeners.tls is not None:
        configs.append(config(settings.tls_port, lifespan="off", tls=True))
        sockets.append(listeners.tls)
    servers = [_Server(c) for c in configs]

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, _stopper(servers))
        await asyncio.gather(*(server.serve(sockets=[sock]) for server, sock in zip(servers, sockets, strict=True)))

    factory = configs[0].get_loop_factory() if hasattr(configs[0], "get_loop_factory") else None
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main())


def http_protocol() -> type[asyncio.Protocol] | Literal["auto"]:
    """uvicorn's httptools protocol writing each response in one system call; ``auto`` without httptools."""
    try:
        from emulator.http.transport import CoalescingHttpToolsProtocol
    except ImportError:
        return "auto"
    return CoalescingHttpToolsProtocol


def _stopper(servers: Sequence[uvicorn.Server]) -> Callable[[], None]:
    def stop() -> None:
        for server in servers:
            # A second signal while shutting down means "now", as it does for uvicorn alone.
            server.force_exit = server.should_exit
            server.should_exit = True

    return stop
