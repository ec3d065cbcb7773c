"""The JS client's proxy protocol, as ``@fal-ai/server-proxy`` speaks it, served in process.

``fal.config({proxyUrl})`` sends every request to one URL with the fal URL it meant in
``x-fal-target-url``. Here the target's host picks the surface and its path and query the
route; the request then runs through the app as if it had been sent to that URL. Headers
pass through (``x-fal-*`` included); a request without credentials gets the proxy's own, as
a server proxy adds its key.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from starlette.responses import Response
from starlette.types import Scope

from emulator.core.hosts import served_hosts, surface_of
from emulator.http.common import json_response
from emulator.http.hosts import PublicURLs, header, origin_of, routed

PROXY_PATH = "/api/fal/proxy"
TARGET_HEADER = b"x-fal-target-url"
PROXY_CREDENTIALS = b"Key proxy:emulator"


class ProxyError(Exception):
    """A proxied request that names no target the emulator serves; answered 400."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def response(self) -> Response:
        return json_response({"detail": self.message, "error_type": "invalid_proxy_target"}, 400)


def is_proxy_path(path: str) -> bool:
    return path == PROXY_PATH or path == PROXY_PATH + "/"


def target_scope(scope: Scope) -> Scope | ProxyError:
    """The scope of the request the client meant, or the reason there is none."""
    raw = header(scope, TARGET_HEADER)
    if raw is None or not raw.strip():
        return ProxyError(
            "Missing the x-fal-target-url header: a proxied request names the fal URL it is for, "
            "e.g. x-fal-target-url: https://queue.fal.run/fal-ai/any-llm"
        )
    try:
        parts = urlsplit(raw.strip())
        host = parts.hostname
        port = parts.port
    except ValueError:
        return ProxyError(f"x-fal-target-url is not a valid URL: {raw!r}")
    if parts.scheme not in ("https", "http") or not host:
        return ProxyError(f"x-fal-target-url must be an absolute https URL, not {raw!r}")
    surface = surface_of(host)
    if surface is None:
        return ProxyError(
            f"x-fal-target-url {raw!r} is not a fal URL this emulator serves: its host must be {served_hosts()}"
        )
    credentials = (header(scope, b"authorization") or "").strip()
    dropped = (b"host", TARGET_HEADER) if credentials else (b"host", TARGET_HEADER, b"authorization")
    headers = [(k, v) for k, v in scope["headers"] if k not in dropped]
    headers.append((b"host", (host if port is None else f"{host}:{port}").encode("idna")))
    if not credentials:
        headers.append((b"authorization", PROXY_CREDENTIALS))
    # Queue and run URLs keep fal's names, so the JS client sends them back through the proxy;
    # storage URLs name this server, since the client uploads to them directly, not via the proxy.
    real = PublicURLs.real("https")
    urls = PublicURLs(real.queue, real.run, real.rest, origin_of(scope) + "/cdn")
    return routed(
        scope,
        surface,
        unquote(parts.path) or "/",
        urls,
        scheme=parts.scheme,
        headers=headers,
        query_string=parts.query.encode(),
    )
