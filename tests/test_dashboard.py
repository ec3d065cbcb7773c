"""The dashboard's routes in-process: access, cross-site refusal, pages, filters, forms, renderings."""

from __future__ import annotations

import html
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from emulator import Emulator, ManualClock, Settings, create_app
from emulator.core.models import RequestRecord
from emulator.http.ui import views
from tests.servers import start_server

pytestmark = pytest.mark.anyio

AUTH = {"Authorization": "Key k1:secret"}


def client_for(core: Emulator, base_url: str = "http://127.0.0.1:8000") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(emulator=core)), base_url=base_url)


@pytest.fixture
async def local(core: Emulator) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(core) as http:
        yield http


async def submit(http: httpx.AsyncClient, **params: str) -> str:
    response = await http.post("/fal-ai/any-llm", json={"prompt": "hi"}, headers=AUTH, params=params)
    assert response.status_code == 200, response.text
    return str(response.json()["request_id"])


async def test_a_browser_asking_for_the_root_is_sent_to_the_dashboard(local: httpx.AsyncClient) -> None:
    """GET / with Accept: text/html redirects to /_emulator/ui/; an API client's GET / does not."""
    page = await local.get("/", headers={"accept": "text/html,application/xhtml+xml"})
    assert page.status_code == 307 and page.headers["location"] == "/_emulator/ui/"
    api = await local.get("/", headers={"accept": "application/json"})
    assert api.status_code == 404


async def test_a_cross_site_post_changes_nothing(local: httpx.AsyncClient, core: Emulator) -> None:
    """A control call from another origin is refused with 403 and the queue stays running."""
    refused = await local.post("/_emulator/pause", headers={"origin": "http://evil.example"})
    assert refused.status_code == 403 and "Cross-site" in refused.json()["detail"]
    assert not core.scheduler.paused
    fetch_site = await local.post("/_emulator/pause", headers={"sec-fetch-site": "cross-site"})
    assert fetch_site.status_code == 403
    assert not core.scheduler.paused


async def test_the_dashboards_own_origin_and_plain_clients_may_change_state(
    local: httpx.AsyncClient, core: Emulator
) -> None:
    """Same origin (the dashboard's script) and no Origin at all (curl, test suites) still work."""
    same = await local.post("/_emulator/pause", headers={"origin": "http://127.0.0.1:8000"})
    assert same.status_code == 200 and core.scheduler.paused
    plain = await local.post("/_emulator/resume")
    assert plain.status_code == 200 and not core.scheduler.paused


async def test_without_a_token_the_dashboard_answers_only_on_local_names(core: Emulator) -> None:
    """A host name other than localhost or an address gets 403: a rebinding site cannot read the page."""
    async with client_for(core, "http://attacker.example:8000") as http:
        page = await http.get("/_emulator/ui/")
    assert page.status_code == 403 and "--control-token" in page.text
    async with client_for(core, "http://localhost:8000") as http:
        assert (await http.get("/_emulator/ui/")).status_code == 200


async def test_with_a_control_token_the_dashboard_needs_it_and_keeps_it_in_a_cookie(clock: ManualClock) -> None:
    """No token: 401; ``?token=`` moves the token to an HttpOnly cookie, which then opens the page."""
    core = Emulator.build(Settings(control_token="s3cret"), clock=clock)
    async with client_for(core) as http:
        assert (await http.get("/_emulator/ui/")).status_code == 401
        assert (await http.get("/_emulator/ui/?token=wrong")).status_code == 401
        entry = await http.get("/_emulator/ui/?token=s3cret&status=IN_QUEUE")
        assert entry.status_code == 303 and entry.headers["location"] == "/_emulator/ui/?status=IN_QUEUE"
        cookie = entry.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie
        page = await http.get("/_emulator/ui/?status=IN_QUEUE")
        assert page.status_code == 200
        assert 'name="emulator-token" content="s3cret"' in page.text


async def test_the_queue_view_lists_the_keys_requests_with_positions(local: httpx.AsyncClient) -> None:
    """Each request is a row with its status and queue position; the key filter hides other keys."""
    first, second = await submit(local), await submit(local)
    other = await local.post("/fal-ai/any-llm", json={"prompt": "x"}, headers={"Authorization": "Key k2:s"})
    page = await local.get("/_emulator/ui/", params={"namespace": "k1"})
    assert page.status_code == 200
    assert f'id="r-{first}"' in page.text and f'id="r-{second}"' in page.text
    assert other.json()["request_id"] not in page.text
    assert 'class="badge s-IN_QUEUE">IN_QUEUE<' in page.text
    assert "events?namespace=k1" in page.text


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"status": "DONE"}, "status must be one of IN_QUEUE, IN_PROGRESS, COMPLETED"),
        ({"endpoint": "fal-ai/nothing"}, "no endpoint 'fal-ai/nothing'"),
        ({"limit": "0"}, "limit must be a whole number from 1 to 10000"),
    ],
)
async def test_a_bad_filter_is_a_400_saying_what_is_wrong(
    local: httpx.AsyncClient, query: dict[str, str], message: str
) -> None:
    """Unknown statuses, endpoints and limits are refused with the accepted values named."""
    page = await local.get("/_emulator/ui/", params=query)
    assert page.status_code == 400 and message in html.unescape(page.text)


async def test_the_event_stream_refuses_a_tab_past_the_limit(local: httpx.AsyncClient, core: Emulator) -> None:
    """With every watcher slot taken, a new stream is a 503 with a reason, not one more queue."""
    core.events.max_subscribers = 0
    stream = await local.get("/_emulator/ui/events")
    assert stream.status_code == 503 and "watchers" in stream.json()["detail"]


async def test_a_request_page_shows_input_logs_and_snippets(local: httpx.AsyncClient, clock: ManualClock) -> None:
    """The page of a finished request has its input, log lines, output and the curl call pointed here."""
    request_id = await submit(local)
    clock.advance(60)
    page = await local.get(f"/_emulator/ui/requests/{request_id}")
    assert page.status_code == 200
    assert "COMPLETED" in page.text and "Receiving tokens" in page.text
    text = html.unescape(page.text)
    assert "curl -s http://127.0.0.1:8000/fal-ai/any-llm" in text
    assert "-H 'Authorization: Key k1:secret'" in text
    missing = await local.get("/_emulator/ui/requests/nope")
    assert missing.status_code == 404 and "No request" in missing.text


async def test_the_playground_has_a_form_per_endpoint(local: httpx.AsyncClient) -> None:
    """Every endpoint of the spec has a playground page; an unknown one is a 404 naming those that exist."""
    page = await local.get("/_emulator/ui/playground/fal-ai/any-llm/vision")
    assert page.status_code == 200
    assert 'data-name="image_urls" data-kind="files"' in page.text
    first = await local.get("/_emulator/ui/playground")
    assert first.status_code == 307 and first.headers["location"].startswith("/_emulator/ui/playground/fal-ai/")
    missing = await local.get("/_emulator/ui/playground/fal-ai/nothing")
    assert missing.status_code == 404 and "fal-ai/any-llm" in missing.text


async def test_the_dashboard_lists_every_endpoint_of_the_registry(local: httpx.AsyncClient) -> None:
    """The built-in endpoints and one loaded at run time are listed, filterable and have a playground."""
    document = Path(__file__).parent / "data" / "fal-openapi" / "fal-ai__esrgan.json"
    before = await local.get("/_emulator/ui/playground/fal-ai/esrgan")
    assert before.status_code == 404 and "openrouter/router/video" in before.text
    put = await local.put("/_emulator/endpoints", content=document.read_bytes())
    assert put.status_code == 200, put.text
    page = await local.get("/_emulator/ui/playground/fal-ai/esrgan")
    assert page.status_code == 200
    assert 'data-name="image_url"' in page.text
    queue = await local.get("/_emulator/ui/", params={"endpoint": "fal-ai/esrgan"})
    assert queue.status_code == 200
    for endpoint_id in ("fal-ai/any-llm", "openrouter/router/audio", "fal-ai/esrgan"):
        assert endpoint_id in queue.text


def test_form_fields_follow_the_input_schema(core: Emulator) -> None:
    """Types, enums, defaults, bounds and examples come from the spec; required fields come first."""
    operation = core.spec.operation("submit", "fal-ai/any-llm")
    assert operation is not None
    fields = {f.name: f for f in views.form_fields(operation.body_schema)}
    order = [f.name for f in views.form_fields(operation.body_schema)]
    assert order[0] == "prompt" and fields["prompt"].required and fields["prompt"].kind == "textarea"
    assert fields["prompt"].example == "What is the meaning of life?"
    assert fields["model"].kind == "enum" and fields["model"].default == "google/gemini-2.5-flash-lite"
    assert "openai/gpt-4o" in fields["model"].options
    assert fields["reasoning"].kind == "boolean" and fields["reasoning"].default == "false"
    assert fields["temperature"].kind == "number" and (
        fields["temperature"].minimum,
        fields["temperature"].maximum,
    ) == (0, 2)
    assert fields["max_tokens"].kind == "integer"


def test_outputs_are_rendered_as_text_and_media() -> None:
    """Text fields become text; files anywhere in the output become images, audio or video by type or extension."""
    output = {
        "output": "Hello",
        "images": [{"url": "http://127.0.0.1:8000/cdn/files/a/b.png", "content_type": "image/png"}],
        "audio": {"url": "https://v3.fal.media/files/x/y.mp3"},
        "clip": {"url": "https://v3.fal.media/files/x/z", "content_type": "video/mp4"},
        "data": {"url": "https://example.test/file.bin"},
    }
    parts = views.output_parts(output)
    assert [(p.kind, p.label) for p in parts] == [
        ("text", "output"),
        ("image", "images[0]"),
        ("audio", "audio"),
        ("video", "clip"),
    ]


def test_the_python_snippet_writes_json_as_python() -> None:
    """true, false and null in the input become True, False and None in the Python snippet."""
    record = RequestRecord(
        "r1", "k1", "fal-ai/any-llm", "fal-ai/any-llm", {"prompt": "hi", "reasoning": True, "x": None}, 0.0, 1
    )
    python = views.snippets("http://127.0.0.1:8000", record)["python"]
    assert "arguments={'prompt': 'hi', 'reasoning': True, 'x': None}" in python


def test_a_tab_holds_one_stream_and_closing_it_frees_the_slot(tmp_path: Path) -> None:
    """Over a real socket, an open event stream is one hub subscriber, gone once the client disconnects."""
    settings = Settings(profile="instant", seed=1, data_dir=tmp_path)
    with start_server(settings) as server:
        hub = server.emulator.events
        live = threading.Event()
        row = threading.Event()

        def read() -> None:
            with httpx.stream("GET", f"{server.base_url}/_emulator/ui/events?namespace=k1", timeout=10) as stream:
                for line in stream.iter_lines():
                    if line == "event: live":
                        live.set()
                    if line == "event: row":
                        row.set()
                        return  # leaving the block closes the connection

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        assert live.wait(10)
        assert len(hub) == 1
        httpx.post(f"{server.base_url}/fal-ai/any-llm", json={"prompt": "hi"}, headers=AUTH)
        assert row.wait(10)
        reader.join(10)
        deadline = time.monotonic() + 10
        while len(hub) and time.monotonic() < deadline:
            httpx.get(f"{server.base_url}/_emulator/health")  # each poll is a round trip: no busy loop
        assert len(hub) == 0
