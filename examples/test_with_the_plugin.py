"""How a project tests its fal-ai/any-llm code against the emulator's pytest plugin.

Nothing to configure: installing the package registers the plugin, which points fal_client
at a session emulator. The ``emulator`` fixture gives each test a clean namespace and the
controls to script failures. Runs as is, and under ``pytest -n 2``.
"""

from __future__ import annotations

import fal_client
import httpx
import pytest


def summarise(text: str) -> str:
    """The code under test: ask any-llm for a one-line summary."""
    result = fal_client.subscribe("fal-ai/any-llm", {"prompt": f"echo: {text}"})
    return str(result["output"])


def test_summarise_returns_the_model_output(emulator) -> None:  # type: ignore[no-untyped-def]
    """The app gets the model's answer and sent exactly one submit."""
    assert summarise("hello") == "echo: hello"
    submits = emulator.journal(method="POST", path="/fal-ai/any-llm")
    assert [entry["status"] for entry in submits] == [200]


def test_summarise_survives_a_rate_limit(emulator) -> None:  # type: ignore[no-untyped-def]
    """Two 429s on submit are retried by fal_client; the app still gets its answer."""
    emulator.fail_next(429, count=2, actions=("submit",), retry_after=0)
    assert summarise("busy day") == "echo: busy day"
    assert [e["status"] for e in emulator.journal(method="POST")] == [429, 429, 200]


def test_summarise_survives_a_lost_runner(emulator) -> None:  # type: ignore[no-untyped-def]
    """A runner lost mid-run is retried by fal's queue: the app still gets its answer."""
    emulator.fail_next(kind="complete_with_error", error_type="runner_disconnected")
    assert summarise("unlucky") == "echo: unlucky"
    assert [e["status"] for e in emulator.journal(method="RETRY")] == [503]


def test_summarise_reports_a_failed_app(emulator) -> None:  # type: ignore[no-untyped-def]
    """An app that answers 500 is not retried: FalClientHTTPError with its status."""
    emulator.fail_next(kind="complete_with_error", status=500, detail="model crashed")
    with pytest.raises(fal_client.FalClientHTTPError) as caught:
        summarise("unlucky")
    assert caught.value.status_code == 500


def test_each_test_starts_clean(emulator) -> None:  # type: ignore[no-untyped-def]
    """No request or rule from another test is visible here."""
    assert emulator.requests() == []
    response = httpx.post(f"{emulator.url}/fal-ai/any-llm", json={"prompt": "raw"}, headers=emulator.headers)
    assert response.status_code == 200
    assert [r["request_id"] for r in emulator.requests()] == [response.json()["request_id"]]


def test_a_stuck_request_hits_its_start_deadline(emulator) -> None:  # type: ignore[no-untyped-def]
    """A request stuck in the queue past its start_timeout fails with request_timeout, unretried."""
    emulator.fail_next(kind="hold", stage="queue", actions=("submit",))
    with pytest.raises(fal_client.FalClientHTTPError) as caught:
        fal_client.subscribe("fal-ai/any-llm", {"prompt": "stuck"}, start_timeout=1.5)
    assert (caught.value.status_code, caught.value.error_type) == (504, "request_timeout")
    assert [r["status"] for r in emulator.requests()] == ["COMPLETED"]
