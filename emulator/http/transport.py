"""uvicorn's httptools protocol with three changes: one write per small response, a bounded request head,
and one keep-alive timer per connection.

One write per small response: uvicorn writes the status line and headers, then the body.

Each ``transport.write`` on a socket is a system call (and, on loopback, the receiver's wake-up),
and uvicorn's httptools protocol makes two per response: one for the head, one for the body.
Holding the head until the body follows (it does at once for every non-streaming response)
halves that. A head whose body does not follow in the same turn of the loop (a stream
waiting for its first event) is written on the loop's next turn, so nothing waits on it: one
callback a turn looks at every head held in it, rather than one callback per response.

A bounded head: httptools has no limit on the request line and headers, so one client could
make the server buffer (and the journal keep) megabytes of headers. A head larger than
``config.h11_max_incomplete_event_size`` (the same bound uvicorn's h11 protocol and hypercorn
apply) is answered 431 and the connection closed, as hypercorn does.

One keep-alive timer per connection: uvicorn cancels its keep-alive timeout when a request
arrives and sets a new one after each response, a loop timer made and dropped per call (about
2 µs on asyncio's loop). Here each response only moves the connection's deadline; one loop timer
per connection looks at it when due, closes the connection if it has been idle that long, and
otherwise waits for the rest.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from emulator.core.clock import TurnBatch

DEFAULT_HEAD_LIMIT = 64 * 1024
_TOO_LARGE = b"Request header fields too large"


class _CoalescingTransport:
    """A transport that holds a response head until the next write (or the loop's next turn)."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._held: bytes | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held + bytes(data))
        elif isinstance(data, bytes) and data.startswith(b"HTTP/1.1 ") and data.endswith(b"\r\n\r\n"):
            self._held = data
            _HELD.add(self)
        else:
            self._transport.write(data)

    def _flush(self) -> None:
        held, self._held = self._held, None
        if held is not None and not self._transport.is_closing():
            self._transport.write(held)

    def is_closing(self) -> bool:
        # Asked once per response: spelt out rather than found through ``__getattr__``.
        return self._transport.is_closing()

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        # Everything else (pause_reading, get_extra_info, is_closing...) is the real transport's.
        return getattr(self._transport, name)


def _flush_held(batch: list[_CoalescingTransport]) -> None:
    for transport in batch:
        transport._flush()  # nothing to do for one whose body followed


# The transports holding a head in this turn of the loop, flushed by one callback on the next.
_HELD: TurnBatch[_CoalescingTransport] = TurnBatch(_flush_held)


class KeepAliveTimer:
    """A connection's keep-alive timeout: each arming moves its deadline; one loop timer at a time serves them all."""

    __slots__ = ("_callback", "_deadline", "_handle", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._deadline: float | None = None
        self._callback: Callable[[], object] | None = None
        self._handle: asyncio.TimerHandle | None = None

    def arm(self, delay: float, callback: Callable[[], object]) -> KeepAliveTimer:
        self._deadline = deadline = self._loop.time() + delay
        self._callback = callback
        if self._handle is None:
            self._handle = self._loop.call_at(deadline, self._due)
        return self

    def cancel(self) -> None:
        self._deadline = None

    def close(self) -> None:
        """The connection is gone: drop the loop timer too, and with it what it holds."""
        self._deadline = None
        handle, self._handle = self._handle, None
        if handle is not None:
            handle.cancel()

    def _due(self) -> None:
        self._handle = None
        deadline = self._deadline
        if deadline is None:
            return
        if deadline > self._loop.time():  # armed again since: wait for the rest
            self._handle = self._loop.call_at(deadline, self._due)
            return
        self._deadline = None
        callback = self._callback
        if callback is not None:
            callback()


class _ProtocolLoop:
    """The loop as uvicorn's protocol sees it: its keep-alive ``call_later`` arms the connection's one timer."""

    __slots__ = ("_keep_alive", "_loop", "_protocol")

    def __init__(self, loop: asyncio.AbstractEventLoop, protocol: HttpToolsProtocol) -> None:
        self._loop = loop
        self._protocol = protocol
        self._keep_alive = KeepAliveTimer(loop)

    def close(self) -> None:
        self._keep_alive.close()

    def create_task(self, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        return self._loop.create_task(coro, **kwargs)

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> Any:
        if not args and callback == self._protocol.timeout_keep_alive_handler:
            return self._keep_alive.arm(delay, callback)
        return self._loop.call_later(delay, callback, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loop, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol: one write per small response, a bounded head, one keep-alive timer."""

    def __init__(self, config: Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self.loop = self._protocol_loop = _ProtocolLoop(self.loop, self)  # type: ignore[assignment]
        self._head_limit = config.h11_max_incomplete_event_size or DEFAULT_HEAD_LIMIT
        self._head_bytes = 0  # bytes received since the current request head began
        self._in_body = False

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._protocol_loop.close()

    def data_received(self, data: bytes) -> None:
        if not self._in_body:
            # Counted before parsing, so an oversized head is never buffered whole. (A head whose
            # blank line straddles two reads counts the second read whole: a little over, never under.)
            end = data.find(b"\r\n\r\n")
            self._head_bytes += len(data) if end < 0 else end + 4
            if self._head_bytes > self._head_limit:
                self._send_431()
                return
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._in_body = True
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_body = False
        self._head_bytes = 0

    def _send_431(self) -> None:
        self._in_body = True  # nothing more is parsed on this connection
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; charset=utf-8\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(_TOO_LARGE), _TOO_LARGE)
        )
        self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_CoalescingTransport(transport))  # type: ignore[arg-type]
