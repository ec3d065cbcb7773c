"""The SQLite store: records survive a reopen, a restart resumes the queue, and kill -9 loses nothing."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from emulator import Emulator, Settings, create_app
from emulator.core.clock import ManualClock
from emulator.core.models import RequestRecord, State
from emulator.core.scheduler import Submission
from emulator.store import StoreError, open_store
from emulator.store.sqlite import SqliteStore
from tests.processes import emulator_process
from tests.receivers import Receiver
from tests.servers import free_port

AUTH = {"Authorization": "Key local:secret"}
ENDPOINT = "fal-ai/any-llm"


def submission(prompt: str, webhook: str | None = None) -> Submission:
    """A plain any-llm request, with a webhook if one is given."""
    return Submission(ENDPOINT, {"prompt": prompt, "model": "google/gemini-flash-1.5"}, webhook_url=webhook)


def build(path: Path, clock: ManualClock) -> Emulator:
    """An emulator on a SQLite file with one runner and realistic timing, so requests stay queued."""
    settings = Settings(store=f"sqlite://{path}", profile="realistic", runners=1, data_dir=path.parent)
    return Emulator.build(settings, clock=clock)


def poll(check: Callable[[], bool], what: str, within: float = 15.0, show: Callable[[], Any] = str) -> None:
    """Call ``check`` until it holds; fail at the deadline, showing what ``show`` returns."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {within}s: {show()}")


def test_records_survive_a_reopen(tmp_path: Path) -> None:
    """Every saved field (plan, output, failure, logs) reads back the same from a new store on the same file."""
    path = tmp_path / "db" / "emulator.db"

    async def run() -> list[RequestRecord]:
        emulator = build(path, ManualClock())
        await emulator.start()
        first = emulator.scheduler.submit("ns", submission("one", "http://127.0.0.1:9/hook"))
        second = emulator.scheduler.submit("ns", submission("two"))
        emulator.scheduler.submit("ns", submission("three"))
        emulator.scheduler.complete(first)
        emulator.scheduler.cancel("ns", second.id)
        assert emulator.backend.durable is not None
        pending = emulator.backend.durable.durable()
        assert pending is not None
        await pending
        before = sorted(emulator.store.records(), key=lambda r: r.seq)
        await emulator.stop()
        return before

    before = asyncio.run(run())
    reopened = SqliteStore(path)
    try:
        after = sorted(reopened.records(), key=lambda r: r.seq)
        assert after == before
        assert [r.state for r in after] == [State.COMPLETED, State.COMPLETED, State.IN_QUEUE]
        assert after[0].plan is not None and after[1].failure is not None
        assert [r.id for r in reopened.unsent_webhooks()] == [before[0].id]
    finally:
        reopened.close()


def test_a_restart_requeues_running_requests_in_order(tmp_path: Path) -> None:
    """Queued requests keep their order and a run cut short starts again from the head of the queue."""
    path = tmp_path / "emulator.db"

    async def first_run() -> list[str]:
        emulator = build(path, ManualClock())
        await emulator.start()
        ids = [emulator.scheduler.submit("ns", submission(f"p{n}")).id for n in range(3)]
        running = emulator.store.get("ns", ids[0])
        assert running is not None
        emulator.scheduler.start(running)
        await emulator.stop()
        return ids

    async def second_run() -> list[tuple[str, State, int]]:
        emulator = build(path, ManualClock())
        await emulator.start()
        seen = [(r.id, r.state, emulator.scheduler.position(r)) for r in emulator.store.records()]
        later = emulator.scheduler.submit("ns", submission("later"))
        seen.append((later.id, later.state, emulator.scheduler.position(later)))
        await emulator.stop()
        return sorted(seen, key=lambda item: [*ids, item[0]].index(item[0]))

    ids = asyncio.run(first_run())
    seen = asyncio.run(second_run())
    assert [state for _, state, _ in seen] == [State.IN_QUEUE] * 4
    assert [position for _, _, position in seen] == [0, 0, 1, 2]  # the first is being picked up
    assert len({request_id for request_id, _, _ in seen}) == 4


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgres://db/1", "unsupported store 'postgres://db/1'"),
        ("sqlite://", "names no file"),
    ],
)
def test_bad_store_urls_are_named(url: str, message: str) -> None:
    """A store URL no backend understands says which URL and what is supported."""
    with pytest.raises(StoreError, match=message):
        open_store(url, retention_seconds=1, retention_count=1)


@pytest.mark.process
def test_an_unusable_sqlite_path_stops_the_server_with_one_line(tmp_path: Path) -> None:
    """A SQLite file that cannot be created exits 2 with a one-line message naming the path."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    url = f"sqlite://{blocker}/emulator.db"
    result = subprocess.run(
        [sys.executable, "-m", "emulator", "serve", "--store", url, "--port", "0", "--tls-port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and str(blocker) in result.stderr
    assert "Traceback" not in result.stderr


def states(path: Path) -> dict[str, dict[str, Any]]:
    """The records as the database file holds them right now (WAL lets a reader look in)."""
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT body FROM requests").fetchall()
    return {record["id"]: record for record in (json.loads(body) for (body,) in rows)}


@pytest.mark.process
def test_kill_9_loses_no_request_and_no_webhook(tmp_path: Path) -> None:
    """Requests queued, running and completed (webhook undelivered) before SIGKILL all finish after a restart."""
    path = tmp_path / "emulator.db"
    hook = f"http://127.0.0.1:{free_port()}/hook"
    store = ["--store", f"sqlite://{path}"]
    ids: list[str] = []
    hooked: set[str] = set()
    with emulator_process(tmp_path, [*store, "--runners", "1"]) as server:
        with httpx.Client(base_url=server.http_url, headers=AUTH) as client:
            # Paused runners leave every request queued until the control calls below move two of them.
            assert client.post("/_emulator/pause").status_code == 200
            for n in range(6):
                params = {"fal_webhook": hook} if n % 2 == 0 else {}
                answer = client.post(f"/{ENDPOINT}", params=params, json={"prompt": f"request {n}"})
                assert answer.status_code == 200
                ids.append(answer.json()["request_id"])
                if params:
                    hooked.add(ids[-1])
            # Accepted means on disk: every id is in the file the moment submit has answered.
            assert set(states(path)) == set(ids)
            assert client.post(f"/_emulator/requests/{ids[0]}/complete").status_code == 200

            def refused() -> list[Any]:
                found: list[Any] = client.get("/_emulator/webhooks", params={"request_id": ids[0]}).json()["attempts"]
                return found

            # The receiver is down: the completed request's webhook fails and waits for its retry.
            poll(lambda: len(refused()) == 1, "a refused webhook attempt", show=refused)
            assert refused()[0]["outcome"] == "retrying"
            assert client.post(f"/_emulator/requests/{ids[1]}/start").status_code == 200
            assert client.post(f"/_emulator/requests/{ids[1]}/hold").status_code == 200
        poll(
            lambda: [states(path)[i]["state"] for i in ids[:2]] == ["COMPLETED", "IN_PROGRESS"],
            "the completion and the start on disk",
        )
        server.process.kill()
        server.process.wait()

    with (
        Receiver(int(hook.split(":")[2].split("/")[0])) as receiver,
        emulator_process(tmp_path, [*store, "--profile", "instant"]) as server,
    ):
        with httpx.Client(base_url=server.http_url, headers=AUTH) as client:

            def all_done() -> bool:
                listing = client.get("/_emulator/requests").json()["requests"]
                return len(listing) == 6 and all(r["status"] == "COMPLETED" for r in listing)

            poll(all_done, "every request completed", show=lambda: client.get("/_emulator/requests").json())
            listing = client.get("/_emulator/requests").json()["requests"]
            assert [r["request_id"] for r in listing] == ids
            assert all("error" not in r for r in listing)
            # Queued requests ran in arrival order: each started no earlier than the one before.
            starts = [r["started_at"] for r in listing[1:]]
            assert starts == sorted(starts)
            for request_id in ids:
                assert client.get(f"/{ENDPOINT}/requests/{request_id}").status_code == 200
        calls = receiver.wait_for_calls(len(hooked), timeout=15.0)
        assert {json.loads(call.body)["request_id"] for call in calls} == hooked


def test_a_record_with_a_lone_surrogate_does_not_stop_the_writer(tmp_path: Path) -> None:
    """Text UTF-8 cannot carry reaches the file (escaped), the writer goes on, and both records read back."""
    path = tmp_path / "emulator.db"

    async def write() -> list[str]:
        emulator = build(path, ManualClock())
        await emulator.start()
        ids = []
        durable = emulator.backend.durable
        assert durable is not None
        for prompt in ("\ud800 lone", "after it"):
            ids.append(emulator.scheduler.submit("ns", submission(prompt)).id)
            pending = durable.durable()
            if pending is not None:
                # A deadline, not a timing: on failure the writer is dead and this would wait for ever.
                await asyncio.wait_for(pending, 15.0)
        assert durable.failure() is None
        await emulator.stop()
        return ids

    ids = asyncio.run(write())
    reopened = SqliteStore(path)
    try:
        prompts = [record.input["prompt"] for record in sorted(reopened.records(), key=lambda r: r.seq)]
        assert [r.id for r in sorted(reopened.records(), key=lambda r: r.seq)] == ids
        assert prompts == ["\ud800 lone", "after it"]
    finally:
        reopened.close()


def test_a_writer_that_stops_fails_health_and_submits_at_once(tmp_path: Path) -> None:
    """Once the writer thread is gone, health answers 503 and every submit answers 503 instead of hanging."""

    def stop_the_writer(ops: object) -> None:
        raise SystemExit("the writer is gone")

    async def run() -> list[tuple[int, str]]:
        emulator = build(tmp_path / "emulator.db", ManualClock())
        store = emulator.store
        assert isinstance(store, SqliteStore)
        store._commit = stop_the_writer  # type: ignore[method-assign]
        app = create_app(emulator=emulator)
        answers = []
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://e.test", headers=AUTH) as http,
        ):
            for n in range(2):
                submit = http.post(f"/{ENDPOINT}", json={"prompt": f"p{n}"})
                answer = await asyncio.wait_for(submit, 15.0)  # a deadline: the old writer left it hanging
                answers.append((answer.status_code, answer.text))
            health = await http.get("/_emulator/health")
            answers.append((health.status_code, health.text))
        return answers

    first, second, health = asyncio.run(run())
    assert first[0] == 503 and "writer stopped" in first[1]
    assert second[0] == 503 and "writer stopped" in second[1]
    assert health[0] == 503 and "writer stopped" in health[1]


def test_an_operation_sqlite_refuses_fails_alone_and_the_writer_goes_on(tmp_path: Path) -> None:
    """A write that raises (not a disk error) fails only its own request; the others commit and later ones too."""
    path = tmp_path / "emulator.db"
    store = SqliteStore(path)
    commit = store._commit

    def refuse_bad(ops: list[Any]) -> None:
        if any(op[2] == "bad" for op in ops if op and op[0] == "put"):
            raise ValueError("refused on purpose")
        commit(ops)

    store._commit = refuse_bad  # type: ignore[method-assign]

    def record(request_id: str, seq: int) -> RequestRecord:
        return RequestRecord(request_id, "ns", ENDPOINT, ENDPOINT, {"prompt": request_id}, submitted_at=0.0, seq=seq)

    async def run() -> list[str]:
        outcomes = []
        for seq, request_id in enumerate(["good", "bad", "later"]):
            store.add(record(request_id, seq))
            store.save(store.get("ns", request_id), 0.0)  # type: ignore[arg-type]
            pending = store.durable()
            try:
                if pending is not None:
                    await asyncio.wait_for(pending, 15.0)  # a deadline: a dead writer never answers
                outcomes.append("kept")
            except StoreError as exc:
                outcomes.append(str(exc))
        return outcomes

    good, bad, later = asyncio.run(run())
    store.close()
    assert (good, later) == ("kept", "kept")
    assert "refused on purpose" in bad
    rows = sqlite3.connect(path).execute("SELECT id FROM requests ORDER BY seq").fetchall()
    assert rows == [("good",), ("later",)]


def test_seeded_ids_after_a_restart_never_repeat_a_kept_request(tmp_path: Path) -> None:
    """A chat completion takes a second seeded id: after a restart, no kept request's id is handed out again."""
    path = tmp_path / "emulator.db"
    settings = Settings(store=f"sqlite://{path}", profile="realistic", runners=1, data_dir=tmp_path, seed=7)
    chat = Submission(
        "openrouter/router/openai/v1/chat/completions",
        {"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "hi"}]},
    )

    async def first_run() -> list[str]:
        emulator = Emulator.build(settings, clock=ManualClock())
        await emulator.start()
        ids = [emulator.scheduler.submit("ns", chat).id, emulator.scheduler.submit("ns", submission("kept")).id]
        await emulator.stop()
        return ids

    async def second_run() -> tuple[str, str | None]:
        emulator = Emulator.build(settings, clock=ManualClock())
        await emulator.start()
        later = emulator.scheduler.submit("ns", submission("later")).id
        kept = emulator.store.get("ns", kept_id)
        await emulator.stop()
        return later, None if kept is None else kept.input.get("prompt")

    first_ids = asyncio.run(first_run())
    kept_id = first_ids[1]
    later, kept_prompt = asyncio.run(second_run())
    assert later not in first_ids
    assert kept_prompt == "kept"
