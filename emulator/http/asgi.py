"""An app factory for ASGI servers run on their own, e.g. several uvicorn workers sharing a Redis store.

``uvicorn --factory emulator.http.asgi:app --workers 4`` builds one emulator per worker from the
``ANY_LLM_EMULATOR_*`` environment; with ``ANY_LLM_EMULATOR_STORE=redis://…`` they serve one queue.
"""

from __future__ import annotations

import os

from starlette.applications import Starlette

from emulator.config import Settings
from emulator.http.app import create_app


def app() -> Starlette:
    """The emulator as the environment describes it."""
    return create_app(Settings.from_env(os.environ))
