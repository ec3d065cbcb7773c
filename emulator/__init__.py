"""A local emulator of fal.ai's ``fal-ai/any-llm`` queue API."""

from emulator.app import create_app
from emulator.clock import ManualClock, SystemClock
from emulator.config import Settings
from emulator.service import Emulator

__all__ = ["Emulator", "ManualClock", "Settings", "SystemClock", "create_app"]
__version__ = "0.1.0"
