"""A local emulator of fal.ai's queue API.

The package is light to import: ``emulator.core`` (clock, scheduler, outputs, faults) loads no
web framework. The names below are loaded on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from emulator.config import Settings
    from emulator.core.clock import ManualClock, SystemClock
    from emulator.core.service import Emulator
    from emulator.http.app import create_app

__all__ = ["Emulator", "ManualClock", "Settings", "SystemClock", "create_app"]
__version__ = "0.1.0"

_HOMES = {
    "Emulator": "emulator.core.service",
    "ManualClock": "emulator.core.clock",
    "SystemClock": "emulator.core.clock",
    "Settings": "emulator.config",
    "create_app": "emulator.http.app",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'emulator' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
