"""The official Python client's retries and timeouts against injected faults, over TLS."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.processes import EmulatorProcess, emulator_process, run_scenario

pytestmark = pytest.mark.process

NAMESPACE = "local"  # the key id of the FAL_KEY that `env` prints


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    with emulator_process(tmp_path_factory.mktemp("resilience"), ["--profile", "instant"]) as running:
        yield running


@pytest.fixture
def control(server: EmulatorProcess) -> Iterator[httpx.Client]:
    """The control API, with the client's namespace reset before and after each test."""
    with httpx.Client(base_url=f"{server.http_url}/_emulator", timeout=10) as http:
        http.post("/reset", json={"namespace": NAMESPACE}).raise_for_status()
        yield http
        http.post("/reset", json={"namespace": NAMESPACE}).raise_for_status()


def inject(control: httpx.Client, count: int, actions: list[str], **fault: Any) -> None:
    rule = {"namespace": NAMESPACE, "count": count, "actions": actions, "fault": fault}
    control.post("/next", json=rule).raise_for_status()


def calls(control: httpx.Client, method: str, path_part: str) -> list[int]:
    entries = control.get("/journal", params={"namespace": NAMESPACE, "method": method}).json()["entries"]
    return [e["status"] for e in entries if path_part in e["path"]]


def test_the_client_retries_429_and_succeeds(server: EmulatorProcess, control: httpx.Client) -> None:
    """Two 429s on submit are retried by the client, which then gets its answer."""
    inject(control, 2, ["submit"], kind="http_error", status=429, retry_after=0)
    answer = run_scenario(server.client_environment(), "subscribe", prompt="echo: after two 429s")
    assert answer["output"]["output"] == "echo: after two 429s"
    assert calls(control, "POST", "/fal-ai/any-llm") == [429, 429, 200]


def test_the_client_retries_an_ingress_503_on_status(server: EmulatorProcess, control: httpx.Client) -> None:
    """A 503 that looks like nginx (no x-fal-request-id) on status polls is retried."""
    inject(control, 2, ["status"], kind="http_error", status=503, with_request_id=False)
    answer = run_scenario(server.client_environment(), "subscribe", prompt="echo: through a flaky gateway")
    assert answer["output"]["output"] == "echo: through a flaky gateway"
    assert calls(control, "GET", "/status")[:2] == [503, 503]


def test_the_client_does_not_retry_an_app_503(server: EmulatorProcess, control: httpx.Client) -> None:
    """A 503 that carries x-fal-request-id comes from fal itself: the client raises at once."""
    inject(control, 1, ["run"], kind="http_error", status=503, with_request_id=True, error_type="runner_disconnected")
    answer = run_scenario(server.client_environment(), "run", prompt="echo: once")
    assert answer == {
        "error": "FalClientHTTPError",
        "status": 503,
        "detail": "Service unavailable",
        "type": "runner_disconnected",
    }
    assert calls(control, "POST", "/run/fal-ai/any-llm") == [503]


def test_client_timeout_against_a_stuck_request(server: EmulatorProcess, control: httpx.Client) -> None:
    """A request held in the queue makes subscribe give up at its client_timeout and cancel it."""
    inject(control, 1, ["submit"], kind="hold", stage="queue")
    answer = run_scenario(
        server.client_environment(), "subscribe_with_timeouts", prompt="stuck", client_timeout=1.5, start_timeout=60
    )
    assert answer == {"error": "FalClientTimeoutError", "timeout": 1.5}
    requests = control.get("/requests", params={"namespace": NAMESPACE}).json()["requests"]
    assert [(r["status"], r["error"]["error_type"]) for r in requests] == [("COMPLETED", "request_cancelled")]
    assert calls(control, "PUT", "/cancel") == [202]


def test_start_timeout_against_a_stuck_request(server: EmulatorProcess, control: httpx.Client) -> None:
    """A held request passes its server-side start deadline: the client gets 504 request_timeout, unretried."""
    inject(control, 1, ["submit"], kind="hold", stage="queue")
    answer = run_scenario(server.client_environment(), "subscribe_with_timeouts", prompt="stuck", start_timeout=1.5)
    assert answer["status"] == 504
    assert answer["type"] == "request_timeout"
    assert calls(control, "GET", "/requests/")[-1] == 504


def test_the_queue_retries_a_lost_runner_with_new_gateway_ids(server: EmulatorProcess, control: httpx.Client) -> None:
    """A runner lost twice: fal's queue runs the request a third time and the client gets its answer."""
    inject(control, 2, ["submit"], kind="complete_with_error", error_type="runner_disconnected")
    answer = run_scenario(server.client_environment(), "subscribe", prompt="echo: third runner")
    assert answer["output"]["output"] == "echo: third runner"
    (request_id,) = answer["enqueued"]
    entries = control.get("/journal", params={"namespace": NAMESPACE, "method": "RETRY"}).json()["entries"]
    assert [entry["status"] for entry in entries] == [503, 503]
    gateways = {request_id, *(json.loads(entry["body"])["next_gateway_request_id"] for entry in entries)}
    assert len(gateways) == 3


def test_x_fal_no_retry_makes_a_lost_runner_final(server: EmulatorProcess, control: httpx.Client) -> None:
    """With x-fal-no-retry the first lost runner is the client's error, with fal's error type."""
    inject(control, 2, ["submit"], kind="complete_with_error", error_type="runner_disconnected")
    answer = run_scenario(
        server.client_environment(), "subscribe_with_headers", prompt="x", headers={"x-fal-no-retry": "1"}
    )
    assert (answer["status"], answer["type"]) == (503, "runner_disconnected")
    assert calls(control, "RETRY", "/fal-ai/any-llm") == []


def test_a_queued_invalid_input_is_accepted_then_fails_with_422(server: EmulatorProcess, control: httpx.Client) -> None:
    """fal's queue accepts the body; the result raises the app's 422 with the field errors."""
    answer = run_scenario(server.client_environment(), "submit_invalid", arguments={"temperature": 3})
    assert answer["first"]["kind"] in ("Queued", "InProgress", "Completed")
    assert answer["result"]["status"] == 422
    assert {item["loc"][-1] for item in answer["result"]["detail"]} == {"prompt", "temperature"}
