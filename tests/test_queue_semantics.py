"""fal's queue as it behaves today: validation when a request runs, server-side retries, waiting over the limit."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from emulator import Emulator, ManualClock, Settings, create_app
from emulator.webhooks import verify
from tests.conftest import AUTH
from tests.helpers import drive
from tests.receivers import wait_until

pytestmark = pytest.mark.anyio
QUEUE = "/fal-ai/any-llm"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(profile="instant", seed=5, data_dir=tmp_path)


@pytest.fixture
def hooked(core: Emulator) -> list[httpx.Request]:
    """Webhook calls the emulator makes, captured by its injected HTTP client."""
    return []


@pytest.fixture
async def http(settings: Settings, clock: ManualClock, hooked: list[httpx.Request]) -> AsyncIterator[httpx.AsyncClient]:
    def receive(request: httpx.Request) -> httpx.Response:
        hooked.append(request)
        return httpx.Response(200)

    webhook_client = httpx.AsyncClient(transport=httpx.MockTransport(receive))
    emulator = Emulator.build(settings, clock=clock, http_client=webhook_client)
    app = create_app(emulator=emulator)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://e.test", headers=AUTH) as client,
    ):
        client.emulator = emulator  # type: ignore[attr-defined]
        yield client


def emulator_of(http: httpx.AsyncClient) -> Emulator:
    emulator: Emulator = http.emulator  # type: ignore[attr-defined]
    return emulator


async def fault(http: httpx.AsyncClient, **rule: Any) -> None:
    response = await http.post("/_emulator/faults", json=rule)
    assert response.status_code == 201, response.text


async def submitted(http: httpx.AsyncClient, body: Any, **kwargs: Any) -> str:
    response = await http.post(QUEUE, json=body, **kwargs)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "IN_QUEUE"
    return str(response.json()["request_id"])


async def test_a_queued_invalid_body_is_accepted_and_fails_with_422_when_it_runs(
    http: httpx.AsyncClient, clock: ManualClock, hooked: list[httpx.Request]
) -> None:
    """IN_QUEUE at submit, then a 422 result with FastAPI's details and a signed ERROR webhook carrying them."""
    rid = await submitted(http, {"prompt": 42}, params={"fal_webhook": "http://hooks.test/fal"})
    clock.advance(1)
    status = (await http.get(f"{QUEUE}/requests/{rid}/status")).json()
    assert status["status"] == "COMPLETED"
    assert status["error"] == "Invalid status code: 422"
    result = await http.get(f"{QUEUE}/requests/{rid}")
    assert result.status_code == 422
    assert result.headers["x-fal-billable-units"] == "0"  # as fal.run's own 422
    (item,) = result.json()["detail"]
    assert item["loc"] == ["body", "prompt"] and item["type"] == "string_type"
    await wait_until(emulator_of(http).webhooks.dispatcher, lambda: len(hooked) == 1)
    (call,) = hooked
    payload = json.loads(call.content)
    assert (payload["status"], payload["error"]) == ("ERROR", "Invalid status code: 422")
    assert payload["payload"]["detail"] == result.json()["detail"]
    jwks = (await http.get("/.well-known/jwks.json")).json()
    assert verify(call.content, dict(call.headers), jwks, now=clock.now())


async def test_a_sync_run_refuses_an_invalid_body_at_once(http: httpx.AsyncClient) -> None:
    """fal.run checks the input itself: 422 with the details, no request queued."""
    response = await http.post(f"/run{QUEUE}", json={"prompt": 42})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "prompt"]
    assert response.headers["x-fal-billable-units"] == "0" and response.headers["x-fal-request-id"]
    malformed = await http.post(f"/run{QUEUE}", content=b"{not json", headers={"content-type": "application/json"})
    assert (
        malformed.status_code == 422 and malformed.headers["x-fal-request-id"] != response.headers["x-fal-request-id"]
    )
    assert len(emulator_of(http).store) == 0


async def test_early_validation_is_an_option(clock: ManualClock, tmp_path: Path) -> None:
    """With validate_at_submit, a queued invalid body answers 422 at submit."""
    emulator = Emulator.build(Settings(profile="instant", validate_at_submit=True, data_dir=tmp_path), clock=clock)
    transport = httpx.ASGITransport(app=create_app(emulator=emulator))
    async with httpx.AsyncClient(transport=transport, base_url="http://e.test", headers=AUTH) as http:
        response = await http.post(QUEUE, json={"prompt": 42})
        assert response.status_code == 422


async def test_runner_failures_are_retried_with_new_gateway_request_ids(
    http: httpx.AsyncClient, clock: ManualClock
) -> None:
    """A runner lost twice: the queue runs the request a third time, which completes; each try has its own id."""
    await fault(http, fault={"kind": "complete_with_error", "error_type": "runner_disconnected"}, times=2)
    rid = await submitted(http, {"prompt": "echo: third try"})
    clock.advance(5)
    result = await http.get(f"{QUEUE}/requests/{rid}")
    assert (result.status_code, result.json()["output"]) == (200, "echo: third try")
    retries = (await http.get("/_emulator/journal", params={"method": "RETRY", "request_id": rid})).json()["entries"]
    assert [entry["status"] for entry in retries] == [503, 503]
    later = [json.loads(entry["body"])["next_gateway_request_id"] for entry in retries]
    status = (await http.get(f"{QUEUE}/requests/{rid}/status", params={"logs": "1"})).json()
    gateways = [rid, *later]
    assert len(set(gateways)) == 3
    assert status["gateway_request_id"] == later[-1]
    assert sum("runs the request again" in line["message"] for line in status["logs"]) == 2


@pytest.mark.parametrize("value", ["1", "true", "yes"])
async def test_x_fal_no_retry_fails_at_once(http: httpx.AsyncClient, clock: ManualClock, value: str) -> None:
    """With x-fal-no-retry the first runner failure is final."""
    await fault(http, fault={"kind": "complete_with_error", "error_type": "runner_disconnected"}, times=2)
    rid = await submitted(http, {"prompt": "x"}, headers={"x-fal-no-retry": value})
    clock.advance(5)
    result = await http.get(f"{QUEUE}/requests/{rid}")
    assert result.status_code == 503
    assert result.headers["x-fal-error-type"] == "runner_disconnected"


@pytest.mark.parametrize(
    ("failure", "status_code"),
    [({"status": 500, "detail": "boom"}, 500), ({"error_type": "request_timeout"}, 504), ({"status": 422}, 422)],
)
async def test_other_failures_are_not_retried(
    http: httpx.AsyncClient, clock: ManualClock, failure: dict[str, Any], status_code: int
) -> None:
    """A 500, a 4xx or the caller's own start deadline end the request on the first try, as on fal."""
    await fault(http, fault={"kind": "complete_with_error", **failure}, times=1)
    rid = await submitted(http, {"prompt": "x"})
    clock.advance(5)
    assert (await http.get(f"{QUEUE}/requests/{rid}")).status_code == status_code
    assert (await http.get("/_emulator/journal", params={"method": "RETRY"})).json()["entries"] == []


async def test_retries_run_out(clock: ManualClock, tmp_path: Path) -> None:
    """A runner that always fails: the request fails after the configured number of retries."""
    emulator = Emulator.build(Settings(profile="instant", queue_retries=2, data_dir=tmp_path), clock=clock)
    transport = httpx.ASGITransport(app=create_app(emulator=emulator))
    async with httpx.AsyncClient(transport=transport, base_url="http://e.test", headers=AUTH) as http:
        await fault(http, fault={"kind": "complete_with_error", "error_type": "startup_timeout"})
        rid = await submitted(http, {"prompt": "x"})
        clock.advance(5)
        assert (await http.get(f"{QUEUE}/requests/{rid}")).status_code == 504
        retries = (await http.get("/_emulator/journal", params={"method": "RETRY"})).json()["entries"]
        assert len(retries) == 2


async def test_a_sync_run_is_never_retried(http: httpx.AsyncClient, clock: ManualClock) -> None:
    """fal.run goes straight to a runner: its failure is the answer."""
    await fault(
        http, fault={"kind": "complete_with_error", "error_type": "runner_disconnected"}, times=1, actions=["run"]
    )
    response = await drive(clock, http.post(f"/run{QUEUE}", json={"prompt": "x"}))
    assert response.status_code == 503
