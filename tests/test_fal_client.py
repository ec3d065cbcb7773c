"""The official Python client (fal-client), unmodified, against a real emulator process over TLS.

Every test runs the client in a fresh interpreter whose only configuration is what
``any-llm-emulator env`` prints (see ``fal_client_scenarios.py``).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.processes import emulator_process, parse_exports, run_scenario

pytestmark = pytest.mark.process

APP_URL = "fal-ai/any-llm/requests/"
# A 1x1 PNG: the smallest image the vision endpoint accepts.
PNG_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


@pytest.fixture(scope="module")
def server_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A client environment for an instant-profile emulator."""
    with emulator_process(tmp_path_factory.mktemp("emulator"), ["--profile", "instant"]) as server:
        yield server.client_environment()


@pytest.fixture(scope="module")
def paused_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A client environment for an emulator whose clock stands still (requests stay queued), 1 KiB uploads."""
    options = ["--profile", "instant", "--clock", "manual", "--max-upload-bytes", "1024"]
    with emulator_process(tmp_path_factory.mktemp("paused"), options) as server:
        yield server.client_environment()


def test_env_prints_what_the_client_needs(tmp_path: Path) -> None:
    """`env` exports the key, the run host under /run, the queue host at the root and an existing CA bundle."""
    with emulator_process(tmp_path, ["--profile", "instant"]) as server:
        exports = parse_exports(server.env_lines())
    host = f"127.0.0.1:{server.tls_port}"
    assert exports["FAL_RUN_HOST"] == f"{host}/run"
    assert exports["FAL_QUEUE_RUN_HOST"] == host
    assert exports["FAL_KEY"] == "local:secret"
    assert Path(exports["SSL_CERT_FILE"]).is_file()


def test_run_returns_the_output(server_env: dict[str, str]) -> None:
    """fal_client.run answers the run surface's output."""
    assert run_scenario(server_env, "run", prompt="echo: over TLS") == {
        "output": "echo: over TLS",
        "partial": False,
        "error": None,
    }


@pytest.mark.parametrize("webhook", [False, True])
def test_submit_status_and_result_follow_one_request(server_env: dict[str, str], webhook: bool) -> None:
    """submit (with or without webhook_url), status with logs and result agree on one request over https."""
    answer = run_scenario(server_env, "submit_status_result", prompt="What is the meaning of life?", webhook=webhook)
    base = f"https://{server_env['FAL_QUEUE_RUN_HOST']}/{APP_URL}{answer['request_id']}"
    assert answer["urls"] == [f"{base}/status", base, f"{base}/cancel"]
    assert answer["first"]["kind"] in ("Queued", "InProgress", "Completed")
    assert answer["last"]["kind"] == "Completed"
    assert "Looking up a thoughtful answer" in answer["last"]["logs"]
    assert answer["output"]["output"].startswith("The meaning of life is subjective")
    assert answer["result"] == answer["output"]


def test_the_openai_chat_id_answers_the_chat_completion_through_the_queue(server_env: dict[str, str]) -> None:
    """subscribe and submit+result on openrouter/router/openai/v1/chat/completions give the chat.completion,
    followed on the app id's URLs."""
    messages = [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "echo: from fal_client"}]
    answer = run_scenario(server_env, "openai_chat", model="openai/gpt-4o", messages=messages)
    for completion in (answer["subscribed"], answer["result"]):
        assert completion["object"] == "chat.completion"
        assert completion["choices"][0]["message"]["content"] == "echo: from fal_client"
    assert answer["updates"][-1]["kind"] == "Completed"
    base = f"https://{server_env['FAL_QUEUE_RUN_HOST']}/openrouter/router/requests/{answer['request_id']}"
    assert answer["urls"] == [f"{base}/status", base]
    assert answer["by_id"] == answer["result"]


def test_subscribe_reports_queue_updates_with_logs(server_env: dict[str, str]) -> None:
    """subscribe calls on_enqueue with the id and on_queue_update until Completed, logs included."""
    answer = run_scenario(server_env, "subscribe", prompt="What is the meaning of life?")
    assert len(answer["enqueued"]) == 1
    assert answer["updates"][-1]["kind"] == "Completed"
    assert answer["updates"][-1]["logs"][0].startswith("Running google/gemini-2.5-flash-lite")
    assert answer["output"]["output"].startswith("The meaning of life is subjective")


def test_iter_events_ends_with_completed(server_env: dict[str, str]) -> None:
    """A handle's iter_events yields statuses and stops at Completed, with metrics."""
    events = run_scenario(server_env, "iter_events", prompt="echo: events")
    assert events[-1]["kind"] == "Completed"
    assert all(event["kind"] != "Completed" for event in events[:-1])
    assert "inference_time" in events[-1]["metrics"]


def test_cancel_ends_a_queued_request(paused_env: dict[str, str]) -> None:
    """cancel of a queued request completes it as request_cancelled; its result is a 499; a second cancel a 400."""
    answer = run_scenario(paused_env, "cancel", prompt="waits forever")
    assert answer["queued"] == {"kind": "Queued", "position": 0}
    assert answer["after"]["kind"] == "Completed"
    assert answer["after"]["error_type"] == "request_cancelled"
    assert answer["result"]["status"] == 499
    assert answer["result"]["type"] == "request_cancelled"
    assert answer["again"]["status"] == 400


def test_stream_is_cumulative_and_ends_with_partial_false(server_env: dict[str, str]) -> None:
    """fal_client.stream yields growing outputs, the last one final."""
    events = run_scenario(server_env, "stream", prompt="What is the meaning of life?")
    outputs = [event["output"] for event in events]
    assert len(events) > 2
    assert all(later.startswith(earlier) for earlier, later in itertools.pairwise(outputs))
    assert [event["partial"] for event in events] == [True] * (len(events) - 1) + [False]


def test_invalid_input_is_a_422_with_field_errors(server_env: dict[str, str]) -> None:
    """A schema violation raises FalClientHTTPError 422 whose detail lists the field."""
    answer = run_scenario(server_env, "run", prompt="hot", temperature=5)
    assert answer["error"] == "FalClientHTTPError"
    assert answer["status"] == 422
    assert [entry["loc"] for entry in answer["detail"]] == [["body", "temperature"]]


@pytest.mark.parametrize(
    ("scenario", "prompt", "status", "error_type"),
    [
        ("run", "[emulator:runner-disconnected] now", 503, "runner_disconnected"),
        ("subscribe", "[emulator:runner-disconnected] now", 503, "runner_disconnected"),
        ("subscribe", "[emulator:fail-422] now", 422, "validation_error"),
    ],
)
def test_fixture_errors_surface_with_status_detail_and_type(
    server_env: dict[str, str], scenario: str, prompt: str, status: int, error_type: str
) -> None:
    """A fixture's app error reaches the caller as FalClientHTTPError with its status, detail and error_type."""
    answer = run_scenario(server_env, scenario, prompt=prompt)
    assert (answer["error"], answer["status"], answer["type"]) == ("FalClientHTTPError", status, error_type)
    if status == 503:
        assert answer["detail"] == "Runner disconnected"
    else:
        assert answer["detail"][0]["msg"] == "The prompt was rejected by the model provider"


def test_an_image_that_does_not_load_fails_the_run_with_422(server_env: dict[str, str]) -> None:
    """A vision request with an unreachable image is accepted, then ends in a 422 naming the image."""
    images = ["https://example.com/cat.png", "not a url"]
    vision = "fal-ai/any-llm/vision"
    answer = run_scenario(server_env, "subscribe", prompt="What is it?", endpoint=vision, image_urls=images)
    assert answer["status"] == 422
    assert answer["type"] is None
    assert [(e["loc"], e["type"]) for e in answer["detail"]] == [
        (["body", "image_urls", 0], "file_download_error"),
        (["body", "image_urls", 1], "url_parsing"),
    ]


@pytest.mark.parametrize("repository", ["fal_v3", "fal"])
def test_upload_through_the_helper(server_env: dict[str, str], repository: str) -> None:
    """With point_fal_client, upload and upload_file (CDN token or initiate fallback) store files vision can read."""
    answer = run_scenario(server_env, "upload", repository=repository)
    cdn = f"https://{server_env['FAL_QUEUE_RUN_HOST']}/cdn/files/"
    assert all(url.startswith(cdn) for url in answer["urls"])
    assert answer["urls"][0].endswith(".png") and answer["urls"][1].endswith(".txt")
    assert answer["image"] == [200, "image/png", True]
    assert answer["text"] == [200, "text/plain; charset=utf-8", "hello from a file"]
    assert answer["vision"]["output"] == "echo: what is this?"


def test_a_large_upload_goes_up_in_parts(server_env: dict[str, str]) -> None:
    """Over 100 MB the client uploads in parallel parts; the file comes back whole and in order."""
    answer = run_scenario(server_env, "upload_multipart")
    assert answer["url"].endswith(".bin")
    assert answer["same"] is True


def test_an_upload_over_the_limit_is_a_413(paused_env: dict[str, str]) -> None:
    """A file larger than --max-upload-bytes raises FalClientHTTPError 413 that says so."""
    answer = run_scenario(paused_env, "upload_too_large")
    assert answer["status"] == 413
    assert "larger than the upload limit of 1024 bytes" in answer["detail"]


def test_async_client_does_what_the_sync_one_does(server_env: dict[str, str]) -> None:
    """AsyncClient: run, submit with a webhook, iter_events, status, result, subscribe, stream and errors."""
    answer: dict[str, Any] = run_scenario(server_env, "async_client", prompt="echo: async")
    expected = {"output": "echo: async", "partial": False, "error": None}
    assert answer["run"] == answer["result"] == answer["subscribe"]["output"] == expected
    assert answer["events"][-1]["kind"] == answer["status"]["kind"] == "Completed"
    assert answer["subscribe"]["updates"][-1]["kind"] == "Completed"
    assert answer["stream"][-1] == expected
    assert (answer["error"]["status"], answer["error"]["type"]) == (503, "runner_disconnected")


def test_async_cancel_ends_a_queued_request(paused_env: dict[str, str]) -> None:
    """AsyncClient.cancel of a queued request completes it as request_cancelled, its result a 499."""
    answer = run_scenario(paused_env, "async_cancel", prompt="waits forever")
    assert answer["after"]["error_type"] == "request_cancelled"
    assert answer["result"]["status"] == 499


def test_async_upload_through_the_helper(server_env: dict[str, str]) -> None:
    """AsyncClient.upload and upload_file store images the vision endpoint reads."""
    answer = run_scenario(server_env, "async_upload")
    assert all("/cdn/files/" in url for url in answer["urls"])
    assert answer["vision"]["output"] == "echo: and this?"


@pytest.mark.parametrize(
    ("endpoint", "extra"),
    [
        ("fal-ai/any-llm", {}),
        ("fal-ai/any-llm/vision", {"image_urls": [f"data:image/png;base64,{PNG_B64}"]}),
        ("fal-ai/any-llm/enterprise", {}),
    ],
)
def test_todays_model_runs_on_every_any_llm_endpoint(
    server_env: dict[str, str], endpoint: str, extra: dict[str, Any]
) -> None:
    """google/gemini-2.5-flash, refused by the seed's enum, runs on all three endpoints through subscribe."""
    answer = run_scenario(
        server_env, "subscribe", prompt="echo: today", endpoint=endpoint, model="google/gemini-2.5-flash", **extra
    )
    assert answer["output"]["output"] == "echo: today"
    assert answer["updates"][-1]["logs"][0] == "Running google/gemini-2.5-flash through OpenRouter"


def test_realtime_fails_at_once_with_the_reason(server_env: dict[str, str]) -> None:
    """fal_client.realtime gets its token, then the refusal: an error naming why, not a wait."""
    answer = run_scenario(server_env, "realtime", prompt="hi")
    assert answer["error"] in ("RealtimeError", "ConnectionClosedError"), answer
    assert "Realtime (WebSocket) apps are not emulated" in answer["message"]
    assert "1008" in answer["message"]


def test_subscribe_to_openrouter_router_reports_consistent_usage(server_env: dict[str, str]) -> None:
    """subscribe on openrouter/router answers the output with usage whose total is its sum."""
    answer = run_scenario(
        server_env,
        "subscribe",
        prompt="echo: route me",
        endpoint="openrouter/router",
        model="anthropic/claude-sonnet-4.5",
    )
    output = answer["output"]
    assert output["output"] == "echo: route me"
    usage = output["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0
    assert usage["cost"] > 0


def test_openrouter_vision_reads_an_uploaded_image(server_env: dict[str, str]) -> None:
    """An image uploaded with fal_client.upload is read by openrouter/router/vision."""
    answer = run_scenario(server_env, "router_vision_upload", prompt="echo: seen", model="google/gemini-2.5-flash")
    assert answer["output"] == "echo: seen"
    assert answer["usage"]["completion_tokens"] == 3
