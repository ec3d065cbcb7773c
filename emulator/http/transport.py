"""uvicorn's httptools protocol with two changes: one write per small response, and a bounded request head.

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
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

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


class _HeldHeads:
    """The transports holding a head in this turn of the loop, flushed by one callback on the next."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._batch: list[_CoalescingTransport] | None = None

    def add(self, transport: _CoalescingTransport) -> None:
        loop = asyncio.get_running_loop()
        batch = self._batch
        if batch is None or self._loop is not loop:
            batch = self._batch = []
            self._loop = loop
            loop.call_soon(self._flush, batch)
        batch.append(transport)

    def _flush(self, batch: list[_CoalescingTransport]) -> None:
        if self._batch is batch:
            self._batch = None
        for transport in batch:
            transport._flush()  # nothing to do for one whose body followed


_HELD = _HeldHeads()


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, writing each small response in one system call, with a bounded head."""

    def __init__(self, config: Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self._head_limit = config.h11_max_incomplete_event_size or DEFAULT_HEAD_LIMIT
        self._head_bytes = 0  # bytes received since the current request head began
        self._in_body = False

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
