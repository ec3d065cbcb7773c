"""The JS proxy path and fal's host names, in process: dispatch, envelope URLs, refusals, both proxy modes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from emulator import Emulator, ManualClock, Settings, create_app
from tests.conftest import AUTH
from tests.helpers import drive

pytestmark = pytest.mark.anyio
PROXY = "/api/fal/proxy"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def proxy_mode() -> str:
    """The default mode: as @fal-ai/server-proxy forwards."""
    return "server-proxy"


@pytest.fixture
def app_emulator(tmp_path: Path, clock: ManualClock, proxy_mode: str) -> Emulator:
    return Emulator.build(Settings(profile="instant", data_dir=tmp_path, proxy=proxy_mode), clock=clock)


@pytest.fixture
async def http(app_emulator: Emulator) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(emulator=app_emulator))
    async with httpx.AsyncClient(transport=transport, base_url="http://emulator.test", headers=AUTH) as client:
        yield client


open_proxy = pytest.mark.parametrize("proxy_mode", ["open"])


def target(url: str) -> dict[str, str]:
    return {"x-fal-target-url": url}


@open_proxy
@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "Missing the x-fal-target-url header"),
        (target("not a url"), "must be an absolute https URL"),
        (target("https://queue.fal.run:port/x"), "is not a valid URL"),
        (target("https://example.com/fal-ai/any-llm"), "is not a fal URL this emulator serves"),
        (target("https://api.fal.ai/v1/models"), "is not a fal URL this emulator serves"),
    ],
)
async def test_bad_targets_are_400_with_a_clear_message(
    http: httpx.AsyncClient, headers: dict[str, str], message: str
) -> None:
    """In the open mode, a missing, malformed or non-fal target answers 400 JSON that says what is wrong."""
    response = await http.post(PROXY, json={"prompt": "hi"}, headers=headers)
    assert response.status_code == 400
    assert message in response.json()["detail"]
    assert response.json()["error_type"] == "invalid_proxy_target"


async def test_queue_through_the_proxy_hands_out_fal_urls(http: httpx.AsyncClient, clock: ManualClock) -> None:
    """Submit answers queue.fal.run URLs, which lead back through the proxy to the status and result."""
    submitted = await http.post(
        PROXY, json={"prompt": "echo: proxied"}, headers=target("https://queue.fal.run/fal-ai/any-llm")
    )
    envelope = submitted.json()
    assert envelope["status_url"] == f"https://queue.fal.run/fal-ai/any-llm/requests/{envelope['request_id']}/status"
    clock.advance(0)
    status = await http.get(PROXY, headers=target(envelope["status_url"] + "?logs=1"))
    assert (status.status_code, status.json()["status"]) == (200, "COMPLETED")
    assert status.json()["logs"]
    result = await http.get(PROXY, headers=target(envelope["response_url"]))
    assert result.json()["output"] == "echo: proxied"


async def test_run_through_the_proxy(http: httpx.AsyncClient, clock: ManualClock) -> None:
    """A fal.run target reaches the run surface."""
    call = http.post(PROXY, json={"prompt": "echo: run"}, headers=target("https://fal.run/fal-ai/any-llm"))
    response = await drive(clock, call)
    assert response.json() == {"output": "echo: run", "partial": False, "error": None}


async def test_fal_headers_pass_through(http: httpx.AsyncClient) -> None:
    """x-fal-* headers reach the surface: an invalid priority is refused by the queue's own validation."""
    headers = {**target("https://queue.fal.run/fal-ai/any-llm"), "x-fal-queue-priority": "urgent"}
    response = await http.post(PROXY, json={"prompt": "hi"}, headers=headers)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["header", "x-fal-queue-priority"]


async def test_the_proxy_supplies_credentials_when_the_caller_has_none(http: httpx.AsyncClient) -> None:
    """As a server proxy adds its key, a browser-style request without Authorization is accepted."""
    headers = {**target("https://queue.fal.run/fal-ai/any-llm"), "authorization": ""}
    response = await http.post(PROXY, json={"prompt": "hi"}, headers=headers)
    assert response.status_code == 200


@open_proxy
async def test_storage_through_the_proxy_names_this_server(http: httpx.AsyncClient) -> None:
    """Upload URLs name this server, since the JS client PUTs to them directly, not through the proxy."""
    headers = target("https://rest.fal.ai/storage/upload/initiate?storage_type=fal-cdn-v3")
    urls = (await http.post(PROXY, json={"content_type": "text/plain"}, headers=headers)).json()
    assert urls["upload_url"].startswith("http://emulator.test/cdn/uploads/")
    assert (await http.put(urls["upload_url"], content=b"direct")).status_code == 200
    proxied = await http.get(
        PROXY, headers=target(urls["file_url"].replace("http://emulator.test/cdn", "https://v3.fal.media"))
    )
    assert proxied.content == b"direct"


@pytest.mark.parametrize(
    ("host", "path", "expected"),
    [
        ("queue.fal.run", "/fal-ai/any-llm/requests/nope/status", 404),
        ("fal.run", "/_emulator/health", 200),
        ("rest.fal.ai", "/storage/auth/token", 200),
        ("rest.alpha.fal.ai", "/storage/auth/token", 200),
        ("v3.fal.media", "/files/koala/missing.png", 404),
        ("queue.falrun.com", "/fal-ai/any-llm/requests/nope/status", 404),
        ("falrun.com", "/_emulator/health", 200),
    ],
)
async def test_fal_host_names_serve_their_surface_at_the_root(
    http: httpx.AsyncClient, host: str, path: str, expected: int
) -> None:
    """A request addressed to a fal host name is served by that host's surface at the root."""
    method = "POST" if "token" in path else "GET"
    response = await http.request(method, f"https://{host}{path}")
    assert response.status_code == expected
    if "token" in path:
        assert response.json()["base_url"] == "https://v3.fal.media"


async def test_queue_host_envelopes_keep_the_host(http: httpx.AsyncClient) -> None:
    """Submitted to https://queue.fal.run, the envelope URLs point there too."""
    response = await http.post("https://queue.fal.run/fal-ai/any-llm", json={"prompt": "hi"})
    assert response.json()["response_url"].startswith("https://queue.fal.run/fal-ai/any-llm/requests/")


async def test_run_host_serves_the_run_surface(http: httpx.AsyncClient, clock: ManualClock) -> None:
    """POST https://fal.run/<endpoint> runs the endpoint, as the real host does."""
    response = await drive(clock, http.post("https://fal.run/fal-ai/any-llm", json={"prompt": "echo: at fal.run"}))
    assert response.json()["output"] == "echo: at fal.run"


@pytest.mark.parametrize("host", ["queue.falrun.com", "queue.fal.run"])
async def test_the_fallback_queue_host_reaches_the_queue_surface(http: httpx.AsyncClient, host: str) -> None:
    """fal-client's fallback queue.falrun.com submits like queue.fal.run, and its envelopes keep the host."""
    response = await http.post(f"https://{host}/fal-ai/any-llm", json={"prompt": "hi"})
    assert response.status_code == 200
    assert response.json()["status_url"].startswith(f"https://{host}/fal-ai/any-llm/requests/")


async def test_the_fallback_run_host_runs_the_endpoint(http: httpx.AsyncClient, clock: ManualClock) -> None:
    """POST https://falrun.com/<endpoint>, where fal-client replays a run, runs it as fal.run does."""
    response = await drive(clock, http.post("https://falrun.com/fal-ai/any-llm", json={"prompt": "echo: fallback"}))
    assert response.json()["output"] == "echo: fallback"


@pytest.mark.parametrize(
    "url",
    [
        None,
        "https://rest.fal.ai/storage/upload/initiate-multipart?storage_type=fal-cdn-v3",
        "https://rest.fal.ai/storage/upload/initiate",
        "https://rest.fal.ai/tokens/",
        "https://v3.fal.media/files/koala/cat.png",
        "https://example.com/fal-ai/any-llm",
    ],
)
async def test_the_default_proxy_refuses_what_the_server_proxy_refuses(
    http: httpx.AsyncClient, url: str | None
) -> None:
    """Off @fal-ai/server-proxy's default list: 400 with its JSON string body, and the reason in a header."""
    response = await http.post(PROXY, json={"content_type": "text/plain"}, headers={} if url is None else target(url))
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    assert response.json() == "Invalid request"
    assert response.headers["x-emulator-proxy-refusal"]


async def test_the_default_proxy_forwards_its_list(http: httpx.AsyncClient, clock: ManualClock) -> None:
    """queue.fal.run, fal.run and the single-part storage initiate go through."""
    queued = await http.post(PROXY, json={"prompt": "hi"}, headers=target("https://queue.fal.run/fal-ai/any-llm"))
    assert queued.status_code == 200
    run = await drive(
        clock, http.post(PROXY, json={"prompt": "echo: ok"}, headers=target("https://fal.run/fal-ai/any-llm"))
    )
    assert run.json()["output"] == "echo: ok"
    initiate = target("https://rest.fal.ai/storage/upload/initiate?storage_type=fal-cdn-v3")
    urls = (await http.post(PROXY, json={"content_type": "text/plain"}, headers=initiate)).json()
    assert urls["upload_url"].startswith("http://emulator.test/cdn/uploads/")


async def test_the_default_proxy_forwards_only_fal_headers_and_forces_json(
    http: httpx.AsyncClient, app_emulator: Emulator
) -> None:
    """Only x-fal-* headers and credentials pass; accept and content-type become JSON; x-fal-client-proxy is added."""
    headers = {
        **target("https://queue.fal.run/fal-ai/any-llm"),
        "x-fal-queue-priority": "low",
        "x-custom": "dropped",
        "content-type": "text/plain",
        "accept": "text/html",
    }
    response = await http.post(PROXY, content=b'{"prompt": "hi"}', headers=headers)
    assert response.status_code == 200
    entry = app_emulator.journal.entries()[-1]
    seen = entry.headers
    assert seen["x-fal-queue-priority"] == "low"
    assert "x-custom" not in seen
    assert (seen["content-type"], seen["accept"]) == ("application/json", "application/json")
    assert seen["x-fal-client-proxy"].startswith("@fal-ai/server-proxy/")
