"""The hot path: queue calls on the emulator's own host skip Starlette's router and middleware.

Nearly all traffic is submit, status and result on the queue surface, addressed to the
emulator's own host. For those calls ``FalHosts`` only adds the surface URLs (which the queue
surface does not read) and the router tries every mount before its catch-all. Here they go
straight to the journal and the queue handler instead. Everything else (fal's host names, the
proxy path, the control API, the other surfaces, a mount point, an unusual method or path)
takes the full stack, so each call is answered the same either way.
"""

from __future__ import annotations

import time

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from emulator.core.hosts import surface_of
from emulator.core.journal import Entry
from emulator.core.service import Emulator
from emulator.http.errors import http_error, server_error
from emulator.http.hosts import host_of
from emulator.http.journal import NOT_JOURNALED, BodyTap, note
from emulator.http.routes import queue

ALL_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
_METHODS = frozenset(ALL_METHODS)
# First path segments the router sends elsewhere than the queue surface's catch-all route (the JS
# proxy path, ``proxy.PROXY_PATH``, is under ``api``).
_OTHER_ROUTES = frozenset({"_emulator", "run", "rest", "cdn", "openapi.yaml", "openapi.json", ".well-known", "api"})
_HOSTS_KEPT = 256


class QueueFront:
    """Decides per call whether the queue handler can answer it directly, and does so."""

    def __init__(self, emulator: Emulator | None = None) -> None:
        # Without one, the emulator of the app serving the call.
        self.emulator = emulator
        # Where the calls it does not take go: the full stack (``front_door`` sets it).
        self.rest: ASGIApp = _no_full_stack
        # Host header → "not one of fal's host names": a handful of distinct values in practice.
        self._plain_hosts: dict[bytes | None, bool] = {}

    def takes(self, scope: Scope) -> bool:
        """Whether the full stack would route this call to the queue surface, unchanged."""
        if scope["type"] != "http" or scope.get("root_path") or scope["method"] not in _METHODS:
            return False
        path: str = scope["path"]
        # The root is the dashboard's door for a browser (``ui.browser_front`` on the full stack);
        # a newline defeats the router's path pattern (a 404 there): leave such paths to it.
        if path == "/" or "\n" in path or path.split("/", 2)[1] in _OTHER_ROUTES:
            return False
        return self._plain_host(scope)

    def _plain_host(self, scope: Scope) -> bool:
        raw = None
        for key, value in scope["headers"]:
            if key == b"host":
                raw = value
                break
        plain = self._plain_hosts.get(raw)
        if plain is None:
            plain = surface_of(host_of(scope)[0]) is None
            if len(self._plain_hosts) >= _HOSTS_KEPT:
                self._plain_hosts.clear()
            self._plain_hosts[raw] = plain
        return plain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.takes(scope):
            await self.rest(scope, receive, send)
            return
        emulator: Emulator = self.emulator or scope["app"].state.emulator
        path: str = scope["path"]
        # What the router's catch-all route would pass the handler as its path parameter.
        scope["path_params"] = {"path": path[1:]}
        journal = emulator.journal
        noting = journal.enabled and not path.startswith(NOT_JOURNALED)
        if noting:
            # What ``JournalMiddleware`` notes around the full stack, without wrapping ``send`` for
            # an answer that starts as soon as it is called (all but streams).
            started = time.perf_counter()
            raw_headers = scope["headers"]
            if scope["method"] == "POST":
                tap = BodyTap(receive, journal.max_body_bytes)
                chunks = tap.chunks
                receive = tap
            else:  # only a submit reads the body here: any other call's received body is empty
                chunks = []
        request = Request(scope, receive)
        failure = None
        try:
            response = await queue.answer(request, emulator)
        except HTTPException as exc:
            response = await http_error(request, exc)
        except Exception as exc:
            # As Starlette's ServerErrorMiddleware: answer 500 as JSON, then let the server log it.
            response = await server_error(request, exc)
            failure = exc
        if not noting:
            await response(scope, receive, send)
        else:
            entry: Entry | None = None
            try:
                if isinstance(response, StreamingResponse):
                    # A stream may read from the client before it starts: noted as it starts.

                    async def send_and_note(message: Message) -> None:
                        nonlocal entry
                        if entry is None and message["type"] == "http.response.start":
                            status, headers = message["status"], message.get("headers", ())
                            entry = note(emulator, scope, path, raw_headers, chunks, status, headers)
                        await send(message)

                    await response(scope, receive, send_and_note)
                else:
                    # A plain answer's first act is to send its start, with these status and headers.
                    status, headers = response.status_code, response.raw_headers
                    entry = note(emulator, scope, path, raw_headers, chunks, status, headers)
                    await response(scope, receive, send)
            finally:
                if entry is not None:
                    entry.elapsed = time.perf_counter() - started
        if failure is not None:
            raise failure


def front_door(full: ASGIApp, front: QueueFront) -> ASGIApp:
    """An ASGI app that sends the calls ``front`` takes to it, the rest to ``full``."""
    front.rest = full
    return front


async def _no_full_stack(scope: Scope, receive: Receive, send: Send) -> None:
    raise RuntimeError("QueueFront needs the full stack for the calls it does not take: build it with front_door")
