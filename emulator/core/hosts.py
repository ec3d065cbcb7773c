"""fal's host names and the surface each stands for: the one table the router, the TLS certificate,
the JS proxy and the image check read.

The app serves every surface under one origin (queue at the root, run under ``/run``, rest
under ``/rest``, cdn under ``/cdn``); fal's clients address them by these names instead.
"""

from __future__ import annotations

from collections.abc import Mapping

SURFACES = ("queue", "run", "rest", "cdn")
FAL_HOSTS: Mapping[str, str] = {
    "queue.fal.run": "queue",
    "fal.run": "run",
    # fal-client (1.0.3) replays a request at these after a connection error to the two above.
    "queue.falrun.com": "queue",
    "falrun.com": "run",
    "rest.fal.ai": "rest",
    "rest.alpha.fal.ai": "rest",
    "v3.fal.media": "cdn",
    # fal's website serves each endpoint's OpenAPI document (/api/openapi/queue/openapi.json); the
    # emulator answers that path beside the queue surface's routes.
    "fal.ai": "queue",
}
# Where fal serves the OpenAI-compatible surface on its run host: https://fal.run/openrouter/router/openai/v1
OPENAI_BASE_PATH = "openrouter/router/openai/v1"
# Every *.fal.media name is the CDN (file URLs come from several of its hosts).
CDN_DOMAIN = "fal.media"
# The name each surface goes by when the emulator hands out fal's own URLs.
REAL_HOST: Mapping[str, str] = {
    "queue": "queue.fal.run",
    "run": "fal.run",
    "rest": "rest.fal.ai",
    "cdn": "v3.fal.media",
}


def surface_of(host: str) -> str | None:
    """Which surface a fal host name stands for (``*.fal.media`` is the CDN); None for other hosts."""
    host = host.lower().rstrip(".")
    if host in FAL_HOSTS:
        return FAL_HOSTS[host]
    if host.endswith("." + CDN_DOMAIN):
        return "cdn"
    return None


def is_cdn_host(host: str) -> bool:
    """``fal.media`` or any name under it."""
    host = host.lower().rstrip(".")
    return host == CDN_DOMAIN or host.endswith("." + CDN_DOMAIN)


def certificate_names() -> tuple[str, ...]:
    """The fal names a server certificate must cover: every host above and the CDN's wildcard."""
    return (*FAL_HOSTS, "*." + CDN_DOMAIN)


def served_hosts() -> str:
    """The served names for a message: ``queue.fal.run, fal.run, ... or *.fal.media``."""
    return ", ".join(FAL_HOSTS) + " or *." + CDN_DOMAIN
