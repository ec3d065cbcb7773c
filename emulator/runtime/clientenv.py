"""What points the official clients at a running emulator: ``any-llm-emulator env`` and the banner."""

from __future__ import annotations

import json
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from emulator.config import Settings
from emulator.http.hosts import OPENAI_PREFIX
from emulator.http.routes.proxy import PROXY_PATH

if TYPE_CHECKING:
    import httpx

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


def openai_base_url(settings: Settings) -> str:
    """Where the OpenAI SDKs reach fal's OpenAI-compatible surface (plain http, no CA bundle needed)."""
    return plain_url(settings) + OPENAI_PREFIX


def openai_environment(settings: Settings) -> dict[str, str]:
    """The variables the official OpenAI SDKs (Python and JS) read: base URL and key."""
    return {"OPENAI_BASE_URL": openai_base_url(settings), "OPENAI_API_KEY": DEFAULT_KEY}


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
        "# OpenAI SDKs (openai on PyPI and npm) read these; fal's own header is Authorization: Key <FAL_KEY>",
        "# (pass default_headers / defaultHeaders to share fal_client's queue; Bearer works too):",
    ]
    lines += [f"export {name}={shlex.quote(value)}" for name, value in openai_environment(settings).items()]
    return "\n".join(lines) + "\n"


def env_command(settings: Settings, defaults: Settings | None = None) -> str:
    """The exact ``env`` command for this server: this installation's script, and the options it needs."""
    defaults = defaults or Settings()
    script = Path(sys.executable).parent / "any-llm-emulator"
    words = [str(script) if script.exists() else "any-llm-emulator", "env"]
    if settings.host != defaults.host:
        words += ["--host", settings.host]
    if settings.port != defaults.port:
        words += ["--port", str(settings.port)]
    if settings.control_token:
        words += ["--control-token", settings.control_token]
    return shlex.join(words)


def banner(settings: Settings, bundle: Path | None) -> str:
    """What ``serve`` prints once it listens: where, a first request, and how to point the clients."""
    base = plain_url(settings)
    auth = "" if not settings.require_auth else " -H 'Authorization: Key local:secret'"
    lines = [
        f"any-llm emulator listening on {base} (profile {settings.profile}, {settings.runners} runners per key)",
        f"  queue surface: {base}/fal-ai/any-llm   run surface: {base}/run/fal-ai/any-llm",
        f"  spec: {base}/openapi.yaml   health: {base}/_emulator/health   data: {settings.data_dir}",
        f"  dashboard: {base}/_emulator/ui/{'?token=<control token>' if settings.control_token else ''}",
        "Try it:",
        f"  curl -s{auth} -H 'Content-Type: application/json' \\",
        f'    -d \'{{"prompt": "What is the meaning of life?"}}\' {base}/fal-ai/any-llm',
    ]
    tls = tls_url(settings)
    if tls is not None and bundle is not None:
        lines.append(f"  https: {tls} (local CA bundle: {bundle})")
        lines.append(f'  Python client (fal-client): eval "$({env_command(settings)})"')
    lines.append(f"  JS client (@fal-ai/client): {js_config(settings)}")
    lines.append(f"  OpenAI SDKs: base URL {openai_base_url(settings)}, key header 'Authorization: Key local:secret'")
    return "\n".join(lines) + "\n"


class NoServerError(Exception):
    """``env`` found no emulator to ask; the message says where it looked and what to do."""


@dataclass(frozen=True)
class ServerInfo:
    """What a running emulator says about itself: the settings a client needs, and its CA bundle."""

    settings: Settings
    ca_bundle: Path | None


def ask_running_server(settings: Settings, transport: httpx.BaseTransport | None = None) -> ServerInfo:
    """Ask the emulator at ``settings.host``/``port`` for its ports and CA bundle (``GET /_emulator/info``)."""
    url = plain_url(settings) + "/_emulator/info"
    import httpx  # only the ``env`` command asks a server; ``serve`` prints its banner without httpx

    headers = {"X-Emulator-Token": settings.control_token} if settings.control_token else {}
    try:
        with httpx.Client(timeout=5.0, transport=transport) as client:
            response = client.get(url, headers=headers)
    except httpx.HTTPError as exc:
        raise NoServerError(
            f"no emulator answers at {plain_url(settings)} ({exc}); start one with `any-llm-emulator serve` "
            "(or `make run`), or give env the --host/--port it serves on"
        ) from exc
    if response.status_code == 401:
        raise NoServerError(
            f"the emulator at {plain_url(settings)} needs its control token: pass --control-token "
            "or set ANY_LLM_EMULATOR_CONTROL_TOKEN"
        )
    try:
        info = response.json()
        port, tls_port = int(info["port"]), int(info["tls_port"])
        bundle = Path(info["ca_bundle"]) if info.get("ca_bundle") else None
    except (ValueError, KeyError, TypeError) as exc:
        raise NoServerError(
            f"{url} answered {response.status_code} without the emulator's info: is another program on that port?"
        ) from exc
    return ServerInfo(settings.replace(port=port, tls_port=tls_port), bundle)
