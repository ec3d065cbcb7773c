"""The JS client's proxy protocol, as ``@fal-ai/server-proxy`` speaks it, served in process.

``fal.config({proxyUrl})`` sends every request to one URL with the fal URL it meant in
``x-fal-target-url``. Here the target's host picks the surface and its path and query the
route; the request then runs through the app as if it had been sent to that URL. A request
without credentials gets the proxy's own, as a server proxy adds its key.

Two modes (``--proxy``). ``server-proxy``, the default, does what the proxy users deploy
does (``@fal-ai/server-proxy`` 1.2 with its default configuration): it forwards only
``fal.run/**``, ``queue.fal.run/**`` and two storage calls, answers anything else 400 with
the body ``"Invalid request"``, passes on only ``x-fal-*`` headers and the credentials,
forces JSON ``accept``/``content-type`` and adds ``x-fal-client-proxy``. So what fails
through that proxy (uploads over 90 MB: ``initiate-multipart`` is not on its list) fails
here too. ``open`` forwards to every fal host with every header, and says what is wrong
with a target it cannot serve.
"""

from __future__ import annotations

from urllib.parse import SplitResult, unquote, urlsplit

from starlette.responses import Response
from starlette.types import Scope

from emulator.core.hosts import served_hosts, surface_of
from emulator.http.common import json_response
from emulator.http.hosts import PublicURLs, header, origin_of, routed

PROXY_PATH = "/api/fal/proxy"
TARGET_HEADER = b"x-fal-target-url"
PROXY_CREDENTIALS = b"Key proxy:emulator"
# @fal-ai/server-proxy 1.2's DEFAULT_ALLOWED_URL_PATTERNS, matched against host + path + query.
ALLOWED_HOSTS = frozenset({"fal.run", "queue.fal.run"})
ALLOWED_URLS = frozenset(
    {
        "rest.fal.ai/storage/upload/initiate?storage_type=fal-cdn-v3",
        "rest.fal.ai/storage/upload/complete-multipart?storage_type=fal-cdn-v3",
    }
)
CLIENT_PROXY = b"@fal-ai/server-proxy/any-llm-emulator"


class ProxyError(Exception):
    """A proxied request that names no target the emulator serves; answered 400."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def response(self) -> Response:
        return json_response({"detail": self.message, "error_type": "invalid_proxy_target"}, 400)


class ProxyRefused(ProxyError):
    """What ``@fal-ai/server-proxy`` answers a target off its list: 400, the JSON string "Invalid request".

    Its body says no more, so the reason goes in a header of the emulator's own.
    """

    def response(self) -> Response:
        # A header value is latin-1: escape whatever else the target URL held.
        reason = self.message.encode("ascii", "backslashreplace").decode("ascii")
        return json_response("Invalid request", 400, {"x-emulator-proxy-refusal": reason})


def is_proxy_path(path: str) -> bool:
    return path == PROXY_PATH or path == PROXY_PATH + "/"


def proxy_mode(scope: Scope) -> str:
    """``server-proxy`` or ``open``, as the emulator serving this request was started."""
    state = getattr(scope.get("app"), "state", None)
    emulator = getattr(state, "emulator", None)
    mode: str = getattr(getattr(emulator, "settings", None), "proxy", "server-proxy")
    return mode


def target_scope(scope: Scope) -> Scope | ProxyError:
    """The scope of the request the client meant, or the reason there is none."""
    if proxy_mode(scope) == "open":
        return _open_target(scope)
    return _allowed_target(scope)


def _allowed_target(scope: Scope) -> Scope | ProxyError:
    """As @fal-ai/server-proxy 1.2 forwards by default: its allowlist, its headers."""
    raw = (header(scope, TARGET_HEADER) or "").strip()
    if not raw:
        return ProxyRefused("no x-fal-target-url header")
    try:
        parts = urlsplit(raw)
        host = (parts.hostname or "").lower()
        port = parts.port
    except ValueError:
        return ProxyRefused(f"x-fal-target-url is not a valid URL: {raw!r}")
    where = host if port is None or port == 443 else f"{host}:{port}"
    url = where + (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if where not in ALLOWED_HOSTS and url not in ALLOWED_URLS:
        return ProxyRefused(
            f"{raw} is not on @fal-ai/server-proxy's default list (fal.run/**, queue.fal.run/**, "
            "rest.fal.ai storage initiate and complete-multipart); start the emulator with --proxy open "
            "to forward every fal URL"
        )
    surface = surface_of(host)
    assert surface is not None
    # Only x-fal-* headers and the credentials are forwarded; the rest is the proxy's own.
    credentials = (header(scope, b"authorization") or "").strip()
    headers = [(k, v) for k, v in scope["headers"] if k.startswith(b"x-fal-") and k != TARGET_HEADER]
    headers += [
        (b"host", host.encode("idna")),
        (b"authorization", credentials.encode("latin-1") if credentials else PROXY_CREDENTIALS),
        (b"accept", b"application/json"),
        (b"content-type", b"application/json"),
        (b"x-fal-client-proxy", CLIENT_PROXY),
    ]
    agent = header(scope, b"user-agent")
    if agent is not None:
        headers.append((b"user-agent", agent.encode("latin-1")))
    return _routed_to(scope, surface, parts, headers)


def _routed_to(scope: Scope, surface: str, parts: SplitResult, headers: list[tuple[bytes, bytes]]) -> Scope:
    """The scope of the call the proxy makes: the target's surface, path and query, with these headers."""
    return routed(
        scope,
        surface,
        unquote(parts.path) or "/",
        _proxied_urls(scope),
        scheme=parts.scheme,
        headers=headers,
        query_string=parts.query.encode(),
    )


def _proxied_urls(scope: Scope) -> PublicURLs:
    # Queue and run URLs keep fal's names, so the JS client sends them back through the proxy;
    # storage URLs name this server, since the client uploads to them directly, not via the proxy.
    real = PublicURLs.real("https")
    return PublicURLs(real.queue, real.run, real.rest, origin_of(scope) + "/cdn")


def _open_target(scope: Scope) -> Scope | ProxyError:
    """Every fal host, every header passed on; a clear 400 for a target that is not a fal URL."""
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
    return _routed_to(scope, surface, parts, headers)
