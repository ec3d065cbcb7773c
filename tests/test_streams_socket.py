"""Streaming endpoints over a real socket, on uvicorn and on hypercorn."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import httpx
import pytest

from emulator import Settings
from tests.conftest import AUTH
from tests.servers import RunningServer, start_server

pytestmark = pytest.mark.socket


def sse_data(lines: list[str]) -> list[dict[str, object]]:
    return [json.loads(line.removeprefix("data: ")) for line in lines if line.startswith("data: ")]


def test_status_stream_follows_a_request_to_completion(live_server: RunningServer) -> None:
    """Queued, running and completed events arrive in order, logs once each, then the server closes."""
    with httpx.Client(base_url=live_server.base_url, headers=AUTH, timeout=20) as http:
        rid = http.post("/fal-ai/any-llm", json={"prompt": "What is the meaning of life?"}).json()["request_id"]
        with http.stream("GET", f"/fal-ai/any-llm/requests/{rid}/status/stream", params={"logs": "1"}) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            events = sse_data(list(response.iter_lines()))
    states = [e["status"] for e in events]
    assert states[0] in ("IN_QUEUE", "IN_PROGRESS")
    assert states[-1] == "COMPLETED"
    assert "IN_PROGRESS" in states
    assert states.index("IN_PROGRESS") < states.index("COMPLETED")
    messages = [log["message"] for e in events if e["logs"] for log in e["logs"]]  # type: ignore[attr-defined]
    assert len(messages) == len(set(messages))
    assert messages[-1].startswith("Generated")
    assert events[-1]["metrics"]["inference_time"] > 0  # type: ignore[index]


def test_status_stream_of_a_completed_request_is_one_event(live_server: RunningServer) -> None:
    """A finished request's stream sends its final state and closes."""
    with httpx.Client(base_url=live_server.base_url, headers=AUTH, timeout=20) as http:
        output = http.post("/run/fal-ai/any-llm", json={"prompt": "short", "max_tokens": 3})
        rid = output.headers["x-fal-request-id"]
        with http.stream("GET", f"/fal-ai/any-llm/requests/{rid}/status/stream") as response:
            events = sse_data(list(response.iter_lines()))
    assert [e["status"] for e in events] == ["COMPLETED"]
    assert events[0]["logs"] is None


def test_run_stream_is_cumulative_and_ends_with_partial_false(live_server: RunningServer) -> None:
    """Each event's output extends the previous one; only the last has partial false; then it closes."""
    with (
        httpx.Client(base_url=live_server.base_url, headers=AUTH, timeout=20) as http,
        http.stream("POST", "/run/fal-ai/any-llm/stream", json={"prompt": "What is the meaning of life?"}) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        rid = response.headers["x-fal-request-id"]
        events = sse_data(list(response.iter_lines()))
    outputs = [str(e["output"]) for e in events]
    assert len(events) > 5
    assert all(later.startswith(earlier) for earlier, later in itertools.pairwise(outputs))
    assert [e["partial"] for e in events] == [True] * (len(events) - 1) + [False]
    assert all(e["error"] is None for e in events)
    assert outputs[-1].startswith("The meaning of life is subjective")
    with httpx.Client(base_url=live_server.base_url, headers=AUTH) as http:
        result = http.get(f"/fal-ai/any-llm/requests/{rid}")
    assert result.json()["output"] == outputs[-1]


def test_sync_run_returns_the_output(live_server: RunningServer) -> None:
    """POST /run/<endpoint> waits for the output and returns it with the request id."""
    with httpx.Client(base_url=live_server.base_url, headers=AUTH, timeout=20) as http:
        response = http.post("/run/fal-ai/any-llm", json={"prompt": "echo: hello socket"})
    assert response.status_code == 200
    assert response.json() == {"output": "echo: hello socket", "partial": False, "error": None}
    assert response.headers["x-fal-request-id"]
    assert response.headers["x-fal-billable-units"] == "1"


def inject(server: RunningServer, **rule: object) -> None:
    httpx.post(f"{server.base_url}/_emulator/next", json=rule).raise_for_status()


def test_a_reset_fault_drops_the_connection(live_server: RunningServer) -> None:
    """A reset fault starts an answer and drops the connection: the client sees a transport error."""
    inject(live_server, actions=["submit"], fault={"kind": "reset"})
    with httpx.Client(base_url=live_server.base_url, headers=AUTH, timeout=20) as http:
        with pytest.raises(httpx.TransportError):
            http.post("/fal-ai/any-llm", json={"prompt": "x"})
        assert http.post("/fal-ai/any-llm", json={"prompt": "x"}).status_code == 200


@pytest.mark.parametrize("stream", ["run", "status"])
def test_a_stream_drops_mid_way(live_server: RunningServer, stream: str) -> None:
    """drop_stream cuts a stream after N events, without its final event."""
    with httpx.Client(base_url=live_server.base_url, headers=AUTH, timeout=20) as http:
        if stream == "run":
            inject(live_server, actions=["run_stream"], fault={"kind": "drop_stream", "after_events": 2})
            request = http.build_request(
                "POST", "/run/fal-ai/any-llm/stream", json={"prompt": "What is the meaning of life?"}
            )
        else:
            rid = http.post("/fal-ai/any-llm", json={"prompt": "What is the meaning of life?"}).json()["request_id"]
            inject(live_server, actions=["status_stream"], fault={"kind": "drop_stream", "after_events": 1})
            request = http.build_request("GET", f"/fal-ai/any-llm/requests/{rid}/status/stream")
        lines: list[str] = []
        response = http.send(request, stream=True)
        with pytest.raises(httpx.TransportError):
            lines.extend(response.iter_lines())
        response.close()
    events = sse_data(lines)
    assert len(events) == (2 if stream == "run" else 1)
    if stream == "run":
        assert all(e["partial"] for e in events)
    else:
        assert events[0]["status"] != "COMPLETED"


def test_fixture_stream_drop_and_reset(tmp_path: Path) -> None:
    """drop_stream and reset declared in a fixture act on the requests it matches, over a socket."""
    (tmp_path / "f.yaml").write_text(
        """
fixtures:
  - name: dropped
    match: {prompt: dropped}
    faults: [{kind: drop_stream, after_events: 3}]
  - name: reset
    match: {prompt: reset}
    faults: [{kind: reset, actions: [result]}]
"""
    )
    settings = Settings(profile="instant", fixtures=(tmp_path,), data_dir=tmp_path)
    with start_server(settings) as server, httpx.Client(base_url=server.base_url, headers=AUTH, timeout=20) as http:
        lines: list[str] = []
        with http.stream("POST", "/run/fal-ai/any-llm/stream", json={"prompt": "dropped"}) as response:  # noqa: SIM117
            with pytest.raises(httpx.TransportError):
                lines.extend(response.iter_lines())
        assert len(sse_data(lines)) == 3
        rid = http.post("/fal-ai/any-llm", json={"prompt": "reset"}).json()["request_id"]
        http.get(f"/fal-ai/any-llm/requests/{rid}/status")
        with pytest.raises(httpx.TransportError):
            http.get(f"/fal-ai/any-llm/requests/{rid}")
