"""A headless Chromium for the dashboard's tests: Debian's chromium, driven through its chromedriver."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "images"
# How long a page gets to show what a test waits for: generous, since the machine is shared.
WAIT_SECONDS = 20.0


def available() -> bool:
    return CHROMIUM.exists() and CHROMEDRIVER.exists()


@contextlib.contextmanager
def chromium(width: int = 1400, height: int = 900) -> Iterator[Any]:
    """A headless Chromium that reaches nothing but what the test points it at."""
    if not available():
        pytest.skip("needs Debian's chromium and chromium-driver (make test installs them)")
    # Selenium must use the driver given here, never look for (or download) one of its own.
    os.environ.setdefault("SE_OFFLINE", "true")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="emulator-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        f"--window-size={width},{height}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for(driver: Any, condition: Callable[[Any], Any], what: str, timeout: float = WAIT_SECONDS) -> Any:
    """Poll the page until ``condition`` holds (WebDriverWait), failing with ``what`` at the deadline."""
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    # A live page replaces elements as events arrive: a stale one just means "look again".
    waiting = WebDriverWait(driver, timeout, poll_frequency=0.05, ignored_exceptions=[StaleElementReferenceException])
    try:
        return waiting.until(condition)
    except TimeoutException:
        raise AssertionError(f"the page never showed {what} within {timeout}s") from None


def screenshot(driver: Any, name: str) -> None:
    """Save the page as ``docs/images/<name>.png`` when UPDATE_SCREENSHOTS=1 asks for it."""
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))


def screenshot_dark(driver: Any, name: str) -> None:
    """The same page as the system's dark mode shows it (``prefers-color-scheme: dark``)."""
    if os.environ.get("UPDATE_SCREENSHOTS") != "1":
        return
    dark = {"features": [{"name": "prefers-color-scheme", "value": "dark"}]}
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia", dark)
    try:
        screenshot(driver, name)
    finally:
        driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
