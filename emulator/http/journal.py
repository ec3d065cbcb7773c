"""ASGI middleware that writes every emulated-API call into the journal."""

from __future__ import annotations

import time
from collections.abc import Iterable
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from emulator.core.auth import ANONYMOUS, AuthError, namespace_for
from emulator.core.journal import Entry
from emulator.core.service import Emulator
from emulator.core.tokens import Tokens

# The control API and the documents describing the API are not calls to the emulated API.
NOT_JOURNALED = ("/_emulator", "/openapi.", "/api/openapi/")


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
        namespace = caller_namespace(scope)
        entry = None

        async def send_and_note(message: Message) -> None:
            nonlocal entry
            if entry is None and message["type"] == "http.response.start":
                status, headers = message["status"], message.get("headers", ())
                entry = note(self.emulator, scope, path, raw_headers, namespace, chunks, status, headers)
            await send(message)

        try:
            await self.app(scope, tap, send_and_note)
        finally:
            if entry is not None:
                entry.duration_ms = round((time.perf_counter() - started) * 1000, 3)


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


def caller_namespace(scope: Scope) -> str:
    """The namespace a journal entry is filed under: the caller's key, or the key a token names."""
    authorization = None
    for key, value in scope.get("headers", []):
        if key == b"authorization":  # the last one, as a dict of the headers would hold
            authorization = value.decode("latin-1")
    try:
        namespace = namespace_for(authorization, required=False)
    except AuthError:
        namespace = "(invalid key)"
    if namespace == ANONYMOUS or namespace.startswith("bearer-"):
        # A call made with a token from /tokens/ is filed under the key that asked for it.
        namespace = token_namespace(scope, authorization) or namespace
    return namespace


def note(
    emulator: Emulator,
    scope: Scope,
    path: str,
    raw_headers: list[tuple[bytes, bytes]],
    namespace: str,
    chunks: list[bytes],
    status: int,
    headers: Iterable[tuple[bytes, bytes]],
) -> Entry:
    """Journal one call as its answer starts: the body received so far, the answer's status and request id."""
    entry = emulator.journal.record(
        time=emulator.clock.now(),
        namespace=namespace,
        method=scope["method"],
        path=path,
        query=scope.get("query_string", b"").decode("latin-1"),
        # Kept as the server's bytes: the journal decodes and masks them only if the entry is read.
        headers=raw_headers,
        body=b"".join(chunks),
    )
    entry.status = status
    for name, value in headers:
        if name.lower() == b"x-fal-request-id":
            entry.request_id = value.decode("latin-1")
    return entry


def token_namespace(scope: Scope, authorization: str | None) -> str | None:
    """The namespace a /tokens/ token names (as the label of a journal entry; its use is checked elsewhere)."""
    scheme, _, credentials = (authorization or "").partition(" ")
    token = credentials.strip() if scheme.lower() == "bearer" else None
    if token is None:
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        token = (query.get("fal_jwt_token") or [None])[0]
    claims = Tokens.claims_of(token) if token else None
    return str(claims["sub"]) if claims and "sub" in claims else None
