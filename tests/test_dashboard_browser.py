"""The dashboard in a real headless Chromium: live rows, the playground, request controls, webhooks."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from emulator import Settings
from emulator.runtime.testing import ServerThread, serve_in_thread
from tests import browser
from tests.receivers import Receiver

pytestmark = pytest.mark.browser

AUTH = {"Authorization": "Key pg:secret"}


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    with browser.chromium() as chromium:
        yield chromium


def serve(tmp_path: Path, **changes: Any) -> Any:
    settings = Settings(profile="realistic", clock="manual", seed=11, tls_port=0, data_dir=tmp_path)
    return serve_in_thread(settings.replace(**changes))


@pytest.fixture
def manual(tmp_path: Path, driver: Any) -> Iterator[ServerThread]:
    """An emulator on a manual clock: nothing moves until the test (or the page) advances it."""
    with serve(tmp_path) as server:
        yield server
        # Close the tabs' event streams before the server stops.
        driver.get("about:blank")


def by_css(css: str) -> Any:
    from selenium.webdriver.common.by import By

    return (By.CSS_SELECTOR, css)


def text_of(driver: Any, css: str) -> str:
    found = driver.find_elements(*by_css(css))
    return str(found[0].text) if found else ""


def open_live(driver: Any, url: str) -> None:
    """Load a dashboard page and wait until its event stream has caught up."""
    driver.get(url)
    browser.wait_for(
        driver, lambda d: d.execute_script("return document.documentElement.dataset.live === 'true';"), "the page live"
    )


def status_of_row(driver: Any, request_id: str) -> str:
    return text_of(driver, f"#r-{request_id} td:nth-child(4) .badge")


def advance_from_page(driver: Any, seconds: float) -> None:
    """Move the manual clock on with the queue view's own form."""
    field = driver.find_element(*by_css("#clock-form input[name=seconds]"))
    field.clear()
    field.send_keys(str(seconds))
    driver.execute_script("document.getElementById('toast').textContent = '';")
    driver.find_element(*by_css("#clock-form button[type=submit]")).click()
    browser.wait_for(driver, lambda d: "Clock advanced" in text_of(d, "#toast"), "the clock form's answer")


def press_with_the_keyboard(driver: Any, css: str, limit: int = 60) -> None:
    """Tab from the top of the page to the element, then press Enter: the page works without a mouse."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    target = driver.find_element(*by_css(css))
    for _ in range(limit):
        ActionChains(driver).send_keys(Keys.TAB).perform()
        if driver.switch_to.active_element == target:
            ActionChains(driver).send_keys(Keys.ENTER).perform()
            return
    raise AssertionError(f"{css} was not reached with {limit} presses of Tab")


def submit(server: ServerThread, body: dict[str, Any], **params: str) -> str:
    response = httpx.post(f"{server.base_url}/fal-ai/any-llm", json=body, params=params, headers=AUTH)
    assert response.status_code == 200, response.text
    return str(response.json()["request_id"])


def advance(server: ServerThread, seconds: float) -> None:
    response = httpx.post(f"{server.base_url}/_emulator/clock/advance", json={"seconds": seconds})
    assert response.status_code == 200, response.text


def test_a_prompt_from_the_playground_goes_through_the_live_queue_and_streams_its_answer(
    driver: Any, manual: ServerThread
) -> None:
    """A playground submit shows up in an open queue view and moves IN_QUEUE → IN_PROGRESS → COMPLETED
    there without a reload, while its page shows the answer being written."""
    base = manual.base_url
    open_live(driver, f"{base}/_emulator/ui/?namespace=pg")
    queue_tab = driver.current_window_handle
    # Set on this document only: a reload would lose it.
    driver.execute_script("window.notReloaded = true;")
    assert len(manual.emulator.events) == 1  # one event stream for the open tab
    driver.switch_to.new_window("tab")
    driver.get(f"{base}/_emulator/ui/playground/fal-ai/any-llm?namespace=pg")
    prompt = driver.find_element(*by_css("#f-prompt"))
    prompt.clear()
    prompt.send_keys("Tell me about the emulator's dashboard")
    browser.screenshot(driver, "dashboard-playground")
    driver.find_element(*by_css("button[value=queue]")).click()
    browser.wait_for(driver, lambda d: "/requests/" in d.current_url, "the request's page after submitting")
    request_id = driver.current_url.split("/requests/")[1].split("?")[0]
    request_tab = driver.current_window_handle
    browser.wait_for(
        driver,
        lambda d: d.execute_script("return document.documentElement.dataset.live === 'true';"),
        "the request page live",
    )
    assert len(manual.emulator.events) == 2  # the playground held none; each open page holds one

    driver.switch_to.window(queue_tab)
    browser.wait_for(driver, lambda d: status_of_row(d, request_id) == "IN_QUEUE", "the new row IN_QUEUE")
    advance_from_page(driver, 0.3)
    browser.wait_for(driver, lambda d: status_of_row(d, request_id) == "IN_PROGRESS", "the row IN_PROGRESS")

    driver.switch_to.window(request_tab)
    advance(manual, 0.45)
    browser.wait_for(driver, lambda d: text_of(d, "#stream-text").strip() != "", "the first streamed words")
    partial = text_of(driver, "#stream-text")
    assert text_of(driver, "#request-status") == "IN_PROGRESS"
    advance(manual, 60)
    browser.wait_for(driver, lambda d: text_of(d, "#request-status") == "COMPLETED", "the request COMPLETED")
    answer = text_of(driver, "#sec-output pre.answer")
    assert answer.startswith(partial.strip()[:20]) and len(answer) > len(partial)
    browser.screenshot(driver, "dashboard-request")

    driver.switch_to.window(queue_tab)
    browser.wait_for(driver, lambda d: status_of_row(d, request_id) == "COMPLETED", "the row COMPLETED")
    assert driver.execute_script("return window.notReloaded === true;")
    driver.switch_to.window(request_tab)
    driver.close()
    driver.switch_to.window(queue_tab)


def test_a_request_is_held_and_released_from_its_page(driver: Any, manual: ServerThread) -> None:
    """Hold keeps a queued request from starting when its time comes; Release lets it run."""
    request_id = submit(manual, {"prompt": "hold me"})
    open_live(driver, f"{manual.base_url}/_emulator/ui/requests/{request_id}?namespace=pg")
    driver.find_element(*by_css("button[data-action=hold]")).click()
    browser.wait_for(driver, lambda d: d.find_elements(*by_css("#sec-state .badge.held")), "the HELD badge")
    advance(manual, 5)
    assert manual.emulator.scheduler.get("pg", request_id).state.value == "IN_QUEUE"  # type: ignore[union-attr]
    driver.find_element(*by_css("button[data-action=release]")).click()
    browser.wait_for(driver, lambda d: not d.find_elements(*by_css("#sec-state .badge.held")), "the HELD badge gone")
    advance(manual, 0)
    browser.wait_for(driver, lambda d: text_of(d, "#request-status") == "IN_PROGRESS", "the request running")
    advance(manual, 60)
    browser.wait_for(driver, lambda d: text_of(d, "#request-status") == "COMPLETED", "the request COMPLETED")


def test_a_webhook_that_fails_twice_shows_three_attempts_the_last_one_verified(tmp_path: Path, driver: Any) -> None:
    """Two 500s and a 200 from the receiver appear on the open page one by one, each signature checked."""
    with Receiver() as receiver, serve(tmp_path, webhook_time_scale=0.001) as server:
        receiver.answer(500, 500)
        request_id = submit(server, {"prompt": "call me back"}, fal_webhook=receiver.url)
        open_live(driver, f"{server.base_url}/_emulator/ui/requests/{request_id}?namespace=pg")

        def attempts(count: int) -> Any:
            def shown(d: Any) -> list[list[str]] | None:
                rows = [
                    [cell.text for cell in row.find_elements(*by_css("td"))]
                    for row in d.find_elements(*by_css("tr.attempt"))
                ]
                return rows if len(rows) == count else None

            return shown

        advance(server, 60)  # the run completes; the first attempt goes out
        browser.wait_for(driver, attempts(1), "the first attempt")
        # Each retry waits on the manual clock (scaled down): move it on once the page shows the last one.
        advance(server, 1)
        browser.wait_for(driver, attempts(2), "the second attempt")
        advance(server, 1)
        rows = browser.wait_for(driver, attempts(3), "the third attempt")
        assert [row[2] for row in rows] == ["500", "500", "200"]
        assert [row[4] for row in rows] == ["retrying", "retrying", "delivered"]
        assert all("verifies" in row[6] for row in rows)
        assert len(receiver.calls) == 3
        driver.get("about:blank")


def test_the_queue_view_shows_a_busy_namespace(driver: Any, manual: ServerThread) -> None:
    """Requests in every state appear as rows with their positions; the picture is the docs' queue view."""
    ids = [submit(manual, {"prompt": f"question {n}"}) for n in range(6)]
    advance(manual, 0.3)  # two runners take the first two
    done = submit(manual, {"prompt": "done soon"})
    open_live(driver, f"{manual.base_url}/_emulator/ui/?namespace=pg")
    browser.wait_for(driver, lambda d: status_of_row(d, ids[0]) == "IN_PROGRESS", "a running row")
    assert text_of(driver, f"#r-{ids[2]} .pos") == "0"
    assert text_of(driver, f"#r-{done} .pos") == "4"
    httpx.post(f"{manual.base_url}/_emulator/requests/{ids[0]}/complete", json={"namespace": "pg"})
    httpx.post(f"{manual.base_url}/_emulator/requests/{ids[1]}/fail", json={"namespace": "pg"})
    browser.wait_for(driver, lambda d: status_of_row(d, ids[1]) == "COMPLETED", "a failed row")
    browser.wait_for(driver, lambda d: text_of(d, f"#r-{done} .pos") == "2", "the queue moving on")
    advance(manual, 0)  # the freed runners start the next two
    browser.wait_for(driver, lambda d: status_of_row(d, ids[3]) == "IN_PROGRESS", "the next rows running")
    browser.screenshot(driver, "dashboard-queue")
    browser.screenshot_dark(driver, "dashboard-queue-dark")


def png(width: int, height: int) -> bytes:
    """A small solid PNG, written out by hand (signature, IHDR, one IDAT, IEND)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\x2b\x6c\xd9" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def test_an_image_in_an_output_is_shown_with_its_natural_size(driver: Any, manual: ServerThread) -> None:
    """A file URL in an output renders as an image the browser actually loads (natural width > 0)."""
    uploaded = httpx.post(
        f"{manual.base_url}/cdn/files/upload",
        content=png(24, 16),
        headers={**AUTH, "Content-Type": "image/png", "X-Fal-File-Name": "dot.png"},
    )
    assert uploaded.status_code == 200, uploaded.text
    request_id = submit(manual, {"prompt": "draw"})
    advance(manual, 60)
    record = manual.emulator.scheduler.get("pg", request_id)
    assert record is not None and record.done
    # No endpoint makes images yet: give this finished request an image output as one would.
    record.output = {"images": [{"url": uploaded.json()["access_url"], "content_type": "image/png"}]}
    open_live(driver, f"{manual.base_url}/_emulator/ui/requests/{request_id}?namespace=pg")
    width = browser.wait_for(
        driver,
        lambda d: d.execute_script(
            "const img = document.querySelector('#sec-output img');"
            "return img && img.complete && img.naturalWidth > 0 ? img.naturalWidth : null;"
        ),
        "the image loaded",
    )
    assert width == 24


def test_the_playground_runs_a_prompt_as_a_stream_and_links_its_request(tmp_path: Path, driver: Any) -> None:
    """ "Run as a stream" shows the answer from /run/.../stream in the page, with a link to the request's page."""
    with serve(tmp_path, clock="system", profile="instant") as server:
        driver.get(f"{server.base_url}/_emulator/ui/playground/fal-ai/any-llm?namespace=pg")
        press_with_the_keyboard(driver, "button[value=stream]")
        browser.wait_for(driver, lambda d: text_of(d, "#pg-stream").strip() != "", "the streamed answer")
        link = browser.wait_for(driver, lambda d: d.find_elements(*by_css("#pg-link a")), "the request's link")
        request_id = link[0].get_attribute("href").split("/requests/")[1].split("?")[0]
        record = server.emulator.scheduler.get("pg", request_id)
        assert record is not None and record.output is not None
        browser.wait_for(driver, lambda d: text_of(d, "#pg-stream") == record.output["output"], "the whole answer")
        driver.get("about:blank")


def test_with_a_control_token_the_page_opens_once_given_it_and_its_buttons_work(tmp_path: Path, driver: Any) -> None:
    """?token= opens the dashboard (then kept in a cookie); its Pause button passes the control API's check."""
    with serve(tmp_path, control_token="t0ken") as server:
        driver.get(f"{server.base_url}/_emulator/ui/")
        # A loaded machine can hand back the page source before the page is in it: wait for it.
        browser.wait_for(driver, lambda d: "needs the control token" in d.page_source, "the token page")
        open_live(driver, f"{server.base_url}/_emulator/ui/?token=t0ken")
        assert "token" not in driver.current_url
        driver.find_element(*by_css("button[data-control=pause]")).click()
        browser.wait_for(driver, lambda d: text_of(d, "#queue-state") == "PAUSED", "the queue paused")
        assert server.emulator.scheduler.paused
        driver.get("about:blank")
