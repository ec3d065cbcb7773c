"""The front door: the proxy path and fal's host names, in front of the prefix-routed surfaces."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from emulator.core.hosts import surface_of
from emulator.http.hosts import URLS_KEY, PublicURLs, host_of, origin_of, route_path, routed
from emulator.http.routes import proxy


class FalHosts:
    """ASGI middleware: route proxied requests and requests to fal's host names to their surface."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = route_path(scope)
        if proxy.is_proxy_path(path):
            target = proxy.target_scope(scope)
            if isinstance(target, proxy.ProxyError):
                await target.response()(scope, receive, send)
                return
            await self.app(target, receive, send)
            return
        host, port = host_of(scope)
        surface = surface_of(host)
        if surface is None:
            await self.app({**scope, URLS_KEY: PublicURLs.under(origin_of(scope))}, receive, send)
            return
        urls = PublicURLs.real(scope.get("scheme", "http"), "" if port is None else f":{port}")
        await self.app(routed(scope, surface, path, urls), receive, send)
