"""The Redis store: several real emulator processes serving one queue on a real redis-server."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis import Redis

from emulator.store import StoreError, open_store
from tests.processes import EmulatorProcess, emulator_process
from tests.receivers import Receiver
from tests.redis_server import RedisServer, redis_server
from tests.servers import free_port

pytestmark = [pytest.mark.process, pytest.mark.redis]

AUTH = {"Authorization": "Key local:secret"}
ENDPOINT = "fal-ai/any-llm"


def poll(check: Callable[[], bool], what: str, within: float = 20.0, show: Callable[[], Any] = str) -> None:
    """Call ``check`` until it holds; fail at the deadline, showing what ``show`` returns."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {within}s: {show()}")


def redis_client(server: RedisServer) -> Redis:
    return Redis(host="127.0.0.1", port=server.port)


def client(server: EmulatorProcess) -> httpx.Client:
    return httpx.Client(base_url=server.http_url, headers=AUTH, timeout=10.0)


def status(api: httpx.Client, request_id: str) -> dict[str, Any]:
    answer = api.get(f"/{ENDPOINT}/requests/{request_id}/status")
    assert answer.status_code in (200, 202), answer.text
    body: dict[str, Any] = answer.json()
    return body


@contextlib.contextmanager
def paused_pair(tmp_path: Path, redis: RedisServer, lease: str = "1") -> Iterator[tuple[httpx.Client, httpx.Client]]:
    """Two emulator processes on one Redis (one runner each, paused), and a client for each."""
    options = ["--store", redis.url(lease=lease), "--runners", "1", "--profile", "instant"]
    with (
        emulator_process(tmp_path / "a", options) as a,
        emulator_process(tmp_path / "b", options) as b,
        client(a) as api_a,
        client(b) as api_b,
    ):
        for api in (api_a, api_b):
            assert api.post("/_emulator/pause").status_code == 200
        yield api_a, api_b


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    with redis_server(tmp_path / "redis") as server:
        yield server


def test_two_processes_share_one_queue(tmp_path: Path, redis: RedisServer) -> None:
    """Positions are global, every process sees the same status, and each request runs (and calls back) once."""
    # A lease long enough that a stall on a loaded machine cannot hand a running request to the other process
    # (which would run it, and call back, a second time: that is what a lease is for, but not what this tests).
    with Receiver() as receiver, paused_pair(tmp_path, redis, lease="30") as (api_a, api_b):
        ids = []
        for n in range(6):
            api = api_a if n % 2 == 0 else api_b
            answer = api.post(f"/{ENDPOINT}", params={"fal_webhook": receiver.url}, json={"prompt": f"p{n}"})
            assert answer.status_code == 200
            assert answer.json()["queue_position"] == n
            ids.append(answer.json()["request_id"])
        for n, request_id in enumerate(ids):
            for api in (api_a, api_b):
                assert (status(api, request_id)["status"], status(api, request_id)["queue_position"]) == ("IN_QUEUE", n)
        for api in (api_a, api_b):
            assert api.post("/_emulator/resume").status_code == 200
        for api in (api_a, api_b):

            def all_completed(api: httpx.Client = api) -> bool:
                return all(status(api, i)["status"] == "COMPLETED" for i in ids)

            poll(all_completed, "all completed")
        for api in (api_a, api_b):
            assert [api.get(f"/{ENDPOINT}/requests/{i}").status_code for i in ids] == [200] * 6
        calls = receiver.wait_for_calls(6, timeout=15.0)
        # One runner per request: six webhooks, one for each, and no second one arriving late.
        assert sorted(json.loads(call.body)["request_id"] for call in calls) == sorted(ids)
        outputs = {i: api_a.get(f"/{ENDPOINT}/requests/{i}").json() for i in ids}
        assert outputs == {i: api_b.get(f"/{ENDPOINT}/requests/{i}").json() for i in ids}
        assert len(receiver.calls) == 6


@pytest.mark.parametrize(
    ("signal", "lease"),
    [("SIGKILL", "1"), ("SIGTERM", "60")],  # a graceful stop hands the run back at once, long lease or not
)
def test_a_request_survives_the_death_of_its_runner(
    tmp_path: Path, redis: RedisServer, signal: str, lease: str
) -> None:
    """A request held mid-run by a process that is killed or stopped is picked up and completed by the other."""
    options = ["--store", redis.url(lease=lease), "--runners", "1", "--profile", "instant"]
    with emulator_process(tmp_path / "b", options) as b, client(b) as api_b:
        assert api_b.post("/_emulator/pause").status_code == 200
        with emulator_process(tmp_path / "a", options) as a, client(a) as api_a:
            # A holds the request once it has started it, so it dies mid-run for sure.
            hold = {"fault": {"kind": "hold", "stage": "progress"}}
            assert api_a.post("/_emulator/next", json=hold).status_code == 201
            request_id = api_a.post(f"/{ENDPOINT}", json={"prompt": "hello"}).json()["request_id"]
            poll(lambda: status(api_b, request_id)["status"] == "IN_PROGRESS", "a running it, as b sees it")
            if signal == "SIGKILL":
                a.process.kill()
            else:
                a.process.terminate()
            a.process.wait(timeout=15)
        assert api_b.post("/_emulator/resume").status_code == 200
        poll(lambda: status(api_b, request_id)["status"] == "COMPLETED", "completed by b")
        assert api_b.get(f"/{ENDPOINT}/requests/{request_id}").status_code == 200


def test_a_redis_that_goes_away_answers_503_then_recovers(tmp_path: Path, redis: RedisServer) -> None:
    """With Redis stopped, submit and status answer 503 with a JSON reason; once it is back, both work again."""
    options = ["--store", redis.url(lease="1"), "--profile", "instant"]
    with emulator_process(tmp_path / "a", options) as a, client(a) as api:
        first = api.post(f"/{ENDPOINT}", json={"prompt": "before"}).json()["request_id"]
        poll(lambda: status(api, first)["status"] == "COMPLETED", "the first request completed")
        redis.stop()
        refused = api.post(f"/{ENDPOINT}", json={"prompt": "while down"})
        assert refused.status_code == 503
        assert refused.json()["detail"].startswith("Store unavailable: Redis at 127.0.0.1:")
        polled = api.get(f"/{ENDPOINT}/requests/{first}/status")
        assert polled.status_code == 503 and "unavailable" in polled.json()["detail"]
        redis.start()
        poll(lambda: api.post(f"/{ENDPOINT}", json={"prompt": "after"}).status_code == 200, "submit accepted again")
        again = api.post(f"/{ENDPOINT}", json={"prompt": "after"})
        assert again.status_code == 200, again.text
        later = again.json()["request_id"]
        poll(lambda: status(api, later)["status"] == "COMPLETED", "a request after the outage completed")


def test_an_unreachable_redis_stops_the_server_with_one_line(tmp_path: Path) -> None:
    """Starting against a Redis nobody listens on exits 2 with one line naming the address."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    argv = [sys.executable, "-m", "emulator", "serve", "--store", url, "--port", "0", "--tls-port", "0"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "cannot reach Redis at 127.0.0.1:" in result.stderr


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://", "is not a redis://host:port/db URL"),
        ("redis://localhost:6379/0?lease=soon", "could not convert"),
        ("redis://localhost:6379/0?lease=0", "lease must be a positive number"),
        ("redis://localhost:6379/0?speed=fast", "unknown option 'speed'"),
    ],
)
def test_bad_redis_urls_are_named(url: str, message: str) -> None:
    """A malformed redis URL says what is wrong before any connection is tried."""
    with pytest.raises(StoreError, match=message):
        open_store(url, retention_seconds=1, retention_count=1)


def test_a_status_stream_follows_a_request_another_process_runs(tmp_path: Path, redis: RedisServer) -> None:
    """A status stream on the process that took the request ends with COMPLETED when the other one runs it."""
    with paused_pair(tmp_path, redis) as (api_a, api_b):
        request_id = api_b.post(f"/{ENDPOINT}", json={"prompt": "streamed"}).json()["request_id"]
        events: list[dict[str, Any]] = []
        first = threading.Event()

        def read() -> None:
            with api_b.stream("GET", f"/{ENDPOINT}/requests/{request_id}/status/stream") as stream:
                for line in stream.iter_lines():
                    if line.startswith("data:"):
                        events.append(json.loads(line.removeprefix("data:")))
                        first.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        assert first.wait(10), "no first event"
        assert api_a.post("/_emulator/resume").status_code == 200  # only a may run it
        reader.join(15)
        assert not reader.is_alive(), f"the stream did not end: {events}"
        assert events[0]["status"] == "IN_QUEUE" and events[-1]["status"] == "COMPLETED"


def test_a_deadline_ends_a_request_no_runner_took(tmp_path: Path, redis: RedisServer) -> None:
    """x-fal-request-timeout still ends a request left in the shared queue with request_timeout."""
    options = ["--store", redis.url(lease="1"), "--profile", "instant"]
    with emulator_process(tmp_path / "a", options) as a, client(a) as api:
        assert api.post("/_emulator/pause").status_code == 200
        answer = api.post(f"/{ENDPOINT}", json={"prompt": "late"}, headers={"x-fal-request-timeout": "0.2"})
        request_id = answer.json()["request_id"]
        poll(lambda: status(api, request_id)["status"] == "COMPLETED", "the deadline passed")
        assert status(api, request_id)["error_type"] == "request_timeout"
        assert api.post("/_emulator/resume").status_code == 200
        assert api.get(f"/{ENDPOINT}/requests/{request_id}").status_code == 504


def test_after_redis_loses_its_data_the_processes_write_back_and_agree(tmp_path: Path, redis: RedisServer) -> None:
    """Redis restarted empty: each process writes back what it holds, both see the same states, all complete."""
    with paused_pair(tmp_path, redis) as (api_a, api_b):
        done = [api_a.post(f"/{ENDPOINT}", json={"prompt": f"early {n}"}).json()["request_id"] for n in range(3)]
        assert api_a.post("/_emulator/resume").status_code == 200
        poll(lambda: all(status(api_b, rid)["status"] == "COMPLETED" for rid in done), "the early ones completed")
        assert api_a.post("/_emulator/pause").status_code == 200
        queued = [
            (api_a if n % 2 else api_b).post(f"/{ENDPOINT}", json={"prompt": f"late {n}"}).json()["request_id"]
            for n in range(12)
        ]
        ids = done + queued
        redis.stop()
        redis.start()  # --save '': the restarted server holds nothing
        keys = redis_client(redis)

        def state(api: httpx.Client, rid: str) -> str | None:
            # While Redis comes back a poll may answer 503 (store unavailable): not yet, then.
            answer = api.get(f"/{ENDPOINT}/requests/{rid}/status")
            assert answer.status_code in (200, 202, 503), answer.text
            return str(answer.json()["status"]) if answer.status_code != 503 else None

        def agreed() -> bool:
            held = all(keys.exists(f"any-llm-emulator:req:local:{rid}") for rid in ids)
            return held and all(state(api_a, rid) == state(api_b, rid) is not None for rid in ids)

        poll(agreed, "every request back in Redis, the same on both processes")
        assert [status(api_b, rid)["status"] for rid in done] == ["COMPLETED"] * 3
        for api in (api_a, api_b):
            assert api.post("/_emulator/resume").status_code == 200

        def completed() -> bool:
            return all(status(api, rid)["status"] == "COMPLETED" for rid in ids for api in (api_a, api_b))

        try:
            poll(completed, "every request completed, as both processes see it", within=30.0)
        finally:
            keys.close()


def test_a_run_its_runner_fails_goes_back_to_the_shared_queue_for_any_process(
    tmp_path: Path, redis: RedisServer
) -> None:
    """A run failed by its runner (503) is queued again with a new gateway request id and retries_left
    one less, and another process's runner completes it."""
    fixtures = tmp_path / "fixtures"
    fixtures.mkdir()
    (fixtures / "lost.yaml").write_text(
        "fixtures:\n"
        "  - name: lost-once\n"
        "    match: {prompt: {contains: '[lost]'}}\n"
        "    outcomes:\n"
        "      - error: {status: 503, detail: Runner disconnected, error_type: runner_disconnected}\n"
        "      - output: Back on a new runner.\n"
    )
    # The default lease (10 s): no process dies here, and a short one could expire on a loaded machine.
    options = ["--store", redis.url(), "--runners", "1", "--profile", "instant", "--fixtures", str(fixtures)]
    with (
        emulator_process(tmp_path / "a", options) as a,
        emulator_process(tmp_path / "b", options) as b,
        client(a) as api_a,
        client(b) as api_b,
        redis_client(redis) as keys,
    ):
        for api in (api_a, api_b):
            assert api.post("/_emulator/pause").status_code == 200
        # b holds its run once started, so the test can stop b's runners before the run fails.
        assert api_b.post("/_emulator/next", json={"fault": {"kind": "hold", "stage": "progress"}}).status_code == 201
        request_id = api_a.post(f"/{ENDPOINT}", json={"prompt": "[lost] hello"}).json()["request_id"]
        assert api_b.post("/_emulator/resume").status_code == 200
        for api in (api_b, api_a):

            def running(api: httpx.Client = api) -> bool:
                return bool(status(api, request_id)["status"] == "IN_PROGRESS")

            poll(running, "b running it, as each process sees it")
        assert api_b.post("/_emulator/pause").status_code == 200
        assert api_b.post(f"/_emulator/requests/{request_id}/release").status_code == 200

        def queued_again() -> bool:
            # b's runner failed it (the fixture's first outcome, on b): back in the shared queue, a alone serves it.
            in_queue = keys.zscore("any-llm-emulator:queue:local", request_id) is not None
            return in_queue and status(api_a, request_id)["status"] == "IN_QUEUE"

        poll(queued_again, "queued again", show=lambda: status(api_a, request_id))
        queued = status(api_a, request_id)
        assert queued["gateway_request_id"] != request_id
        assert api_a.post("/_emulator/resume").status_code == 200
        poll(lambda: status(api_a, request_id)["status"] == "COMPLETED", "completed by a")
        assert api_a.get(f"/{ENDPOINT}/requests/{request_id}").json()["output"] == "Back on a new runner."
        done = api_a.get(f"/{ENDPOINT}/requests/{request_id}/status", params={"logs": "1"}).json()
        assert done["gateway_request_id"] == queued["gateway_request_id"] and done.get("error") is None
        retried = [line for line in done["logs"] if "runs the request again on a new runner" in line["message"]]
        assert len(retried) == 1 and retried[0]["level"] == "WARN"
        stored = json.loads(keys.get(f"any-llm-emulator:req:local:{request_id}") or b"{}")
        assert (stored["retries_left"], stored["gateway_request_id"]) == (9, queued["gateway_request_id"])
