"""Surfaces imported on their first call: a server that starts need not load what no call has asked for.

``Mount(prefix, app=LazyRoutes("emulator.http.routes.cdn:routes"))`` answers exactly as
``Mount(prefix, routes=cdn.routes)`` would (the same ``Router`` over the same routes), but
imports the module, and everything it imports, when the first call reaches the mount.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from starlette.routing import BaseRoute, Router
from starlette.types import Receive, Scope, Send


class LazyRoutes:
    """A router over routes from ``module:attribute`` sources (a list, or a function making one), made on first use."""

    def __init__(self, *sources: str) -> None:
        self.sources = sources
        self._router: Router | None = None

    @property
    def router(self) -> Router:
        if self._router is None:
            routes: list[BaseRoute] = []
            for source in self.sources:
                module, _, attribute = source.partition(":")
                found: list[BaseRoute] | Callable[[], list[BaseRoute]] | Any = getattr(
                    importlib.import_module(module), attribute
                )
                routes += found() if callable(found) else found
            self._router = Router(routes=routes)
        return self._router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.router(scope, receive, send)
