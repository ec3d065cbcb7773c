"""The dashboard's queue view with 1,000 requests in one namespace: first paint, page size, live update.

Starts ``any-llm-emulator serve`` (manual clock, so the queue holds still while it is measured),
submits the requests, then loads the queue view in Debian's headless Chromium several times and
reports the browser's own timings (first paint, first contentful paint, DOM ready, load), the
bytes of the page and its assets, and how long one new request takes to appear as a row.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from emulator.runtime.testing import stop_process, wait_ready

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
KEY = "bench"
AUTH = {"Authorization": f"Key {KEY}:secret"}

_TIMINGS = """
const nav = performance.getEntriesByType("navigation")[0];
const paint = Object.fromEntries(performance.getEntriesByType("paint").map((p) => [p.name, p.startTime]));
return {
  response_start: nav.responseStart, response_end: nav.responseEnd,
  first_paint: paint["first-paint"] ?? null, first_contentful_paint: paint["first-contentful-paint"] ?? null,
  dom_content_loaded: nav.domContentLoadedEventEnd, load: nav.loadEventEnd,
  transfer_bytes: nav.transferSize, html_bytes: nav.decodedBodySize,
  rows: document.querySelectorAll("#rows tr").length,
};
"""

# Submits one request from the page and resolves with the milliseconds until its row is in the table.
_LIVE_UPDATE = """
const done = arguments[arguments.length - 1];
const started = performance.now();
const tbody = document.getElementById("rows");
let wanted = null;
const observer = new MutationObserver(() => {
  if (wanted && document.getElementById("r-" + wanted)) { observer.disconnect(); done(performance.now() - started); }
});
observer.observe(tbody, { childList: true });
const headers = { "Authorization": arguments[0], "Content-Type": "application/json" };
fetch("/fal-ai/any-llm", { method: "POST", headers, body: JSON.stringify({ prompt: "one more" }) })
  .then((r) => r.json()).then((body) => { wanted = body.request_id;
    if (document.getElementById("r-" + wanted)) { observer.disconnect(); done(performance.now() - started); } });
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def fill(base: str, count: int) -> dict[str, int]:
    """Submit ``count`` requests, then move the clock so some run and some finish."""
    with httpx.Client(base_url=base, headers=AUTH, timeout=30) as http:
        for n in range(count):
            response = http.post("/fal-ai/any-llm", json={"prompt": f"question {n}"})
            response.raise_for_status()
        http.post("/_emulator/clock/advance", json={"seconds": 30}).raise_for_status()
        listed = http.get("/_emulator/requests", params={"namespace": KEY}).json()["requests"]
    counts: dict[str, int] = {}
    for request in listed:
        counts[request["status"]] = counts.get(request["status"], 0) + 1
    return counts


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def submit_cost(base: str, count: int, pid: int) -> tuple[float, float]:
    """Submits per second one after another, and the server's CPU milliseconds per submit.

    The CPU time is the server's own: the browser's work on the same machine does not count in it.
    """
    with httpx.Client(base_url=base, headers=AUTH, timeout=30) as http:
        cpu = cpu_seconds(pid)
        started = time.perf_counter()
        for n in range(count):
            http.post("/fal-ai/any-llm", json={"prompt": f"extra {n}"}).raise_for_status()
        elapsed = time.perf_counter() - started
        return round(count / elapsed, 1), round((cpu_seconds(pid) - cpu) * 1000 / count, 3)


def browser(profile: str) -> Any:
    os.environ.setdefault("SE_OFFLINE", "true")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
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
        "--disable-cache",
        f"--user-data-dir={profile}",
        "--window-size=1400,900",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


def loaded(driver: Any) -> None:
    """Wait until the page has loaded and painted (the navigation entry is final then)."""
    from selenium.webdriver.support.ui import WebDriverWait

    script = (
        "const nav = performance.getEntriesByType('navigation')[0];"
        "return document.readyState === 'complete' && nav && nav.loadEventEnd > 0"
        " && performance.getEntriesByType('paint').length > 0;"
    )
    WebDriverWait(driver, 60, poll_frequency=0.05).until(lambda d: d.execute_script(script))


def median(values: list[float]) -> float:
    return round(statistics.median(values), 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000, help="requests in the namespace (default 1000)")
    parser.add_argument("--loads", type=int, default=5, help="page loads to take the median of (default 5)")
    parser.add_argument("--extra", type=int, default=300, help="submits timed with and without a tab open")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object")
    args = parser.parse_args()
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        print("bench/dashboard.py needs Debian's chromium and chromium-driver (make chromium)", file=sys.stderr)
        return 2
    data_dir = tempfile.mkdtemp(prefix="emulator-bench-")
    profile = tempfile.mkdtemp(prefix="emulator-chromium-")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "emulator", "serve", "--port", str(port), "--tls-port", "0"]
    command += ["--clock", "manual", "--profile", "realistic", "--seed", "1", "--data-dir", data_dir]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    driver = None
    try:
        wait_ready(f"{base}/_emulator/health", process=server)
        counts = fill(base, args.requests)
        url = f"{base}/_emulator/ui/?namespace={KEY}"
        page = httpx.get(url, headers={"accept-encoding": "identity"})
        assets = sum(len(httpx.get(f"{base}/_emulator/ui/static/{name}").content) for name in ("app.css", "app.js"))
        without_tab = submit_cost(base, args.extra, server.pid)
        driver = browser(profile)
        runs = []
        for _ in range(args.loads):
            driver.get("about:blank")
            driver.get(url)
            loaded(driver)
            runs.append(driver.execute_script(_TIMINGS))
        with_tab = submit_cost(base, args.extra, server.pid)  # the last load is still open, its stream live
        driver.set_script_timeout(30)
        live = [driver.execute_async_script(_LIVE_UPDATE, AUTH["Authorization"]) for _ in range(5)]
        result = {
            "requests": sum(counts.values()),
            "by_status": counts,
            "rows_rendered": runs[-1]["rows"],
            "html_bytes": len(page.content),
            "html_transfer_bytes": runs[-1]["transfer_bytes"],
            "asset_bytes": assets,
            "server_response_ms": median([r["response_end"] - r["response_start"] for r in runs]),
            "first_paint_ms": median([r["first_paint"] for r in runs if r["first_paint"] is not None]),
            "first_contentful_paint_ms": median(
                [r["first_contentful_paint"] for r in runs if r["first_contentful_paint"] is not None]
            ),
            "dom_content_loaded_ms": median([r["dom_content_loaded"] for r in runs]),
            "load_ms": median([r["load"] for r in runs]),
            "new_row_visible_ms": median(live),
            "loads": args.loads,
            "submits_per_second_without_tab": without_tab[0],
            "submits_per_second_with_tab": with_tab[0],
            "server_cpu_ms_per_submit_without_tab": without_tab[1],
            "server_cpu_ms_per_submit_with_tab": with_tab[1],
        }
    finally:
        if driver is not None:
            driver.quit()
        stop_process(server)
        shutil.rmtree(data_dir, ignore_errors=True)
        shutil.rmtree(profile, ignore_errors=True)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"dashboard queue view, {result['requests']} requests in one namespace {result['by_status']}:")
    print(
        f"  page: {result['html_bytes']:,} bytes of HTML ({result['html_transfer_bytes']:,} on the wire, gzip), "
        f"{result['rows_rendered']} rows; assets {result['asset_bytes']:,} bytes"
    )
    print(
        f"  server response {result['server_response_ms']} ms; first paint {result['first_paint_ms']} ms, "
        f"first contentful paint {result['first_contentful_paint_ms']} ms (median of {args.loads} loads)"
    )
    print(
        f"  DOM ready {result['dom_content_loaded_ms']} ms, load {result['load_ms']} ms; "
        f"a new request's row visible after {result['new_row_visible_ms']} ms"
    )
    print(
        f"  submits/s while the view is open: {result['submits_per_second_with_tab']} "
        f"(without a tab: {result['submits_per_second_without_tab']}); the server's CPU per submit: "
        f"{result['server_cpu_ms_per_submit_with_tab']} ms (without: {result['server_cpu_ms_per_submit_without_tab']})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
