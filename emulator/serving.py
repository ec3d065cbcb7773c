"""Serve one app on plain http (``--port``) and, unless ``--tls-port 0``, on https beside it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable, Iterator, Sequence
from typing import Literal

import uvicorn
from starlette.types import ASGIApp

from emulator.config import Settings
from emulator.tls import CertificatePaths, ensure_certificates, server_names


def certificates_for(settings: Settings) -> CertificatePaths | None:
    """The server certificate and CA bundle in the data directory, created on first use; None without TLS."""
    if settings.tls_port == 0:
        return None
    return ensure_certificates(settings.resolved_data_dir(os.environ), server_names(settings.host))


def run_servers(app: ASGIApp, settings: Settings, certs: CertificatePaths | None, *, access_log: bool) -> None:
    """Serve until SIGINT or SIGTERM, on the ASGI server the settings name."""
    if settings.server == "hypercorn":
        asyncio.run(_hypercorn(app, settings, certs, access_log=access_log))
    else:
        _uvicorn(app, settings, certs, access_log=access_log)


async def _hypercorn(app: ASGIApp, settings: Settings, certs: CertificatePaths | None, *, access_log: bool) -> None:
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    config = Config()
    plain = f"{_bind_host(settings.host)}:{settings.port}"
    config.accesslog = "-" if access_log else None
    if certs is None:
        config.bind = [plain]
    else:
        # Hypercorn's own split: `bind` gets TLS when a certificate is set, `insecure_bind` stays plain.
        config.bind = [f"{_bind_host(settings.host)}:{settings.tls_port}"]
        config.insecure_bind = [plain]
        config.certfile = str(certs.cert)
        config.keyfile = str(certs.key)
    await serve(app, config)  # type: ignore[arg-type]


def _bind_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


class _Server(uvicorn.Server):
    """A server that leaves signals to the caller, so two can share one loop and stop together."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _uvicorn(app: ASGIApp, settings: Settings, certs: CertificatePaths | None, *, access_log: bool) -> None:
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
        )

    # One lifespan for the one app: the plain server runs it, the TLS server shares its state.
    configs = [config(settings.port, lifespan="on", tls=False)]
    if certs is not None:
        configs.append(config(settings.tls_port, lifespan="off", tls=True))
    servers = [_Server(c) for c in configs]

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, _stopper(servers))
        await asyncio.gather(*(server.serve() for server in servers))

    factory = configs[0].get_loop_factory() if hasattr(configs[0], "get_loop_factory") else None
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main())


def _stopper(servers: Sequence[uvicorn.Server]) -> Callable[[], None]:
    def stop() -> None:
        for server in servers:
            # A second signal while shutting down means "now", as it does for uvicorn alone.
            server.force_exit = server.should_exit
            server.should_exit = True

    return stop
