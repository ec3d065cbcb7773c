"""The journal: every request the emulator received, bounded so it cannot exhaust memory."""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import parse_qs

from emulator.core.auth import ANONYMOUS, AuthError, namespace_for
from emulator.core.models import JSON
from emulator.core.tokens import Tokens

# What one entry keeps at most, beside the body (``max_body_bytes``): each header name and value
# cut to its cap, headers past the total left out, path and query cut. A client that sends
# megabytes of headers must not make the journal hold them a thousand times over.
MAX_HEADER_NAME_BYTES = 256
MAX_HEADER_VALUE_BYTES = 2048
MAX_HEADERS_BYTES = 16 * 1024
MAX_URL_PART_BYTES = 4096

SECRET_HEADERS = frozenset({"authorization", "x-fal-key", "cookie", "proxy-authorization", "x-emulator-token"})

# Headers as an ASGI server passes them: (name, value) byte pairs, in the order they came.
RawHeaders = Sequence[tuple[bytes, bytes]]
_PAIRS = (list, tuple)


def mask(name: str, value: str) -> str:
    """Hide secrets but keep what identifies the caller: ``Key id:secret`` → ``Key id:***``."""
    if name.lower() not in SECRET_HEADERS:
        return value
    scheme, _, credentials = value.partition(" ")
    if scheme.lower() == "key" and ":" in credentials:
        return f"{scheme} {credentials.split(':', 1)[0]}:***"
    return f"{scheme} ***" if credentials else "***"


def capped_headers(headers: Mapping[str, str]) -> tuple[dict[str, str], bool]:
    """The headers masked and cut to the journal's caps, and whether anything was cut or left out."""
    kept: dict[str, str] = {}
    total = 0
    cut = False
    for name, value in headers.items():
        short_name, short_value = name[:MAX_HEADER_NAME_BYTES], value[:MAX_HEADER_VALUE_BYTES]
        cut = cut or len(short_name) < len(name) or len(short_value) < len(value)
        total += len(short_name) + len(short_value)
        if total > MAX_HEADERS_BYTES:
            return kept, True
        kept[short_name] = mask(short_name, short_value)
    return kept, cut


def _within_caps(raw: RawHeaders) -> bool:
    """Whether raw headers fit every cap as they are: then nothing would be cut or left out."""
    total = 0
    for name, value in raw:
        total += len(name) + len(value)
    if total <= MAX_HEADER_NAME_BYTES:  # no name or value can be past its cap: most calls
        return True
    for name, value in raw:
        if len(name) > MAX_HEADER_NAME_BYTES or len(value) > MAX_HEADER_VALUE_BYTES:
            return False
    return total <= MAX_HEADERS_BYTES


def _decoded(raw: RawHeaders) -> dict[str, str]:
    """Raw headers as text, the last of a repeated name winning (in its first place)."""
    return {name.decode("latin-1"): value.decode("latin-1") for name, value in raw}


def caller_namespace(raw: RawHeaders, query: bytes) -> str:
    """The namespace a call is filed under: the caller's key, or the key a token from /tokens/ names."""
    authorization = None
    for key, value in raw:
        if key == b"authorization":  # the last one, as a dict of the headers would hold
            authorization = value.decode("latin-1")
    try:
        namespace = namespace_for(authorization, required=False)
    except AuthError:
        namespace = "(invalid key)"
    if namespace == ANONYMOUS or namespace.startswith("bearer-"):
        # A call made with a token from /tokens/ is filed under the key that asked for it.
        namespace = _token_namespace(authorization, query) or namespace
    return namespace


def _token_namespace(authorization: str | None, query: bytes) -> str | None:
    """The namespace a /tokens/ token names (a label here: its use is checked where it is used)."""
    scheme, _, credentials = (authorization or "").partition(" ")
    token = credentials.strip() if scheme.lower() == "bearer" else None
    if token is None:
        given = parse_qs(query.decode("latin-1")).get("fal_jwt_token")
        token = given[0] if given else None
    claims = Tokens.claims_of(token) if token else None
    return str(claims["sub"]) if claims and "sub" in claims else None


class Entry:
    """One request and the answer it got.

    What a call brings is kept as it came and turned into text when the entry is first read: the
    headers (masked then, when they fit the caps as they came), the query string, the body, the
    caller's namespace and the answer's request id. Every call is journalled; few entries are
    ever looked at.
    """

    __slots__ = (
        "_answer", "_body", "_namespace", "_query", "_request_id", "body_truncated", "elapsed",
        "headers_truncated", "held_headers", "method", "path", "seq", "status", "time",
    )  # fmt: skip

    def __init__(
        self,
        seq: int,
        time: float,
        namespace: str | None,  # None: the caller's, found in the raw headers and query when read
        method: str,
        path: str,
        query: str | bytes,
        held_headers: dict[str, str] | tuple[tuple[bytes, bytes], ...],
        body: str | bytes,
        body_truncated: bool,
        headers_truncated: bool,
        status: int | None,
        answer: RawHeaders | None,  # the answer's header pairs as sent: its request id is found there when read
    ) -> None:
        self.seq = seq
        self.time = time
        self._namespace = namespace
        self.method = method
        self.path = path
        self._query = query
        self.held_headers = held_headers
        self._body = body
        self.body_truncated = body_truncated
        self.headers_truncated = headers_truncated
        self.status = status
        # Seconds from the call's arrival until its answer was sent (``duration_ms`` when read).
        self.elapsed: float | None = None
        self._request_id: str | None = None
        self._answer = answer

    @property
    def namespace(self) -> str:
        namespace = self._namespace
        if namespace is None:
            held, query = self.held_headers, self._query
            assert not isinstance(held, dict), "headers held as text have their namespace already"
            raw_query = query if isinstance(query, bytes) else query.encode("latin-1")
            namespace = self._namespace = caller_namespace(held, raw_query)[:MAX_URL_PART_BYTES]
        return namespace

    @property
    def query(self) -> str:
        query = self._query
        if isinstance(query, bytes):
            query = self._query = query.decode("latin-1")
        return query

    @property
    def body(self) -> str:
        body = self._body
        if isinstance(body, bytes):
            body = self._body = body.decode("utf-8", errors="replace")
        return body

    @property
    def duration_ms(self) -> float | None:
        elapsed = self.elapsed
        return None if elapsed is None else round(elapsed * 1000, 3)

    @property
    def request_id(self) -> str | None:
        answer = self._answer
        if answer is not None:
            self._answer = None
            for name, value in answer:
                if name.lower() == b"x-fal-request-id":
                    self._request_id = value.decode("latin-1")
        return self._request_id

    @request_id.setter
    def request_id(self, value: str | None) -> None:
        self._answer = None
        self._request_id = value

    @property
    def headers(self) -> dict[str, str]:
        """The headers, masked and cut to the caps."""
        held = self.held_headers
        if not isinstance(held, dict):
            if self._namespace is None:
                self._namespace = self.namespace  # found in the raw headers, before they are masked
            held = self.held_headers = capped_headers(_decoded(held))[0]
        return held

    def as_json(self) -> JSON:
        return {
            "seq": self.seq,
            "time": self.time,
            "namespace": self.namespace,
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "headers": self.headers,
            "body": self.body,
            "body_truncated": self.body_truncated,
            "headers_truncated": self.headers_truncated,
            "status": self.status,
            "duration_ms": self.duration_ms,
            "request_id": self.request_id,
        }


@dataclass
class Journal:
    """A ring of the last ``max_entries`` requests, each body kept up to ``max_body_bytes``."""

    max_entries: int = 1000
    max_body_bytes: int = 4096
    _entries: deque[Entry] = field(init=False)
    _seq: Iterator[int] = field(init=False, default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        self._entries = deque(maxlen=max(0, self.max_entries))

    @property
    def enabled(self) -> bool:
        return self.max_entries > 0

    def record(
        self,
        *,
        time: float,
        namespace: str | None,
        method: str,
        path: str,
        query: str | bytes,
        headers: Mapping[str, str] | RawHeaders,
        body: bytes,
    ) -> Entry:
        """Keep one call; ``headers`` as text, or as the raw pairs an ASGI scope carries.

        With raw pairs, ``namespace`` may be None: the caller's, from its headers and query
        string (``caller_namespace``), found when the entry is first read.
        """
        return self.note(time, method, path, query, headers, body, None, None, namespace)

    def note(
        self,
        time: float,
        method: str,
        path: str,
        query: str | bytes,
        headers: Mapping[str, str] | RawHeaders,
        body: bytes,
        status: int | None,
        answer: RawHeaders | None,
        namespace: str | None = None,
    ) -> Entry:
        """``record`` with the answer's status and header pairs, positional: every call is journalled."""
        kept = body[: self.max_body_bytes]
        held: dict[str, str] | tuple[tuple[bytes, bytes], ...]
        cut_query = query[:MAX_URL_PART_BYTES]
        if isinstance(headers, _PAIRS):
            within = _within_caps(headers)
            if namespace is None and (not within or len(cut_query) < len(query)):
                # Found now, from what came: the entry keeps only what fits the caps.
                raw_query = query if isinstance(query, bytes) else query.encode("latin-1")
                namespace = caller_namespace(headers, raw_query)
            if within:
                held, headers_cut = tuple(headers), False
            else:
                held, headers_cut = capped_headers(_decoded(headers))
        else:
            assert namespace is not None, "headers given as text come with their namespace"
            held, headers_cut = capped_headers(cast("Mapping[str, str]", headers))
        # Positional (the fields' order): keywords cost a third more.
        entry = Entry(
            next(self._seq),
            time,
            None if namespace is None else namespace[:MAX_URL_PART_BYTES],
            method[:MAX_HEADER_NAME_BYTES],
            path[:MAX_URL_PART_BYTES],
            cut_query,
            held,
            kept,
            len(body) > len(kept),
            headers_cut,
            status,
            answer,
        )
        self._entries.append(entry)
        return entry

    def entries(
        self,
        *,
        namespace: str | None = None,
        method: str | None = None,
        path: str | None = None,
        status: int | None = None,
        request_id: str | None = None,
        since: int | None = None,
        limit: int | None = None,
    ) -> list[Entry]:
        """Entries oldest first, filtered; ``path`` matches a substring, ``since`` a sequence number."""
        found = [
            e
            for e in self._entries
            if (namespace is None or e.namespace == namespace)
            and (method is None or e.method == method.upper())
            and (path is None or path in e.path)
            and (status is None or e.status == status)
            and (request_id is None or e.request_id == request_id or request_id in e.path)
            and (since is None or e.seq > since)
        ]
        return found[-limit:] if limit else found

    def clear(self, namespace: str | None = None) -> None:
        if namespace is None:
            self._entries.clear()
            return
        kept = [e for e in self._entries if e.namespace != namespace]
        self._entries.clear()
        self._entries.extend(kept)

    def __len__(self) -> int:
        return len(self._entries)

    def describe(self) -> dict[str, Any]:
        return {
            "size": len(self._entries),
            "max_entries": self.max_entries,
            "max_body_bytes": self.max_body_bytes,
            "max_header_value_bytes": MAX_HEADER_VALUE_BYTES,
            "max_headers_bytes": MAX_HEADERS_BYTES,
        }
