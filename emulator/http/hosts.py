"""fal's host names and the surfaces they stand for; the base URLs a request's client reaches.

The app serves every surface under one origin: queue at the root, run under ``/run``, rest
under ``/rest`` and cdn under ``/cdn``. fal's clients address them by host name instead
(``emulator.core.hosts``); these helpers map one onto the other, and tell the surfaces which
base URLs to hand out.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from starlette.requests import Request
from starlette.types import Scope

from emulator.core.hosts import OPENAI_BASE_PATH, REAL_HOST

URLS_KEY = "emulator.urls"
SURFACE_PREFIX = {"queue": "", "run": "/run", "rest": "/rest", "cdn": "/cdn"}
# Where the OpenAI-compatible surface is mounted: the run host's prefix, then fal's path.
OPENAI_PREFIX = f"{SURFACE_PREFIX['run']}/{OPENAI_BASE_PATH}"
# The emulator's own API answers on every host, so health checks work whatever the name.
OWN_PREFIX = "/_emulator"


@dataclass(frozen=True, slots=True)
class PublicURLs:
    """The base URL of each surface as the current request's client reaches it."""

    queue: str
    run: str
    rest: str
    cdn: str

    @classmethod
    def under(cls, origin: str) -> PublicURLs:
        """Every surface on one origin, by path prefix: how the emulator serves itself."""
        return cls(*(origin + SURFACE_PREFIX[name] for name in ("queue", "run", "rest", "cdn")))

    @classmethod
    def real(cls, scheme: str, port: str = "") -> PublicURLs:
        """fal's own host names (with the port the client used): for clients that reach us by them."""
        return cls(*(f"{scheme}://{REAL_HOST[name]}{port}" for name in ("queue", "run", "rest", "cdn")))


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def origin_of(scope: Scope) -> str:
    """The scheme, host and mount point the client used to reach this app."""
    host = header(scope, b"host")
    if host is None:
        server = scope.get("server") or ("127.0.0.1", 80)
        host = f"{server[0]}:{server[1]}"
    return f"{scope.get('scheme', 'http')}://{host}{scope.get('root_path', '')}"


def route_path(scope: Scope) -> str:
    """The path below the app's mount point."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def routed(scope: Scope, surface: str, path: str, urls: PublicURLs, **changes: Any) -> Scope:
    """A copy of ``scope`` that the path routes will send to ``surface``'s ``path``."""
    prefix = "" if path.startswith(OWN_PREFIX) else SURFACE_PREFIX[surface]
    full = scope.get("root_path", "") + prefix + path
    return {**scope, **changes, "path": full, "raw_path": quote(full).encode(), URLS_KEY: urls}


def urls_of(request: Request) -> PublicURLs:
    """The request's surface URLs, as ``FalHosts`` worked them out (or, without it, by prefix)."""
    urls = request.scope.get(URLS_KEY)
    return urls if isinstance(urls, PublicURLs) else _under(origin_of(request.scope))


# Clients reach the emulator by a handful of origins: one frozen set of URLs each, not four new
# strings per call (every submit asks for its CDN URL).
@functools.lru_cache(maxsize=256)
def _under(origin: str) -> PublicURLs:
    return PublicURLs.under(origin)


def host_of(scope: Scope) -> tuple[str, int | None]:
    """The host name and port of the Host header (empty and None without one)."""
    parts = urlsplit("//" + (header(scope, b"host") or ""))
    try:
        return parts.hostname or "", parts.port
    except ValueError:  # a port that is not a number
        return parts.hostname or "", None
