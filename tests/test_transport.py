"""One write per response: the head is held until its body follows, or until the loop's next turn."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState

from emulator.http.transport import CoalescingHttpToolsProtocol, KeepAliveTimer, _CoalescingTransport
from emulator.runtime.serving import http_protocol
from tests.conftest import AUTH
from tests.servers import RunningServer

pytestmark = pytest.mark.anyio

HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"


class FakeTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return f"info:{name}"


def coalescing() -> tuple[_CoalescingTransport, FakeTransport]:
    fake = FakeTransport()
    return _CoalescingTransport(fake), fake  # type: ignore[arg-type]


async def test_head_and_body_go_out_in_one_write() -> None:
    """A head followed by its body in the same turn is one write."""
    transport, fake = coalescing()
    transport.write(HEAD)
    transport.write(b"{}")
    assert fake.writes == [HEAD + b"{}"]
    await asyncio.sleep(0)  # the scheduled flush finds nothing left to write
    assert fake.writes == [HEAD + b"{}"]


async def test_a_head_alone_goes_out_on_the_next_turn() -> None:
    """A stream's head is not held while the stream waits for its first event."""
    transport, fake = coalescing()
    transport.write(HEAD)
    assert fake.writes == []
    await asyncio.sleep(0)
    assert fake.writes == [HEAD]


async def test_close_writes_a_held_head_first_and_abort_drops_it() -> None:
    """Nothing written is lost on close; an abort sends nothing more."""
    transport, fake = coalescing()
    transport.write(HEAD)
    transport.close()
    assert fake.writes == [HEAD] and fake.closed
    transport, fake = coalescing()
    transport.write(HEAD)
    transport.abort()
    await asyncio.sleep(0)
    assert fake.writes == [] and fake.aborted


async def test_other_writes_pass_straight_through() -> None:
    """Bodies and chunks are written as they come; the rest of the transport is the real one's."""
    transport, fake = coalescing()
    transport.write(b"5\r\nhello\r\n")
    transport.write(b"HTTP/1.1 is not a head without its blank line")
    assert fake.writes == [b"5\r\nhello\r\n", b"HTTP/1.1 is not a head without its blank line"]
    assert transport.get_extra_info("peername") == "info:peername"


def test_serve_uses_the_coalescing_protocol() -> None:
    """`serve` runs uvicorn with it when httptools is there (it is, with uvicorn[standard])."""
    assert http_protocol() is CoalescingHttpToolsProtocol


@pytest.mark.socket
def test_answers_and_streams_over_a_socket(live_server: RunningServer) -> None:
    """Plain answers, a 404 and a status stream all arrive whole over a real connection."""
    with httpx.Client(base_url=live_server.base_url, headers=AUTH, timeout=20) as http:
        rid = http.post("/fal-ai/any-llm", json={"prompt": "Hello"}).json()["request_id"]
        assert http.get("/fal-ai/any-llm/requests/nope/status").status_code == 404
        with http.stream("GET", f"/fal-ai/any-llm/requests/{rid}/status/stream") as response:
            lines = [line for line in response.iter_lines() if line.startswith("data: ")]
        assert '"COMPLETED"' in lines[-1]
        assert http.get(f"/fal-ai/any-llm/requests/{rid}").status_code == 200


async def test_heads_held_in_one_turn_are_flushed_by_one_callback() -> None:
    """Many responses in one turn cost the loop one flush callback, and each lone head still goes out."""
    pairs = [coalescing() for _ in range(3)]
    loop = asyncio.get_running_loop()
    ready = len(loop._ready)  # type: ignore[attr-defined]  # asyncio's queue of callbacks for the next turn
    for transport, _ in pairs:
        transport.write(HEAD)
    pairs[0][0].write(b"{}")
    assert len(loop._ready) == ready + 1  # type: ignore[attr-defined]
    await asyncio.sleep(0)
    assert [fake.writes for _, fake in pairs] == [[HEAD + b"{}"], [HEAD], [HEAD]]


class FakeLoop:
    """A loop's clock and timers, moved by hand."""

    def __init__(self) -> None:
        self.now = 100.0
        self.timers: list[tuple[float, Any]] = []
        self.cancelled: list[Any] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Any) -> Any:
        loop = self

        class Handle:
            def cancel(self) -> None:
                loop.cancelled.append(self)

        self.timers.append((when, callback))
        return Handle()

    def fire_next(self) -> None:
        when, callback = self.timers.pop(0)
        self.now = max(self.now, when)
        callback()


def test_the_keep_alive_timer_keeps_one_loop_timer_however_often_it_is_armed() -> None:
    """Arming again only moves the deadline; when the timer is due early it waits for the rest, then fires once."""
    loop = FakeLoop()
    fired: list[str] = []
    timer = KeepAliveTimer(loop)  # type: ignore[arg-type]
    timer.arm(5.0, lambda: fired.append("closed"))
    loop.now = 103.0
    timer.cancel()  # a request arrived
    timer.arm(5.0, lambda: fired.append("closed"))  # its response went out: idle until 108
    assert len(loop.timers) == 1
    loop.fire_next()  # due at 105: not idle long enough yet
    assert fired == [] and loop.timers == [(108.0, loop.timers[0][1])]
    loop.fire_next()
    assert fired == ["closed"] and loop.timers == []


def test_a_cancelled_keep_alive_timer_does_nothing_and_a_closed_one_drops_its_loop_timer() -> None:
    loop = FakeLoop()
    fired: list[str] = []
    timer = KeepAliveTimer(loop)  # type: ignore[arg-type]
    timer.arm(5.0, lambda: fired.append("closed"))
    timer.cancel()
    loop.fire_next()
    assert fired == [] and loop.timers == []
    timer.arm(5.0, lambda: fired.append("closed"))
    timer.close()
    assert len(loop.cancelled) == 1


class SocketlessTransport(FakeTransport):
    """A transport with an address, as uvicorn's protocol asks for one, that says when it is closed."""

    def __init__(self) -> None:
        super().__init__()
        self.closing = asyncio.Event()

    def close(self) -> None:
        super().close()
        self.closing.set()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 8000) if name in ("sockname", "peername") else default


async def test_an_idle_connection_is_closed_after_the_keep_alive_timeout() -> None:
    """uvicorn's keep-alive timeout still closes an idle connection, through the connection's one timer."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"{}"})

    # uvicorn uses the seconds as given; its annotation says int.
    config = Config(app=app, timeout_keep_alive=0.05, lifespan="off")  # type: ignore[arg-type]
    config.load()
    protocol = CoalescingHttpToolsProtocol(config=config, server_state=ServerState(), app_state={})
    transport = SocketlessTransport()
    protocol.connection_made(transport)  # type: ignore[arg-type]
    protocol.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    await asyncio.wait_for(transport.closing.wait(), 5)
    assert transport.writes[0].startswith(b"HTTP/1.1 200 OK") and transport.writes[0].endswith(b"{}")
    assert isinstance(protocol.timeout_keep_alive_task, KeepAliveTimer)
