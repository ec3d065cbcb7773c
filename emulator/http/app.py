"""The ASGI application: the surfaces mounted over one core."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from emulator.config import Settings
from emulator.core.clock import Clock
from emulator.core.service import Emulator
from emulator.core.tokens import Tokens
from emulator.http.dispatch import FalHosts
from emulator.http.errors import http_error, server_error
from emulator.http.front import ALL_METHODS as _ALL_METHODS
from emulator.http.front import QueueFront, front_door
from emulator.http.hosts import OPENAI_PREFIX
from emulator.http.journal import JournalMiddleware
from emulator.http.lazy import LazyRoutes
from emulator.http.routes import control, documents, queue, realtime, run, ui, webhooks
from emulator.store import Store

if TYPE_CHECKING:
    import httpx

ALL_METHODS = list(_ALL_METHODS)


async def openapi_yaml(request: Request) -> Response:
    emulator: Emulator = request.app.state.emulator
    return Response(emulator.spec.source_text, media_type="application/yaml")


class EmulatorApp(Starlette):
    """Starlette, with the queue surface's hot path (``surfaces.front``) ahead of its stack."""

    def build_middleware_stack(self) -> ASGIApp:
        emulator: Emulator = self.state.emulator
        front = QueueFront(emulator)
        # The browser's checks concern only the root and /_emulator, which the front never takes; nor
        # does it take a call under a mount point, so only the full stack needs its own root.
        full = _own_root(ui.browser_front(super().build_middleware_stack()))
        # The front journals the calls it answers itself, as ``JournalMiddleware`` does the rest.
        return front_door(full, front)


def _own_root(app: ASGIApp) -> ASGIApp:
    """``app`` with its mount point as its root when mounted in another app: Starlette's ``app_root_path``
    names the outer app's, and the URLs this app hands out must lead back here."""

    async def own_root(scope: Scope, receive: Receive, send: Send) -> None:
        root = scope.get("root_path", "")
        if scope.get("app_root_path", root) != root:
            scope = {**scope, "app_root_path": root}
        await app(scope, receive, send)

    return own_root


def create_app(
    settings: Settings | None = None,
    *,
    emulator: Emulator | None = None,
    clock: Clock | None = None,
    store: Store | None = None,
    http_client: httpx.AsyncClient | None = None,
) -> Starlette:
    """Build the app; the core can be passed in whole or in parts (a clock, a store, the webhook client)."""
    if emulator is None:
        emulator = Emulator.build(settings or Settings(), clock=clock, store=store, http_client=http_client)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await emulator.start()
        try:
            yield
        finally:
            await emulator.stop()

    routes = [
        # Ahead of the mounts, which would otherwise take a WebSocket and refuse it without a reason.
        WebSocketRoute("/{path:path}", realtime.refuse),
        Route("/openapi.yaml", openapi_yaml, methods=["GET"]),
        *documents.routes,
        Mount(
            "/_emulator",
            routes=[
                *control.routes,
                *documents.control_routes,
                *webhooks.control_routes,
                # The dashboard: its pages, templates and views load with its first page.
                Mount(ui.MOUNT, app=LazyRoutes("emulator.http.routes.ui:dashboard_routes")),
            ],
        ),
        *webhooks.rest_routes,
        # The surfaces fewer runs use are imported on their first call (emulator.http.lazy).
        Mount(OPENAI_PREFIX, app=LazyRoutes("emulator.http.routes.openai:routes")),
        Mount("/run", routes=[Route("/{path:path}", run.handle, methods=ALL_METHODS)]),
        # Storage, for the official clients' uploads: rest.fal.ai under /rest, v3.fal.media under /cdn.
        Mount("/rest", app=LazyRoutes("emulator.http.routes.rest:routes", "emulator.http.routes.webhooks:rest_routes")),
        Mount("/cdn", app=LazyRoutes("emulator.http.routes.cdn:routes")),
        Route("/{path:path}", queue.handle, methods=ALL_METHODS),
    ]
    # FalHosts serves the JS proxy path and requests addressed to fal's own host names; it runs
    # first, so the journal records the call as it was dispatched.
    app = EmulatorApp(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(FalHosts), Middleware(JournalMiddleware, emulator=emulator)],
        exception_handlers={HTTPException: http_error, 500: server_error},
    )
    app.state.emulator = emulator
    # Tokens from /tokens/ are signed with a secret of this process: they are good only here.
    app.state.tokens = Tokens(emulator.clock, secrets.token_bytes(32))
    return app


__all__ = ["create_app"]
