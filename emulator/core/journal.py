"""The journal: every request the emulator received, bounded so it cannot exhaust memory."""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from emulator.core.models import JSON

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
        name_bytes, value_bytes = len(name), len(value)
        if name_bytes > MAX_HEADER_NAME_BYTES or value_bytes > MAX_HEADER_VALUE_BYTES:
            return False
        total += name_bytes + value_bytes
    return total <= MAX_HEADERS_BYTES


def _decoded(raw: RawHeaders) -> dict[str, str]:
    """Raw headers as text, the last of a repeated name winning (in its first place)."""
    return {name.decode("latin-1"): value.decode("latin-1") for name, value in raw}


@dataclass(slots=True)
class Entry:
    """One request and the answer it got.

    Headers that fit the caps as they came are kept as the server's bytes and masked when the
    entry is first read: every call is journalled, few entries are ever looked at.
    """

    seq: int
    time: float
    namespace: str
    method: str
    path: str
    query: str
    held_headers: dict[str, str] | tuple[tuple[bytes, bytes], ...]
    body: str
    body_truncated: bool
    headers_truncated: bool = False
    status: int | None = None
    duration_ms: float | None = None
    request_id: str | None = None

    @property
    def headers(self) -> dict[str, str]:
        """The headers, masked and cut to the caps."""
        held = self.held_headers
        if not isinstance(held, dict):
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
        namespace: str,
        method: str,
        path: str,
        query: str,
        headers: Mapping[str, str] | RawHeaders,
        body: bytes,
    ) -> Entry:
        """Keep one call; ``headers`` as text, or as the raw pairs an ASGI scope carries."""
        kept = body[: self.max_body_bytes]
        held: dict[str, str] | tuple[tuple[bytes, bytes], ...]
        if isinstance(headers, list | tuple):
            if _within_caps(headers):
                held, headers_cut = tuple(headers), False
            else:
                held, headers_cut = capped_headers(_decoded(headers))
        else:
            held, headers_cut = capped_headers(cast("Mapping[str, str]", headers))
        # Positional (the fields' order): every call is journalled, and keywords cost a third more.
        entry = Entry(
            next(self._seq),
            time,
            namespace[:MAX_URL_PART_BYTES],
            method[:MAX_HEADER_NAME_BYTES],
            path[:MAX_URL_PART_BYTES],
            query[:MAX_URL_PART_BYTES],
            held,
            kept.decode("utf-8", errors="replace"),
            len(body) > len(kept),
            headers_cut,
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
