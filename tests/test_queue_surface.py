"""The queue surface over HTTP, in-process, with a manual clock."""

from __future__ import annotations

import json

import httpx
import pytest

from emulator import Emulator, ManualClock
from tests.conftest import AUTH
from tests.helpers import drive

pytestmark = pytest.mark.anyio

BASE = "http://emulator.test"


async def submit(
    client: httpx.AsyncClient, body: dict[str, object] | None = None, **kwargs: object
) -> dict[str, object]:
    response = await client.post("/fal-ai/any-llm", json=body or {"prompt": "Explain queues"}, **kwargs)  # type: ignore[arg-type]
    assert response.status_code == 200, response.text
    data: dict[str, object] = response.json()
    return data


async def test_submit_envelope_points_back_at_this_server(client: httpx.AsyncClient) -> None:
    """The submit answer is fal's envelope, with URLs under the app id on this host."""
    response = await client.post("/fal-ai/any-llm/enterprise", json={"prompt": "hi"})
    assert response.status_code == 200
    data = response.json()
    rid = data["request_id"]
    assert response.headers["x-fal-request-id"] == rid
    assert data["status"] == "IN_QUEUE"
    assert data["queue_position"] == 0
    assert data["gateway_request_id"] == rid
    assert data["logs"] is None and data["metrics"] == {}
    assert data["response_url"] == f"{BASE}/fal-ai/any-llm/requests/{rid}"
    assert data["status_url"] == f"{BASE}/fal-ai/any-llm/requests/{rid}/status"
    assert data["cancel_url"] == f"{BASE}/fal-ai/any-llm/requests/{rid}/cancel"


async def test_status_through_the_lifecycle(client: httpx.AsyncClient, clock: ManualClock, core: Emulator) -> None:
    """202 with queue_position while queued, 202 with logs while running, 200 with metrics when done."""
    data = await submit(client, {"prompt": "What is the meaning of life?"})
    url = f"/fal-ai/any-llm/requests/{data['request_id']}/status"

    queued = await client.get(url)
    assert queued.status_code == 202
    assert queued.json()["status"] == "IN_QUEUE" and "queue_position" in queued.json()

    clock.advance(0.3)
    running = await client.get(url, params={"logs": "1"})
    assert running.status_code == 202
    body = running.json()
    assert body["status"] == "IN_PROGRESS"
    assert "queue_position" not in body
    assert body["logs"][0]["message"].startswith("Running")
    assert set(body["logs"][0]) == {"message", "level", "source", "timestamp"}
    assert body["logs"][0]["timestamp"].endswith("Z")

    no_logs = await client.get(url, params={"logs": "0"})
    assert "logs" in no_logs.json() and no_logs.json()["logs"] is None

    clock.advance(30)
    done = await client.get(url, params={"logs": "true"})
    assert done.status_code == 200
    body = done.json()
    assert body["status"] == "COMPLETED"
    assert body["metrics"]["inference_time"] > 0
    assert body["logs"][-1]["message"].startswith("Generated")
    assert "error" not in body
    without = (await client.get(url, params={"logs": "false"})).json()
    assert without["logs"] is None


async def test_result_is_400_until_completed_then_the_output(client: httpx.AsyncClient, clock: ManualClock) -> None:
    """The result endpoint refuses early, then answers the output with fal's headers."""
    data = await submit(client, {"prompt": "What is the meaning of life?", "model": "openai/gpt-4o"})
    url = f"/fal-ai/any-llm/requests/{data['request_id']}"
    early = await client.get(url)
    assert early.status_code == 400
    assert early.json()["detail"] == "Request is still in progress"
    clock.advance(30)
    result = await client.get(url)
    assert result.status_code == 200
    assert result.headers["x-fal-request-id"] == data["request_id"]
    assert result.headers["x-fal-billable-units"] == "10"
    assert result.json()["output"].startswith("The meaning of life")
    assert result.json()["partial"] is False


@pytest.mark.parametrize(
    "path",
    [
        "/fal-ai/any-llm/requests/{id}/status",
        "/fal-ai/any-llm/requests/{id}/status/",
        "/fal-ai/any-llm/vision/requests/{id}/status",
        "/fal-ai/any-llm/requests/{id}",
        "/fal-ai/any-llm/requests/{id}/",
        "/fal-ai/any-llm/vision/requests/{id}/",
    ],
)
async def test_request_paths_under_app_id_and_full_id(client: httpx.AsyncClient, path: str) -> None:
    """Status and result answer under owner/alias and the full id, with or without a trailing slash."""
    response = await client.post("/fal-ai/any-llm/vision", json={"prompt": "p", "image_urls": ["https://x.test/a.png"]})
    rid = response.json()["request_id"]
    answer = await client.get(path.format(id=rid))
    assert answer.status_code in (202, 400)
    assert answer.headers["x-fal-request-id"] == rid


async def test_a_request_is_not_found_under_another_endpoint(client: httpx.AsyncClient) -> None:
    """A request submitted to any-llm is not visible under the vision endpoint's full id."""
    rid = (await submit(client))["request_id"]
    assert (await client.get(f"/fal-ai/any-llm/vision/requests/{rid}/status")).status_code == 404


async def test_cancel_in_each_state(client: httpx.AsyncClient, clock: ManualClock) -> None:
    """Queued and running: 202 CANCELLATION_REQUESTED; completed: 400; unknown: 404."""
    queued = await submit(client)
    response = await client.put(f"/fal-ai/any-llm/requests/{queued['request_id']}/cancel")
    assert (response.status_code, response.json()["status"]) == (202, "CANCELLATION_REQUESTED")
    status = (await client.get(f"/fal-ai/any-llm/requests/{queued['request_id']}/status")).json()
    assert status["status"] == "COMPLETED"
    assert status["error_type"] == "request_cancelled"
    result = await client.get(f"/fal-ai/any-llm/requests/{queued['request_id']}")
    assert result.status_code == 499
    assert "detail" in result.json()

    running = await submit(client)
    clock.advance(0.5)
    response = await client.put(f"/fal-ai/any-llm/requests/{running['request_id']}/cancel/")
    assert response.status_code == 202
    assert (await client.get(f"/fal-ai/any-llm/requests/{running['request_id']}")).status_code == 499

    done = await submit(client)
    clock.advance(30)
    response = await client.put(f"/fal-ai/any-llm/requests/{done['request_id']}/cancel")
    assert (response.status_code, response.json()["status"]) == (400, "ALREADY_COMPLETED")

    response = await client.put("/fal-ai/any-llm/requests/nope/cancel")
    assert (response.status_code, response.json()["status"]) == (404, "NOT_FOUND")
    assert response.json()["detail"] == "Request not found"


async def test_queue_position_is_true_at_every_poll(
    client: httpx.AsyncClient, clock: ManualClock, core: Emulator
) -> None:
    """Positions count down as earlier requests finish."""
    ids = [(await submit(client, {"prompt": f"question {i}"}))["request_id"] for i in range(5)]

    async def positions() -> list[int | None]:
        out = []
        for rid in ids:
            body = (await client.get(f"/fal-ai/any-llm/requests/{rid}/status")).json()
            out.append(body.get("queue_position"))
        return out

    assert await positions() == [0, 0, 0, 1, 2]
    clock.advance(0.25)
    assert (await positions())[2:] == [0, 1, 2]
    while not any(r.done for r in core.store.records()):
        clock.advance(0.05)
    # one runner freed: the third request is being picked up, the rest moved up.
    assert (await positions())[3:] == [0, 1]


async def test_priority_header_puts_low_behind_normal(client: httpx.AsyncClient) -> None:
    """x-fal-queue-priority: low waits behind later normal requests."""
    for i in range(2):
        await submit(client, {"prompt": f"busy {i}"})
    low = await submit(client, {"prompt": "low"}, headers={"x-fal-queue-priority": "low"})
    normal = await submit(client, {"prompt": "normal"}, headers={"x-fal-queue-priority": "normal"})
    assert normal["queue_position"] == 0
    low_now = (await client.get(f"/fal-ai/any-llm/requests/{low['request_id']}/status")).json()
    assert low_now["queue_position"] == 1


async def test_request_timeout_header(client: httpx.AsyncClient, clock: ManualClock) -> None:
    """A request that has not started by its deadline completes with request_timeout; result is 504."""
    for i in range(2):
        await submit(client, {"prompt": f"busy {i}"})
    late = await submit(client, headers={"x-fal-request-timeout": "0.2"})
    clock.advance(0.2)
    status = (await client.get(f"/fal-ai/any-llm/requests/{late['request_id']}/status")).json()
    assert (status["status"], status["error_type"]) == ("COMPLETED", "request_timeout")
    result = await client.get(f"/fal-ai/any-llm/requests/{late['request_id']}")
    assert result.status_code == 504
    assert result.headers["x-fal-request-timeout-type"] == "user"
    assert result.json() == {"detail": "Request timed out", "error_type": "request_timeout"}


async def test_fixture_error_is_reported_by_status_and_result(client: httpx.AsyncClient, clock: ManualClock) -> None:
    """An error fixture completes the request with the app's code and body."""
    data = await submit(client, {"prompt": "please [emulator:runner-disconnected]"})
    clock.advance(30)
    status = (await client.get(f"/fal-ai/any-llm/requests/{data['request_id']}/status")).json()
    assert (status["error"], status["error_type"]) == ("Runner disconnected", "runner_disconnected")
    result = await client.get(f"/fal-ai/any-llm/requests/{data['request_id']}")
    assert result.status_code == 503
    assert result.headers["x-fal-error-type"] == "runner_disconnected"


async def test_max_queue_length(client: httpx.AsyncClient) -> None:
    """fal_max_queue_length refuses a submission with 429 once that many are waiting."""
    for i in range(3):
        await submit(client, {"prompt": f"p{i}"})
    response = await client.post("/fal-ai/any-llm", params={"fal_max_queue_length": "1"}, json={"prompt": "x"})
    assert response.status_code == 429
    assert "fal_max_queue_length" in response.json()["detail"]
    ok = await client.post("/fal-ai/any-llm", params={"fal_max_queue_length": "5"}, json={"prompt": "x"})
    assert ok.status_code == 200


async def test_webhook_url_is_recorded(client: httpx.AsyncClient, core: Emulator) -> None:
    """fal_webhook is accepted and kept on the request."""
    data = await submit(client, params={"fal_webhook": "https://hooks.example.test/fal"})
    record = core.scheduler.get("test-key", str(data["request_id"]))
    assert record is not None and record.webhook_url == "https://hooks.example.test/fal"


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "detail_part"),
    [
        ("POST", "/fal-ai/no-such-app", {"json": {"prompt": "x"}}, 404, "not found"),
        ("GET", "/fal-ai/any-llm/requests/unknown/status", {}, 404, "Request not found"),
        ("GET", "/fal-ai/any-llm/requests/unknown", {}, 404, "Request not found"),
        ("GET", "/fal-ai/other/requests/unknown/status", {}, 404, "not found"),
        ("GET", "/fal-ai/any-llm", {}, 405, "Method Not Allowed"),
        ("DELETE", "/fal-ai/any-llm/requests/x/status", {}, 405, "Method Not Allowed"),
        ("POST", "/fal-ai/any-llm", {"content": b"{nope"}, 422, ""),
        ("POST", "/fal-ai/any-llm", {"json": ["not", "an", "object"]}, 422, ""),
        ("POST", "/run/fal-ai/any-llm", {"json": {"prompt": ["list"]}}, 422, ""),
        ("POST", "/fal-ai/any-llm", {"json": {"prompt": "x"}, "params": {"fal_webhook": "nope"}}, 422, ""),
        ("GET", "/fal-ai/any-llm/requests/x/status?logs=maybe", {}, 404, "Request not found"),
    ],
)
async def test_errors_are_clear_and_never_500(
    client: httpx.AsyncClient, method: str, path: str, kwargs: dict[str, object], status: int, detail_part: str
) -> None:
    """Every bad request gets its proper status and a JSON detail."""
    response = await client.request(method, path, **kwargs)  # type: ignore[arg-type]
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    if status == 422:
        assert isinstance(detail, list) and detail[0]["loc"][0] in ("body", "query")
        assert response.headers["x-fal-billable-units"] == "0"
    else:
        assert detail_part.lower() in detail.lower()


async def test_invalid_logs_flag_is_422(client: httpx.AsyncClient) -> None:
    """logs accepts 0/1/true/false only."""
    rid = (await submit(client))["request_id"]
    response = await client.get(f"/fal-ai/any-llm/requests/{rid}/status", params={"logs": "maybe"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "logs"]


@pytest.mark.parametrize(
    ("header", "detail"),
    [
        (None, "Missing Authorization header"),
        ("Key no-secret", "Invalid Key Authorization header format"),
        ("Key :secret", "Invalid Key Authorization header format"),
        ("Basic dXNlcjpwYXNz", "Invalid Key Authorization header format"),
    ],
)
async def test_auth_is_required_and_checked(core: Emulator, header: str | None, detail: str) -> None:
    """A missing or malformed Authorization header answers 401."""
    from emulator import create_app

    headers = {} if header is None else {"Authorization": header}
    transport = httpx.ASGITransport(app=create_app(emulator=core))
    async with httpx.AsyncClient(transport=transport, base_url=BASE, headers=headers) as anonymous:
        response = await anonymous.post("/fal-ai/any-llm", json={"prompt": "x"})
    assert response.status_code == 401
    assert response.json()["detail"].startswith(detail)


async def test_keys_are_separate_namespaces(client: httpx.AsyncClient) -> None:
    """A request submitted with one key is not found with another."""
    rid = (await submit(client))["request_id"]
    other = await client.get(f"/fal-ai/any-llm/requests/{rid}/status", headers={"Authorization": "Key other:secret"})
    assert other.status_code == 404
    bearer = await client.get(f"/fal-ai/any-llm/requests/{rid}/status", headers={"Authorization": "Bearer abc.def"})
    assert bearer.status_code == 404


async def test_body_over_the_limit_is_413(core: Emulator) -> None:
    """Bodies larger than max_body_bytes are refused with 413."""
    from emulator import create_app

    small = Emulator.build(core.settings.replace(max_body_bytes=64), clock=core.clock)
    transport = httpx.ASGITransport(app=create_app(emulator=small))
    async with httpx.AsyncClient(transport=transport, base_url=BASE, headers=AUTH) as http:
        response = await http.post("/fal-ai/any-llm", json={"prompt": "x" * 100})
    assert response.status_code == 413
    assert "64 bytes" in response.json()["detail"]


async def test_openapi_is_served(client: httpx.AsyncClient) -> None:
    """The spec is served as YAML and JSON, the same document."""
    yaml_text = await client.get("/openapi.yaml")
    as_json = await client.get("/openapi.json")
    assert yaml_text.status_code == as_json.status_code == 200
    assert yaml_text.headers["content-type"].startswith("application/yaml")
    assert "/fal-ai/any-llm" in as_json.json()["paths"]
    assert "/_emulator/health" not in as_json.json()["paths"]


async def test_status_stream_sends_each_change_then_closes(client: httpx.AsyncClient, clock: ManualClock) -> None:
    """The status stream emits queued, running (new logs only) and completed events, then ends."""
    rid = (await submit(client, {"prompt": "What is the meaning of life?"}))["request_id"]

    response = await drive(clock, client.get(f"/fal-ai/any-llm/requests/{rid}/status/stream", params={"logs": "1"}))
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [line.removeprefix("data: ") for line in response.text.splitlines() if line.startswith("data: ")]
    bodies = [json.loads(e) for e in events]
    assert bodies[0]["status"] == "IN_QUEUE"
    assert bodies[-1]["status"] == "COMPLETED"
    assert any(b["status"] == "IN_PROGRESS" for b in bodies)
    messages = [log["message"] for b in bodies if b["logs"] for log in b["logs"]]
    assert len(messages) == len(set(messages)), "each log line is sent once"
    assert messages[0].startswith("Running") and messages[-1].startswith("Generated")


async def test_mounted_in_another_app_the_urls_lead_back_to_the_mount(clock: ManualClock) -> None:
    """Under ``Mount("/fal", app)`` (FastAPI's ``app.mount``) the submit's URLs keep the mount point, and work."""
    from starlette.applications import Starlette
    from starlette.routing import Mount

    from emulator import Settings, create_app

    emulator = Emulator.build(Settings(profile="instant"), clock=clock)
    outer = Starlette(routes=[Mount("/fal", app=create_app(emulator=emulator))])
    transport = httpx.ASGITransport(app=outer)
    async with httpx.AsyncClient(transport=transport, base_url="http://tests.local", headers=AUTH) as http:
        submitted = (await http.post("/fal/fal-ai/any-llm", json={"prompt": "echo: mounted"})).json()
        assert submitted["status_url"].startswith("http://tests.local/fal/fal-ai/any-llm/requests/")
        clock.advance(1)
        status = await http.get(submitted["status_url"])
        assert (status.status_code, status.json()["status"]) == (200, "COMPLETED")
        assert status.json()["response_url"] == submitted["response_url"]
        result = await http.get(submitted["response_url"])
        assert result.json()["output"] == "echo: mounted"
