"""Ending the calls still open when the server stops: waiting callers get a 503, streams end.

A held request, a ``/run`` waiting for its result or an open status stream would keep the
server from stopping for as long as they last (forever, for a hold). ``Draining`` wraps the
app, knows which calls are open, and on ``drain()`` ends each one cleanly: a call that has not
answered yet gets a 503 saying the emulator is stopping; a stream that started gets its last
(empty) chunk. Nothing reaches the ASGI server as an exception, so nothing is logged as one.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

STOPPING = {
    "detail": "The emulator is shutting down; this request was not finished. Retry against a running emulator.",
    "error_type": "emulator_shutting_down",
}


class Draining:
    """An ASGI wrapper that can end every open HTTP call; once draining, it answers new calls 503.

    Per call it only notes the running task (the hot path pays a set insertion, no wrapped
    ``send``); whether a drained call had started its answer is learnt from the server, which
    refuses a second response start.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.calls: set[asyncio.Task[Any]] = set()
        self.drained: set[asyncio.Task[Any]] = set()
        self.stopping = False
        # HTTP calls begun so far: whoever watches for idle time (the full garbage collections) reads it.
        self.started = 0
        # Made when someone waits for the calls to end: until then a call touches no event.
        self._idle: asyncio.Event | None = None

    def open_calls(self) -> int:
        """How many calls are open: waiting for their answer, or streaming it."""
        return len(self.calls)

    async def idle(self) -> None:
        """Return once no call is open."""
        if not self.calls:
            return
        if self._idle is None:
            self._idle = asyncio.Event()
        await self._idle.wait()

    def drain(self) -> None:
        """End every open call: 503 for those not answered yet, the last chunk for streams."""
        self.stopping = True
        for task in self.calls - self.drained:
            self.drained.add(task)
            task.cancel()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.stopping:
            await _send_503(send)
            return
        task = asyncio.current_task()
        if task is None:  # not run by an asyncio server: nothing to drain
            await self.app(scope, receive, send)
            return
        self.started += 1
        calls = self.calls
        calls.add(task)
        try:
            await self.app(scope, receive, send)
        except asyncio.CancelledError:
            if task not in self.drained:
                raise
            # Our own cancellation: the call is answered here instead, and the task goes on.
            task.uncancel()
            await _finish(send)
        finally:
            calls.discard(task)
            self.drained.discard(task)
            if not calls and self._idle is not None:
                self._idle.set()
                self._idle = None


async def _finish(send: Send) -> None:
    """A 503 if the call had not answered; else the empty last chunk that ends its stream."""
    try:
        await _send_503(send)
    except Exception:  # the server refuses a second start: the answer had begun
        with contextlib.suppress(Exception):  # or it had ended: nothing left to close
            await send({"type": "http.response.body", "body": b"", "more_body": False})


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
