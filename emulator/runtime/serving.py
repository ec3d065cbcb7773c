"""The one server runner: the app on plain http (``--port``) and https beside it, on uvicorn or hypercorn.

``serve_forever`` is the ``serve`` command; ``emulator.runtime.testing`` runs the same ``Runner``
in a thread. Stopping is bounded: a first SIGTERM or Ctrl-C stops accepting, says what it waits
for, and gives open calls ``--shutdown-seconds`` before waiting callers are answered 503 and
streams are ended (``emulator.http.draining``); a second stops at once; a third leaves the
process without cleaning up.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import uvicorn
from starlette.types import ASGIApp

from emulator.config import OPTIONS, Settings, SettingsError
from emulator.http.draining import Draining

if TYPE_CHECKING:
    from emulator.runtime.tls import CertificatePaths

DEFAULT_TLS_PORT = next(option.default for option in OPTIONS if option.field == "tls_port")
# After the calls are answered, how long connections get to close before they are cut.
_CLOSE_SECONDS = 1.0


@dataclass
class Listeners:
    """The bound sockets: plain http, and https unless TLS is off."""

    plain: socket.socket
    tls: socket.socket | None

    def close(self) -> None:
        self.plain.close()
        if self.tls is not None:
            self.tls.close()


def listen(settings: Settings) -> tuple[Listeners, Settings, list[str]]:
    """Bind both ports before serving, so a busy port is a clear error; returns the ports as bound and notes.

    A busy default TLS port is not an error: a free port is taken instead, and a note says which.
    """
    notes = []
    plain = _bind(settings.host, settings.port, "--port")
    try:
        tls = None
        if settings.tls_port:
            try:
                tls = _bind(settings.host, settings.tls_port, "--tls-port")
            except SettingsError:
                if settings.tls_port != DEFAULT_TLS_PORT:
                    raise
                tls = _bind(settings.host, 0, "--tls-port")
                notes.append(
                    f"  note: port {DEFAULT_TLS_PORT} is taken, so https listens on port {tls.getsockname()[1]} "
                    "instead (choose one with --tls-port; `env` finds it either way)"
                )
    except SettingsError:
        plain.close()
        raise
    ports = {"port": plain.getsockname()[1], "tls_port": tls.getsockname()[1] if tls else 0}
    return Listeners(plain, tls), settings.replace(**ports), notes


def _bind(host: str, port: int, option: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        ask = "any-llm-emulator env" + (f" --port {port}" if option == "--port" else "")
        hint = (
            f"is another emulator running there? (`{ask}` asks it); or choose another port with "
            f"{option} N (make run ARGS='{option} N'), 0 for any free one"
        )
        raise SettingsError(f"cannot listen on {host}:{port} ({option}): {exc.strerror or exc}; {hint}") from exc
    sock.set_inheritable(True)
    return sock


def check_data_dir(path: Path) -> None:
    """Make the data directory if needed and check it takes files; a clear error now beats a 500 at first upload."""
    probe = path / f".write-test-{os.getpid()}"
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise SettingsError(
            f"the data directory {path} is not usable ({exc.strerror or exc}): give a writable folder with "
            "--data-dir or ANY_LLM_EMULATOR_DATA_DIR"
        ) from exc


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # an empty host is every interface; another name may resolve anywhere
        return False


def exposure_warning(settings: Settings) -> str | None:
    """The warning for a control API reachable from the network without a token; None when there is none."""
    if is_loopback(settings.host) or settings.control_token:
        return None
    return (
        f"WARNING: listening on {settings.host or 'every interface'} without --control-token: anyone who can "
        "reach this machine can reset the emulator, script its failures and read its journal through "
        "/_emulator/. Set --control-token (or ANY_LLM_EMULATOR_CONTROL_TOKEN), or bind 127.0.0.1."
    )


def certificates_for(settings: Settings) -> CertificatePaths | None:
    """The server certificate and CA bundle in the data directory, created on first use; None without TLS."""
    if settings.tls_port == 0:
        return None
    # Imported here: cryptography costs ~30 ms, which a server without TLS never needs.
    from emulator.runtime.tls import ensure_certificates, server_names

    try:
        return ensure_certificates(settings.data_dir, server_names(settings.host))
    except OSError as exc:
        raise SettingsError(
            f"cannot keep the TLS certificates in {settings.data_dir}/tls: {exc} (see --data-dir)"
        ) from exc


def http_protocol() -> type[asyncio.Protocol] | Literal["auto"]:
    """uvicorn's httptools protocol writing each response in one system call; ``auto`` without httptools."""
    try:
        from emulator.http.transport import CoalescingHttpToolsProtocol
    except ImportError:
        return "auto"
    return CoalescingHttpToolsProtocol


class _Server(uvicorn.Server):
    """A server that leaves signals to the runner, so two can share one loop and stop together."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class Runner:
    """The app on the bound sockets with the server the settings name, until ``stop()``."""

    def __init__(
        self,
        app: ASGIApp,
        settings: Settings,
        listeners: Listeners,
        certificates: CertificatePaths | None,
        *,
        log_level: str = "warning",
        announce: Callable[[str], None] | None = None,
        hard_exit: bool = False,
    ) -> None:
        self.draining = Draining(app)
        self.settings = settings
        self.listeners = listeners
        self.certificates = certificates if listeners.tls is not None else None
        self.log_level = log_level
        self.announce = announce or (lambda line: None)
        self.hard_exit = hard_exit
        self.stops = 0
        self._stop = asyncio.Event()
        self._now = asyncio.Event()
        self._servers: list[_Server] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def serve(self) -> None:
        """Serve until stopped; returns once the app's lifespan has ended."""
        if self.settings.server == "hypercorn":
            await self._hypercorn()
        else:
            await self._uvicorn()

    def stop(self, *, now: bool = False) -> None:
        """Stop (on the server's loop): gracefully first, at once the second time, or with ``now``."""
        self.stops += 1
        if self.stops >= 3 and self.hard_exit:
            os._exit(130)
        if self.stops == 1:
            self._stop.set()
            for server in self._servers:
                server.should_exit = True
            task = asyncio.get_running_loop().create_task(self._wind_down())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        if now or self.stops >= 2:
            if self.stops >= 2:
                self.announce("stopping now")
            self._now.set()

    async def _wind_down(self) -> None:
        open_calls = self.draining.open_calls()
        if open_calls and not self._now.is_set():
            self.announce(
                f"stopping: waiting up to {self.settings.shutdown_seconds:g}s for {open_calls} open call(s) "
                "(answers still due and open streams); Ctrl-C again to stop now"
            )
        idle = asyncio.ensure_future(self.draining.idle())
        now = asyncio.ensure_future(self._now.wait())
        await asyncio.wait({idle, now}, timeout=self.settings.shutdown_seconds, return_when=asyncio.FIRST_COMPLETED)
        now.cancel()
        if not idle.done():
            self.draining.drain()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(idle, _CLOSE_SECONDS)
        # Idle keep-alive connections (and TLS close handshakes a client never answers) must not hold
        # up the stop: give them a moment to close, then cut them.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _CLOSE_SECONDS
        # uvicorn signals nothing when its connection set empties, so it is polled, to a deadline.
        while loop.time() < deadline and any(server.server_state.connections for server in self._servers):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        for server in self._servers:
            for connection in list(server.server_state.connections):
                transport = getattr(connection, "transport", None)
                if transport is not None:
                    transport.abort()

    async def _uvicorn(self) -> None:
        certs = self.certificates

        def config(port: int, *, lifespan: Literal["on", "off"], tls: bool) -> uvicorn.Config:
            return uvicorn.Config(
                self.draining,
                host=self.settings.host,
                port=port,
                access_log=self.settings.access_log,
                log_level=self.log_level,
                lifespan=lifespan,
                ssl_certfile=str(certs.cert) if tls and certs else None,
                ssl_keyfile=str(certs.key) if tls and certs else None,
                http=http_protocol(),
                h11_max_incomplete_event_size=self.settings.max_header_bytes,
                # A backstop only: the runner's own wind-down ends every call before this.
                timeout_graceful_shutdown=int(self.settings.shutdown_seconds + 3 * _CLOSE_SECONDS + 1),
            )

        # One lifespan for the one app: the plain server runs it, the TLS server shares its state.
        configs = [config(self.settings.port, lifespan="on", tls=False)]
        sockets = [self.listeners.plain]
        if certs is not None and self.listeners.tls is not None:
            configs.append(config(self.settings.tls_port, lifespan="off", tls=True))
            sockets.append(self.listeners.tls)
        if self.settings.access_log:
            # uvicorn logs each request at INFO; the server's own log level would hide them.
            logging.getLogger("uvicorn.access").setLevel(logging.INFO)
        self._servers = [_Server(c) for c in configs]
        if self._stop.is_set():
            return
        await asyncio.gather(
            *(server.serve(sockets=[sock]) for server, sock in zip(self._servers, sockets, strict=True))
        )

    async def _hypercorn(self) -> None:
        from hypercorn.asyncio import serve
        from hypercorn.config import Config

        config = Config()
        config.accesslog = "-" if self.settings.access_log else None
        config.errorlog = "-" if self.log_level != "error" else None
        config.h11_max_incomplete_size = self.settings.max_header_bytes
        config.graceful_timeout = self.settings.shutdown_seconds + 3 * _CLOSE_SECONDS
        # Hypercorn closes the descriptors it serves on; it gets duplicates, the listeners stay ours.
        plain = f"fd://{os.dup(self.listeners.plain.fileno())}"
        if self.certificates is None or self.listeners.tls is None:
            config.bind = [plain]
        else:
            # Hypercorn's own split: `bind` gets TLS when a certificate is set, `insecure_bind` stays plain.
            config.bind = [f"fd://{os.dup(self.listeners.tls.fileno())}"]
            config.insecure_bind = [plain]
            config.certfile = str(self.certificates.cert)
            config.keyfile = str(self.certificates.key)
        await serve(self.draining, config, shutdown_trigger=self._stop.wait)  # type: ignore[arg-type]


def loop_factory(name: str = "asyncio") -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop ``serve`` runs on: asyncio's own (None), or uvloop's when asked for.

    asyncio's loop is the default: under full load uvloop leaves a few calls waiting far longer
    than the rest (docs/performance.md has the measurements).
    """
    if name != "uvloop":
        return None
    try:
        import uvloop
    except ImportError as exc:
        raise SettingsError("--loop uvloop needs the uvloop package: pip install uvloop") from exc
    return uvloop.new_event_loop


def serve_forever(settings: Settings) -> None:
    """The ``serve`` command: check, bind, build, say where, serve until SIGINT or SIGTERM."""
    from emulator.core.service import Emulator
    from emulator.http.app import create_app
    from emulator.runtime.clientenv import banner

    check_data_dir(settings.data_dir)
    new_loop = loop_factory(settings.loop)
    listeners, settings, notes = listen(settings)
    try:
        certs = certificates_for(settings)
        emulator = Emulator.build(settings)
    except BaseException:
        listeners.close()
        raise
    runner = Runner(create_app(emulator=emulator), settings, listeners, certs, announce=_say, hard_exit=True)
    settle_garbage_collector()
    print(banner(settings, certs.bundle if certs else None) + "".join(n + "\n" for n in notes), end="", flush=True)
    warning = exposure_warning(settings)
    if warning:
        print(warning, file=sys.stderr, flush=True)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, runner.stop)
        collector = loop.create_task(IdleCollector(runner.draining).run())
        try:
            await runner.serve()
        finally:
            collector.cancel()

    with asyncio.Runner(loop_factory=new_loop) as running:
        running.run(main())
    _say("stopped")


# CPython's own full collections only after this many younger ones (its default is 10). Each full
# pass walks every record the store keeps (about two tracked objects each, so 200,000 at the
# default cap: about 60 ms; it was 100-200 ms with five each) and pauses every call meanwhile. The
# server collects in full itself when idle (``IdleCollector``); this bound is for a load that never
# lets up (about every 100 s under a full submit load). gen0 and gen1 passes stay as frequent as
# CPython makes them, so short-lived cycles go as soon as before.
FULL_COLLECTION_EVERY = 1000
# An idle server collects in full once this many younger passes have run since the last full one.
IDLE_COLLECTION_AFTER = 10
# How often the idle collector looks; a server that began no call during a whole look is idle.
IDLE_LOOK_SECONDS = 0.5


def settle_garbage_collector() -> None:
    """Keep the start-up heap out of every later collection and make full collections rare.

    Everything alive once the app is built (modules, the spec, the app) lives as long as the
    process: ``gc.freeze`` moves it to the permanent generation, so no collection walks it
    again. The young generations are collected first, so the cycles the build just left are
    not frozen with it; a full collection here found nothing more to free and walked the
    whole start-up heap (about 9 ms of the time to the first answer).
    """
    gc.collect(1)
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_COLLECTION_EVERY)


def _say(line: str) -> None:
    print(f"any-llm-emulator: {line}", file=sys.stderr, flush=True)


class IdleCollector:
    """Full garbage collections in the server's idle time rather than in the middle of a load.

    A full pass pauses every call for as long as it walks the heap (100 ms and more with a full
    store). A server that began no call for a whole look (``IDLE_LOOK_SECONDS``) runs one, once
    the younger passes since the last full one reach ``IDLE_COLLECTION_AFTER``: as often as
    CPython's default would, when nobody waits. Open streams do not count as activity.
    """

    def __init__(
        self,
        draining: Draining,
        *,
        collect: Callable[[int], object] = gc.collect,
        count: Callable[[], tuple[int, int, int]] = gc.get_count,
    ) -> None:
        self.draining = draining
        self._collect = collect
        self._count = count
        self._seen = draining.started
        self.collections = 0

    def look(self) -> bool:
        """Collect in full if the server has been idle since the last look and it is due; whether it did."""
        started = self.draining.started
        idle = started == self._seen
        self._seen = started
        if not idle or self._count()[2] < IDLE_COLLECTION_AFTER:
            return False
        self._collect(2)
        self.collections += 1
        return True

    async def run(self) -> None:
        while True:
            await asyncio.sleep(IDLE_LOOK_SECONDS)
            self.look()
