"""ASGI middleware that writes every emulated-API call into the journal."""

from __future__ import annotations

import time
from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from emulator.core.journal import Entry
from emulator.core.service import Emulator

# The control API and the documents describing the API are not calls to the emulated API.
NOT_JOURNALED = ("/_emulator", "/openapi.", "/api/openapi/")
_SERVER_ERROR_HEADERS = [(b"content-type", b"application/json")]


class JournalMiddleware:
    """Records method, path, masked headers, body, status and timing of each call.

    Calls to the control API (``/_emulator/``) and the spec are left out: the journal is
    about what a client under test sent to the emulated service.
    """

    def __init__(self, app: ASGIApp, emulator: Emulator) -> None:
        self.app = app
        self.emulator = emulator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        journal = self.emulator.journal
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not journal.enabled or path.startswith(NOT_JOURNALED):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        tap = BodyTap(receive, journal.max_body_bytes)
        chunks = tap.chunks

        # Taken now, as the call came: a mount further in rewrites the scope.
        raw_headers = scope.get("headers", [])
        entry = None

        async def send_and_note(message: Message) -> None:
            nonlocal entry
            if entry is None and message["type"] == "http.response.start":
                status, headers = message["status"], message.get("headers", ())
                entry = note(self.emulator, scope, path, raw_headers, chunks, status, headers)
            await send(message)

        try:
            await self.app(scope, tap, send_and_note)
        except Exception:
            if entry is None:
                # Unexpected: Starlette's outermost handler answers it, past this middleware, with a JSON 500.
                entry = note(self.emulator, scope, path, raw_headers, chunks, 500, _SERVER_ERROR_HEADERS)
            raise
        finally:
            if entry is not None:
                entry.elapsed = time.perf_counter() - started


class BodyTap:
    """A ``receive`` that keeps the first ``cap + 1`` bytes of the request body it passes on (the
    journal's copy: one byte past the cap tells the entry it was cut)."""

    __slots__ = ("cap", "chunks", "receive", "seen")

    def __init__(self, receive: Receive, cap: int) -> None:
        self.receive = receive
        self.cap = cap
        self.chunks: list[bytes] = []
        self.seen = 0

    async def __call__(self) -> Message:
        message = await self.receive()
        if message["type"] == "http.request":
            body = message.get("body", b"")
            if self.seen <= self.cap:
                self.chunks.append(body[: self.cap + 1 - self.seen])
            self.seen += len(body)
        return message


def note(
    emulator: Emulator,
    scope: Scope,
    path: str,
    raw_headers: list[tuple[bytes, bytes]],
    chunks: list[bytes],
    status: int,
    headers: Iterable[tuple[bytes, bytes]],
) -> Entry:
    """Journal one call as its answer starts: the body received so far, the answer's status and headers.

    Kept as the server's bytes: the journal decodes them, masks the secrets and finds the caller's
    namespace and the request id only if the entry is read.
    """
    return emulator.journal.note(
        emulator.clock.now(),
        scope["method"],
        path,
        scope.get("query_string", b""),
        raw_headers,
        b"".join(chunks),
        status,
        headers if isinstance(headers, list) else list(headers),
    )
