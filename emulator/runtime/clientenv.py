"""What points the official clients at a running emulator: ``any-llm-emulator env`` and the banner."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from emulator.config import Settings
from emulator.http.routes.proxy import PROXY_PATH

# Any well-formed key works; this one only names the caller's queue.
DEFAULT_KEY = "local:secret"


def connect_host(bind_host: str) -> str:
    """The address a client on this machine dials for a server bound to ``bind_host``."""
    if bind_host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if bind_host == "::":
        return "[::1]"
    return f"[{bind_host}]" if ":" in bind_host else bind_host


def plain_url(settings: Settings) -> str:
    return f"http://{connect_host(settings.host)}:{settings.port}"


def tls_url(settings: Settings) -> str | None:
    return None if settings.tls_port == 0 else f"https://{connect_host(settings.host)}:{settings.tls_port}"


def proxy_url(settings: Settings) -> str:
    return plain_url(settings) + PROXY_PATH


def python_environment(settings: Settings, bundle: Path | None) -> dict[str, str]:
    """The variables fal-client reads: the key, the run and queue hosts (with a path prefix), the CA bundle."""
    env = {"FAL_KEY": DEFAULT_KEY}
    tls = tls_url(settings)
    if tls is not None and bundle is not None:
        # The client formats these into https://{host}/, so a host may carry a path; the queue
        # surface is the server root, run is under /run (queue.localhost does not resolve on Linux).
        host = tls.removeprefix("https://")
        env.update(FAL_RUN_HOST=f"{host}/run", FAL_QUEUE_RUN_HOST=host, SSL_CERT_FILE=str(bundle))
    return env


def js_config(settings: Settings) -> str:
    """The ``fal.config`` call that sends every @fal-ai/client request through the emulator's proxy."""
    proxy = {"url": proxy_url(settings), "when": "always"}
    return f"fal.config({{ credentials: {json.dumps(DEFAULT_KEY)}, proxyUrl: {json.dumps(proxy)} }});"


def env_script(settings: Settings, bundle: Path | None) -> str:
    """POSIX shell lines for ``eval "$(any-llm-emulator env)"``, with the JS snippet as comments."""
    tls = tls_url(settings)
    where = plain_url(settings) + (f" and {tls}" if tls else "")
    lines = [f"# any-llm emulator at {where}"]
    lines += [f"export {name}={shlex.quote(value)}" for name, value in python_environment(settings, bundle).items()]
    if tls is None:
        lines.append("# TLS is off (--tls-port 0): the Python client (fal-client) only speaks https.")
    lines += [
        "# Python uploads (fal_client.upload*): from emulator.client import point_fal_client; point_fal_client()",
        "# JavaScript (@fal-ai/client): no environment needed, configure the client instead:",
        f"#   {js_config(settings)}",
    ]
    return "\n".join(lines) + "\n"


def client_banner(settings: Settings, bundle: Path | None) -> str:
    """The lines ``serve`` adds to its banner about TLS and the official clients."""
    tls = tls_url(settings)
    lines = []
    if tls is not None and bundle is not None:
        lines.append(f"  https: {tls} (local CA bundle: {bundle})")
        lines.append('  Python client (fal-client): eval "$(any-llm-emulator env)"')
    lines.append(f"  JS client (@fal-ai/client): {js_config(settings)}")
    return "\n".join(lines) + "\n"
