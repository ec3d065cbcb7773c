"""The hot path: queue calls on the emulator's own host skip Starlette's router and middleware.

Nearly all traffic is submit, status and result on the queue surface, addressed to the
emulator's own host. For those calls ``FalHosts`` only adds the surface URLs (which the queue
surface does not read) and the router tries every mount before its catch-all. Here they go
straight to the journal and the queue handler instead. Everything else (fal's host names, the
proxy path, the control API, the other surfaces, a mount point, an unusual method or path)
takes the full stack, so each call is answered the same either way.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from emulator.core.hosts import surface_of
from emulator.http.errors import http_error, server_error
from emulator.http.hosts import host_of
from emulator.http.routes import proxy, queue

ALL_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
_METHODS = frozenset(ALL_METHODS)
# First path segments the router sends elsewhere than the queue surface's catch-all route.
_OTHER_ROUTES = frozenset({"_emulator", "run", "rest", "cdn", "openapi.yaml", "openapi.json", ".well-known", "api"})
_HOSTS_KEPT = 256


class QueueFront:
    """Decides per call whether the queue handler can answer it directly, and does so."""

    def __init__(self) -> None:
        # Host header → "not one of fal's host names": a handful of distinct values in practice.
        self._plain_hosts: dict[bytes | None, bool] = {}

    def takes(self, scope: Scope) -> bool:
        """Whether the full stack would route this call to the queue surface, unchanged."""
        if scope["type"] != "http" or scope.get("root_path") or scope["method"] not in _METHODS:
            return False
        path: str = scope["path"]
        # The root is the dashboard's door for a browser (``ui.browser_front`` on the full stack);
        # a newline defeats the router's path pattern (a 404 there): leave such paths to it.
        if path == "/" or "\n" in path or proxy.is_proxy_path(path) or path.split("/", 2)[1] in _OTHER_ROUTES:
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
        # What the router's catch-all route would pass the handler as its path parameter.
        scope["path_params"] = {"path": scope["path"][1:]}
        request = Request(scope, receive)
        try:
            response = await queue.handle(request)
        except HTTPException as exc:
            response = await http_error(request, exc)
        except Exception as exc:
            # As Starlette's ServerErrorMiddleware: answer 500 as JSON, then let the server log it.
            await (await server_error(request, exc))(scope, receive, send)
            raise
        await response(scope, receive, send)


def front_door(full: ASGIApp, journal: ASGIApp, front: QueueFront) -> ASGIApp:
    """An ASGI app that sends the calls ``front`` takes through ``journal``, the rest to ``full``."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if front.takes(scope):
            await journal(scope, receive, send)
        else:
            await full(scope, receive, send)

    return app
