"""One write per response: the head is held until its body follows, or until the loop's next turn."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from emulator.http.transport import CoalescingHttpToolsProtocol, _CoalescingTransport
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
