"""The control API and faults through HTTP, in-process, on a manual clock."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from emulator import Emulator, ManualClock, Settings, create_app
from tests.conftest import AUTH
from tests.helpers import drive

pytestmark = pytest.mark.anyio
NS = "test-key"


async def submit(client: httpx.AsyncClient, prompt: str = "Explain queues", **kwargs: object) -> httpx.Response:
    return await client.post("/fal-ai/any-llm", json={"prompt": prompt}, **kwargs)  # type: ignore[arg-type]


async def rid_of(client: httpx.AsyncClient, prompt: str = "Explain queues", **kwargs: object) -> str:
    response = await submit(client, prompt, **kwargs)
    assert response.status_code == 200, response.text
    return str(response.json()["request_id"])


async def next_calls(client: httpx.AsyncClient, **rule: object) -> None:
    response = await client.post("/_emulator/next", json=rule)
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    ("status", "extra", "media_type"),
    [
        (429, {"retry_after": 2}, "application/json"),
        (500, {}, "application/json"),
        (502, {"with_request_id": False}, "text/html"),
        (503, {"with_request_id": True}, "application/json"),
        (504, {"with_request_id": False}, "text/html"),
        (401, {}, "application/json"),
        (403, {}, "application/json"),
    ],
)
async def test_http_errors_on_submit(
    client: httpx.AsyncClient, status: int, extra: dict[str, object], media_type: str
) -> None:
    """The next submit answers the injected status; the one after is normal again."""
    await next_calls(client, count=1, actions=["submit"], fault={"kind": "http_error", "status": status, **extra})
    failed = await submit(client)
    assert failed.status_code == status
    assert failed.headers["content-type"].startswith(media_type)
    assert ("x-fal-request-id" in failed.headers) == extra.get("with_request_id", True)
    if status == 429:
        assert failed.headers["retry-after"] == "2"
    assert (await submit(client)).status_code == 200


@pytest.mark.parametrize("action", ["status", "result", "cancel", "status_stream"])
async def test_http_errors_on_request_calls(client: httpx.AsyncClient, clock: ManualClock, action: str) -> None:
    """Status, result, cancel and stream calls can be made to fail too, scoped to one request."""
    rid = await rid_of(client)
    other = await rid_of(client, "another")
    clock.advance(60)
    await next_calls(client, count=2, actions=[action], request_id=rid, fault={"kind": "http_error", "status": 503})
    path = {
        "status": f"/fal-ai/any-llm/requests/{rid}/status",
        "result": f"/fal-ai/any-llm/requests/{rid}",
        "cancel": f"/fal-ai/any-llm/requests/{rid}/cancel",
        "status_stream": f"/fal-ai/any-llm/requests/{rid}/status/stream",
    }[action]
    method = "PUT" if action == "cancel" else "GET"
    assert (await client.request(method, path.replace(rid, other))).status_code != 503
    assert [(await client.request(method, path)).status_code for _ in range(2)] == [503, 503]


async def test_http_error_on_run(client: httpx.AsyncClient, clock: ManualClock) -> None:
    """The run surface obeys rules for the run action."""
    await next_calls(client, actions=["run"], fault={"kind": "http_error", "status": 429, "retry_after": 1})
    assert (await client.post("/run/fal-ai/any-llm", json={"prompt": "x"})).status_code == 429
    ok = await drive(clock, client.post("/run/fal-ai/any-llm", json={"prompt": "x"}))
    assert ok.status_code == 200


@pytest.mark.parametrize(
    ("fault", "status_code", "error_type"),
    [
        ({"error_type": "runner_disconnected"}, 503, "runner_disconnected"),
        ({"error_type": "request_timeout"}, 504, "request_timeout"),
        ({"error_type": "startup_timeout"}, 504, "startup_timeout"),
        ({"status": 422, "detail": [{"loc": ["body", "prompt"], "msg": "nope", "type": "value_error"}]}, 422, None),
        ({"status": 499, "detail": "Client closed request"}, 499, None),
    ],
)
async def test_complete_with_error_is_consistent(
    client: httpx.AsyncClient, clock: ManualClock, fault: dict[str, object], status_code: int, error_type: str | None
) -> None:
    """A request that completes with an error reports it the same way in status and result."""
    await next_calls(client, fault={"kind": "complete_with_error", **fault})
    rid = await rid_of(client, headers={"x-fal-no-retry": "1"})
    clock.advance(60)
    status = (await client.get(f"/fal-ai/any-llm/requests/{rid}/status")).json()
    result = await client.get(f"/fal-ai/any-llm/requests/{rid}")
    assert status["status"] == "COMPLETED"
    assert status["error_type"] == error_type
    assert result.status_code == status_code
    assert result.json()["detail"] == (fault.get("detail") or status["error"])
    assert status["error"]


async def test_runner_disconnected_streams_half_then_fails(client: httpx.AsyncClient, clock: ManualClock) -> None:
    """A runner lost mid-run streams part of the answer, then ends the stream with the error."""
    await next_calls(
        client, actions=["run_stream"], fault={"kind": "complete_with_error", "error_type": "runner_disconnected"}
    )
    response = await drive(
        clock, client.post("/run/fal-ai/any-llm/stream", json={"prompt": "What is the meaning of life?"})
    )
    lines = [line for line in response.text.splitlines() if line.startswith("data: ")]
    assert len(lines) > 2
    assert '"error":"Runner disconnected"' in lines[-1]
    assert '"partial":false' in lines[-1]


async def test_hold_in_queue_until_released(client: httpx.AsyncClient, clock: ManualClock, core: Emulator) -> None:
    """A request held in the queue stays IN_QUEUE however long, and others pass it; release runs it."""
    await next_calls(client, fault={"kind": "hold", "stage": "queue"})
    held = await rid_of(client, "held")
    other = await rid_of(client, "other")
    clock.advance(3600)
    states = {
        rid: (await client.get(f"/fal-ai/any-llm/requests/{rid}/status")).json()["status"] for rid in (held, other)
    }
    assert states == {held: "IN_QUEUE", other: "COMPLETED"}
    listing = (await client.get("/_emulator/requests", params={"status": "IN_QUEUE"})).json()["requests"]
    assert [(r["request_id"], r["held"]) for r in listing] == [(held, True)]
    assert (await client.post(f"/_emulator/requests/{held}/release")).status_code == 200
    clock.advance(60)
    assert (await client.get(f"/fal-ai/any-llm/requests/{held}/status")).json()["status"] == "COMPLETED"


async def test_hold_in_progress_freezes_then_resumes(client: httpx.AsyncClient, clock: ManualClock) -> None:
    """A request held mid-run stays IN_PROGRESS; after release it finishes with its whole output."""
    await next_calls(client, fault={"kind": "hold", "stage": "progress"})
    rid = await rid_of(client, "What is the meaning of life?")
    clock.advance(3600)
    assert (await client.get(f"/fal-ai/any-llm/requests/{rid}/status")).json()["status"] == "IN_PROGRESS"
    await client.post(f"/_emulator/requests/{rid}/release")
    clock.advance(60)
    result = await client.get(f"/fal-ai/any-llm/requests/{rid}")
    assert result.json()["output"].startswith("The meaning of life")


async def test_forced_transitions(client: httpx.AsyncClient, clock: ManualClock) -> None:
    """start, complete, fail and hold drive a request by hand; a finished one refuses with 409."""
    rids = [await rid_of(client, f"p{i}") for i in range(4)]
    start = await client.post(f"/_emulator/requests/{rids[3]}/start")
    assert start.json()["status"] == "IN_PROGRESS"
    done = await client.post(f"/_emulator/requests/{rids[2]}/complete")
    assert done.json()["status"] == "COMPLETED"
    assert (await client.get(f"/fal-ai/any-llm/requests/{rids[2]}")).status_code == 200
    failed = await client.post(f"/_emulator/requests/{rids[1]}/fail", json={"error_type": "startup_timeout"})
    assert failed.json()["error"] == {"detail": "Startup timed out", "error_type": "startup_timeout"}
    assert (await client.get(f"/fal-ai/any-llm/requests/{rids[1]}")).status_code == 504
    again = await client.post(f"/_emulator/requests/{rids[1]}/hold")
    assert again.status_code == 409
    assert (await client.post("/_emulator/requests/nope/start")).status_code == 404
    assert (await client.post(f"/_emulator/requests/{rids[0]}/explode")).status_code == 404


async def test_pause_and_resume(client: httpx.AsyncClient, clock: ManualClock) -> None:
    """Paused runners start nothing until resumed."""
    await client.post("/_emulator/pause")
    rid = await rid_of(client)
    clock.advance(600)
    assert (await client.get(f"/fal-ai/any-llm/requests/{rid}/status")).json()["status"] == "IN_QUEUE"
    await client.post("/_emulator/resume")
    clock.advance(600)
    assert (await client.get(f"/fal-ai/any-llm/requests/{rid}/status")).json()["status"] == "COMPLETED"


async def test_latency_waits_on_the_clock(client: httpx.AsyncClient, clock: ManualClock) -> None:
    """A latency fault delays the answer by simulated seconds."""
    await next_calls(client, actions=["submit"], fault={"kind": "latency", "seconds": 30})
    started = clock.now()
    response = await drive(clock, submit(client), step=1.0)
    assert response.status_code == 200
    assert clock.now() - started >= 30


@pytest.mark.parametrize("kind", ["truncated_body", "malformed_body"])
async def test_spoiled_bodies_are_not_json(client: httpx.AsyncClient, kind: str) -> None:
    """Truncated and malformed bodies keep the status but cannot be parsed."""
    await next_calls(client, actions=["submit"], fault={"kind": kind})
    response = await submit(client)
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        response.json()


async def test_clock_advance_drives_a_long_scenario(client: httpx.AsyncClient) -> None:
    """Hours of queueing and runs pass in one call to the control API."""
    for i in range(6):
        await submit(client, f"question {i}")
    response = await client.post("/_emulator/clock/advance", json={"seconds": 7200})
    assert response.status_code == 200
    assert response.json()["timers_fired"] > 6
    states = (await client.get("/_emulator/requests")).json()["requests"]
    assert [r["status"] for r in states] == ["COMPLETED"] * 6
    bad = await client.post("/_emulator/clock/advance", json={"seconds": -1})
    assert bad.status_code == 400


async def test_journal_records_masks_filters_and_caps(core: Emulator, clock: ManualClock) -> None:
    """The journal keeps method, path, masked key, body and status; it never grows past its cap."""
    small = Emulator.build(core.settings.replace(journal_size=5, journal_body_bytes=16), clock=clock)
    transport = httpx.ASGITransport(app=create_app(emulator=small))
    async with httpx.AsyncClient(transport=transport, base_url="http://e.test", headers=AUTH) as http:
        await http.post("/fal-ai/any-llm", json={"prompt": "a very long prompt indeed"})
        first = (await http.get("/_emulator/journal")).json()["entries"][0]
        assert first["method"] == "POST"
        assert first["path"] == "/fal-ai/any-llm"
        assert first["headers"]["authorization"] == "Key test-key:***"
        assert first["body_truncated"] is True
        assert len(first["body"]) == 16
        assert first["status"] == 200
        assert first["request_id"]
        for _ in range(10):
            await http.get("/fal-ai/any-llm/requests/missing/status")
        journal = (await http.get("/_emulator/journal")).json()
        assert len(journal["entries"]) == 5
        assert (await http.get("/_emulator/journal", params={"status": "404", "limit": "2"})).json()["entries"][0][
            "status"
        ] == 404
        assert (await http.get("/_emulator/journal", params={"method": "POST"})).json()["entries"] == []


async def test_reset_one_namespace_leaves_the_other(client: httpx.AsyncClient) -> None:
    """Resetting a namespace forgets its requests, journal and rules, and nothing of another's."""
    mine = await rid_of(client)
    other_headers = {"Authorization": "Key other:secret"}
    theirs = (await client.post("/fal-ai/any-llm", json={"prompt": "x"}, headers=other_headers)).json()["request_id"]
    await client.post("/_emulator/next", json={"namespace": NS, "fault": {"kind": "http_error", "status": 500}})
    await client.post("/_emulator/reset", json={"namespace": NS})
    journal = (await client.get("/_emulator/journal")).json()["entries"]
    assert {e["namespace"] for e in journal} == {"other"}
    assert (await client.get(f"/fal-ai/any-llm/requests/{mine}/status")).status_code == 404
    assert (await client.get(f"/fal-ai/any-llm/requests/{theirs}/status", headers=other_headers)).status_code == 202
    assert (await client.get("/_emulator/config")).json()["faults"] == []


async def test_two_keys_concurrently_are_isolated(client: httpx.AsyncClient, clock: ManualClock) -> None:
    """Two clients with different keys see their own queues, positions and injected faults."""
    a = {"Authorization": "Key alpha:s"}
    b = {"Authorization": "Key beta:s"}
    await client.post(
        "/_emulator/next", json={"namespace": "alpha", "count": 3, "fault": {"kind": "http_error", "status": 503}}
    )

    async def burst(headers: dict[str, str]) -> list[int]:
        responses = await asyncio.gather(
            *(client.post("/fal-ai/any-llm", json={"prompt": f"q{i}"}, headers=headers) for i in range(5))
        )
        return sorted(r.status_code for r in responses)

    codes_a, codes_b = await asyncio.gather(burst(a), burst(b))
    assert codes_a == [200, 200, 503, 503, 503]
    assert codes_b == [200] * 5
    positions = [
        r.get("queue_position")
        for r in (await client.get("/_emulator/requests", params={"namespace": "beta"})).json()["requests"]
    ]
    assert positions == [0, 0, 0, 1, 2]


async def test_concurrency_limit_and_queue_length(core: Emulator, clock: ManualClock) -> None:
    """Over the per-key concurrency limit, queued requests wait their turn and a sync run answers 429."""
    limited = Emulator.build(core.settings.replace(concurrency_limit=2, runners=4, profile="realistic"), clock=clock)
    transport = httpx.ASGITransport(app=create_app(emulator=limited))
    async with httpx.AsyncClient(transport=transport, base_url="http://e.test", headers=AUTH) as http:
        rids = [(await submit(http)).json()["request_id"] for _ in range(3)]
        clock.advance(0.3)
        states = [(await http.get(f"/fal-ai/any-llm/requests/{rid}/status")).json() for rid in rids]
        assert [s["status"] for s in states] == ["IN_PROGRESS", "IN_PROGRESS", "IN_QUEUE"]
        assert states[2]["queue_position"] == 0
        refused = await http.post("/run/fal-ai/any-llm", json={"prompt": "x"})
        assert refused.status_code == 429
        other = await http.post("/fal-ai/any-llm", json={"prompt": "x"}, headers={"Authorization": "Key b:c"})
        assert other.status_code == 200
        clock.advance(120)
        assert (await http.get(f"/fal-ai/any-llm/requests/{rids[2]}")).status_code == 200


async def test_fixture_outcomes_fail_twice_then_succeed(tmp_path: Path, clock: ManualClock) -> None:
    """A fixture's outcomes answer repeated calls in order, the last one repeating."""
    (tmp_path / "flaky.yaml").write_text(
        """
fixtures:
  - name: flaky
    match: {prompt: {contains: flaky}}
    timing: {queue_wait: 5, first_token_after: 1, tokens_per_second: 10}
    outcomes:
      - error: {status: 503, detail: Runner disconnected, error_type: runner_disconnected}
      - error: {status: 503, detail: Runner disconnected, error_type: runner_disconnected}
      - output: "third time lucky"
"""
    )
    emulator = Emulator.build(Settings(fixtures=(tmp_path,)), clock=clock)
    transport = httpx.ASGITransport(app=create_app(emulator=emulator))
    async with httpx.AsyncClient(transport=transport, base_url="http://e.test", headers=AUTH) as http:
        codes = []
        for _ in range(4):
            rid = await rid_of(http, "a flaky prompt", headers={"x-fal-no-retry": "yes"})
            clock.advance(4.9)
            assert (await http.get(f"/fal-ai/any-llm/requests/{rid}/status")).json()["status"] == "IN_QUEUE"
            clock.advance(10)
            codes.append((await http.get(f"/fal-ai/any-llm/requests/{rid}")).status_code)
        assert codes == [503, 503, 200, 200]
        # A reset starts the outcomes again; without x-fal-no-retry the queue retries both failures.
        await http.post("/_emulator/reset", json={"namespace": NS})
        rid = await rid_of(http, "a flaky prompt")
        clock.advance(60)
        result = await http.get(f"/fal-ai/any-llm/requests/{rid}")
        assert (result.status_code, result.json()["output"]) == (200, "third time lucky")
        retries = (await http.get("/_emulator/journal", params={"method": "RETRY"})).json()["entries"]
        assert [entry["status"] for entry in retries] == [503, 503]


async def test_fixture_faults_apply_to_their_requests(tmp_path: Path, clock: ManualClock) -> None:
    """Faults declared in a fixture apply to the requests it matches, e.g. a status that fails twice."""
    (tmp_path / "f.yaml").write_text(
        """
fixtures:
  - name: shaky-status
    match: {prompt: shaky}
    output: fine
    faults:
      - {kind: http_error, status: 503, with_request_id: false, actions: [status], times: 2}
"""
    )
    emulator = Emulator.build(Settings(fixtures=(tmp_path,), profile="instant"), clock=clock)
    transport = httpx.ASGITransport(app=create_app(emulator=emulator))
    async with httpx.AsyncClient(transport=transport, base_url="http://e.test", headers=AUTH) as http:
        rid = await rid_of(http, "shaky")
        calm = await rid_of(http, "calm")
        clock.advance(0)
        assert (await http.get(f"/fal-ai/any-llm/requests/{calm}/status")).status_code == 200
        codes = [(await http.get(f"/fal-ai/any-llm/requests/{rid}/status")).status_code for _ in range(3)]
        assert codes == [503, 503, 200]


async def test_fixture_reload(tmp_path: Path, clock: ManualClock) -> None:
    """Fixtures reload without a restart; a broken file is refused and the old ones stay."""
    file = tmp_path / "f.yaml"
    file.write_text("fixtures: [{name: a, match: {prompt: hi}, output: first}]")
    emulator = Emulator.build(Settings(fixtures=(tmp_path,), builtin_fixtures=False, profile="instant"), clock=clock)
    transport = httpx.ASGITransport(app=create_app(emulator=emulator))
    async with httpx.AsyncClient(transport=transport, base_url="http://e.test", headers=AUTH) as http:
        file.write_text("fixtures: [{name: a, match: {prompt: hi}, output: second}]")
        assert (await http.post("/_emulator/fixtures/reload")).json() == {"fixtures": 1}
        rid = await rid_of(http, "hi")
        clock.advance(0)
        assert (await http.get(f"/fal-ai/any-llm/requests/{rid}")).json()["output"] == "second"
        file.write_text("fixtures: [{output: nameless}]")
        refused = await http.post("/_emulator/fixtures/reload")
        assert refused.status_code == 422
        assert str(file) in refused.json()["detail"]
        assert len(emulator.outputs.fixtures) == 1


async def test_config_patch_changes_runtime_behaviour(client: httpx.AsyncClient, clock: ManualClock) -> None:
    """PATCH /config switches profile, runners and fault rules; bad values are refused."""
    patched = await client.patch(
        "/_emulator/config",
        json={"profile": "instant", "runners": 5, "faults": [{"fault": {"kind": "http_error", "status": 418}}]},
    )
    assert patched.status_code == 200
    assert (patched.json()["profile"], patched.json()["runners"]) == ("instant", 5)
    assert (await submit(client)).status_code == 418
    await client.patch("/_emulator/config", json={"faults": []})
    rids = [await rid_of(client, f"q{i}") for i in range(5)]
    clock.advance(0)
    assert {(await client.get(f"/fal-ai/any-llm/requests/{r}/status")).status_code for r in rids} == {200}
    for bad in ({"profile": "slow"}, {"runners": 0}, {"faults": [{"fault": {"kind": "x"}}]}, {"colour": 1}):
        assert (await client.patch("/_emulator/config", json=bad)).status_code == 400


async def test_control_token(core: Emulator, clock: ManualClock) -> None:
    """With a control token, the control API refuses callers without it; health stays open."""
    guarded = Emulator.build(core.settings.replace(control_token="s3cret"), clock=clock)
    transport = httpx.ASGITransport(app=create_app(emulator=guarded))
    async with httpx.AsyncClient(transport=transport, base_url="http://e.test") as http:
        assert (await http.get("/_emulator/config")).status_code == 401
        assert (await http.get("/_emulator/config", headers={"X-Emulator-Token": "s3cret"})).status_code == 200
        assert (await http.get("/_emulator/config", headers={"Authorization": "Bearer s3cret"})).status_code == 200
        assert (await http.get("/_emulator/health")).status_code == 200
        assert (await http.get("/_emulator/nothing-here")).status_code == 404


FAULTY_FIXTURES = """
fixtures:
  - name: lost-runner
    match: {prompt: lost-runner}
    faults: [{kind: complete_with_error, error_type: runner_disconnected}]
  - name: refused
    match: {prompt: refused}
    faults: [{kind: complete_with_error, status: 422, detail: [{loc: [body, prompt], msg: no, type: value_error}]}]
  - name: held
    match: {prompt: held}
    faults: [{kind: hold, stage: progress}]
  - name: slow-result
    match: {prompt: slow-result}
    faults: [{kind: latency, seconds: 20, actions: [result]}]
  - name: truncated
    match: {prompt: truncated}
    faults: [{kind: truncated_body, actions: [status]}]
  - name: malformed
    match: {prompt: malformed}
    faults: [{kind: malformed_body, actions: [result]}]
"""


@pytest.fixture
async def faulty(tmp_path: Path, clock: ManualClock) -> httpx.AsyncClient:
    (tmp_path / "faults.yaml").write_text(FAULTY_FIXTURES)
    emulator = Emulator.build(Settings(fixtures=(tmp_path,), profile="instant"), clock=clock)
    transport = httpx.ASGITransport(app=create_app(emulator=emulator))
    return httpx.AsyncClient(transport=transport, base_url="http://e.test", headers=AUTH)


async def test_fixture_complete_with_error(faulty: httpx.AsyncClient, clock: ManualClock) -> None:
    """complete_with_error from a fixture: a lost runner (503) and an app 422, reported consistently."""
    lost, refused = await rid_of(faulty, "lost-runner"), await rid_of(faulty, "refused")
    clock.advance(0)
    assert (await faulty.get(f"/fal-ai/any-llm/requests/{lost}")).json()["error_type"] == "runner_disconnected"
    status = (await faulty.get(f"/fal-ai/any-llm/requests/{refused}/status")).json()
    assert status["error"] == "Invalid status code: 422"
    assert (await faulty.get(f"/fal-ai/any-llm/requests/{refused}")).status_code == 422


async def test_fixture_hold_and_latency(faulty: httpx.AsyncClient, clock: ManualClock) -> None:
    """A hold from a fixture keeps the run going until released; latency delays only the named action."""
    held = await rid_of(faulty, "held")
    clock.advance(600)
    assert (await faulty.get(f"/fal-ai/any-llm/requests/{held}/status")).json()["status"] == "IN_PROGRESS"
    await faulty.post(f"/_emulator/requests/{held}/release")
    clock.advance(0)
    assert (await faulty.get(f"/fal-ai/any-llm/requests/{held}/status")).json()["status"] == "COMPLETED"
    slow = await rid_of(faulty, "slow-result")
    clock.advance(0)
    assert (await faulty.get(f"/fal-ai/any-llm/requests/{slow}/status")).status_code == 200
    started = clock.now()
    result = await drive(clock, faulty.get(f"/fal-ai/any-llm/requests/{slow}"), step=1.0)
    assert result.status_code == 200
    assert clock.now() - started >= 20


async def test_fixture_spoiled_bodies(faulty: httpx.AsyncClient, clock: ManualClock) -> None:
    """truncated_body and malformed_body from a fixture spoil exactly the named action's answer."""
    truncated, malformed = await rid_of(faulty, "truncated"), await rid_of(faulty, "malformed")
    clock.advance(0)
    with pytest.raises(json.JSONDecodeError):
        (await faulty.get(f"/fal-ai/any-llm/requests/{truncated}/status")).json()
    assert (await faulty.get(f"/fal-ai/any-llm/requests/{truncated}")).json()["output"]
    assert (await faulty.get(f"/fal-ai/any-llm/requests/{malformed}/status")).json()["status"] == "COMPLETED"
    with pytest.raises(json.JSONDecodeError):
        (await faulty.get(f"/fal-ai/any-llm/requests/{malformed}")).json()


async def test_reset_ends_open_streams(client: httpx.AsyncClient, clock: ManualClock) -> None:
    """A status stream open on a request that a reset forgets closes instead of hanging."""
    rid = await rid_of(client)
    stream = asyncio.ensure_future(client.get(f"/fal-ai/any-llm/requests/{rid}/status/stream"))
    for _ in range(1000):  # poll, bounded, until the stream has answered (the journal sees it)
        if (await client.get("/_emulator/journal", params={"path": "/status/stream"})).json()["entries"]:
            break
        await asyncio.sleep(0)
    await client.post("/_emulator/reset", json={"namespace": NS})
    response = await asyncio.wait_for(stream, timeout=10)
    assert response.text.count("data: ") == 1
