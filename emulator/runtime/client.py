"""A helper for the official Python client's uploads: the only place the emulator touches fal-client.

fal-client reads its run and queue hosts from ``FAL_RUN_HOST`` and ``FAL_QUEUE_RUN_HOST``,
but its storage URLs (``REST_URL``, ``CDN_URL``) are module globals with no environment
variable. ``point_fal_client()`` sets those two, and nothing else, to this emulator::

    eval "$(any-llm-emulator env)"      # in the shell

    from emulator.runtime.client import point_fal_client
    point_fal_client()                  # before the first upload
    url = fal_client.upload(b"...", "image/png")
"""

from __future__ import annotations

import os
from collections.abc import Mapping

__all__ = ["point_fal_client"]


def point_fal_client(base_url: str | None = None, *, environ: Mapping[str, str] | None = None) -> str:
    """Point ``fal_client.client.REST_URL`` and ``CDN_URL`` at the emulator; return its base URL.

    ``base_url`` is the emulator's https origin (``https://127.0.0.1:8443``); by default it is
    ``https://$FAL_QUEUE_RUN_HOST``, as ``any-llm-emulator env`` sets it. Call it before the
    first upload: the client reads ``REST_URL`` when it first asks for an upload token.
    """
    if base_url is None:
        host = (os.environ if environ is None else environ).get("FAL_QUEUE_RUN_HOST")
        if not host:
            raise RuntimeError(
                'FAL_QUEUE_RUN_HOST is not set: run eval "$(any-llm-emulator env)" first, or pass base_url'
            )
        base_url = f"https://{host}"
    base = base_url.rstrip("/")
    import fal_client.client

    fal_client.client.REST_URL = f"{base}/rest"
    fal_client.client.CDN_URL = f"{base}/cdn"
    return base
