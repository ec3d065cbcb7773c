"""Ending the calls still open when the server stops: waiting callers get a 503, streams end.

A held request, a ``/run`` waiting for its result or an open status stream would keep the
server from stopping for as long as they last (forever, for a hold). ``Draining`` wraps the
app, knows which calls are open, and on ``drain()`` ends each one cleanly: a call that has not
answered yet gets a 503 saying the emulator is stopping; a stream that started gets its last
(empty) chunk. Nothing reaches the ASGI server as an exception, so nothing is logged as one.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

STOPPING = {
    "detail": "The emulator is shutting down; this request was not finished. Retry against a running emulator.",
    "error_type": "emulator_shutting_down",
}


@dataclass(slots=True, eq=False)
class _Call:
    task: asyncio.Task[object] | None
    started: bool = False  # the response head was sent
    finished: bool = False  # the last body chunk was sent
    drained: bool = False


class Draining:
    """An ASGI wrapper that can end every open HTTP call; a stopped wrapper answers new calls 503."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.calls: set[_Call] = set()
        self.stopping = False
        self._idle = asyncio.Event()
        self._idle.set()

    def counts(self) -> tuple[int, int]:
        """How many open calls are waiting for an answer, and how many are streaming one."""
        streaming = sum(1 for call in self.calls if call.started)
        return len(self.calls) - streaming, streaming

    async def idle(self) -> None:
        """Return once no call is open."""
        await self._idle.wait()

    def drain(self) -> None:
        """End every open call: 503 for those not answered yet, the last chunk for streams."""
        self.stopping = True
        for call in self.calls:
            if not call.drained and call.task is not None:
                call.drained = True
                call.task.cancel()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.stopping:
            await _send_503(send)
            return
        call = _Call(asyncio.current_task())

        async def tracked(message: Message) -> None:
            if call.drained:
                return  # the app is being cancelled; its last words go nowhere
            kind = message["type"]
            if kind == "http.response.start":
                call.started = True
            elif kind == "http.response.body" and not message.get("more_body", False):
                call.finished = True
            await send(message)

        self.calls.add(call)
        self._idle.clear()
        try:
            await self.app(scope, receive, tracked)
        except asyncio.CancelledError:
            if not call.drained or call.task is None:
                raise
            # Our own cancellation: the call is answered here instead, and the task goes on.
            call.task.uncancel()
            if not call.started:
                await _send_503(send)
            elif not call.finished:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            self.calls.discard(call)
            if not self.calls:
                self._idle.set()


async def _send_503(send: Send) -> None:
    body = orjson.dumps(STOPPING)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        (b"retry-after", b"1"),
    ]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body})
