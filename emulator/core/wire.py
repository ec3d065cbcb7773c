"""fal's JSON shapes for a request: the submit envelope, status bodies, stream events."""

from __future__ import annotations

import functools
import json
import math
from datetime import UTC, datetime
from typing import Any

import orjson

from emulator.core.models import JSON, LogLine, RequestRecord, State


# A status poll with logs writes every line's time again: the same few values, formatted once.
@functools.lru_cache(maxsize=4096)
def iso_timestamp(seconds: float) -> str:
    """A unix time as fal writes log timestamps: ISO 8601, microseconds, ``Z``."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def log_entry(line: LogLine) -> JSON:
    return {
        "message": line.message,
        "level": line.level,
        "source": line.source,
        "timestamp": iso_timestamp(line.timestamp),
    }


def request_urls(record: RequestRecord, base_url: str) -> JSON:
    """The URLs a client follows, under the app id (owner/alias) as fal builds them."""
    root = f"{base_url}/{record.app_id}/requests/{record.id}"
    return {"response_url": root, "status_url": f"{root}/status", "cancel_url": f"{root}/cancel"}


def status_body(
    record: RequestRecord,
    base_url: str,
    *,
    position: int,
    logs: list[LogLine] | None,
) -> JSON:
    """A status body with exactly the keys the official parsers need for its state.

    IN_QUEUE carries ``queue_position``; IN_PROGRESS and COMPLETED always carry ``logs``
    (null when not asked for); COMPLETED carries metrics and, on failure, the error.
    """
    body: JSON = {
        "status": record.state.value,
        "request_id": record.id,
        "gateway_request_id": record.gateway_request_id or record.id,
        **request_urls(record, base_url),
        "logs": None if logs is None else [log_entry(line) for line in logs],
        "metrics": {},
    }
    if record.state is State.IN_QUEUE:
        body["queue_position"] = position
        body["logs"] = None
    elif record.state is State.COMPLETED:
        inference_time = record.inference_time
        if inference_time is not None:
            body["metrics"] = {"inference_time": inference_time}
        if record.failure is not None:
            body["error"] = record.failure.message
            body["error_type"] = record.failure.error_type
    return body


def dumps_record(data: Any) -> bytes:
    """Compact JSON, as ``json.dumps`` writes it for a record's bodies, several times faster.

    Only for bodies the emulator builds (no NaN, which orjson would write as null); anything
    orjson refuses (an integer past 64 bits in an output, say) goes through ``json``.
    """
    try:
        return orjson.dumps(data)
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return dumps_json(data)


def dumps_json(data: Any) -> bytes:
    """Compact JSON that every parser takes, whatever the data holds.

    NaN and infinity (not JSON) become null, as orjson writes them; text that UTF-8 cannot
    carry (a lone surrogate) is written as ``\\u`` escapes instead of failing.
    """
    try:
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
    except ValueError:  # NaN or infinity; UnicodeEncodeError is a ValueError too
        return json.dumps(_finite(data), separators=(",", ":"), allow_nan=False).encode()


def _finite(data: Any) -> Any:
    if isinstance(data, float) and not math.isfinite(data):
        return None
    if isinstance(data, dict):
        return {key: _finite(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [_finite(value) for value in data]
    return data


def sse_event(data: JSON) -> bytes:
    return b"data: " + dumps_record(data) + b"\n\n"
