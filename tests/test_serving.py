"""The server runner: bounded request heads, a bounded shutdown that answers everyone, start-up checks."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from emulator.config import Settings, SettingsError
from emulator.http.draining import Draining
from emulator.runtime.serving import (
    IDLE_COLLECTION_AFTER,
    IdleCollector,
    check_data_dir,
    exposure_warning,
    loop_factory,
)
from emulator.runtime.testing import stop_process, wait_ready
from tests.conftest import AUTH
from tests.processes import ROOT, emulator_process
from tests.servers import free_port, start_server


def raw_request(port: int, head: bytes) -> bytes:
    """Send one request head and read the answer until the server closes or ends it."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        return answer


HEAD = b"GET /_emulator/health HTTP/1.1\r\nHost: x\r\nX-Filler: "


@pytest.mark.socket
@pytest.mark.parametrize("server", ["uvicorn", "hypercorn"])
def test_a_growing_request_head_over_the_limit_is_answered_431(tmp_path: Path, server: str) -> None:
    """A head still unfinished past --max-header-bytes gets 431 on both servers; a smaller one is served."""
    settings = Settings(server=server, data_dir=tmp_path, max_header_bytes=2048)
    with start_server(settings) as running:
        port = int(running.base_url.rsplit(":", 1)[1])
        assert raw_request(port, HEAD + b"a" * 4096).startswith(b"HTTP/1.1 431")
        assert raw_request(port, HEAD + b"a" * 512 + b"\r\n\r\n").startswith(b"HTTP/1.1 200")


@pytest.mark.socket
def test_a_whole_request_head_over_the_limit_is_answered_431_on_uvicorn(tmp_path: Path) -> None:
    """A complete head larger than the limit, arriving in one piece, is refused before the app sees it."""
    settings = Settings(data_dir=tmp_path, max_header_bytes=2048, journal_size=10)
    with start_server(settings) as running:
        port = int(running.base_url.rsplit(":", 1)[1])
        assert raw_request(port, HEAD + b"a" * 4096 + b"\r\n\r\n").startswith(b"HTTP/1.1 431")
        assert len(running.emulator.journal) == 0


@pytest.mark.anyio
async def test_draining_answers_a_waiting_call_503_and_ends_a_stream() -> None:
    """drain() ends a call that has not answered with a 503 saying why, and a started stream with its last chunk."""
    forever = asyncio.Event()
    reached = {"/wait": asyncio.Event(), "/stream": asyncio.Event()}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["path"] == "/stream":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
        reached[scope["path"]].set()
        await forever.wait()

    draining = Draining(app)
    sent: dict[str, list[dict[str, Any]]] = {"/wait": [], "/stream": []}

    async def call(path: str) -> None:
        async def send(message: dict[str, Any]) -> None:
            # As ASGI servers do, a second response start is refused.
            if message["type"] == "http.response.start" and sent[path]:
                raise RuntimeError("response already started")
            sent[path].append(message)

        await draining({"type": "http", "path": path}, receive=None, send=send)  # type: ignore[arg-type]

    calls = [asyncio.ensure_future(call(path)) for path in sent]
    for event in reached.values():
        await asyncio.wait_for(event.wait(), 5)
    assert draining.open_calls() == 2
    draining.drain()
    await asyncio.wait_for(asyncio.gather(*calls), 5)
    assert sent["/wait"][0]["status"] == 503
    assert b"shutting down" in sent["/wait"][1]["body"]
    assert sent["/stream"][-1] == {"type": "http.response.body", "body": b"", "more_body": False}
    await asyncio.wait_for(draining.idle(), 5)


@pytest.mark.anyio
async def test_draining_idle_returns_once_the_open_calls_end() -> None:
    """idle() returns at once with no call open, and otherwise once every open call has ended."""
    release = {"/a": asyncio.Event(), "/b": asyncio.Event()}
    reached = {"/a": asyncio.Event(), "/b": asyncio.Event()}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reached[scope["path"]].set()
        await release[scope["path"]].wait()

    draining = Draining(app)
    await asyncio.wait_for(draining.idle(), 5)
    calls = [asyncio.ensure_future(draining({"type": "http", "path": p}, None, None)) for p in release]  # type: ignore[arg-type]
    for event in reached.values():
        await asyncio.wait_for(event.wait(), 5)
    waiter = asyncio.ensure_future(draining.idle())
    release["/a"].set()
    await asyncio.wait_for(calls[0], 5)
    assert draining.open_calls() == 1 and not waiter.done()
    release["/b"].set()
    await asyncio.wait_for(waiter, 5)
    await asyncio.wait_for(calls[1], 5)
    assert draining.open_calls() == 0
    await asyncio.wait_for(draining.idle(), 5)


def test_a_control_api_open_to_the_network_without_a_token_is_warned_about() -> None:
    """A non-loopback --host without --control-token gets a warning; loopback or a token gets none."""
    warning = exposure_warning(Settings(host="0.0.0.0"))
    assert warning is not None and "--control-token" in warning and "0.0.0.0" in warning
    assert exposure_warning(Settings(host="0.0.0.0", control_token="t")) is None
    assert exposure_warning(Settings(host="127.0.0.1")) is None
    assert exposure_warning(Settings(host="::1")) is None


def test_a_data_dir_that_cannot_take_files_is_named(tmp_path: Path) -> None:
    """check_data_dir refuses a path under a file, saying which path and which option to change."""
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match=r"the data directory .*file/sub is not usable .*--data-dir"):
        check_data_dir(tmp_path / "file" / "sub")
    check_data_dir(tmp_path / "fine")
    assert (tmp_path / "fine").is_dir()


class Serve:
    """A ``serve`` process with its stderr read line by line, so a test can wait for a line."""

    def __init__(self, process: subprocess.Popen[str], port: int) -> None:
        self.process = process
        self.base = f"http://127.0.0.1:{port}"
        self.lines: queue.Queue[str] = queue.Queue()
        self.err: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.err.append(line)
            self.lines.put(line)

    def wait_for_line(self, text: str) -> str:
        while True:
            line = self.lines.get(timeout=30)
            if text in line:
                return line


@contextlib.contextmanager
def serve(tmp_path: Path, *options: str) -> Iterator[Serve]:
    port = free_port()
    argv = [sys.executable, "-m", "emulator", "serve", "--port", str(port), "--tls-port", "0"]
    argv += ["--data-dir", str(tmp_path), *options]
    process = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        server = Serve(process, port)
        wait_ready(f"{server.base}/_emulator/health", process=process)  # type: ignore[arg-type]
        yield server
    finally:
        stop_process(process, timeout=15)  # type: ignore[arg-type]
        server.reader.join(timeout=15)
        for pipe in (process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()


def in_background(call: Any) -> tuple[threading.Thread, list[Any]]:
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(call()), daemon=True)
    thread.start()
    return thread, result


def wait_for_requests(base: str, count: int) -> None:
    """Poll the control API until ``count`` requests exist."""
    for _ in range(600):
        if len(httpx.get(f"{base}/_emulator/requests", timeout=10).json()["requests"]) >= count:
            return
        threading.Event().wait(0.05)
    raise AssertionError(f"fewer than {count} requests appeared")


def read_stream(url: str, opened: threading.Event | None = None) -> bytes:
    """The whole stream; ``opened`` is set once its first bytes arrived (the server holds it open)."""
    chunks = []
    with httpx.stream("GET", url, headers=AUTH, timeout=60) as response:
        for chunk in response.iter_bytes():
            chunks.append(chunk)
            if opened is not None:
                opened.set()
    return b"".join(chunks)


@pytest.mark.process
def test_sigterm_answers_waiting_callers_503_ends_streams_and_exits(tmp_path: Path) -> None:
    """SIGTERM with a /run waiting and a status stream open: the run gets 503, the stream ends, exit 0, no traceback."""
    with serve(tmp_path, "--clock", "manual", "--shutdown-seconds", "0.5") as server:
        submitted = httpx.post(f"{server.base}/fal-ai/any-llm", json={"prompt": "hi"}, headers=AUTH).json()
        opened = threading.Event()
        stream, streamed = in_background(lambda: read_stream(submitted["status_url"] + "/stream", opened))
        run, ran = in_background(
            lambda: httpx.post(f"{server.base}/run/fal-ai/any-llm", json={"prompt": "hi"}, headers=AUTH, timeout=60)
        )
        wait_for_requests(server.base, 2)
        # Two requests existing does not mean the stream is open yet: wait for its first event.
        assert opened.wait(timeout=30)
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=30) == 0
        run.join(timeout=30)
        stream.join(timeout=30)
        assert ran[0].status_code == 503
        assert ran[0].json()["error_type"] == "emulator_shutting_down"
        assert streamed and b"IN_QUEUE" in streamed[0]
        err = "".join(server.err)
    assert "stopping: waiting up to 0.5s for 2 open call(s)" in err
    assert "Traceback" not in err and "Exception in ASGI application" not in err


@pytest.mark.process
def test_a_second_ctrl_c_stops_at_once(tmp_path: Path) -> None:
    """With a long grace period, a second SIGINT ends the waiting call with 503 and the process exits."""
    with serve(tmp_path, "--clock", "manual", "--shutdown-seconds", "600") as server:
        run, ran = in_background(
            lambda: httpx.post(f"{server.base}/run/fal-ai/any-llm", json={"prompt": "hi"}, headers=AUTH, timeout=60)
        )
        wait_for_requests(server.base, 1)
        server.process.send_signal(signal.SIGINT)
        server.wait_for_line("Ctrl-C again to stop now")
        server.process.send_signal(signal.SIGINT)
        assert server.process.wait(timeout=30) == 0
        run.join(timeout=30)
        assert ran[0].status_code == 503
        err = "".join(server.err)
    assert "stopping now" in err
    assert "Traceback" not in err


@pytest.mark.process
def test_an_exposed_host_is_warned_about_and_the_access_log_logs(tmp_path: Path) -> None:
    """--host 0.0.0.0 without a token warns on stderr; --access-log logs each request on uvicorn."""
    with serve(tmp_path, "--host", "0.0.0.0", "--access-log") as server:
        httpx.get(f"{server.base}/_emulator/health")
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=30) == 0
        assert server.process.stdout is not None
        out = server.process.stdout.read()
        err = "".join(server.err)
    assert "WARNING: listening on 0.0.0.0 without --control-token" in err
    assert '"GET /_emulator/health HTTP/1.1" 200' in out


@pytest.mark.process
def test_a_bad_data_dir_stops_the_server_at_start_with_one_line(tmp_path: Path) -> None:
    """A --data-dir that cannot be created exits 2 at once with one line naming it, no traceback."""
    (tmp_path / "file").write_text("")
    done = subprocess.run(
        [sys.executable, "-m", "emulator", "serve", "--port", "0", "--data-dir", str(tmp_path / "file" / "sub")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert "the data directory" in done.stderr and "--data-dir" in done.stderr


@pytest.mark.process
@pytest.mark.parametrize(("options", "loop"), [((), "asyncio"), (("--loop", "uvloop"), "uvloop")])
def test_serve_runs_on_the_event_loop_named_by_loop(tmp_path: Path, options: tuple[str, ...], loop: str) -> None:
    """asyncio's loop by default (it serves connections in turn under full load); uvloop when asked for."""
    with emulator_process(tmp_path, options) as server:
        info = httpx.get(f"{server.http_url}/_emulator/info", timeout=30).json()
    assert info["loop"] == loop


def test_the_idle_collector_collects_in_full_only_after_a_look_with_no_call_begun() -> None:
    """A full pass runs once the server began no call for a whole look and enough younger passes ran."""
    draining = Draining(_no_app)
    younger = [0]
    collected: list[int] = []
    collector = IdleCollector(draining, collect=collected.append, count=lambda: (0, 0, younger[0]))
    younger[0] = IDLE_COLLECTION_AFTER
    draining.started += 1  # a call began during this look: busy
    assert not collector.look()
    assert collector.look()  # none since: idle, and due
    assert collected == [2]
    younger[0] = IDLE_COLLECTION_AFTER - 1  # idle, but not due yet
    assert not collector.look()
    younger[0] = IDLE_COLLECTION_AFTER
    draining.started += 5
    assert not collector.look()
    assert collected == [2]
    assert collector.collections == 1


def test_a_call_through_draining_counts_as_activity() -> None:
    """Each HTTP call Draining passes on is counted when it begins (what the idle collector reads)."""
    draining = Draining(_no_app)

    async def one_call() -> None:
        await draining({"type": "http", "path": "/"}, _no_receive, _no_send)

    asyncio.run(one_call())
    asyncio.run(one_call())
    assert draining.started == 2


async def _no_app(scope: Any, receive: Any, send: Any) -> None:
    return None


async def _no_receive() -> Any:
    raise AssertionError("not read")


async def _no_send(message: Any) -> None:
    raise AssertionError("not sent")


def test_asking_for_uvloop_without_it_is_a_clear_settings_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """--loop uvloop where uvloop cannot be imported stops the start with what to install."""
    monkeypatch.setitem(sys.modules, "uvloop", None)  # as if it were not installed
    with pytest.raises(SettingsError, match="pip install uvloop"):
        loop_factory("uvloop")
    assert loop_factory("asyncio") is None
