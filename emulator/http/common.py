"""Helpers every surface shares: JSON responses, body limits, auth, validation."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from starlette.datastructures import Headers, QueryParams
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from emulator.core.auth import AuthError, namespace_for
from emulator.core.errors import FaultTriggered, Problem, not_found
from emulator.core.faults import Fault
from emulator.core.service import Emulator, Reply
from emulator.core.tokens import TokenError, Tokens
from emulator.core.wire import dumps_json, dumps_record

__all__ = ["FaultTriggered", "HTTPProblem", "Problem", "not_found"]

# The core's Problem is the one exception every route raises and renders.
HTTPProblem = Problem


def problem_response(problem: Problem) -> Response:
    """An answer other than success, rendered as JSON (or the raw bytes a fault chose)."""
    if problem.raw is not None:
        media_type, content = problem.raw
        return Response(content, problem.status_code, problem.headers, media_type=media_type)
    return json_response(problem.body, problem.status_code, problem.headers)


def json_response(body: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps_json(body), status_code, headers, media_type="application/json")


# The headers a response sets itself unless the reply names them.
_SET_BY_RESPONSE = (b"content-length", b"content-type")


class EncodedJSON(Response):
    """JSON already encoded, with its headers already laid out as ``Response`` lays them out."""

    media_type = "application/json"

    def __init__(self, content: bytes, status_code: int, raw_headers: list[tuple[bytes, bytes]]) -> None:
        self.status_code = status_code
        self.background = None
        self.body = content
        self.raw_headers = raw_headers


def record_response(body: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    """``json_response`` for the bodies built from a request record (status, output): the hot path.

    The same status, headers (in the same order) and body as ``Response``, laid out directly:
    the reply's headers, then the body's length and type.
    """
    content = dumps_record(body)
    raw = []
    direct = status_code >= 200 and status_code not in (204, 304)
    if headers:
        for key, value in headers.items():
            name = key.lower().encode("latin-1")
            if name in _SET_BY_RESPONSE:
                direct = False
            raw.append((name, value.encode("latin-1")))
    if direct:
        raw.append((b"content-length", str(len(content)).encode("latin-1")))
        raw.append((b"content-type", b"application/json"))
        return EncodedJSON(content, status_code, raw)
    return Response(content, status_code, headers, media_type="application/json")


def emulator_of(request: Request) -> Emulator:
    emulator: Emulator = request.app.state.emulator
    return emulator


def header_of(request: Request, name: bytes) -> str | None:
    """``request.headers.get(name)`` (the first value of a lowercase name) read from the scope directly.

    Building the ``Headers`` mapping for one look-up costs more than the look-up, on every call.
    """
    raw: list[tuple[bytes, bytes]] = request.scope["headers"]
    for key, value in raw:
        if key == name:
            return value.decode("latin-1")
    return None


# ``Key id:secret`` headers already read, with the namespace each names: a client sends the same
# one on every call.
_KEYS: dict[bytes, str] = {}
_KEYS_KEPT = 1024


def authenticate(request: Request, emulator: Emulator) -> str:
    """The caller's namespace: from its key, or from a token ``/tokens/`` issued (query or Bearer)."""
    raw = None
    for key, value in request.scope["headers"]:
        if key == b"authorization":
            raw = value
            break
    if raw is not None and raw.startswith(b"Key "):
        # The usual ``Key id:secret`` is never one of our tokens, and names its namespace whatever
        # the settings: read once.
        namespace = _KEYS.get(raw)
        if namespace is None:
            namespace = _namespace(raw.decode("latin-1"), emulator)
            if len(_KEYS) >= _KEYS_KEPT:
                _KEYS.clear()
            _KEYS[raw] = namespace
        return namespace
    header = None if raw is None else raw.decode("latin-1")
    token = _issued_token(request, header)
    if token is not None:
        tokens: Tokens | None = getattr(request.app.state, "tokens", None)
        if tokens is None:
            raise HTTPProblem(401, {"detail": "Tokens are not accepted by this server"})
        try:
            return tokens.check(token, _app_alias(request)).namespace
        except TokenError as exc:
            raise HTTPProblem(401, {"detail": str(exc)}) from exc
    return _namespace(header, emulator)


def _namespace(header: str | None, emulator: Emulator) -> str:
    try:
        return namespace_for(header, required=emulator.settings.require_auth)
    except AuthError as exc:
        raise HTTPProblem(401, {"detail": str(exc)}) from exc


def _issued_token(request: Request, header: str | None) -> str | None:
    """A token from ``/tokens/``: ``?fal_jwt_token=`` (when no key is sent) or ``Bearer`` with one of ours."""
    if header:
        scheme, _, credentials = header.strip().partition(" ")
        credentials = credentials.strip()
        if scheme.lower() == "bearer" and Tokens.claims_of(credentials) is not None:
            return credentials
        return None
    return query_of(request).get("fal_jwt_token")


def _app_alias(request: Request) -> str | None:
    """The alias of the app a queue or run call is for (``any-llm`` in ``fal-ai/any-llm/stream``)."""
    parts = str(request.path_params.get("path", "")).strip("/").split("/")
    return parts[1] if len(parts) >= 2 and parts[1] else None


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refusing (413) one larger than ``limit`` before reading it all.

    Read from the ASGI messages themselves (as ``request.stream()`` does, without an async
    generator per call): most bodies come whole in one message.
    """
    declared = header_of(request, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    receive = request.receive
    chunks = []
    size = 0
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "http.request":
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > limit:
                    raise _too_large(limit)
                chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)
        elif kind == "http.disconnect":
            raise ClientDisconnect()


def _too_large(limit: int) -> HTTPProblem:
    return HTTPProblem(413, {"detail": f"Request body is larger than the limit of {limit} bytes"})


_NO_QUERY: dict[str, str] = {}


class _Headers(Headers):
    """Starlette's headers over the server's pairs as they are (not copied into the scope again), whose
    ``get`` of an absent name returns the default without raising inside."""

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        self._list = raw

    def get(self, key: str, default: Any = None) -> Any:
        name = key.lower().encode("latin-1")
        for header_key, header_value in self._list:
            if header_key == name:
                return header_value.decode("latin-1")
        return default


def headers_of(request: Request) -> Mapping[str, str]:
    """The headers a core call reads by lowercase name, the first value winning.

    Looked up in the server's pairs when read: a call reads a few names at most (none on status
    and result, the absent ones mostly on submit), cheaper than decoding every header.
    """
    raw = request.scope["headers"]
    return _Headers(raw if isinstance(raw, list) else list(raw))


# Short query strings already parsed (immutable, so shared): a client sends the same few on every
# call (``logs=1`` on each status poll).
_QUERIES: dict[bytes, QueryParams] = {}
_QUERIES_KEPT = 256
_QUERY_KEPT_BYTES = 256


def query_of(request: Request) -> Mapping[str, str]:
    """The query parameters, as ``request.query_params`` reads them."""
    raw: bytes = request.scope.get("query_string", b"")
    if not raw:  # most calls (the hot status and result paths): nothing to parse
        return _NO_QUERY
    if len(raw) > _QUERY_KEPT_BYTES:
        return request.query_params
    query = _QUERIES.get(raw)
    if query is None:
        query = request.query_params
        if len(_QUERIES) >= _QUERIES_KEPT:
            _QUERIES.clear()
        _QUERIES[raw] = query
    return query


# The largest response kept with its reply: the core keeps up to ``KEPT_REPLIES`` of them.
RENDERED_KEPT_BYTES = 16 * 1024


def render(reply: Reply) -> Response:
    """A core reply as a response: JSON, or a stream of server-sent events; spoiled if a fault says so."""
    if reply.events is not None:
        if reply.fault is not None and reply.fault.kind == "reset":
            return ResetResponse()
        return StreamingResponse(reply.events, reply.status, reply.headers, media_type="text/event-stream")
    fault = reply.fault
    if fault is not None:
        return with_fault(record_response(reply.body, reply.status, reply.headers), fault)
    # The core hands some replies out again (a completed request's status and result): their
    # response, which sending leaves as it was, is built once (unless it is large).
    response = reply.rendered
    if not isinstance(response, Response):
        response = record_response(reply.body, reply.status, reply.headers)
        if len(response.body) <= RENDERED_KEPT_BYTES:
            reply.rendered = response
    return response


# Control bodies are small (a fault rule, a setting): anything larger is a mistake or an attack.
CONTROL_BODY_LIMIT = 1024 * 1024
WEBHOOK_SIGNATURE = "x-fal-webhook-signature"


def guard(request: Request) -> Emulator:
    """The emulator, once the caller has shown the control token (when one is set)."""
    emulator = emulator_of(request)
    if WEBHOOK_SIGNATURE in request.headers:
        # Only a webhook delivery carries fal's signature: one that reaches the control API
        # (an alias of this host, a path spelled oddly) must not drive the emulator.
        raise HTTPProblem(403, {"detail": "A webhook delivery cannot call the emulator's control API"})
    token = emulator.settings.control_token
    if token:
        given = request.headers.get("x-emulator-token")
        if given is None:
            scheme, _, value = request.headers.get("authorization", "").partition(" ")
            given = value if scheme.lower() == "bearer" else None
        if given != token:
            raise HTTPProblem(401, {"detail": "This control API needs the token given by --control-token"})
    return emulator


def handles(endpoint: Any) -> Any:
    """Route adapter for the control API: render a Problem as JSON."""

    async def run(request: Request) -> Response:
        try:
            response: Response = await endpoint(request)
            return response
        except Problem as problem:
            return problem_response(problem)

    return run


def method_not_allowed(allowed: str) -> HTTPProblem:
    return HTTPProblem(405, {"detail": "Method Not Allowed"}, {"allow": allowed})


def _not_a_triggered_fault(record: logging.LogRecord) -> bool:
    """Keep the servers' error logs for real errors, not for connections dropped on purpose."""
    return not (record.exc_info and isinstance(record.exc_info[1], FaultTriggered))


for _server_log in ("uvicorn.error", "hypercorn.error"):
    logging.getLogger(_server_log).addFilter(_not_a_triggered_fault)


class ResetResponse(Response):
    """Starts an answer, then drops the connection: the client sees a reset mid-response."""

    def __init__(self) -> None:
        super().__init__(b"", 200, media_type="application/json")
        self.headers["content-length"] = "4096"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": b'{"status": "IN_', "more_body": True})
        raise FaultTriggered("connection reset by a fault rule")


def with_fault(response: Response, fault: Fault | None) -> Response:
    """Spoil a finished answer as a body or connection fault asks."""
    if fault is None or fault.kind == "drop_stream":
        return response
    if fault.kind == "reset":
        return ResetResponse()
    body = bytes(response.body)
    if fault.kind == "truncated_body":
        spoiled = body[: max(1, len(body) // 2)]
    else:  # malformed_body: the same bytes, no longer JSON
        spoiled = b"{" + body.replace(b":", b"=", 1) if body else b"{"
    headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
    return Response(spoiled, response.status_code, headers)
